"""The sentinel's records: its state, the ladder's steps and the journal's events (no SQLAlchemy)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class SentinelState(StrEnum):
    WATCHING = "watching"  # probing; acts when the Hub turns critical
    RECOVERING = "recovering"  # a run is under way (or was, when the process died: it resumes)
    ERROR = "error"  # the ladder was exhausted: nothing more until `hubctl sentinel reset`


class Action(StrEnum):
    EMERGENCY = "emergency"  # rung 0: snapshot of the broken state, never a rollback candidate
    RESTART = "restart"  # rung 1: shutdown with timeout, stop, start
    ROLLBACK = "rollback"  # rungs 2 and 3 (and an operator's manual rollback)
    GIVE_UP = "give-up"  # rung 4: stop the VM, state error, one alert


class StepStatus(StrEnum):
    PENDING = "pending"
    STARTED = "started"  # persisted before the destructive call: a restarted sentinel redoes it
    DONE = "done"  # the action ran; the gate result is in `outcome`


@dataclass(frozen=True, slots=True)
class Candidate:
    """A rollback candidate: one of the Hub's own checkpoints, read from Proxmox."""

    snapname: str
    uuid: str
    created_at: datetime | None
    blessed: bool
    vmstate: bool

    def label(self) -> str:
        return f"{self.snapname} ({'blessed' if self.blessed else 'not blessed'}, " + (
            f"{self.created_at.isoformat(timespec='seconds')})" if self.created_at else "created ?)"
        )


@dataclass(slots=True)
class Step:
    rung: int
    action: Action
    snapname: str | None = None
    checkpoint: str | None = None  # the checkpoint's uuid, for the journal
    vmstate: bool = False
    status: StepStatus = StepStatus.PENDING
    outcome: str | None = None  # healthy | unhealthy | failed | skipped

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["action"] = self.action.value
        data["status"] = self.status.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Step:
        return cls(
            rung=int(data["rung"]),
            action=Action(data["action"]),
            snapname=data.get("snapname"),
            checkpoint=data.get("checkpoint"),
            vmstate=bool(data.get("vmstate")),
            status=StepStatus(data.get("status", "pending")),
            outcome=data.get("outcome"),
        )

    def describe(self) -> str:
        if self.action is Action.ROLLBACK:
            how = "resume its RAM state" if self.vmstate else "then start"
            return f"rung {self.rung}: roll back to {self.snapname} ({how}), health gate"
        return {
            Action.EMERGENCY: "rung 0: snapshot of the broken state (kind emergency, reason pre-recovery)",
            Action.RESTART: "rung 1: restart the Hub VM (shutdown with timeout, stop, start), health gate",
            Action.GIVE_UP: "rung 4: stop acting: the Hub is marked error, one alert, nothing until reset",
        }[self.action]


@dataclass(frozen=True, slots=True)
class Event:
    """One journal entry: in the sentinel's database and mirrored on the Hub VM's description."""

    id: str
    at: datetime
    kind: str  # run-started, emergency-snapshot, restart, rollback, quarantine, recovered, error, ...
    checkpoint: str | None
    outcome: str
    detail: str

    def to_public(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "kind": self.kind,
            "checkpoint": self.checkpoint,
            "outcome": self.outcome,
            "detail": self.detail,
        }
