"""How commands speak: one JSON document on stdout with --json, readable text otherwise.

Errors go to stderr as one line; with --json, stdout still carries exactly one document
(``{"error": ...}``) so a script that parses stdout never gets nothing.

rich is imported on first use of ``console``/``errors`` (text output, progress, errors), never for
a ``--json`` answer or a ``Listing``: its import is ~20 ms of every call that does not print with it.
"""

from __future__ import annotations

import json
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from runtime.cli.listing import Listing

if TYPE_CHECKING:
    from rich.console import Console

    # Created on first use by the module's __getattr__ below (then plain module attributes).
    console: Console
    errors: Console

json_mode: ContextVar[bool] = ContextVar("json_mode", default=False)


def __getattr__(name: str) -> Console:
    if name in ("console", "errors"):
        return _rich(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _rich(name: str) -> Console:
    made: Console | None = globals().get(name)
    if made is None:
        from rich.console import Console

        made = Console(stderr=name == "errors", highlight=False, soft_wrap=True)
        globals()[name] = made
    return made


def set_json(enabled: bool) -> None:
    json_mode.set(enabled)


def emit(document: dict[str, Any], human: str | Listing | None = None) -> None:
    if json_mode.get():
        sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")
        sys.stdout.flush()
        return
    if isinstance(human, Listing):
        sys.stdout.write(human.render() + "\n")
        sys.stdout.flush()
        return
    if human is None:
        human = "\n".join(f"{k}: {v}" for k, v in document.items())
    _rich("console").print(human)


def fail(message: str, *, extra: dict[str, Any] | None = None) -> None:
    line = " ".join(message.split())
    if json_mode.get():
        doc: dict[str, Any] = {"error": line}
        doc.update(extra or {})
        sys.stdout.write(json.dumps(doc, default=str) + "\n")
        sys.stdout.flush()
    _rich("errors").print(f"hubctl: error: {line}", markup=False)


def checkpoint_text(cp: dict[str, Any]) -> str:
    lines = [
        f"checkpoint {cp['uuid']}",
        f"  status     {cp['status']}",
        f"  vm         {cp['vm_id']} on {cp['node']}",
        f"  snapshot   {cp['snapname']}",
        f"  kind       {cp['kind']}",
        f"  created    {cp['created_at']}",
        f"  completed  {cp['completed_at'] or '-'}",
    ]
    if cp.get("reason"):
        lines.append(f"  reason     {cp['reason']}")
    if cp.get("protected"):
        lines.append("  protected  yes")
    if cp.get("blessed_at"):
        lines.append(f"  blessed    {cp['blessed_at']}")
    elif cp.get("bless_refused"):
        lines.append(f"  blessed    never: {cp['bless_refused']}")
    if cp.get("error"):
        lines.append(f"  error      {cp['error']}")
    return "\n".join(lines)


def checkpoint_listing(
    rows: list[dict[str, Any]], *, title: str, total: int | None = None, more: str = "--json for all"
) -> Listing:
    """Checkpoints (``to_public`` documents) as columns that fit 80 characters with the uuid whole.

    When every row is of one VM (the usual case: the Hub's own), the VM is named in the title
    instead of in a column of identical values; the rest then fits 80 columns for any kind/status.
    """
    vms = {cp["vm_id"] for cp in rows}
    one_vm = len(vms) == 1
    headers = (
        ("uuid", "kind", "status", "created (UTC)")
        if one_vm
        else ("uuid", "vm", "kind", "status", "created (UTC)")
    )
    table = [
        (cp["uuid"], cp["kind"], cp["status"], minute(cp["created_at"]))
        if one_vm
        else (cp["uuid"], str(cp["vm_id"]), cp["kind"], cp["status"], minute(cp["created_at"]))
        for cp in rows
    ]
    return Listing(
        headers=headers,
        rows=table,
        title=f"{title} of VM {next(iter(vms))}" if one_vm else title,
        total=total,
        more=more,
    )


def minute(iso: str | None) -> str:
    if not iso:
        return ""
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M")
