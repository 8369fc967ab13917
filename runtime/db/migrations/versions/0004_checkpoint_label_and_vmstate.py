"""Checkpoints get a retention label and record whether they hold RAM state.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows from before labels read as their kind's label (CheckpointRecord.default_label).
    op.add_column("hub_checkpoints", sa.Column("label", sa.String(32)))
    op.add_column(
        "hub_checkpoints", sa.Column("vmstate", sa.Boolean, nullable=False, server_default=sa.false())
    )


def downgrade() -> None:
    with op.batch_alter_table("hub_checkpoints") as batch:
        batch.drop_column("vmstate")
        batch.drop_column("label")
