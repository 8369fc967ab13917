"""Worker registry: every process that runs jobs, with its heartbeat; a running job names its worker.

A job is marked interrupted only when the worker that claimed it stopped heartbeating
(runtime/jobs/workers.py), so several worker processes can share one database safely.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hub_workers",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        # holder_token()-style identity (host:pid:start-time): tells a dead process on this host at once.
        sa.Column("token", sa.String(256), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_hub_workers_heartbeat_at", "hub_workers", ["heartbeat_at"])
    op.add_column("hub_jobs", sa.Column("worker_id", sa.String(36)))


def downgrade() -> None:
    with op.batch_alter_table("hub_jobs") as batch:
        batch.drop_column("worker_id")
    op.drop_index("ix_hub_workers_heartbeat_at", table_name="hub_workers")
    op.drop_table("hub_workers")
