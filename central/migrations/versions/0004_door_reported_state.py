"""door reported state (the locks' retained state topic, central.doorstate)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("door_reported_state",
    sa.Column("device", sa.String(length=64), nullable=False),
    sa.Column("lock", sa.String(length=16), nullable=False),
    sa.Column("door", sa.String(length=16), nullable=False),
    sa.Column("tamper", sa.Boolean(), nullable=False),
    sa.Column("lockdown", sa.Boolean(), nullable=False),
    sa.Column("machine", sa.String(length=16), nullable=True),
    sa.Column("ts", sa.Float(), nullable=False),
    sa.Column("received_at", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("device")
    )


def downgrade() -> None:
    op.drop_table("door_reported_state")
