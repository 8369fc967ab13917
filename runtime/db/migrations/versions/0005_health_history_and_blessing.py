"""Health history, and blessing of checkpoints.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hub_health_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("instant", sa.String(16), nullable=False),
        sa.Column("settled", sa.String(16), nullable=False),
        sa.Column("checks", sa.JSON, nullable=False),
        sa.Column("problems", sa.JSON, nullable=False),
    )
    op.create_index("ix_hub_health_history_at", "hub_health_history", ["at"])
    # Both null: not yet decided (rows from before this revision too).
    op.add_column("hub_checkpoints", sa.Column("blessed_at", sa.DateTime(timezone=True)))
    op.add_column("hub_checkpoints", sa.Column("bless_refused", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("hub_checkpoints") as batch:
        batch.drop_column("bless_refused")
        batch.drop_column("blessed_at")
    op.drop_index("ix_hub_health_history_at", table_name="hub_health_history")
    op.drop_table("hub_health_history")
