"""The protocol's two figures, drawn with matplotlib when it is installed.

- `plot_cost_to_target`: per method, the geometric mean over tasks of its cost to target
  relative to random+FIFO's (per task first, censored runs at their budget), one bar for the
  cost-varying tasks and one for the controls; log scale, lower is better.
- `plot_regret`: per task, the median over seeds of the incumbent's normalized test regret
  against the share of the budget spent (log scale), one line per method.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot_cost_to_target", "plot_regret"]

_BASELINE = "random+fifo"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_cost_to_target(
    results: dict[str, Any], varying: Sequence[str], control: Sequence[str], path: Path
) -> Path | None:
    """Bars of relative cost to target per method (see the module docstring); None if no data."""
    plt = _pyplot()
    per_task = results.get("on_demand", {})
    methods = list(next(iter(per_task.values()), {}))
    groups = [("cost-varying tasks", list(varying)), ("control tasks", list(control))]
    rows: dict[str, list[float | None]] = {}
    for method in methods:
        rows[method] = []
        for _, tasks in groups:
            logs = []
            for task in tasks:
                mine = per_task.get(task, {}).get(method, {}).get("cost_to_target_usd")
                base = per_task.get(task, {}).get(_BASELINE, {}).get("cost_to_target_usd")
                if mine and base:
                    logs.append(math.log(mine["geomean"] / base["geomean"]))
            rows[method].append(math.exp(sum(logs) / len(logs)) if logs else None)
    if not any(v for vals in rows.values() for v in vals):
        return None
    fig, ax = plt.subplots(figsize=(max(8, 0.7 * len(methods)), 4.5))
    width = 0.4
    for g, (label, _) in enumerate(groups):
        xs = [i + (g - 0.5) * width for i in range(len(methods))]
        ys = [rows[mt][g] or float("nan") for mt in methods]
        ax.bar(xs, ys, width=width, label=label)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(methods)))
    ax.set_xticklabels(methods, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel(f"cost to top-1% target / {_BASELINE}'s (geomean)")
    ax.set_title("Dollars to reach the top-1% validation score (lower is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_regret(results: dict[str, Any], fractions: Sequence[float], path: Path) -> Path | None:
    """Median anytime regret vs the share of the budget spent, one panel per task."""
    plt = _pyplot()
    per_task = results.get("on_demand", {})
    tasks = [
        t for t, ms in per_task.items() if any("regret_curve_median" in v for v in ms.values())
    ]
    if not tasks:
        return None
    cols = min(3, len(tasks))
    nrows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.6 * nrows), squeeze=False)
    colors = plt.get_cmap("tab20").colors
    for ax, task in zip(axes.flat, tasks, strict=False):
        for i, (method, summary) in enumerate(per_task[task].items()):
            curve = summary.get("regret_curve_median")
            if curve:
                ours = method.startswith("cost_aware")
                ax.plot(
                    fractions,
                    curve,
                    label=method,
                    color="black" if ours else colors[i % len(colors)],
                    lw=2.2 if ours else 1.1,
                    ls="-" if ours or i < 7 else "--",
                )
        ax.set_xscale("log")
        ax.set_ylim(0, 1.05)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("share of the budget spent ($)")
        ax.set_ylabel("normalized test regret")
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
