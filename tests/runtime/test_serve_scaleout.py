"""Several ``hubctl serve`` and ``hubctl worker`` processes on one PostgreSQL + Redis, as real processes.

What scale-out must never do: run a job twice, mark a job interrupted while its worker lives, leave a
dead worker's job running, or run the leader's loops (scheduler, health, reconcile) on two processes
or on none for long. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from sqlalchemy import select

from runtime.checkpoints import naming
from runtime.db import Checkpoint, Job, Lease, Worker
from runtime.jobs.store import INTERRUPTED
from runtime.serve import LEADER_LEASE
from tests.support.hubenv import HUBCTL, HubEnv, make_env, one_line_error
from tests.support.service import Service, free_port, make_token

# Fast clocks so a takeover or a stale heartbeat happens within seconds.
FAST = {
    "HUB_API_PROCESSES": "1",
    "HUB_LEADER_LEASE_SECONDS": "3",
    "HUB_WORKER_HEARTBEAT_SECONDS": "0.5",
    "HUB_WORKER_STALE_SECONDS": "3",
    "HUB_RECONCILE_INTERVAL_SECONDS": "2",
    "HUB_HEALTH_INTERVAL_SECONDS": "1",
    # Every job here checkpoints the one Hub VM: they queue on its lock, on a loaded machine for long.
    "HUB_LOCK_WAIT_SECONDS": "120",
}


def _until(check: Any, *, timeout: float = 60, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Proc:
    """A real hubctl process whose stderr goes to a file (a pipe nobody reads would fill and block it)."""

    def __init__(self, env: HubEnv, name: str, *args: str, **extra: str) -> None:
        self.log = env.tmp / f"{name}.log"
        with self.log.open("w") as err:
            self.process = subprocess.Popen(
                [*HUBCTL, *args],
                env=env.env(**FAST, **extra),
                stdout=subprocess.DEVNULL,
                stderr=err,
                text=True,
                cwd=env.tmp,
            )
        self.pid = self.process.pid

    def text(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
            raise AssertionError(f"{self.log.name}: did not stop within 60 s of signal {sig}") from None


def _serve(env: HubEnv, name: str, **extra: str) -> tuple[Proc, Service]:
    svc = Service(env=env, port=free_port(), token=make_token(env, f"t{uuid.uuid4().hex[:6]}"))
    proc = Proc(env, name, "serve", "--port", str(svc.port), **extra)

    def up() -> bool:
        assert proc.process.poll() is None, proc.text()
        try:
            return svc.get("/healthz").status_code == 200
        except Exception:
            return False

    _until(up, what=f"{name} to serve")
    return proc, svc


def _snapname(body: bytes) -> str:
    """The snapname of a recorded snapshot request (proxmoxer posts form-encoded bodies)."""
    text = body.decode()
    if text.startswith("{"):
        return str(json.loads(text)["snapname"])
    return parse_qs(text)["snapname"][0]


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (a reparented child may wait a moment to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _workers(env: HubEnv) -> dict[int, Worker]:
    with env.services().db.session() as s:
        return {w.pid: w for w in s.scalars(select(Worker))}


def _leader_pid(env: HubEnv) -> int | None:
    with env.services().db.session() as s:
        lease = s.get(Lease, LEADER_LEASE)
        return int(lease.holder.split(":")[1]) if lease is not None else None


def _scheduled(env: HubEnv) -> list[Job]:
    return [job for job in _jobs(env) if job.actor == "scheduler"]


def _jobs(env: HubEnv) -> list[Job]:
    with env.services().db.session() as s:
        return list(s.scalars(select(Job)))


@pytest.fixture
def shared(pve: Any, fakepve_cafile: str, tmp_path: Path, postgres_url: str, redis_url: str) -> HubEnv:
    env = make_env(pve, fakepve_cafile, tmp_path, postgres_url, HUB_REDIS_URL=redis_url)
    env.services().db.upgrade()
    return env


def test_two_serves_and_two_workers_run_each_job_once_with_one_leader_taken_over(
    shared: HubEnv, pve: Any
) -> None:
    # A scheduled checkpoint two years ago and a yearly schedule: the scheduler queues exactly one
    # catch-up run where it starts. Two schedulers would queue two.
    with shared.services().db.session() as s:
        uuid_ = str(uuid.uuid4())
        s.add(
            Checkpoint(
                uuid=uuid_,
                vm_id=100,
                node="pve1",
                snapname=naming.snapname_for(uuid_),
                kind="scheduled",
                status="deleted",
                created_at=datetime.now(UTC) - timedelta(days=730),
                deleted_at=datetime.now(UTC) - timedelta(days=700),
            )
        )
    yearly = {"HUB_CHECKPOINT_SCHEDULE": "0 0 1 1 *"}
    procs: list[Proc] = []
    try:
        a, svc_a = _serve(shared, "serve-a", **yearly)
        procs.append(a)
        b, svc_b = _serve(shared, "serve-b", **yearly)
        procs.append(b)
        procs += [Proc(shared, f"worker-{i}", "worker") for i in (1, 2)]
        pids = {p.pid for p in procs}
        _until(lambda: set(_workers(shared)) == pids, what="all four processes in the worker registry")
        roles = {pid: w.role for pid, w in _workers(shared).items()}
        assert sorted(roles.values()) == ["serve", "serve", "worker", "worker"]

        # Exactly one leader, a serve process, and only it says it leads.
        leader = _leader_pid(shared)
        assert leader in (a.pid, b.pid)
        leading = [p for p in (a, b) if "leading: scheduler" in p.text()]
        assert [p.pid for p in leading] == [leader]

        (catch_up,) = _until(lambda: _scheduled(shared), what="the leader's catch-up run")
        assert svc_a.wait_job(catch_up.id, timeout=120)["state"] == "succeeded"

        pve.requests.clear()
        submitted = [
            (svc_a if i % 2 else svc_b).post("/api/v1/checkpoints", {"reason": f"job {i}"}).json()["id"]
            for i in range(12)
        ]
        done = [svc_a.wait_job(job_id, timeout=120) for job_id in submitted]
        assert [j["state"] for j in done] == ["succeeded"] * 12, [j["error"] for j in done]
        # Each job made its snapshot exactly once (the side effect on Proxmox, counted by fakepve).
        posts = [
            body for method, path, body in pve.requests if method == "POST" and path.endswith("/snapshot")
        ]
        names = [_snapname(body) for body in posts]
        assert sorted(names) == sorted(j["result"]["snapname"] for j in done)
        assert len(set(names)) == 12
        ran_on = {job.worker_id for job in _jobs(shared)}
        assert ran_on <= {w.id for w in _workers(shared).values()}

        # The leader dies without a word; the other serve takes the loops over.
        dead, heir = (a, b) if leader == a.pid else (b, a)
        dead.stop(signal.SIGKILL)
        _until(lambda: _leader_pid(shared) == heir.pid, timeout=30, what="the other serve to take the lease")
        _until(lambda: "leading: scheduler" in heir.text(), timeout=30, what="the heir to start the loops")
        # The killed one's registry row is removed by the new leader's sweep (nothing of it to settle).
        _until(lambda: dead.pid not in _workers(shared), timeout=30, what="the dead serve's row removed")
        # The heir's scheduler started too, and found nothing to catch up: still the one run.
        assert [j.id for j in _scheduled(shared)] == [catch_up.id]
        survivor = svc_b if heir is b else svc_a
        again = survivor.wait_job(survivor.post("/api/v1/checkpoints", {}).json()["id"], timeout=60)
        assert again["state"] == "succeeded"
    finally:
        for proc in procs:
            proc.stop()
    for proc in procs:
        assert "Traceback" not in proc.text(), proc.text()


def test_a_job_is_interrupted_only_once_its_workers_heartbeat_is_stale_then_settled(
    shared: HubEnv, pve: Any
) -> None:
    """A worker that lives but is slow keeps its job; a stopped one (SIGSTOP: the process exists, its
    heartbeat does not) loses it once stale; kill -9 then, and reconcile completes the checkpoint."""
    procs: list[Proc] = []
    try:
        # API and leader only: the job can only run on the worker below.
        serve, svc = _serve(shared, "serve", HUB_WORKER_THREADS="0")
        procs.append(serve)
        worker = Proc(shared, "worker", "worker", HUB_FAILPOINT="checkpoint.snapshot_done")
        procs.append(worker)
        _until(lambda: worker.pid in _workers(shared), what="the worker to register")
        job_id = svc.post("/api/v1/checkpoints", {"reason": "slow"}).json()["id"]
        _until(lambda: "failpoint checkpoint.snapshot_done reached" in worker.text(), what="the failpoint")

        # Frozen in the job, alive and heartbeating: several stale intervals later it is still running.
        beat = _workers(shared)[worker.pid].heartbeat_at
        _until(lambda: _workers(shared)[worker.pid].heartbeat_at > beat, what="a heartbeat during the job")
        for _ in range(3):
            before = _workers(shared)[worker.pid].heartbeat_at
            _until(
                lambda b=before: _workers(shared)[worker.pid].heartbeat_at > b,
                timeout=30,
                what="the living worker's next heartbeat",
            )
            time.sleep(float(FAST["HUB_WORKER_STALE_SECONDS"]) / 2)
            job = svc.get(f"/api/v1/jobs/{job_id}").json()
            assert job["state"] == "running", job

        # Stopped: the process exists but no longer heartbeats; once stale, its job is interrupted.
        os.kill(worker.pid, signal.SIGSTOP)
        failed = _until(
            lambda: (j := svc.get(f"/api/v1/jobs/{job_id}").json())["state"] == "failed" and j,
            timeout=60,
            what="the stale worker's job to be marked interrupted",
        )
        assert failed["error"] == INTERRUPTED
        worker.stop(signal.SIGKILL)
        # Proxmox made the snapshot before the worker froze: reconcile completes the row.
        _until(
            lambda: [r["status"] for r in svc.get("/api/v1/checkpoints").json()["items"]] == ["completed"],
            timeout=60,
            what="reconcile to settle the interrupted checkpoint",
        )
    finally:
        for proc in procs:
            if proc.process.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
            proc.stop()


def test_a_worker_without_redis_is_one_line_and_exit_2(sqlite_hubenv: HubEnv) -> None:
    result = sqlite_hubenv.run("worker", timeout=60)
    assert result.returncode == 2
    assert "HUB_REDIS_URL" in one_line_error(result.stderr)


def test_a_worker_stops_gracefully_on_sigterm_and_leaves_the_registry(shared: HubEnv) -> None:
    worker = Proc(shared, "worker", "worker")
    try:
        _until(lambda: worker.pid in _workers(shared), what="the worker to register")
    finally:
        code = worker.stop(signal.SIGTERM)
    assert code == 0, worker.text()
    assert worker.pid not in _workers(shared)
    assert "Traceback" not in worker.text()


def test_serve_with_api_processes_shares_one_socket_with_one_leader(shared: HubEnv) -> None:
    """``--api-processes 2``: two children serving one port, one of them leading; SIGTERM to the
    parent stops them all (and the parent-death signal stops them if it is killed)."""
    svc = Service(env=shared, port=free_port(), token=make_token(shared, "multi"))
    parent = Proc(shared, "serve-multi", "serve", "--port", str(svc.port), "--api-processes", "2")
    try:
        _until(
            lambda: len([w for w in _workers(shared).values() if w.role == "serve"]) == 2, what="two children"
        )
        children = set(_workers(shared))
        assert parent.pid not in children
        assert _until(lambda: svc.get("/healthz").status_code == 200, what="the shared port to answer")
        assert _leader_pid(shared) in children
        job = svc.wait_job(svc.post("/api/v1/checkpoints", {}).json()["id"], timeout=60)
        assert job["state"] == "succeeded"
    finally:
        code = parent.stop(signal.SIGTERM)
    assert code == 0, parent.text()
    assert _workers(shared) == {}  # both children left the registry on their way out
    assert not any(_running(pid) for pid in children)

    # Killed outright, the parent takes its children with it (PR_SET_PDEATHSIG).
    parent = Proc(shared, "serve-multi-2", "serve", "--port", str(free_port()), "--api-processes", "2")
    _until(lambda: len(_workers(shared)) == 2, what="two children again")
    children = set(_workers(shared))
    parent.stop(signal.SIGKILL)

    _until(
        lambda: not any(_running(pid) for pid in children),
        timeout=60,
        what="the children to stop after their parent was killed",
    )


def test_serves_starting_at_once_on_an_empty_database_all_come_up(
    pve: Any, fakepve_cafile: str, tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    """Each serve migrates at start; started together on an empty PostgreSQL they take turns (an
    advisory lock) instead of creating the same tables twice."""
    env = make_env(pve, fakepve_cafile, tmp_path, postgres_url, HUB_REDIS_URL=redis_url)
    ports = [free_port() for _ in range(3)]
    procs = [Proc(env, f"serve-{i}", "serve", "--port", str(port)) for i, port in enumerate(ports)]
    try:

        def all_up() -> bool:
            for proc, port in zip(procs, ports, strict=True):
                assert proc.process.poll() is None, proc.text()
                try:
                    requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).raise_for_status()
                except requests.RequestException:
                    return False
            return True

        _until(all_up, timeout=120, what="every serve to come up")
        db = env.services().db
        assert db.current_revision() == db.head_revision()
    finally:
        for proc in procs:
            proc.stop()
    for proc in procs:
        assert "Traceback" not in proc.text(), proc.text()


def test_a_worker_waits_for_the_schema_and_says_so_when_it_never_comes(
    pve: Any, fakepve_cafile: str, tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    """A worker does not migrate (two migrating at once could collide): on an empty database it waits,
    bounded, then says what to run, in one line, exit 1."""
    env = make_env(pve, fakepve_cafile, tmp_path, postgres_url, HUB_REDIS_URL=redis_url)
    result = env.run("worker", HUB_DB_WAIT_SECONDS="2", timeout=120)
    assert result.returncode == 1, result.stderr
    # Before it: its own log record saying it waits (JSON off a terminal); then the one error line.
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert (
        line.startswith("hubctl: error:") and "schema is at nothing" in line and "hubctl db upgrade" in line
    )
    assert env.services().db.current_revision() is None  # it did not migrate


def _workers_check(doc: dict[str, Any]) -> dict[str, str] | None:
    return next((c for c in doc["checks"] if c["name"] == "workers"), None)


def test_health_sees_job_workers_in_other_processes(shared: HubEnv) -> None:
    """A serve without job threads (HUB_WORKER_THREADS=0) and `hubctl health`, a third process: both
    judge the workers from the registry. Healthy while a `hubctl worker` heartbeats; once it is
    killed and a job waits, critical, naming the counts; a new worker runs the job and it is healthy."""
    procs: list[Proc] = []

    def cli_check() -> dict[str, str] | None:
        result = shared.run("health", "--json", **FAST)
        return _workers_check(json.loads(result.stdout))

    def leader_check() -> dict[str, str] | None:
        return _workers_check(svc.get("/api/v1/health").json())

    try:
        serve_proc, svc = _serve(shared, "serve", HUB_WORKER_THREADS="0")
        procs.append(serve_proc)
        assert serve_proc.pid not in _workers(shared)  # it runs no jobs, so it is not registered
        worker = Proc(shared, "worker", "worker")
        procs.append(worker)
        _until(lambda: worker.pid in _workers(shared), what="the worker to register")
        check = cli_check()
        assert check is not None and check["status"] == "healthy", check
        assert check["detail"].startswith("1 live worker process(es) of 1 registered (worker)")
        _until(
            lambda: (c := leader_check()) is not None and c["status"] == "healthy",
            what="the leader's health loop to see the worker",
        )

        worker.stop(signal.SIGKILL)  # gone without leaving the registry (its pid is gone on this host)
        job = svc.post("/api/v1/checkpoints", {"reason": "waits for a worker"}).json()
        check = cli_check()
        assert check is not None and check["status"] == "critical", check
        assert check["detail"].startswith("no live worker to run the queued jobs: 0 live worker process(es)")
        assert "1 job(s) queued" in check["detail"]
        _until(
            lambda: (c := leader_check()) is not None and c["status"] == "critical",
            what="the leader's health loop to see no live worker",
        )

        again = Proc(shared, "worker-2", "worker")
        procs.append(again)
        assert svc.wait_job(job["id"], timeout=120)["state"] == "succeeded"
        check = cli_check()
        assert check is not None and check["status"] == "healthy", check
    finally:
        for proc in procs:
            proc.stop()
    for proc in procs:
        assert "Traceback" not in proc.text(), proc.text()
