"""One scenario's part of the report: what it measured, its tables, its JSON and its plots."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Section:
    """Built by a scenario module from its figures; report.py lays the sections out, in run order."""

    key: str  # the --scenarios name, also the section's key in the JSON
    title: str
    method: str  # Markdown: what was measured and how (the figures' settings included)
    body: str  # Markdown tables and notes, readable as plain text
    data: dict[str, Any]  # the section's JSON
    # Draws the plots into a directory; their keys start with "<key>-", which is how the Markdown finds them.
    draw: Callable[[Path], dict[str, Path]] | None = field(default=None, repr=False)
