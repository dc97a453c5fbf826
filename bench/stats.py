"""Percentiles and per-target medians over repeated runs."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Hashable, Sequence
from dataclasses import fields, replace
from typing import Any, TypeVar

Row = TypeVar("Row")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def medians(rows: Sequence[Row], key: Callable[[Row], Hashable]) -> list[Row]:
    """One row per ``key``, each float field the median over that key's rows, in first-seen order.

    Fields that are not floats (names, counts) are taken from the first row of each group.
    """
    groups: dict[Hashable, list[Row]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    merged = []
    for group in groups.values():
        first: Any = group[0]
        numeric = {f.name for f in fields(first) if isinstance(getattr(first, f.name), float)}
        merged.append(replace(first, **{name: statistics.median(getattr(r, name) for r in group) for name in numeric}))
    return merged
