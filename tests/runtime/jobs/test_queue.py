"""Jobs: kinds registered by their domain, typed parameters, and state written with its audit entry."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from runtime import domains
from runtime.db import AuditEntry, Job
from runtime.errors import UsageError
from runtime.jobs.queue import JobQueue
from runtime.jobs.store import JobStore
from tests.support.hubenv import HubEnv


def _jobs_and_audit(env: HubEnv) -> tuple[int, int]:
    with env.services().db.session() as s:
        return (
            int(s.scalar(select(func.count()).select_from(Job)) or 0),
            int(s.scalar(select(func.count()).select_from(AuditEntry)) or 0),
        )


def test_every_domain_kind_is_registered_once() -> None:
    kinds = domains.job_kinds()
    assert {"checkpoint.create", "checkpoint.delete", "checkpoint.prune", "reconcile"} <= set(kinds.names())


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("checkpoint.explode", {}, "unknown job kind"),
        ("checkpoint.create", {"kind": "imported"}, "reserved"),
        ("checkpoint.create", {"vmid": 1e3}, "vmid"),
        ("checkpoint.create", {"vmid": 5}, "vmid"),
        ("checkpoint.create", {"colour": "blue"}, "colour"),
        ("checkpoint.delete", {}, "uuid"),
    ],
)
def test_bad_kinds_and_parameters_are_refused_before_anything_is_written(
    sqlite_hubenv: HubEnv, kind: str, params: dict[str, Any], message: str
) -> None:
    queue = JobQueue(sqlite_hubenv.services(), kinds=domains.job_kinds())
    before = _jobs_and_audit(sqlite_hubenv)
    with pytest.raises(UsageError, match=message):
        queue.submit(kind, params, actor="test")
    assert _jobs_and_audit(sqlite_hubenv) == before


def test_a_job_state_change_and_its_audit_entry_are_one_transaction(sqlite_hubenv: HubEnv) -> None:
    """When the audit entry cannot be written, the job's state does not change either."""
    services = sqlite_hubenv.services()
    store = JobStore(services.ready_db())
    job = store.create(kind="reconcile", params={}, actor="test")
    assert store.claim(job["id"]) is not None
    db_file = Path(services.settings.database_url.removeprefix("sqlite:///"))
    with sqlite3.connect(db_file) as conn:  # the database refuses the audit entry of a finished job
        conn.execute(
            "CREATE TRIGGER refuse_job_audit BEFORE INSERT ON hub_audit WHEN NEW.action LIKE 'job.reconcile' "
            "BEGIN SELECT RAISE(ABORT, 'audit refused'); END"
        )
    with pytest.raises(Exception, match="audit refused"):
        store.finish(job["id"], result={"ok": True})
    assert store.get(job["id"])["state"] == "running"  # not 'succeeded' without its audit entry
    with sqlite3.connect(db_file) as conn:
        conn.execute("DROP TRIGGER refuse_job_audit")
    store.finish(job["id"], result={"ok": True})
    assert store.get(job["id"])["state"] == "succeeded"
    with services.db.session() as s:
        outcomes = [e.outcome for e in s.scalars(select(AuditEntry).where(AuditEntry.target == job["id"]))]
    assert outcomes == ["queued", "succeeded"]
