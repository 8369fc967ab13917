"""Every command that takes a checkpoint accepts its uuid, a unique prefix (4+ hex digits, as git
and docker do) or its snapshot name; an ambiguous prefix is bad usage (exit 2) listing the matches."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from runtime.checkpoints.naming import snapname_for
from runtime.checkpoints.queries import CheckpointQueries
from runtime.db import Checkpoint, Database
from runtime.errors import NotFoundError, UsageError
from tests.support.hubenv import HubEnv, one_line_error

A = "abcd1234-0000-4000-8000-000000000001"
B = "abcd1299-0000-4000-8000-000000000002"
C = "ffff0000-1111-4000-8000-000000000003"


def _seed(db: Database) -> None:
    with db.session() as s:
        for n, uuid in enumerate((A, B, C)):
            s.add(
                Checkpoint(
                    uuid=uuid,
                    vm_id=100,
                    node="pve1",
                    snapname=snapname_for(uuid),
                    kind="manual",
                    status="completed",
                    created_at=datetime(2026, 1, 1, n, tzinfo=UTC),
                    completed_at=datetime(2026, 1, 1, n, tzinfo=UTC),
                )
            )


@pytest.fixture
def queries(tmp_path: Path) -> CheckpointQueries:
    db = Database(f"sqlite:///{tmp_path / 'hub.db'}")
    db.upgrade()
    _seed(db)
    return CheckpointQueries(db)


@pytest.mark.parametrize(
    "ref",
    [C, C.upper(), "ffff", "ffff0000-11", "ffff00001111", snapname_for(C), C.replace("-", "")],
)
def test_resolve_by_uuid_prefix_or_snapshot_name(queries: CheckpointQueries, ref: str) -> None:
    assert queries.resolve(ref).uuid == C


def test_resolve_refuses_ambiguous_short_and_malformed(queries: CheckpointQueries) -> None:
    with pytest.raises(UsageError, match="ambiguous") as caught:
        queries.resolve("abcd12")
    assert A in str(caught.value) and B in str(caught.value)
    assert queries.resolve("abcd1234").uuid == A
    with pytest.raises(UsageError, match="too short"):
        queries.resolve("ffe")
    for bad in ("", "zzzz", "hub-123", C + "0", "my-snapshot"):
        with pytest.raises(UsageError):
            queries.resolve(bad)
    with pytest.raises(NotFoundError):
        queries.resolve("0123")
    with pytest.raises(NotFoundError):
        queries.resolve(snapname_for("01230000-0000-4000-8000-000000000000"))


def test_cli_show_takes_a_prefix_and_names_ambiguous_matches(sqlite_hubenv: HubEnv) -> None:
    db = sqlite_hubenv.services().ready_db()
    _seed(db)
    shown = sqlite_hubenv.run("checkpoint", "show", "ffff", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["uuid"] == C
    by_name = sqlite_hubenv.run("checkpoint", "show", snapname_for(A))
    assert by_name.returncode == 0 and A in by_name.stdout
    ambiguous = sqlite_hubenv.run("checkpoint", "show", "abcd")
    assert ambiguous.returncode == 2
    line = one_line_error(ambiguous.stderr)
    assert "ambiguous" in line and A in line and B in line
    missing = sqlite_hubenv.run("checkpoint", "show", "0000")
    assert missing.returncode == 2 and "no checkpoint" in missing.stderr


def test_cli_protect_and_delete_take_a_prefix(sqlite_hubenv: HubEnv) -> None:
    created = sqlite_hubenv.run("checkpoint", "create", "--json")
    assert created.returncode == 0, created.stderr
    uuid = json.loads(created.stdout)["uuid"]
    protected = sqlite_hubenv.run("checkpoint", "protect", uuid[:8], "--json")
    assert protected.returncode == 0, protected.stderr
    assert json.loads(protected.stdout)["protected"] is True
    unprotected = sqlite_hubenv.run("checkpoint", "unprotect", snapname_for(uuid), "--json")
    assert unprotected.returncode == 0 and json.loads(unprotected.stdout)["protected"] is False
    deleted = sqlite_hubenv.run("checkpoint", "delete", uuid[:6], "--json")
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout)["status"] == "deleted"
