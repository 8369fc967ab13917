"""The sentinel's own small database: state, runs (with their persisted ladder), journal, quarantine.

SQLAlchemy Core and ``create_all``: the sentinel runs outside the Hub, often on an operator's machine,
and needs no migrations framework for four tables it alone owns. ``HUB_DATABASE_URL`` of the machine
it runs on (SQLite by default). Times are stored as ISO 8601 text in UTC, the same on every backend.
"""

from __future__ import annotations

import json
import uuid as uuidlib
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError
from sqlalchemy.exc import DatabaseError as DriverDatabaseError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from runtime.errors import SettingsError
from runtime.sentinel.errors import SentinelError
from runtime.sentinel.records import Event, SentinelState, Step

metadata = sa.MetaData()

meta = sa.Table(
    "sentinel_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
hubs = sa.Table(
    "sentinel_hubs",
    metadata,
    sa.Column("vmid", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("since", sa.String(40), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, default=""),
)
runs = sa.Table(
    "sentinel_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("vmid", sa.Integer, nullable=False, index=True),
    sa.Column("started_at", sa.String(40), nullable=False),
    sa.Column("ended_at", sa.String(40), nullable=True),
    sa.Column("trigger", sa.Text, nullable=False),
    sa.Column("manual", sa.Boolean, nullable=False, default=False),
    sa.Column("outcome", sa.String(16), nullable=True),  # healthy | error | aborted; NULL: under way
    sa.Column("plan", sa.Text, nullable=False),  # JSON list of steps, rewritten before each step
)
events = sa.Table(
    "sentinel_events",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("vmid", sa.Integer, nullable=False, index=True),
    sa.Column("run_id", sa.Integer, nullable=True),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("checkpoint", sa.String(64), nullable=True),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("mirrored", sa.Boolean, nullable=False, default=False),
)
quarantine = sa.Table(
    "sentinel_quarantine",
    metadata,
    sa.Column("vmid", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("snapname", sa.String(64), primary_key=True),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class HubRow:
    vmid: int
    state: SentinelState
    since: datetime
    detail: str


@dataclass(slots=True)
class Run:
    id: int
    vmid: int
    started_at: datetime
    ended_at: datetime | None
    trigger: str
    manual: bool
    outcome: str | None
    steps: list[Step]

    def to_public(self) -> dict[str, object]:
        return {
            "id": self.id,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "trigger": self.trigger,
            "manual": self.manual,
            "outcome": self.outcome,
            "steps": [s.to_json() for s in self.steps],
        }


# The store cannot serve (the file is not a database, the disk is full, another process holds the
# write lock past the driver's timeout): one line and exit 1, as the Hub's own database errors are
# (runtime/db/session.py), never a traceback. Not imported from there: that module loads the ORM,
# which the sentinel does without.
_UNAVAILABLE = (DriverDatabaseError, PoolTimeoutError)


def _unusable(exc: Exception) -> SentinelError:
    cause = getattr(exc, "orig", None) or exc
    line = (str(cause).strip().splitlines() or ["unknown error"])[0][:300]
    return SentinelError(f"sentinel database: {line}")


class SentinelStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        try:
            metadata.create_all(engine)
        except _UNAVAILABLE as exc:
            raise _unusable(exc) from None

    @classmethod
    def open(cls, url: str) -> SentinelStore:
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            folder = Path(url.removeprefix("sqlite:///")).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SettingsError("HUB_DATABASE_URL", f"cannot create {folder}: {exc.strerror}") from None
        try:
            engine = sa.create_engine(url, future=True)
        except (ArgumentError, ValueError, ImportError) as exc:
            raise SettingsError("HUB_DATABASE_URL", f"cannot use it: {exc}") from None
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Generator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except _UNAVAILABLE as exc:
            raise _unusable(exc) from None

    # ----------------------------------------------------------------- identity

    def sentinel_id(self) -> str:
        """This sentinel's identity (the lease holder), made once and kept: a restarted sentinel
        recognises its own lease and resumes."""
        with self._tx() as conn:
            found = conn.execute(sa.select(meta.c.value).where(meta.c.key == "sentinel_id")).scalar()
            if found:
                return str(found)
            made = "sentinel-" + uuidlib.uuid4().hex[:12]
            conn.execute(meta.insert().values(key="sentinel_id", value=made))
            return made

    # -------------------------------------------------------------------- state

    def hub(self, vmid: int, now: datetime) -> HubRow:
        with self._tx() as conn:
            row = conn.execute(sa.select(hubs).where(hubs.c.vmid == vmid)).first()
            if row is None:
                conn.execute(
                    hubs.insert().values(
                        vmid=vmid, state=SentinelState.WATCHING.value, since=_iso(now), detail=""
                    )
                )
                return HubRow(vmid, SentinelState.WATCHING, now, "")
            return HubRow(vmid, SentinelState(row.state), _dt(row.since), row.detail)

    def set_state(self, vmid: int, state: SentinelState, now: datetime, detail: str = "") -> None:
        self.hub(vmid, now)
        with self._tx() as conn:
            conn.execute(
                hubs.update()
                .where(hubs.c.vmid == vmid)
                .values(state=state.value, since=_iso(now), detail=detail)
            )

    # --------------------------------------------------------------------- runs

    def start_run(self, vmid: int, *, now: datetime, trigger: str, manual: bool, steps: list[Step]) -> Run:
        with self._tx() as conn:
            result = conn.execute(
                runs.insert().values(
                    vmid=vmid,
                    started_at=_iso(now),
                    trigger=trigger,
                    manual=manual,
                    plan=json.dumps([s.to_json() for s in steps]),
                )
            )
            key: tuple[Any, ...] = tuple(result.inserted_primary_key or ())
            run_id = int(key[0])
        return Run(run_id, vmid, now, None, trigger, manual, None, steps)

    def save_plan(self, run: Run) -> None:
        with self._tx() as conn:
            conn.execute(
                runs.update()
                .where(runs.c.id == run.id)
                .values(plan=json.dumps([s.to_json() for s in run.steps]))
            )

    def end_run(self, run: Run, *, now: datetime, outcome: str) -> None:
        run.ended_at, run.outcome = now, outcome
        with self._tx() as conn:
            conn.execute(
                runs.update()
                .where(runs.c.id == run.id)
                .values(
                    ended_at=_iso(now), outcome=outcome, plan=json.dumps([s.to_json() for s in run.steps])
                )
            )

    def open_run(self, vmid: int) -> Run | None:
        """The run a killed sentinel left unfinished, if any."""
        with self._tx() as conn:
            row = conn.execute(
                sa.select(runs)
                .where(runs.c.vmid == vmid, runs.c.ended_at.is_(None))
                .order_by(runs.c.id.desc())
            ).first()
        return None if row is None else _run(row)

    def runs(self, vmid: int, *, limit: int = 20) -> list[Run]:
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(runs).where(runs.c.vmid == vmid).order_by(runs.c.id.desc()).limit(limit)
            ).all()
        return [_run(r) for r in rows]

    def automatic_runs_since(self, vmid: int, since: datetime) -> list[Run]:
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(runs).where(
                    runs.c.vmid == vmid, runs.c.manual.is_(False), runs.c.started_at >= _iso(since)
                )
            ).all()
        return [_run(r) for r in rows]

    # ------------------------------------------------------------------ journal

    def add_event(self, vmid: int, event: Event, *, run_id: int | None) -> None:
        with self._tx() as conn:
            conn.execute(
                events.insert().values(
                    id=event.id,
                    vmid=vmid,
                    run_id=run_id,
                    at=_iso(event.at),
                    kind=event.kind,
                    checkpoint=event.checkpoint,
                    outcome=event.outcome,
                    detail=event.detail,
                    mirrored=False,
                )
            )

    def events(self, vmid: int, *, unmirrored: bool = False, limit: int | None = None) -> list[Event]:
        query = sa.select(events).where(events.c.vmid == vmid).order_by(events.c.at, events.c.id)
        if unmirrored:
            query = query.where(events.c.mirrored.is_(False))
        with self._tx() as conn:
            rows = conn.execute(query).all()
        found = [Event(r.id, _dt(r.at), r.kind, r.checkpoint, r.outcome, r.detail) for r in rows]
        return found[-limit:] if limit else found

    def mark_mirrored(self, ids: list[str]) -> None:
        if ids:
            with self._tx() as conn:
                conn.execute(events.update().where(events.c.id.in_(ids)).values(mirrored=True))

    # --------------------------------------------------------------- quarantine

    def quarantine(self, vmid: int, snapname: str, *, now: datetime, reason: str) -> None:
        with self._tx() as conn:
            exists = conn.execute(
                sa.select(quarantine.c.snapname).where(
                    quarantine.c.vmid == vmid, quarantine.c.snapname == snapname
                )
            ).first()
            if exists is None:
                conn.execute(
                    quarantine.insert().values(vmid=vmid, snapname=snapname, at=_iso(now), reason=reason)
                )

    def quarantined(self, vmid: int) -> dict[str, str]:
        with self._tx() as conn:
            rows = conn.execute(sa.select(quarantine).where(quarantine.c.vmid == vmid)).all()
        return {r.snapname: r.reason for r in rows}


def _run(row: sa.Row[object]) -> Run:
    data = row._mapping  # pyright: ignore[reportPrivateUsage]
    return Run(
        id=int(data["id"]),
        vmid=int(data["vmid"]),
        started_at=_dt(str(data["started_at"])),
        ended_at=_dt(str(data["ended_at"])) if data["ended_at"] else None,
        trigger=str(data["trigger"]),
        manual=bool(data["manual"]),
        outcome=None if data["outcome"] is None else str(data["outcome"]),
        steps=[Step.from_json(s) for s in json.loads(str(data["plan"]))],
    )
