"""Everything cnncli shows people: tables, lines, JSON, and error paragraphs.

Results go to stdout; logs, warnings and errors go to stderr. Colour and
animation only when the stream is a terminal (rich decides; ``NO_COLOR`` works).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

# Not a terminal (CI, pipes): no colour, no animation, and lines not wrapped at 80 columns.
_WIDTH = None if sys.stdout.isatty() else 200
out = Console(highlight=False, soft_wrap=True, width=_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True, width=_WIDTH)


def print_json(data: Any) -> None:
    """Machine-readable output on stdout (one document)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def error(exc) -> None:
    """One paragraph per problem on stderr, prefixed with 'error:'."""
    for line in str(exc).splitlines() or [type(exc).__name__]:
        err.print(f"[bold red]error:[/] {line}", markup=True, highlight=False)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {message}")


def info(message: str) -> None:
    err.print(message, markup=False)


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 1e5 else f"{n / 1e3:,.1f} kB"


def _count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def summary(s, *, explain: bool = False) -> None:
    """The lecture's table (Layer, Volume size, Description, Parameters) and totals."""
    table = Table(title=f"{s.name}", title_justify="left", show_lines=False)
    for col, justify in (("Layer", "left"), ("Volume size", "left"),
                         ("Description", "left"), ("Parameters", "right")):
        table.add_column(col, justify=justify)
    for row in s.rows:
        if not row.shown:
            continue
        table.add_row(row.layer, row.volume, row.description,
                      f"{row.params:,}" if row.params else "")
    out.print(table)
    if explain:
        out.print("Output sizes, (W - F + 2P)/S + 1 for each convolution and pooling layer:")
        for row in s.rows:
            for line in row.explain:
                out.print(f"  {row.name} ({row.layer}) {line}", markup=False)
    out.print(f"Parameters: {s.params:,} ({_count(s.params)}; trainable {s.trainable_params:,})")
    out.print(f"Activation memory per image: {_mb(s.forward_bytes)} forward, "
              f"~{_mb(s.backward_bytes)} backward (estimated at 2x forward)")
    out.print(f"Multiply-adds per image: {s.macs:,} ({_count(s.macs)})")
    for w in s.warnings:
        warn(w)
