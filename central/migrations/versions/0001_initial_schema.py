"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("access_groups",
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("name", sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("name")
    )
    op.create_table("alerts",
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("rule", sa.String(length=64), nullable=False),
    sa.Column("device", sa.String(length=64), nullable=False),
    sa.Column("ts", sa.Float(), nullable=False),
    sa.Column("detail", sa.Text(), nullable=False),
    sa.Column("event_id", sa.String(length=36), nullable=True),
    sa.PrimaryKeyConstraint("id")
    )
    op.create_table("audit",
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("ts", sa.Float(), nullable=False),
    sa.Column("operator", sa.String(length=128), nullable=False),
    sa.Column("action", sa.String(length=64), nullable=False),
    sa.Column("target", sa.String(length=128), nullable=False),
    sa.Column("detail", sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint("id")
    )
    op.create_table("availability",
    sa.Column("device", sa.String(length=64), nullable=False),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("changed_at", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("device")
    )
    op.create_table("counters",
    sa.Column("name", sa.String(length=64), nullable=False),
    sa.Column("value", sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint("name")
    )
    op.create_table("devices",
    sa.Column("id", sa.String(length=64), nullable=False),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("csr_pem", sa.Text(), nullable=False),
    sa.Column("template_pubkey", sa.LargeBinary(length=32), nullable=False),
    sa.Column("cert_pem", sa.Text(), nullable=True),
    sa.Column("cert_serial", sa.String(length=64), nullable=True),
    sa.Column("requested_at", sa.Float(), nullable=False),
    sa.Column("approved_at", sa.Float(), nullable=True),
    sa.Column("approved_by", sa.String(length=128), nullable=True),
    sa.Column("revoked_at", sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint("id")
    )
    op.create_table("enrollment_tokens",
    sa.Column("token_hash", sa.String(length=64), nullable=False),
    sa.Column("device_id", sa.String(length=64), nullable=True),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.Column("expires_at", sa.Float(), nullable=False),
    sa.Column("used_at", sa.Float(), nullable=True),
    sa.Column("used_by", sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint("token_hash")
    )
    op.create_table("events",
    sa.Column("rowid", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
    sa.Column("event_id", sa.String(length=36), nullable=False),
    sa.Column("device", sa.String(length=64), nullable=False),
    sa.Column("type", sa.String(length=32), nullable=False),
    sa.Column("severity", sa.String(length=16), nullable=False),
    sa.Column("ts", sa.Float(), nullable=False),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("user_id", sa.String(length=128), nullable=True),
    sa.Column("stored_at", sa.Float(), nullable=False),
    sa.Column("payload", sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint("rowid"),
    sa.UniqueConstraint("event_id")
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("events_device_seq", ["device", "seq"], unique=False)

    op.create_table("people",
    sa.Column("id", sa.String(length=36), nullable=False),
    sa.Column("name", sa.String(length=128), nullable=False),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("name")
    )
    op.create_table("doors",
    sa.Column("id", sa.String(length=64), nullable=False),
    sa.Column("name", sa.String(length=128), nullable=False),
    sa.Column("lockdown", sa.String(length=16), nullable=False),
    sa.Column("settings", sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(["id"], ["devices.id"], ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("id")
    )
    op.create_table("group_members",
    sa.Column("group_id", sa.Integer(), nullable=False),
    sa.Column("person_id", sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(["group_id"], ["access_groups.id"], ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["person_id"], ["people.id"], ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("group_id", "person_id")
    )
    op.create_table("templates",
    sa.Column("id", sa.String(length=36), nullable=False),
    sa.Column("person_id", sa.String(length=36), nullable=False),
    sa.Column("key_version", sa.Integer(), nullable=False),
    sa.Column("nonce", sa.LargeBinary(length=12), nullable=False),
    sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(["person_id"], ["people.id"], ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("id")
    )
    with op.batch_alter_table("templates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_templates_person_id"), ["person_id"], unique=False)

    op.create_table("group_doors",
    sa.Column("group_id", sa.Integer(), nullable=False),
    sa.Column("door_id", sa.String(length=64), nullable=False),
    sa.Column("schedule", sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(["door_id"], ["doors.id"], ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["group_id"], ["access_groups.id"], ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("group_id", "door_id")
    )
    op.create_table("policy_state",
    sa.Column("door_id", sa.String(length=64), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("content_hash", sa.String(length=64), nullable=False),
    sa.Column("bundle", sa.LargeBinary(), nullable=False),
    sa.Column("built_at", sa.Float(), nullable=False),
    sa.Column("acked_version", sa.Integer(), nullable=False),
    sa.Column("acked_at", sa.Float(), nullable=True),
    sa.Column("last_sent_at", sa.Float(), nullable=True),
    sa.Column("sends", sa.Integer(), nullable=False),
    sa.Column("last_refusal", sa.String(length=256), nullable=True),
    sa.ForeignKeyConstraint(["door_id"], ["doors.id"], ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("door_id")
    )


def downgrade() -> None:
    op.drop_table("policy_state")
    op.drop_table("group_doors")
    with op.batch_alter_table("templates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_templates_person_id"))

    op.drop_table("templates")
    op.drop_table("group_members")
    op.drop_table("doors")
    op.drop_table("people")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("events_device_seq")

    op.drop_table("events")
    op.drop_table("enrollment_tokens")
    op.drop_table("devices")
    op.drop_table("counters")
    op.drop_table("availability")
    op.drop_table("audit")
    op.drop_table("alerts")
    op.drop_table("access_groups")
