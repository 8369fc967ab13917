"""What a new operator hits first, through the real ``hubctl``: --version, bare ``hubctl``, help that
wraps at 80 columns without breaking words, examples in help, shell completion, ``jobs`` and ``audit``."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runtime.db import Database
from runtime.jobs.store import JobStore
from tests.support.hubenv import HUB_VMID, HUBCTL, REPO, HubEnv, one_line_error


@pytest.fixture
def hub(tmp_path: Path) -> tuple[dict[str, str], Database]:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    db = Database(url)
    db.upgrade()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_DATABASE_URL=url, HUB_LOCK_DIR=str(tmp_path / "locks"), PYTHONPATH=str(REPO), COLUMNS="80")
    return env, db


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = env or {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80"}
    return subprocess.run([*HUBCTL, *args], capture_output=True, text=True, timeout=60, env=env, cwd=REPO)


def test_version() -> None:
    result = _run("--version")
    assert result.returncode == 0
    assert re.fullmatch(r"hubctl \S+\n", result.stdout), result.stdout


@pytest.mark.parametrize("args", [(), ("checkpoint",), ("jobs",)])
def test_no_command_prints_help_and_no_error_line(args: tuple[str, ...]) -> None:
    result = _run(*args)
    assert result.returncode == 0
    assert "Usage" in result.stdout
    assert result.stderr.strip() == ""


HELP_PAGES = [
    (),
    ("checkpoint",),
    ("checkpoint", "create"),
    ("checkpoint", "list"),
    ("checkpoint", "show"),
    ("jobs",),
    ("jobs", "list"),
    ("jobs", "show"),
    ("audit", "list"),
    ("lab",),
    ("health",),
]


@pytest.mark.parametrize("page", HELP_PAGES, ids=lambda p: " ".join(p) or "hubctl")
def test_help_fits_80_columns_without_broken_words(page: tuple[str, ...]) -> None:
    result = _run(*page, "--help")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", line) for line in lines)
    for fragment in ("pre-operat ", "operati on", "succeed ed", "complet ed"):
        assert fragment not in text
    if page[:2] == ("checkpoint", "create"):
        assert "pre-operation" in text
    if page in [(), ("checkpoint",), ("jobs",), ("checkpoint", "create")]:
        assert "Examples:" in text and "$ hubctl" in text


def test_shell_completion_through_the_environment_variable() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "_HUBCTL_COMPLETE": "complete_bash"}
    result = _run(env={**env, "COMP_WORDS": "hubctl chec", "COMP_CWORD": "1"})
    assert result.returncode == 0 and result.stdout.split() == ["checkpoint"]
    result = _run(env={**env, "COMP_WORDS": "hubctl checkpoint pr", "COMP_CWORD": "2"})
    assert sorted(result.stdout.split()) == ["protect", "prune"]
    # The script for a named shell, whatever shell runs the test (--show-completion detects the
    # parent's shell, which under CI is sh).
    script = _run(env={**os.environ, "PYTHONPATH": str(REPO), "_HUBCTL_COMPLETE": "source_bash"})
    assert script.returncode == 0 and "_HUBCTL_COMPLETE" in script.stdout


def test_jobs_list_and_show_by_prefix(hub: tuple[dict[str, str], Database]) -> None:
    env, db = hub
    store = JobStore(db)
    job = store.create(kind="checkpoint.create", params={"kind": "manual"}, actor="test")
    listed = _run("jobs", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [j["id"] for j in json.loads(listed.stdout)["jobs"]] == [job["id"]]
    text = _run("jobs", "list", env=env)
    assert job["id"] in text.stdout and "queued" in text.stdout
    shown = _run("jobs", "show", job["id"][:6], "--json", env=env)
    assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == job["id"]
    missing = _run("jobs", "show", "zzzzzz", env=env)
    assert missing.returncode == 2 and "no job" in one_line_error(missing.stderr)


def test_jobs_follow_prints_progress_until_the_end_and_fails_with_the_job(
    hub: tuple[dict[str, str], Database],
) -> None:
    env, db = hub
    store = JobStore(db)
    job = store.create(kind="checkpoint.create", params={}, actor="test")
    follower = subprocess.Popen(
        [*HUBCTL, "jobs", "show", job["id"], "--follow"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    store.claim(job["id"])
    store.progress(job["id"], "step one")
    time.sleep(1.2)
    store.progress(job["id"], "step two")
    store.finish(job["id"], error="proxmox said no")
    out, err = follower.communicate(timeout=30)
    assert follower.returncode == 1, err
    assert out.count("step one") == 1 and out.count("step two") == 1
    assert "failed" in out and "proxmox said no" in out

    done = store.create(kind="checkpoint.create", params={}, actor="test")
    store.claim(done["id"])
    store.finish(done["id"], result={"ok": True})
    followed = _run("jobs", "show", done["id"], "--follow", "--json", env=env)
    assert followed.returncode == 0 and json.loads(followed.stdout)["state"] == "succeeded"


def test_audit_list_with_target_and_limit(hub: tuple[dict[str, str], Database]) -> None:
    env, db = hub
    store = JobStore(db)
    first = store.create(kind="checkpoint.create", params={}, actor="test")
    store.create(kind="checkpoint.prune", params={}, actor="test")
    every = _run("audit", "list", "--json", env=env)
    assert every.returncode == 0, every.stderr
    assert json.loads(every.stdout)["total"] == 2
    one = json.loads(_run("audit", "list", "--target", first["id"], "--json", env=env).stdout)
    assert [e["target"] for e in one["entries"]] == [first["id"]]
    limited = json.loads(_run("audit", "list", "--limit", "1", "--json", env=env).stdout)
    assert len(limited["entries"]) == 1 and limited["total"] == 2
    text = _run("audit", "list", env=env)
    assert "job.submit" in text.stdout


def _on_a_terminal(args: list[str], env: dict[str, str], until: Callable[[], None]) -> tuple[int, str]:
    """Run hubctl with a pseudo-terminal as stdout/stderr; call ``until`` once it runs; all it wrote."""
    main, sub = pty.openpty()
    proc = subprocess.Popen(
        [*HUBCTL, *args], env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=sub, stderr=sub
    )
    os.close(sub)
    time.sleep(2.5)  # started, polling: the spinner has had time to draw
    until()
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    return proc.wait(timeout=30), b"".join(chunks).decode(errors="replace")


def test_a_terminal_shows_what_a_command_waits_for_and_json_never_does(
    hub: tuple[dict[str, str], Database],
) -> None:
    env, db = hub
    env = {**env, "TERM": "xterm"}
    store = JobStore(db)
    for json_flag in ([], ["--json"]):
        job = store.create(kind="checkpoint.create", params={}, actor="test")
        store.claim(job["id"])
        store.progress(job["id"], "snapshot started")

        def finish(job_id: str = job["id"]) -> None:
            store.finish(job_id, result={"ok": True})

        code, seen = _on_a_terminal(["jobs", "show", job["id"], "--follow", *json_flag], env, finish)
        assert code == 0, seen
        if json_flag:
            assert "waiting:" not in seen
            assert json.loads(seen[seen.index("{") :])["state"] == "succeeded"
        else:
            assert "waiting: running job" in seen and "snapshot started" in seen
            assert f"job {job['id']}" in seen and "succeeded" in seen


def test_a_checkpoint_waiting_for_the_vms_lock_says_so_on_a_terminal(sqlite_hubenv: HubEnv) -> None:
    from runtime.locks import vm_lock_name

    services = sqlite_hubenv.services()
    services.ready_db()
    env = {**sqlite_hubenv.env(HUB_LOCK_WAIT_SECONDS="4"), "TERM": "xterm", "COLUMNS": "120"}
    with services.locks.hold(vm_lock_name(HUB_VMID), wait=5):
        code, seen = _on_a_terminal(["checkpoint", "create"], env, lambda: None)
    assert code == 1, seen
    assert "waiting: the VM's lock" in seen
    # The time left counts down live: the line was redrawn with at least two different values.
    left = set(re.findall(r"waiting: the VM's lock \(\d+ s, (\d+) s left\)", seen))
    assert len(left) >= 2 and max(int(n) for n in left) <= 4, seen


def test_a_retried_proxmox_call_shows_what_failed_and_the_time_left(sqlite_hubenv: HubEnv, pve: Any) -> None:
    """A transient Proxmox failure being retried: the terminal names the call, the error, the next
    attempt and the time left of the retry budget; once the call goes through, the command goes on."""
    sqlite_hubenv.services().ready_db()
    pve.fail("GET", "/cluster/resources", 503, "proxy lost the upstream", times=4)
    env = {**sqlite_hubenv.env(HUB_TRANSIENT_RETRY_SECONDS="60"), "TERM": "xterm", "COLUMNS": "200"}
    code, seen = _on_a_terminal(["checkpoint", "create"], env, lambda: None)
    assert code == 0, seen
    retrying = re.findall(
        r"waiting: Proxmox (\w+) failed \(([^)]*)\); attempt (\d) in [\d.]+ s \(\d+ s, (\d+) s left\)", seen
    )
    assert retrying, seen
    assert {(kind, why) for kind, why, _, _ in retrying} == {
        ("cluster_vms", "Proxmox API answered 503: proxy lost the upstream")
    }
    assert {attempt for _, _, attempt, _ in retrying} == {"2", "3", "4", "5"}
    left = [int(n) for *_, n in retrying]
    assert left == sorted(left, reverse=True) and left[0] <= 60 and len(set(left)) >= 2  # counting down
    assert "completed" in seen
