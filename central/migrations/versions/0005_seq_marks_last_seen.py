"""per-device last_seen on the seq marks (the silent-door rule reads it instead of scanning events)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("seqs") as batch:
        batch.add_column(sa.Column("last_seen", sa.Float(), nullable=True))
    # Marks made before this revision: their device's newest stored event (once, here).
    op.execute("update seqs set last_seen = (select max(e.stored_at) from events e where e.device = seqs.device)")


def downgrade() -> None:
    with op.batch_alter_table("seqs") as batch:
        batch.drop_column("last_seen")
