"""A compact fingerprint of the program's resource graph, to prove a refactoring declares the same thing.

Each resource is keyed by (type, name) and carries a SHA-256 of everything the engine receives for
it except its dependency list: inputs (secrets unwrapped, and which inputs were secret), parent,
protect, retainOnDelete, ignoreChanges, deleteBeforeReplace, replaceOnChanges, replacement
trigger and aliases. Dependencies are kept as (type, name) pairs, because a performance change may
narrow a direct `depends_on` list to fewer resources that already wait for the rest: what must
not change is the ORDER the engine enforces, i.e. every old direct dependency must still be reached
through the new dependency graph (`missing_orderings`).

The committed snapshot (`tests/hubinfra/data/graph-prod.json`) is regenerated on purpose only, when
a change is MEANT to alter what the program declares:

    .venv/bin/python -m tests.hubinfra.graph --write

and the diff of that file is then part of the review (it names each resource whose declaration moved).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.hubinfra.harness import Resource, Run, run_program

SNAPSHOT = Path(__file__).resolve().parent / "data" / "graph-prod.json"
# Both extra-hub kinds, so every component path is in the snapshot.
EXTRA_EXPERIMENTS = 2
EXTRA_DOMAIN_HUBS = 2


def add_extra_hubs(experiments: int, domain_hubs: int) -> Any:
    """A stack-config edit adding experimental hubs and client hubs (as benchmarks/infra_eval.py)."""

    def edit(config: dict[str, Any]) -> None:
        config["hub:quotas"] = {"cores": 10_000, "memoryMib": 10_000_000, "diskGb": 1_000_000, "vms": 1_000}
        config["hub:experiments"] = [
            {"name": f"exp{i}", "checkpoint": f"hub-{i:032x}", "vmId": 5000 + i} for i in range(experiments)
        ]
        config["hub:domainHubs"] = [
            {"name": f"client{i}", "type": "client", "label": f"Client {i}", "vmId": 6000 + i}
            for i in range(domain_hubs)
        ]

    return edit


def _key(resource: Resource) -> str:
    return f"{resource.type}::{resource.name}"


def _urn_key(urn: str) -> str:
    # urn:pulumi:<stack>::<project>::<parent types$>type::name -> "type::name"
    qualified, name = urn.rsplit("::", 1)
    return f"{qualified.rsplit('::', 1)[1].rsplit('$', 1)[-1]}::{name}"


def fingerprint(run: Run) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in run.resources:
        declared = {
            "inputs": r.inputs,
            "secret_inputs": sorted(r.secret_inputs),
            "parent": _urn_key(r.parent) if r.parent else "",
            "protect": r.protect,
            "retain_on_delete": r.retain_on_delete,
            "ignore_changes": r.ignore_changes,
            "delete_before_replace": r.delete_before_replace,
            "replace_on_changes": r.replace_on_changes,
            "replacement_trigger": r.replacement_trigger,
            "aliases": r.aliases,
        }
        digest = hashlib.sha256(json.dumps(declared, sort_keys=True, default=str).encode()).hexdigest()
        out[_key(r)] = {"declared": digest, "depends_on": sorted({_urn_key(u) for u in r.dependencies})}
    return dict(sorted(out.items()))


def closure(graph: Mapping[str, Mapping[str, Any]], start: str) -> set[str]:
    """Everything `start` waits for, directly or through its dependencies."""
    seen: set[str] = set()
    todo = list(graph[start]["depends_on"])
    while todo:
        key = todo.pop()
        if key in seen:
            continue
        seen.add(key)
        todo.extend(graph.get(key, {}).get("depends_on", []))
    return seen


def missing_orderings(
    old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Old direct dependencies that the new graph no longer enforces, as `resource -> dependency`."""
    return [
        f"{key} -> {dep}"
        for key, entry in old.items()
        if key in new
        for dep in entry["depends_on"]
        if dep not in closure(new, key)
    ]


def current() -> dict[str, dict[str, Any]]:
    run = run_program("prod", edit=add_extra_hubs(EXTRA_EXPERIMENTS, EXTRA_DOMAIN_HUBS))
    if run.exit_code is not None:
        raise SystemExit(f"program failed: {run.errors}")
    return fingerprint(run)


def load_snapshot() -> dict[str, dict[str, Any]]:
    loaded: dict[str, dict[str, Any]] = json.loads(SNAPSHOT.read_text())
    return loaded


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        raise SystemExit("usage: python -m tests.hubinfra.graph --write")
    SNAPSHOT.parent.mkdir(exist_ok=True)
    SNAPSHOT.write_text(json.dumps(current(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT.relative_to(Path.cwd())}")
