"""The sentinel's lines on the Hub VM's Proxmox description: the recovery lease and the journal.

Pure text functions, shared by the sentinel (writer) and the Hub (``runtime.sentinel.hub_import``,
reader). Everything else in the description (an operator's notes, hubinfra's text) is kept as is.

Why the description: it is the one place both sentinels and the Hub can read and compare-and-set
through the API (``digest``), that an operator sees in the web UI, and that a rollback keeps
(pve-guest-common ``src/PVE/AbstractConfig.pm`` __snapshot_apply_config: "keep description and list
of unused disks"). PVE bounds it at 8 KiB (qemu-server ``src/PVE/QemuServer.pm`` confdesc
``description``: ``maxLength => 1024 * 8``), so the journal keeps its newest events within
``JOURNAL_BUDGET`` bytes and drops the oldest: the sentinel's database holds them all.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from runtime.sentinel.records import Event

LEASE_KEY = "hub-sentinel-lease:"
JOURNAL_KEY = "hub-recovery:"
PVE_DESCRIPTION_MAX = 8 * 1024
JOURNAL_BUDGET = 5 * 1024
DETAIL_MAX = 160
_LEASE = re.compile(r"^hub-sentinel-lease: (\S+) (\S+)$")


@dataclass(frozen=True, slots=True)
class Lease:
    holder: str
    expires: datetime

    def live(self, now: datetime) -> bool:
        return self.expires > now


@dataclass(frozen=True, slots=True)
class Description:
    """A description split into the sentinel's lines and everything else (kept verbatim)."""

    other: list[str]
    lease: Lease | None
    journal: list[Event]

    def render(self) -> str:
        lines = [line for line in self.other]
        while lines and not lines[-1].strip():
            lines.pop()
        if self.lease is not None:
            lines.append(f"{LEASE_KEY} {self.lease.holder} {self.lease.expires.astimezone(UTC).isoformat()}")
        lines.extend(_journal_lines(self.journal))
        text = "\n".join(lines)
        if len(text.encode()) > PVE_DESCRIPTION_MAX:
            # Someone else's text fills the description: the journal yields (the database keeps it).
            keep = [line for line in lines if not line.startswith(JOURNAL_KEY)]
            text = "\n".join(keep)
        return text


def parse(description: str | None) -> Description:
    other: list[str] = []
    lease: Lease | None = None
    journal: list[Event] = []
    for line in (description or "").splitlines():
        if line.startswith(LEASE_KEY):
            match = _LEASE.match(line.strip())
            if match:
                try:
                    lease = Lease(match.group(1), datetime.fromisoformat(match.group(2)).astimezone(UTC))
                except ValueError:
                    lease = None
            continue
        if line.startswith(JOURNAL_KEY):
            event = _event(line[len(JOURNAL_KEY) :])
            if event is not None:
                journal.append(event)
            continue
        other.append(line)
    return Description(other=other, lease=lease, journal=journal)


def with_events(current: Description, events: list[Event]) -> Description:
    """The description with ``events`` added to its journal (no duplicates, oldest dropped to fit)."""
    known = {e.id for e in current.journal}
    merged = current.journal + [e for e in events if e.id not in known]
    merged.sort(key=lambda e: e.at)
    return Description(other=current.other, lease=current.lease, journal=_fit(merged))


def _fit(events: list[Event]) -> list[Event]:
    kept: list[Event] = []
    size = 0
    for event in reversed(events):
        size += len(_line(event).encode()) + 1
        if size > JOURNAL_BUDGET:
            break
        kept.append(event)
    return list(reversed(kept))


def _journal_lines(events: list[Event]) -> list[str]:
    return [_line(e) for e in _fit(events)]


def _line(event: Event) -> str:
    data = {
        "id": event.id,
        "at": event.at.astimezone(UTC).isoformat(),
        "kind": event.kind,
        "checkpoint": event.checkpoint,
        "outcome": event.outcome,
        # One line: newlines in a detail would split the entry.
        "detail": " ".join(event.detail.split())[:DETAIL_MAX],
    }
    return f"{JOURNAL_KEY} " + json.dumps(data, separators=(",", ":"))


def _event(text: str) -> Event | None:
    try:
        data = json.loads(text)
        return Event(
            id=str(data["id"]),
            at=datetime.fromisoformat(str(data["at"])).astimezone(UTC),
            kind=str(data["kind"]),
            checkpoint=None if data.get("checkpoint") is None else str(data["checkpoint"]),
            outcome=str(data.get("outcome") or ""),
            detail=str(data.get("detail") or ""),
        )
    except (ValueError, KeyError, TypeError):
        return None  # a hand-edited or truncated line: skipped, never fatal
