"""How commands speak: one JSON document on stdout with --json, readable text otherwise.

Errors go to stderr as one line; with --json, stdout still carries exactly one document
(``{"error": ...}``) so a script that parses stdout never gets nothing.
"""

from __future__ import annotations

import json
import sys
from contextvars import ContextVar
from typing import Any

from rich.console import Console
from rich.table import Table

json_mode: ContextVar[bool] = ContextVar("json_mode", default=False)
console = Console(highlight=False, soft_wrap=True)
errors = Console(stderr=True, highlight=False, soft_wrap=True)


def set_json(enabled: bool) -> None:
    json_mode.set(enabled)


def emit(document: dict[str, Any], human: str | Table | None = None) -> None:
    if json_mode.get():
        sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")
        sys.stdout.flush()
        return
    if human is None:
        human = "\n".join(f"{k}: {v}" for k, v in document.items())
    console.print(human)


def fail(message: str, *, extra: dict[str, Any] | None = None) -> None:
    line = " ".join(message.split())
    if json_mode.get():
        doc: dict[str, Any] = {"error": line}
        doc.update(extra or {})
        sys.stdout.write(json.dumps(doc, default=str) + "\n")
        sys.stdout.flush()
    errors.print(f"hubctl: error: {line}", markup=False)


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
    if cp.get("error"):
        lines.append(f"  error      {cp['error']}")
    return "\n".join(lines)


def checkpoint_table(rows: list[dict[str, Any]], *, title: str | None = None) -> Table:
    table = Table(title=title, show_lines=False)
    for column in ("uuid", "vm", "kind", "status", "created"):
        table.add_column(column)
    for cp in rows:
        table.add_row(cp["uuid"], str(cp["vm_id"]), cp["kind"], cp["status"], cp["created_at"] or "")
    return table
