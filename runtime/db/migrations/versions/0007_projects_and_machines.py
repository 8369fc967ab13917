"""Projects and task machines (issue 11: machines, quotas, budgets).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "hub_projects",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("max_cores", sa.Integer),
        sa.Column("max_memory_mib", sa.Integer),
        sa.Column("max_disk_gb", sa.Integer),
        sa.Column("max_machines", sa.Integer),
        sa.Column("budget", sa.Float),
        sa.Column("spent", sa.Float, nullable=False, server_default="0"),
        sa.Column("checkpoint_schedule", sa.String(128)),
        sa.Column("retention", sa.JSON),
        sa.Column("over_budget_since", _UTC),
        sa.Column("created_at", _UTC, nullable=False),
    )
    op.create_table(
        "hub_machines",
        sa.Column("uuid", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("project", sa.String(32), nullable=False),
        sa.Column("vm_id", sa.Integer),
        sa.Column("node", sa.String(64)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("step", sa.String(20), nullable=False),
        sa.Column("cores", sa.Integer, nullable=False),
        sa.Column("memory_mib", sa.Integer, nullable=False),
        sa.Column("disk_gb", sa.Integer, nullable=False),
        sa.Column("network", sa.String(64)),
        sa.Column("error", sa.Text),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("updated_at", _UTC, nullable=False),
        sa.Column("destroyed_at", _UTC),
        sa.Column("last_uptime", sa.Integer, nullable=False, server_default="0"),
        sa.Column("sampled_at", _UTC),
        sa.Column("cpu", sa.Float, nullable=False, server_default="0"),
        sa.Column("cost", sa.Float, nullable=False, server_default="0"),
        sa.Column("idle_since", _UTC),
        sa.Column("idle", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_hub_machines_project_status", "hub_machines", ["project", "status"])
    op.create_index("ix_hub_machines_vm_id", "hub_machines", ["vm_id"])
    op.create_index("ix_hub_machines_name", "hub_machines", ["name"])


def downgrade() -> None:
    op.drop_table("hub_machines")
    op.drop_table("hub_projects")
