"""``hubctl jobs ...``: the jobs the service runs (API requests, schedules), read from the database.

``show --follow`` polls the job's row (the row is the job's truth, whichever process runs it) and
prints its progress lines as they come, until it ends; exit 1 when it failed.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from runtime.cli import output
from runtime.cli.common import JsonOption, database_from_settings, examples, waiting
from runtime.cli.listing import DEFAULT_LIMIT, Listing
from runtime.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from runtime.db import Database

app = typer.Typer(
    help="Jobs run by the service (API requests, schedules).",
    no_args_is_help=True,
    epilog=examples("hubctl jobs list", "hubctl jobs show 1a2b --follow", "hubctl jobs list --state failed"),
)

POLL_SECONDS = 0.5
DONE = ("succeeded", "failed")
IdArgument = Annotated[str, typer.Argument(metavar="JOB", help="Job id or a unique prefix (4+ characters).")]


@app.command("list")
def list_(
    state: Annotated[
        str | None,
        typer.Option(
            "--state", metavar="STATE", help="Only jobs in this state: queued, running, succeeded or failed."
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=1_000_000, help="At most this many, newest first.")
    ] = DEFAULT_LIMIT,
    json_output: JsonOption = False,
) -> None:
    """Jobs, newest first."""
    from runtime.db import JobState
    from runtime.jobs.store import JobStore

    output.set_json(json_output)
    try:
        wanted = JobState(state) if state is not None else None
    except ValueError:
        raise UsageError(
            f"--state: not a job state: {state!r} (queued, running, succeeded, failed)"
        ) from None
    jobs, total = JobStore(database_from_settings()).page(state=wanted, limit=limit)
    output.emit(
        {"jobs": jobs, "total": total},
        Listing(
            headers=("id", "kind", "state", "created (UTC)"),
            rows=[(j["id"], j["kind"], j["state"], output.minute(j["created_at"])) for j in jobs],
            title="jobs",
            total=total,
            more="--limit N or --json",
        )
        if jobs
        else "no jobs",
    )


@app.command(epilog=examples("hubctl jobs show 1a2b", "hubctl jobs show 1a2b --follow"))
def show(
    job_id: IdArgument,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Print progress until the job ends; exit 1 if it failed.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """One job: state, progress, result or error."""
    from runtime.jobs.store import JobStore

    output.set_json(json_output)
    db = database_from_settings()
    store = JobStore(db)
    job = store.get(_resolve(db, job_id))
    if follow:
        job = _follow(store, job, json_output=json_output)
    output.emit(job, _job_text(job, with_progress=not follow))
    if follow and job["state"] == "failed":
        raise typer.Exit(1)


def _follow(store: Any, job: dict[str, Any], *, json_output: bool) -> dict[str, Any]:
    seen: list[str] = []
    with waiting(json_output) as status:
        while True:
            fresh = _new_lines(seen, job["progress"])
            for line in fresh:
                status.say(line)
            seen = list(job["progress"])
            if job["state"] in DONE:
                return job
            last = f": {seen[-1]}" if seen else ""
            status.wait(f"{job['state']} job {job['id'][:8]}{last}")
            time.sleep(POLL_SECONDS)
            job = store.get(job["id"])


def _new_lines(seen: list[str], now: list[str]) -> list[str]:
    """The lines of ``now`` after those already printed (the stored list keeps only its tail)."""
    for k in range(min(len(seen), len(now)), 0, -1):
        if seen[-k:] == now[:k]:
            return now[k:]
    return now


def _resolve(db: Database, ref: str) -> str:
    from sqlalchemy import select

    from runtime.db import Job

    text = ref.strip().lower()
    if len(text) < 4:
        raise UsageError(f"job id {ref!r} is too short: give at least 4 characters")
    with db.session() as s:
        ids = list(s.scalars(select(Job.id).where(Job.id.startswith(text, autoescape=True)).limit(11)))
    if not ids:
        raise NotFoundError(f"no job with id {ref}")
    if len(ids) > 1:
        raise UsageError(f"job id prefix {ref!r} is ambiguous: it matches {', '.join(ids[:10])}")
    return ids[0]


def _job_text(job: dict[str, Any], *, with_progress: bool) -> str:
    lines = [
        f"job {job['id']}",
        f"  kind      {job['kind']}",
        f"  state     {job['state']}",
        f"  actor     {job['actor']}",
        f"  created   {job['created_at']}",
        f"  started   {job['started_at'] or '-'}",
        f"  finished  {job['finished_at'] or '-'}",
    ]
    if job.get("error"):
        lines.append(f"  error     {job['error']}")
    if job.get("result"):
        lines.append(f"  result    {job['result']}")
    if with_progress and job["progress"]:
        lines.append("  progress")
        lines += [f"    {line}" for line in job["progress"]]
    return "\n".join(lines)
