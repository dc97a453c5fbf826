"""Bar charts (matplotlib, imported only when a plot is drawn: it is needed for the plots alone)."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path

SYSTEM_COLORS = {"celeriac": "tab:green", "celery": "tab:blue"}
OTHER_COLOR = "tab:gray"


def available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def system_color(label: str) -> str:
    """The colour of the system a bar label starts with (``celeriac\\nthreads`` -> celeriac's green)."""
    return SYSTEM_COLORS.get(label.split("\n", 1)[0], OTHER_COLOR)


def bar_chart(
    path: Path,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    title: str,
    ylabel: str,
    *,
    value_format: str | None = None,
) -> Path:
    """Grouped bars, one group per label; with one series each bar takes its system's colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(labels)), 4.0))
    for n, (name, values) in enumerate(series.items()):
        offsets = [i + (n - (len(series) - 1) / 2) * width for i in range(len(labels))]
        colors = [system_color(label) for label in labels] if len(series) == 1 else None
        bars = ax.bar(offsets, values, width, label=name, color=colors)
        fmt = value_format or ("{:,.0f}" if max(values, default=0) >= 100 else "{:.2f}")
        ax.bar_label(bars, fmt=fmt, fontsize=8)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if len(series) > 1:
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
