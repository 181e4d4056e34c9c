"""What every ``hub`` command prints with: ``-o table|json|yaml``, 80-column tables, colour.

Colour is style only: ``click.echo`` strips it when stdout is not a terminal.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import click
import yaml

TABLE_WIDTH = 80
OUTPUTS = ("table", "json", "yaml")

OUTPUT_OPTION = click.option(
    "-o", "--output", type=click.Choice(OUTPUTS), default="table", show_default=True
)


def dump(doc: Any, output: str) -> str:
    """``doc`` as ``json`` (2-space indent) or ``yaml`` (keys in order), ending in a newline."""
    if output == "json":
        return json.dumps(doc, indent=2) + "\n"
    return str(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def emit(doc: Any, output: str, table: Callable[[Any], str]) -> None:
    """Print ``doc`` as ``table(doc)`` (which ends its own lines) or dumped as ``output``."""
    click.echo(table(doc) if output == "table" else dump(doc, output), nl=False)


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters (with an ellipsis) and padded."""
    if len(text) > width:
        text = text[: max(0, width - 1)] + "…"
    return text.ljust(width)


def paint(text: str, colour: str | None, *, bold: bool = False) -> str:
    """Style only; click.echo strips it when stdout is not a terminal."""
    if colour is None and not bold:
        return text
    return click.style(text, fg=colour, bold=bold)


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, the last one a ``~`` when cut."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "~"


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    width: int = TABLE_WIDTH,
    *,
    clip_last: bool = True,
    shrink_first: Sequence[int] = (),
) -> str:
    """Columns separated by two spaces; the widest columns shrink until a line fits.

    With ``clip_last`` false the last column (a free-text message) is never cut.
    """
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    if not clip_last:
        full = widths[-1]
        widths[-1] = len(headers[-1])
    gap = 2 * (len(headers) - 1)
    # Shrink the columns in `shrink_first` down to 20 characters before touching the others
    # (the name is what people look for; a cut URL or label list is still recognisable).
    for candidates, floor in ((list(shrink_first), 20), (list(range(len(widths))), 4)):
        while candidates and sum(widths) + gap > width:
            widest = max(candidates, key=lambda i: widths[i])
            if widths[widest] <= max(len(headers[widest]), floor):
                break
            widths[widest] -= 1
    if not clip_last:
        widths[-1] = full
    lines = []
    for row in [list(headers), *[list(r) for r in rows]]:
        cells = [clip(cell, widths[i]).ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
