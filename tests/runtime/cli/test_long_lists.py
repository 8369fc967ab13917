"""Long lists as text: a page in plain columns, uuids whole within 80 columns, and a line saying
what was left out; --json still carries every row (runtime/cli/listing.py)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from runtime.cli.listing import DEFAULT_LIMIT
from runtime.db import Checkpoint
from tests.support.hubenv import HUB_VMID, HubEnv

ROWS = DEFAULT_LIMIT + 10


def _fill(env: HubEnv, rows: int, *, vmid: int = HUB_VMID) -> list[str]:
    now = datetime.now(UTC)
    made = [str(uuid.uuid4()) for _ in range(rows)]
    with env.services().ready_db().session() as s:
        s.add_all(
            Checkpoint(
                uuid=u,
                vm_id=vmid,
                node="pve1",
                snapname=f"hub-{vmid}-{n:06x}",
                kind="scheduled",  # the label HUB_KEEP_* applies to
                status="completed",
                created_at=now - timedelta(hours=n + 1),
                completed_at=now - timedelta(hours=n + 1),
            )
            for n, u in enumerate(made)
        )
    return made  # newest first


def test_text_shows_a_page_and_says_what_was_left_out(sqlite_hubenv: HubEnv) -> None:
    made = _fill(sqlite_hubenv, ROWS)
    result = sqlite_hubenv.run("checkpoint", "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"checkpoints of VM {HUB_VMID}"
    assert lines[1].split() == ["uuid", "kind", "status", "created", "(UTC)"]
    assert [line.split()[0] for line in lines[2:-1]] == made[:DEFAULT_LIMIT]
    assert lines[-1] == f"showing {DEFAULT_LIMIT} of {ROWS}; --limit N or --json for all"
    assert max(len(line) for line in lines) <= 80  # the longest kind and status, uuid whole


def test_limit_and_json(sqlite_hubenv: HubEnv) -> None:
    made = _fill(sqlite_hubenv, ROWS)
    few = sqlite_hubenv.run("checkpoint", "list", "--limit", "3").stdout.splitlines()
    assert [line.split()[0] for line in few[2:-1]] == made[:3]
    assert few[-1] == f"showing 3 of {ROWS}; --limit N or --json for all"
    everything = sqlite_hubenv.run("checkpoint", "list", "--limit", str(ROWS)).stdout
    assert "showing" not in everything
    doc = json.loads(sqlite_hubenv.run("checkpoint", "list", "--json").stdout)
    assert [cp["uuid"] for cp in doc["checkpoints"]] == made  # --json is never cut short


def test_several_vms_get_a_vm_column(sqlite_hubenv: HubEnv) -> None:
    _fill(sqlite_hubenv, 2)
    _fill(sqlite_hubenv, 2, vmid=101)
    lines = sqlite_hubenv.run("checkpoint", "list").stdout.splitlines()
    assert lines[0] == "checkpoints"
    assert lines[1].split()[:2] == ["uuid", "vm"]
    assert {line.split()[1] for line in lines[2:]} == {str(HUB_VMID), "101"}


def test_prune_dry_run_text_is_a_page_too(sqlite_hubenv: HubEnv) -> None:
    _fill(sqlite_hubenv, ROWS)
    # Keep only the newest (all zero would keep everything, as in PBS).
    policy = {f"HUB_KEEP_{k}": "0" for k in ("HOURLY", "DAILY", "WEEKLY", "MONTHLY")} | {"HUB_KEEP_LAST": "1"}
    result = sqlite_hubenv.run("checkpoint", "prune", "--dry-run", **policy)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"would prune {ROWS - 1} checkpoint(s) of VM {HUB_VMID}"
    assert len(lines) == 1 + 1 + DEFAULT_LIMIT + 1 + 2  # title, header, page, note; what stays and why
    assert lines[2 + DEFAULT_LIMIT] == f"showing {DEFAULT_LIMIT} of {ROWS - 1}; --json for all"
    assert lines[-2:] == ["would keep 1", "     1  scheduled: keep-last"]
    doc = json.loads(sqlite_hubenv.run("checkpoint", "prune", "--dry-run", "--json", **policy).stdout)
    assert len(doc["pruned"]) == ROWS - 1
