"""In-place YAML edits: only the edited keys' lines change."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from hubinfra.yaml_edit import EditError, edit_mapping_keys

TEXT = """# top comment
config:
  hub:runtime:
    ref: main   # pinned later
    params:
      a: 1      # kept
      b: 2
    flow: {x: 1, y: 2}
  # a comment between blocks
  hub:other:
      deep:   "quoted"
"""


def _edit(changes: list[tuple[list[str], Any]]) -> str:
    expected = yaml.safe_load(TEXT)
    for path, value in changes:
        node = expected
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return edit_mapping_keys(TEXT, changes, expected)


def test_unchanged_values_leave_the_text_identical() -> None:
    assert _edit([(["config", "hub:runtime", "ref"], "main")]) == TEXT


def test_a_removed_nested_key_removes_its_line_only() -> None:
    new = _edit([(["config", "hub:runtime", "params"], {"a": 1})])
    assert new == TEXT.replace("      b: 2\n", "")


def test_a_missing_key_is_added_after_its_last_sibling() -> None:
    new = _edit([(["config", "hub:runtime", "repoUrl"], "https://x/y.git")])
    assert new == TEXT.replace(
        "    flow: {x: 1, y: 2}\n", "    flow: {x: 1, y: 2}\n    repoUrl: https://x/y.git\n"
    )


def test_a_missing_top_level_key_is_added_at_the_end_of_config() -> None:
    new = _edit([(["config", "hub:new"], {"k": "v"})])
    assert new == TEXT + "  hub:new:\n    k: v\n"


def test_a_flow_mapping_stays_a_flow_mapping() -> None:
    new = _edit([(["config", "hub:runtime", "flow"], {"x": 1, "y": 3})])
    assert new == TEXT.replace("{x: 1, y: 2}", "{x: 1, y: 3}")


def test_quoting_and_spacing_of_a_scalar_are_kept() -> None:
    new = _edit([(["config", "hub:other", "deep"], "changed")])
    assert new == TEXT.replace('deep:   "quoted"', 'deep:   "changed"')


def test_a_value_that_would_not_round_trip_is_refused() -> None:
    with pytest.raises(EditError):
        edit_mapping_keys(TEXT, [(["config", "hub:runtime", "ref"], "v2")], {"something": "else"})
