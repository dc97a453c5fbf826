"""Bar charts (matplotlib, imported only when a plot is drawn: it is needed for the plots alone)."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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
    """Grouped bars, one group per label; with one series each bar takes its system's colour, and a
    series named after a system takes that system's colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(labels)), 4.0))
    for n, (name, values) in enumerate(series.items()):
        offsets = [i + (n - (len(series) - 1) / 2) * width for i in range(len(labels))]
        colors = [system_color(label) for label in labels] if len(series) == 1 else SYSTEM_COLORS.get(name)
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


PACKAGE_COLORS = {"celeriac": "#8fd18f", "redis": "#f2a38f", "json": "#9ec5ec", "threading": "#d9c3ec"}
FLAME_MIN_SHARE = 0.004  # frames under 0.4% of the samples are left out (they would be slivers)


def flame_graph(path: Path, stacks: Sequence[tuple[Sequence[str], int]], title: str) -> Path:
    """A flame graph of sampled stacks (outermost frame first): each frame is a box as wide as its
    share of the samples, its callees stacked on it; coloured by top-level package."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    Node = dict[str, Any]
    root: Node = {"n": 0, "children": {}}
    for frames, count in stacks:
        root["n"] += count
        node = root
        for frame in frames:
            node = node["children"].setdefault(frame, {"n": 0, "children": {}})
            node["n"] += count
    total = max(root["n"], 1)
    boxes: list[tuple[float, int, float, str]] = []  # (x, depth, width, frame)

    def place(node: Node, x: float, depth: int) -> None:
        for frame, child in sorted(node["children"].items()):
            width = child["n"] / total
            if width >= FLAME_MIN_SHARE:
                boxes.append((x, depth, width, frame))
                place(child, x, depth + 1)
            x += width

    place(root, 0.0, 0)
    depth = max((d for _, d, _, _ in boxes), default=0) + 1
    fig_width = 14.0
    fig, ax = plt.subplots(figsize=(fig_width, 0.8 + 0.24 * depth))
    chars_per_unit = fig_width * 72 / 5.2  # characters of 6.5 pt text across the whole width
    for x, d, width, frame in boxes:
        color = PACKAGE_COLORS.get(frame.split("/", 1)[0].split(":", 1)[0].removesuffix(".py"), "#e8e0a8")
        ax.add_patch(Rectangle((x, d), width, 0.95, facecolor=color, edgecolor="white", linewidth=0.4))
        room = int(width * chars_per_unit)
        if room >= 6:
            name = frame.rsplit("/", 1)[-1]  # consumer.py:Consumer.run; the colour tells the package
            label = name if len(name) <= room else name[: room - 2] + ".."
            ax.text(x + 0.002, d + 0.45, label, fontsize=6.5, va="center", ha="left", clip_on=True)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, depth)
    ax.set_yticks([])
    ax.set_xlabel("share of the samples holding the GIL (callers below, callees above)")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
