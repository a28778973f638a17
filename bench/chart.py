"""The side-by-side table as a chart: for each measurement, how many times better ours is
than the official endpoint (ours/official where higher is better, official/ours where lower
is), on a log scale with parity marked. Drawn with matplotlib, from the optional `bench`
extra (`pip install -e '.[bench]'`, which `make bench` does); without it the chart is skipped
and the table stands alone."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

CHART = Path(__file__).parents[1] / "docs" / "bench-side-by-side.png"


def advantage(ours: float, official: float, better: str) -> float:
    """How many times better ours is: above 1 where ours wins."""
    if not (ours and official) or any(math.isnan(v) for v in (ours, official)):
        return float("nan")
    return ours / official if better == "higher" else official / ours


def draw(rows: list[tuple[str, float, float, str]], title: str, path: Path = CHART) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no chart: matplotlib is not installed; `pip install -e '.[bench]'` adds it)")
        return None
    shown = [(name, advantage(ours, official, better)) for name, ours, official, better in rows]
    shown = [(name, value) for name, value in shown if not math.isnan(value)]
    names, values = [n for n, _ in shown][::-1], [v for _, v in shown][::-1]
    figure, axes = plt.subplots(figsize=(10, 0.38 * len(names) + 1.6))
    colours = ["#2a7f3f" if v >= 1 else "#b0413e" for v in values]
    axes.barh(names, values, color=colours)
    axes.set_xscale("log")
    axes.axvline(1.0, color="black", linewidth=1)
    for index, value in enumerate(values):
        axes.text(value, index, f" {value:.2f}x", va="center", fontsize=8)
    axes.set_xlabel("times better than the official endpoint (log scale; right of the line: ours is better)")
    figure.suptitle("\n".join(textwrap.wrap(title, 100)), fontsize=10)
    axes.tick_params(axis="y", labelsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"chart: {path}")
    return path
