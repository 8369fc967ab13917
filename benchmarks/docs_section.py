"""Where a benchmark writes its table: between its own two markers in a doc (docs/performance.md).

Re-running a benchmark with ``--write`` replaces its section and nothing else; the first run appends
it at the end of the doc, so the prose around it is the doc's own."""

from __future__ import annotations

from pathlib import Path


def write_section(doc: Path, start: str, end: str, body: str) -> None:
    text = doc.read_text(encoding="utf-8")
    if start in text:
        head, rest = text.split(start, 1)
        text = head + start + "\n" + body + "\n" + end + rest.split(end, 1)[1]
    else:
        text += f"\n{start}\n{body}\n{end}\n"
    doc.write_text(text, encoding="utf-8")
