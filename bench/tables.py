"""Plain-text-readable Markdown tables and the ratio cells every report section shares."""

from __future__ import annotations

import math


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table with padded columns, readable as plain text too (first two columns left-aligned)."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        padded = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i >= 2 else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def ratio(value: float, base: float | None) -> float | None:
    """``value / base``; None when there is nothing to compare with (or either side was not measured)."""
    if base is None or base == 0 or math.isnan(base) or math.isnan(value):
        return None
    return value / base


def times(value: float | None) -> str:
    """A ratio cell: ``1.23x``, or ``n/a`` when it could not be computed."""
    return "n/a" if value is None else f"{value:.2f}x"


def rate(value: float) -> str:
    """A tasks/s (or messages/s) cell."""
    return "-" if math.isnan(value) else f"{value:,.0f}"


def ms(value: float) -> str:
    """A milliseconds cell."""
    return "-" if math.isnan(value) else f"{value:.2f}"


def mib(value: float) -> str:
    """A MiB cell."""
    return "-" if math.isnan(value) else f"{value:.1f}"
