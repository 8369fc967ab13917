"""Checkpoints and the append-only audit trail.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hub_checkpoints",
        sa.Column("uuid", sa.String(36), primary_key=True),
        sa.Column("vm_id", sa.Integer, nullable=False),
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column("snapname", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("upid", sa.String(128)),
        sa.Column("error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        sa.Column("protected", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.CheckConstraint(
            "status IN ('creating', 'completed', 'failed', 'deleted')", name="ck_hub_checkpoints_status"
        ),
    )
    op.create_index("ix_hub_checkpoints_vm_status", "hub_checkpoints", ["vm_id", "status"])
    op.create_index("ix_hub_checkpoints_created_at", "hub_checkpoints", ["created_at"])
    op.create_index("ux_hub_checkpoints_vm_snapname", "hub_checkpoints", ["vm_id", "snapname"], unique=True)

    op.create_table(
        "hub_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(256)),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
    )
    op.create_index("ix_hub_audit_at", "hub_audit", ["at"])
    op.create_index("ix_hub_audit_target", "hub_audit", ["target"])

    # The audit trail is append-only by construction, not by convention: the database itself
    # refuses to change or remove a row.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION hub_audit_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'hub_audit is append-only';
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER hub_audit_no_change BEFORE UPDATE OR DELETE ON hub_audit "
            "FOR EACH ROW EXECUTE FUNCTION hub_audit_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER hub_audit_no_{verb.lower()} BEFORE {verb} ON hub_audit "
                "BEGIN SELECT RAISE(ABORT, 'hub_audit is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS hub_audit_no_change ON hub_audit")
        op.execute("DROP FUNCTION IF EXISTS hub_audit_append_only()")
    op.drop_table("hub_audit")
    op.drop_table("hub_checkpoints")
