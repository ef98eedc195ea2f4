"""Tables that fit the terminal: whole columns give way, words in headers never split.

Columns are listed most important first. When their natural widths do not fit, the least
important columns are left out (the caption names them; ``--json`` always has every
field), and what remains folds long values onto more lines instead of cutting them.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

Cell = str | Text
# Table borders: "│ " before each column, " " after, and the closing "│".
_PER_COLUMN = 3


def _width(cell: Cell) -> int:
    text = cell.plain if isinstance(cell, Text) else cell
    return max((len(line) for line in text.splitlines()), default=0)


def fitted(
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    width: int,
    keep: int = 2,
) -> Table:
    """A table of ``rows`` that fits ``width``, keeping at least the first ``keep`` columns."""
    natural = [max([len(h), *(_width(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    shown = list(range(len(headers)))
    while len(shown) > keep and sum(natural[i] + _PER_COLUMN for i in shown) + 1 > width:
        shown.pop()
    hidden = [headers[i] for i in range(len(headers)) if i not in shown]
    caption = None
    if hidden:
        caption = f"not shown at {width} columns: {', '.join(hidden)} (--json has every field)"
    table = Table(title=title, caption=caption)
    for i in shown:
        # A header never splits mid-word; values fold onto more lines, never cut.
        table.add_column(headers[i], overflow="fold", min_width=len(headers[i]))
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    return table


def width_of(console: Console) -> int:
    return console.width
