"""After the Hub VM is rolled back to checkpoint C, its database is C's: it shows C as 'creating'
(the row was written before the snapshot) and knows nothing of later checkpoints, whose snapshots
still exist on Proxmox. Reconcile must settle C and re-import the rest."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from runtime.db import AuditEntry
from tests.support.hubenv import HubEnv, hub_snapshots


def _sqlite_path(env: HubEnv) -> Path:
    return Path(env.values["HUB_DATABASE_URL"].removeprefix("sqlite:///"))


def _copy(src: Path, dst: Path) -> None:
    """A consistent copy of a live SQLite database (WAL included), as a VM snapshot would hold."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)


def test_rollback_to_a_checkpoint_then_reconcile(sqlite_hubenv: HubEnv, pve: Any, tmp_path: Path) -> None:
    env = sqlite_hubenv
    db_file = _sqlite_path(env)
    frozen = tmp_path / "at-snapshot.db"

    def capture(message: str) -> None:
        # The instant Proxmox takes the snapshot, the disk holds the database with the row 'creating'.
        if message.startswith("snapshot ") and " started: " in message and not frozen.exists():
            _copy(db_file, frozen)

    svc = env.checkpoints(progress=capture, keep_last=10)
    restored_from = svc.create(reason="C").to_public()
    later = [svc.create(reason=f"after C #{i}").to_public() for i in range(2)]
    assert frozen.exists()

    # Roll the Hub VM back to C: its disk, hence its database, is C's again.
    svc.db.dispose()
    for suffix in ("", "-wal", "-shm"):
        Path(str(db_file) + suffix).unlink(missing_ok=True)
    shutil.copy(frozen, db_file)
    before = {r.uuid: r.status for r in env.queries().list()}
    assert before == {restored_from["uuid"]: "creating"}

    result = env.run("reconcile", "--json")
    assert result.returncode == 0, result.stderr
    after = {r.uuid: r.to_public() for r in env.queries().list()}
    assert after[restored_from["uuid"]]["status"] == "completed"
    for cp in later:
        assert after[cp["uuid"]]["status"] == "completed"
        assert after[cp["uuid"]]["reason"] == cp["reason"]  # carried back from the description
        assert after[cp["uuid"]]["kind"] == "manual"
        assert after[cp["uuid"]]["snapname"] == cp["snapname"]
    assert set(hub_snapshots(pve)) == {r["snapname"] for r in after.values()}
    with env.services().db.session() as s:
        imports = [
            e.target for e in s.scalars(select(AuditEntry).where(AuditEntry.action == "reconcile.import"))
        ]
    assert sorted(imports) == sorted(cp["uuid"] for cp in later)
    assert env.run("reconcile", "--json").stdout.count('"uuid"') == 0  # nothing left to change


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_database_restored_from_an_older_copy(
    db: str, pve: Any, fakepve_cafile: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The whole database put back to an older copy (an empty one here): everything re-imported."""
    from tests.support.hubenv import make_env

    url = f"sqlite:///{tmp_path / 'a.db'}" if db == "sqlite" else request.getfixturevalue("postgres_url")
    env = make_env(pve, fakepve_cafile, tmp_path, url, HUB_KEEP_LAST="10")
    env.services().db.upgrade()
    made = [env.checkpoints().create(kind=k, reason=f"r{i}").to_public() for i, k in enumerate(_kinds())]
    fresh_url = (
        f"sqlite:///{tmp_path / 'b.db'}" if db == "sqlite" else request.getfixturevalue("postgres_url")
    )
    env2 = make_env(pve, fakepve_cafile, tmp_path, fresh_url, HUB_KEEP_LAST="10")
    assert env2.run("db", "upgrade").returncode == 0
    assert env2.run("reconcile").returncode == 0
    back = {r.uuid: r.to_public() for r in env2.queries().list()}
    assert set(back) == {cp["uuid"] for cp in made}
    for cp in made:
        assert back[cp["uuid"]]["kind"] == cp["kind"]
        assert back[cp["uuid"]]["status"] == "completed"


def _kinds() -> list[Any]:
    from runtime.checkpoints.records import CheckpointKind

    return [CheckpointKind.MANUAL, CheckpointKind.EMERGENCY, CheckpointKind.PRE_OPERATION]
