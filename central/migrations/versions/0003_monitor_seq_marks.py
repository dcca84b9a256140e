"""monitor seq marks

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("seqs",
    sa.Column("device", sa.String(length=64), nullable=False),
    sa.Column("contiguous", sa.BigInteger(), nullable=False),
    sa.Column("gap_since", sa.Float(), nullable=True),
    sa.Column("tries", sa.Integer(), nullable=False),
    sa.Column("alerted", sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint("device")
    )


def downgrade() -> None:
    op.drop_table("seqs")
