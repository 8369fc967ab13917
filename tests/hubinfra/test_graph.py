"""The program declares exactly the committed resource graph (tests/hubinfra/graph.py explains how)."""

from __future__ import annotations

from typing import Any

from tests.hubinfra.graph import closure, current, load_snapshot, missing_orderings


def test_the_program_declares_the_committed_graph() -> None:
    old, new = load_snapshot(), current()
    assert sorted(new) == sorted(old), "resources added or removed: regenerate the snapshot on purpose"
    moved = [key for key in old if old[key]["declared"] != new[key]["declared"]]
    assert moved == [], f"declarations changed (inputs or options): {moved}"
    assert missing_orderings(old, new) == []


def test_missing_orderings_sees_a_dropped_dependency() -> None:
    # The check itself must fail when an ordering goes away, and accept one kept transitively.
    old: dict[str, dict[str, Any]] = {
        "a": {"depends_on": ["b", "c"]},
        "b": {"depends_on": ["c"]},
        "c": {"depends_on": []},
    }
    narrowed = {**old, "a": {"depends_on": ["b"]}}
    dropped = {**old, "a": {"depends_on": ["c"]}}
    assert closure(narrowed, "a") == {"b", "c"}
    assert missing_orderings(old, narrowed) == []
    assert missing_orderings(old, dropped) == ["a -> b"]
