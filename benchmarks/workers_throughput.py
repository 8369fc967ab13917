"""Throughput of N ``hubctl worker`` processes on one Redis and one PostgreSQL (issue 11).

    . .run/services.env && .venv/bin/python -m benchmarks.workers_throughput --write docs/performance.md

Jobs of fixed length (``bench.sleep``: a registered kind that sleeps ``--task-seconds``, registered by
this benchmark only) are run by 1, 2 and 4 worker processes, one job thread each, so the ideal is
N / task-seconds jobs per second. Each worker is the real ``run_worker`` (runtime/worker.py: the
Dramatiq Redis broker, the claim, the heartbeat, the outcome and audit writes), started as its own
process by this module's ``--worker`` mode (which adds the benchmark's kind to the domains' kinds).

Per round: a fresh database, N workers registered, then ``jobs-per-worker * N`` jobs submitted at
once; throughput = jobs / (last finished_at - first started_at), from the job rows. 3 rounds per N;
the ratio to one worker (median) is the scaling figure, the goal "near-linear to 4" (>= 3.4x at 4).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select

from benchmarks.docs_section import write_section
from runtime import domains
from runtime.db import Job, JobState, Worker
from runtime.jobs.queue import JobQueue
from runtime.jobs.registry import JobContext, JobKind, JobKinds
from runtime.settings import Settings
from runtime.wiring import Services

REPO = Path(__file__).resolve().parent.parent
MARKS = ("<!-- workers-throughput:start -->", "<!-- workers-throughput:end -->")
GOAL_AT_4 = 3.4


class SleepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float


def _sleep(_context: JobContext, params: SleepParams) -> dict[str, Any]:
    time.sleep(params.seconds)
    return {"slept": params.seconds}


def kinds() -> JobKinds:
    own = JobKind("bench.sleep", SleepParams, _sleep, "Sleep a fixed time (benchmark only).")
    return JobKinds([*(domains.job_kinds().get(n) for n in domains.job_kinds().names()), own])


def _env(database_url: str, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(
        HUB_DATABASE_URL=database_url,
        HUB_REDIS_URL=redis_url,
        HUB_LOG_LEVEL="warning",
        HUB_WORKER_HEARTBEAT_SECONDS="1",
        HUB_WORKER_STALE_SECONDS="10",
        PYTHONPATH=str(REPO),
    )
    return env


def _fresh_database(base: str) -> str:
    import psycopg

    name = "hub_bench_" + secrets.token_hex(6)
    with psycopg.connect(base.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return base.rsplit("/", 1)[0] + "/" + name


def _drop_database(base: str, url: str) -> None:
    import psycopg

    with psycopg.connect(base.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def one_round(*, workers: int, jobs: int, task: float, postgres: str, redis_url: str) -> float:
    import redis

    redis.Redis.from_url(redis_url).flushdb()  # pyright: ignore[reportUnknownMemberType]
    url = _fresh_database(postgres)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        settings = Settings(database_url=url, redis_url=redis_url)
        services = Services(settings)
        services.db.upgrade()
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(workers):
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "benchmarks.workers_throughput", "--worker"],
                        env=_env(url, redis_url),
                        cwd=tmp,
                        stdout=subprocess.DEVNULL,
                    )
                )
            deadline = time.monotonic() + 120
            while _count(services, select(func.count()).select_from(Worker)) < workers:
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    raise SystemExit("the workers did not all register")
                time.sleep(0.1)
            queue = JobQueue(services, kinds=kinds())
            for _ in range(jobs):
                queue.submit("bench.sleep", {"seconds": task}, actor="benchmark")
            done = select(func.count()).select_from(Job).where(Job.state == JobState.SUCCEEDED.value)
            deadline = time.monotonic() + jobs * task + 120
            while _count(services, done) < jobs:
                if time.monotonic() > deadline:
                    raise SystemExit("the jobs did not all finish")
                time.sleep(0.1)
            with services.db.session() as s:
                first = s.scalar(select(func.min(Job.started_at)))
                last = s.scalar(select(func.max(Job.finished_at)))
            queue.broker.close()
        services.close()
        assert first is not None and last is not None
        return jobs / (last - first).total_seconds()
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        _drop_database(postgres, url)


def _count(services: Services, query: Any) -> int:
    with services.db.session() as s:
        return int(s.scalar(query) or 0)


def render(results: dict[int, list[float]], *, task: float, per_worker: int) -> str:
    base = statistics.median(results[1])
    lines = [
        f"Tasks of {task:g} s, {per_worker} jobs per worker, one job thread per worker process; "
        "ideal = workers / task length.",
        "",
        f"| workers | jobs/s (min/median/max of {len(results[1])}) | ideal jobs/s "
        "| median / ideal | ratio to 1 worker (median) | per-worker efficiency |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for n, values in sorted(results.items()):
        median = statistics.median(values)
        lines.append(
            f"| {n} | {min(values):.2f} / {median:.2f} / {max(values):.2f} | {n / task:.2f} "
            f"| {median / (n / task):.0%} | {median / base:.2f}x | {median / base / n:.0%} |"
        )
    at4 = statistics.median(results[4]) / base if 4 in results else 0.0
    lines += [
        "",
        f"Goal: near-linear to 4 (>= {GOAL_AT_4}x at 4 workers): {'met' if at4 >= GOAL_AT_4 else 'missed'}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--task-seconds", type=float, default=0.25)
    parser.add_argument("--jobs-per-worker", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    if args.worker:
        from runtime.settings import load_settings
        from runtime.worker import run_worker

        sys.exit(run_worker(load_settings(), threads=1, kinds=kinds(), say=lambda _m: None))
    postgres = os.environ.get("HUB_TEST_POSTGRES_URL")
    redis_url = os.environ.get("HUB_TEST_REDIS_URL")
    if not postgres or not redis_url:
        raise SystemExit("needs HUB_TEST_POSTGRES_URL and HUB_TEST_REDIS_URL (. .run/services.env)")
    results: dict[int, list[float]] = {}
    for _ in range(args.rounds):  # interleaved, so a busy moment of the machine is shared by every N
        for n in (1, 2, 4):
            rate = one_round(
                workers=n,
                jobs=args.jobs_per_worker * n,
                task=args.task_seconds,
                postgres=postgres,
                redis_url=redis_url,
            )
            results.setdefault(n, []).append(rate)
            print(f"{n} worker(s): {rate:.2f} jobs/s", flush=True)
    table = render(results, task=args.task_seconds, per_worker=args.jobs_per_worker)
    print(table)
    if args.write:
        write_section(args.write, *MARKS, table)


if __name__ == "__main__":
    main()
