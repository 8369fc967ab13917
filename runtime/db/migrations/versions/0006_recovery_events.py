"""Recovery events imported from the sentinel's journal on the Hub VM's description.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hub_recovery_events",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("vm_id", sa.Integer, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("checkpoint", sa.String(64), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_hub_recovery_events_at", "hub_recovery_events", ["at"])


def downgrade() -> None:
    op.drop_index("ix_hub_recovery_events_at", table_name="hub_recovery_events")
    op.drop_table("hub_recovery_events")
