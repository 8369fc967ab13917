"""Change a few keys of a YAML file in place, leaving every other byte as it was.

A round-trip load and dump (ruamel.yaml) keeps comments and key order but re-indents the whole file
to one style, so a stack file written with other indentation would come back with a diff on every
line. This module uses ruamel.yaml only to find WHERE each key sits (line and column of every key of a
block mapping) and splices new text into those lines alone:

- a scalar on its key's line is replaced within the line (its end-of-line comment and quoting style
  are kept);
- a block mapping is edited key by key (a changed key, an added key after its last sibling, a
  removed key's lines);
- anything else (a list, a flow mapping, a multi-line scalar) is re-rendered as one block at the
  key's column.

The result is checked: parsed again, it must equal the intended document, or EditError is raised and
nothing is written by the caller.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarbool import ScalarBoolean
from ruamel.yaml.scalarstring import ScalarString


class EditError(Exception):
    """The file cannot be edited in place faithfully."""


@dataclass(frozen=True, slots=True)
class _Edit:
    start: int  # first line replaced (0-based)
    end: int  # first line kept after the replaced ones
    lines: list[str]


Chain = list[tuple[Any, Any]]  # from the document root to a key: (mapping, key) pairs


class YamlEditor:
    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.splitlines(keepends=True)
        if self.lines and not self.lines[-1].endswith("\n"):
            self.lines[-1] += "\n"
        loader: Any = YAML(typ="rt")
        loader.preserve_quotes = True
        try:
            self.root: Any = loader.load(text)
        except Exception as exc:  # ruamel raises many error types; all mean "cannot parse"
            raise EditError(f"not parseable YAML ({type(exc).__name__})") from None
        if not _is_map(self.root):
            raise EditError("the document is not a mapping")
        self._edits: list[_Edit] = []

    # -- locating -----------------------------------------------------------------------------
    def _raw_end(self, chain: Chain) -> int:
        mapping, key = chain[-1]
        keys = list(mapping.keys())
        index = keys.index(key)
        if index + 1 < len(keys):
            return int(mapping.lc.key(keys[index + 1])[0])
        if len(chain) > 1:
            return self._raw_end(chain[:-1])
        return len(self.lines)

    def _extent(self, chain: Chain) -> tuple[int, int]:
        """The lines of a key and its value, without the comments and blank lines that follow it."""
        mapping, key = chain[-1]
        start = int(mapping.lc.key(key)[0])
        end = self._raw_end(chain)
        while end > start + 1 and self.lines[end - 1].strip()[:1] in ("", "#"):
            end -= 1
        return start, end

    # -- rendering ----------------------------------------------------------------------------
    def _render(
        self, key: Any, value: Any, column: int, sample: Sequence[str], *, flow: bool = False
    ) -> list[str]:
        dumper: Any = YAML(typ="rt")
        dumper.width = 4096
        dumper.default_flow_style = False
        offset = _sequence_offset(sample, column)
        dumper.indent(mapping=2, sequence=offset + 2, offset=offset)
        plain = _plain(value)
        if flow and isinstance(plain, dict | list):
            styled: Any = (
                CommentedMap(cast(dict[Any, Any], plain)) if isinstance(plain, dict) else CommentedSeq(plain)
            )
            styled.fa.set_flow_style()
            plain = styled
        buffer = io.StringIO()
        dumper.dump({key: plain}, buffer)
        return [" " * column + line if line.strip() else line for line in buffer.getvalue().splitlines(True)]

    @staticmethod
    def _scalar_text(value: Any, old: Any) -> str | None:
        if isinstance(old, ScalarString) and isinstance(value, str):
            value = type(old)(value)  # keep '...' or "..." as the file had it
        dumper: Any = YAML(typ="rt")
        dumper.width = 4096
        buffer = io.StringIO()
        dumper.dump([value], buffer)
        text = buffer.getvalue()
        if not text.startswith("- ") or text.count("\n") != 1:
            return None
        return text[2:-1]

    # -- edits --------------------------------------------------------------------------------
    def set(self, chain: Chain, value: Any) -> None:
        mapping, key = chain[-1]
        old = mapping[key]
        if _plain(old) == value:
            return
        if _is_map(old) and isinstance(value, Mapping) and not old.fa.flow_style() and old:
            new = cast(Mapping[Any, Any], value)
            for k, v in new.items():
                if k in old:
                    self.set([*chain, (old, k)], v)
                else:
                    self.insert(chain, old, k, v)
            for k in list(old.keys()):
                if k not in new:
                    start, end = self._extent([*chain, (old, k)])
                    self._edits.append(_Edit(start, end, []))
            return
        if (
            _is_seq(old)
            and isinstance(value, list)
            and old
            and not old.fa.flow_style()
            and len(cast(list[Any], value)) > len(old)
            and _plain(old) == value[: len(old)]
        ):
            self._append_items(chain, old, cast(list[Any], value)[len(old) :])
            return
        start, end = self._extent(chain)
        key_line, key_column = (int(n) for n in mapping.lc.key(key))
        value_line, value_column = (int(n) for n in mapping.lc.value(key))
        if end == start + 1 and value_line == key_line and not isinstance(value, Mapping | list):
            text = self._scalar_text(value, old)
            if text is not None:
                line = self.lines[key_line]
                comment = _comment_column(mapping, key)
                stop = comment if comment is not None else len(line.rstrip("\n"))
                old_text = line[value_column:stop].rstrip()
                rest = line[value_column + len(old_text) :]
                self._edits.append(_Edit(key_line, key_line + 1, [line[:value_column] + text + rest]))
                return
        flow = (_is_map(old) or _is_seq(old)) and bool(old.fa.flow_style())
        rendered = self._render(key, value, key_column, self.lines[start:end], flow=flow)
        self._edits.append(_Edit(start, end, rendered))

    def _append_items(self, chain: Chain, old: Any, items: list[Any]) -> None:
        """New items after a block list's last one, dashes and contents at the list's own columns."""
        _, end = self._extent(chain)
        first = self.lines[int(old.lc.item(0)[0])]
        dash = len(first) - len(first.lstrip(" "))
        after_dash = first[dash + 1 :]
        content = dash + 1 + len(after_dash) - len(after_dash.lstrip(" "))
        dumper: Any = YAML(typ="rt")
        dumper.width = 4096
        dumper.default_flow_style = False
        dumper.indent(mapping=2, sequence=max(2, content - dash), offset=0)
        buffer = io.StringIO()
        dumper.dump([_plain(item) for item in items], buffer)
        lines = [" " * dash + line if line.strip() else line for line in buffer.getvalue().splitlines(True)]
        self._edits.append(_Edit(end, end, lines))

    def insert(self, chain: Chain, mapping: Any, key: Any, value: Any) -> None:
        """Add `key` after the last key of `mapping` (the value at the end of `chain`; [] for the
        root), at the column of its keys."""
        keys = list(mapping.keys())
        if not keys or mapping.fa.flow_style():
            raise EditError(f"cannot add {key!r} to an empty or flow-style mapping in place")
        _, end = self._extent([*chain, (mapping, keys[-1])])
        column = int(mapping.lc.key(keys[0])[1])
        self._edits.append(_Edit(end, end, self._render(key, value, column, self.lines[end - 1 : end])))

    def result(self) -> str:
        lines = list(self.lines)
        for edit in sorted(self._edits, key=lambda e: (e.start, e.end), reverse=True):
            lines[edit.start : edit.end] = edit.lines
        text = "".join(lines)
        if not self.text.endswith("\n") and text.endswith("\n") and self.text:
            text = text[:-1]
        return text


def edit_mapping_keys(text: str, changes: Sequence[tuple[Sequence[Any], Any]], expected: Any) -> str:
    """Apply `changes` (a key path from the root, the new value) to `text`; check the result parses
    to `expected`. Intermediate mappings that are missing are added."""
    editor = YamlEditor(text)
    for path, value in changes:
        chain: Chain = []
        node: Any = editor.root
        for depth, key in enumerate(path):
            if not _is_map(node):
                raise EditError(f"{'.'.join(map(str, path[:depth]))} is not a mapping")
            if key not in node:
                wrapped: Any = value
                for missing in reversed(path[depth + 1 :]):
                    wrapped = {missing: wrapped}
                editor.insert(chain, node, key, wrapped)
                break
            chain.append((node, key))
            if depth == len(path) - 1:
                editor.set(chain, value)
            node = node[key]
    new_text = editor.result()
    if yaml.safe_load(new_text) != expected:
        raise EditError("editing the file in place would not give the intended document")
    return new_text


def _is_map(value: object) -> bool:
    # A bool, not a narrowing isinstance: ruamel's classes are untyped, Any stays Any.
    return isinstance(value, CommentedMap)


def _is_seq(value: object) -> bool:
    return isinstance(value, CommentedSeq)


def _plain(value: Any) -> Any:
    """ruamel's round-trip types as plain Python (for comparison and for dumping without styles)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in cast(Mapping[Any, Any], value).items()}
    if isinstance(value, list):
        return [_plain(v) for v in cast(list[Any], value)]
    if isinstance(value, ScalarString):
        return str(value)
    if isinstance(value, bool | ScalarBoolean):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


def _comment_column(mapping: Any, key: Any) -> int | None:
    comments: Any = mapping.ca
    items: Any = comments.items.get(key)
    if not items or len(items) < 3 or items[2] is None:
        return None
    token: Any = items[2]
    column = getattr(token, "column", None)
    if column is None:
        start_mark = getattr(token, "start_mark", None)
        column = getattr(start_mark, "column", None)
    return None if column is None else int(column)


def _sequence_offset(sample: Sequence[str], column: int) -> int:
    """How far the file indents a list's dashes under their key (0 or 2, as found in `sample`)."""
    for line in sample[1:]:
        stripped = line.lstrip(" ")
        if stripped.startswith("- ") or stripped == "-\n":
            return max(0, len(line) - len(stripped) - column)
    return 2
