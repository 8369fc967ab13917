"""Long lists as plain aligned columns: how ``checkpoint list`` and ``checkpoint prune`` print text.

rich's ``Table`` measures every cell of every row to lay out the table, and at 80 columns it wraps
long cells inside their column: 10,000 checkpoints took 4.5-4.9 s, 96% of it in that layout, and a
uuid broken over two lines cannot be copied. Here a list is one pass over the rows it shows, each
cell printed whole, the id first. Text output shows at most ``DEFAULT_LIMIT`` rows and says how many
it left out and how to see them; ``--json`` is never cut short (its documents are the interface).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_LIMIT = 50
GAP = "  "


@dataclass(frozen=True, slots=True)
class Listing:
    headers: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]
    title: str | None = None
    total: int | None = None  # how many exist; more than len(rows) means some were left out
    more: str = "--json for all"  # how to see the rest, said when some were left out

    def render(self) -> str:
        widths = [len(h) for h in self.headers]
        for row in self.rows:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
        lines = [self.title] if self.title else []
        for cells in (self.headers, *self.rows):
            lines.append(GAP.join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)).rstrip())
        left_out = (self.total or 0) - len(self.rows)
        if left_out > 0:
            lines.append(f"showing {len(self.rows):,} of {self.total:,}; {self.more}")
        return "\n".join(lines)
