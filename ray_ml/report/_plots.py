"""The report's plots, each a function of plain data returning PNG bytes.

Figures are built on matplotlib's object API with an explicit Agg canvas, never `pyplot`: no
global backend switch (a notebook importing this keeps its own), no figure registry to leak
into, and nothing here needs a display.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec

import matplotlib
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

__all__ = [
    "STATUS_COLOURS",
    "class_balance_plot",
    "cost_breakdown_plot",
    "drift_plot",
    "learning_curves_plot",
    "live_quality_plot",
    "pareto_plot",
    "reject_reasons_plot",
    "spend_plot",
]

DPI = 100
STATUS_COLOURS = {
    "completed": "#1f77b4",
    "budget_stopped": "#9467bd",
    "pruned": "#ff7f0e",
    "failed": "#d62728",
    "running": "#7f7f7f",
}
_OTHER = "#8c564b"
_RC: Any = {  # Any: matplotlib types the keys as a Literal of every rc name
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 9,
    "legend.framealpha": 0.85,
}
# Above this many trials per-trial colours and labels stop being readable.
_MAX_LABELLED = 10
P = ParamSpec("P")


def _figure(width: float = 9.0, height: float = 4.2) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return buf.getvalue()


def _colour(status: str) -> str:
    return STATUS_COLOURS.get(status, _OTHER)


def _usd_axis(ax: Any, axis: str = "y") -> None:
    """Dollar tick labels with as many decimals as the axis span needs (no `5e-05`, and no
    row of identical labels when every trial cost about the same)."""
    from matplotlib.ticker import FuncFormatter

    target = ax.yaxis if axis == "y" else ax.xaxis

    def label(value: float, _pos: int | None) -> str:
        lo, hi = target.get_view_interval()
        span = abs(hi - lo) or abs(value) or 1.0
        decimals = max(0, 2 - math.floor(math.log10(span)))
        text = f"{value:.{decimals}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return "$0" if float(text) == 0 else f"${text}"

    target.set_major_formatter(FuncFormatter(label))


def _with_rc(build: Callable[P, bytes]) -> Callable[P, bytes]:
    """Run `build` under the report's rc settings (they apply while artists are created)."""

    @functools.wraps(build)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> bytes:
        with matplotlib.rc_context(_RC):
            return build(*args, **kwargs)

    return wrapped


# ------------------------------------------------------------------------------- sweep
@_with_rc
def pareto_plot(
    points: Sequence[Mapping[str, Any]],
    front: Sequence[Mapping[str, Any]],
    metric: str,
    mode: str,
    winner: str | None,
) -> bytes:
    """Every trial at (billed cost, metric), coloured by status; the front as a step line.

    Args:
        points: `{"trial_id", "status", "cost_usd", "value"}` per trial with both numbers.
        front: The Pareto-front points, cheapest first.
        metric: The metric's name (y label).
        mode: `min` or `max` (says which way is better).
        winner: The sweep's winning trial id, starred; None for none.
    """
    fig = _figure()
    ax = fig.add_subplot()
    for status in sorted({str(p["status"]) for p in points}):
        mine = [p for p in points if p["status"] == status]
        ax.scatter(
            [p["cost_usd"] for p in mine],
            [p["value"] for p in mine],
            s=42,
            color=_colour(status),
            alpha=0.85,
            edgecolor="white",
            linewidth=0.6,
            label=f"{status} ({len(mine)})",
            zorder=3,
        )
    if front:
        xs = [p["cost_usd"] for p in front]
        ys = [p["value"] for p in front]
        right = max(p["cost_usd"] for p in points)
        if right > xs[-1]:  # carry the last step to the costliest trial: no better deal there
            xs, ys = [*xs, right], [*ys, ys[-1]]
        ax.step(xs, ys, where="post", color="black", linewidth=1.4, label="Pareto front", zorder=2)
    for p in points:
        if p["trial_id"] == winner:
            ax.scatter(
                [p["cost_usd"]],
                [p["value"]],
                marker="*",
                s=260,
                color="gold",
                edgecolor="black",
                linewidth=0.8,
                label=f"winner {winner}",
                zorder=4,
            )
    costs = [p["cost_usd"] for p in points if p["cost_usd"] > 0]
    if costs and max(costs) / min(costs) > 100:
        ax.set_xscale("log")
    else:
        _usd_axis(ax, "x")
    better = "lower" if mode == "min" else "higher"
    ax.set_xlabel("billed cost per trial (USD)")
    ax.set_ylabel(f"{metric} ({better} is better)")
    ax.set_title(f"Quality vs cost: {metric} against billed dollars")
    ax.legend(loc="best")
    return _png(fig)


@_with_rc
def learning_curves_plot(
    curves: Sequence[Mapping[str, Any]], metric: str, log_y: bool, winner: str | None
) -> bytes:
    """The metric against training_iteration, one line per trial; pruned trials end in an x.

    Args:
        curves: `{"trial_id", "status", "iterations": [...], "values": [...]}` per trial.
        metric: The metric's name.
        log_y: Use a log y axis (only when every value is positive).
        winner: The winning trial id, drawn thicker; None for none.
    """
    fig = _figure()
    ax = fig.add_subplot()
    labelled = len(curves) <= _MAX_LABELLED
    palette = [f"C{i}" for i in range(10)]
    pruned_seen = False
    for i, curve in enumerate(curves):
        status = str(curve["status"])
        colour = palette[i % len(palette)] if labelled else _colour(status)
        tag = "" if status == "completed" else f" ({status})"
        ax.plot(
            curve["iterations"],
            curve["values"],
            marker="o",
            markersize=6 if len(curve["iterations"]) == 1 else 3.5,
            linewidth=2.6 if curve["trial_id"] == winner else 1.4,
            color=colour,
            alpha=0.9 if labelled else 0.6,
            label=f"{curve['trial_id']}{tag}" if labelled else None,
        )
        if status == "pruned" and curve["iterations"]:
            pruned_seen = True
            ax.scatter(
                [curve["iterations"][-1]],
                [curve["values"][-1]],
                marker="x",
                s=90,
                linewidth=2.2,
                color=colour if labelled else "black",
                zorder=4,
            )
    handles, _ = ax.get_legend_handles_labels()
    if not labelled:
        statuses = sorted({str(c["status"]) for c in curves})
        handles = [Line2D([], [], color=_colour(s), label=s) for s in statuses]
    if pruned_seen:
        handles.append(
            Line2D(
                [], [], marker="x", linestyle="", color="black", markersize=8, label="pruned here"
            )
        )
    if log_y:
        from matplotlib.ticker import FuncFormatter

        ax.set_yscale("log")
        # Plain numbers: a sweep's losses span less than a decade, where the default log
        # labels ("6x10^-1") are hard to read.
        plain = FuncFormatter(lambda v, _pos: f"{v:.3g}")
        ax.yaxis.set_major_formatter(plain)
        values = [v for c in curves for v in c["values"]]
        if max(values) / min(values) < 10:  # over several decades minor labels would crowd
            ax.yaxis.set_minor_formatter(plain)
            ax.grid(True, which="minor", axis="y", alpha=0.3)
    ax.set_xlabel("training iteration")
    ax.set_ylabel(metric + (" (log scale)" if log_y else ""))
    ax.set_title(f"Learning curves: {metric} per report")
    from matplotlib.ticker import MaxNLocator, MultipleLocator

    last = max((max(c["iterations"]) for c in curves if c["iterations"]), default=1)
    if last <= 20:  # whole iterations only; one-report sweeps would otherwise get 0.95..1.05
        ax.set_xlim(0.5, last + 0.5)
        ax.xaxis.set_major_locator(MultipleLocator(max(1, math.ceil(last / 10))))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return _png(fig)


def _time_unit(span_s: float) -> tuple[str, float]:
    if span_s > 3 * 3600:
        return "hours", 3600.0
    if span_s > 3 * 60:
        return "minutes", 60.0
    return "seconds", 1.0


@_with_rc
def spend_plot(
    seconds: Sequence[float],
    dollars: Sequence[float],
    budget_usd: float | None,
    source: str,
    reported: Sequence[tuple[float, float]] = (),
) -> bytes:
    """Cumulative billed dollars over wall-clock time since the sweep began, with the budget.

    Args:
        seconds: Time points, seconds since the sweep's first trial started.
        dollars: Cumulative billed dollars at those points.
        budget_usd: The sweep's budget, drawn as a horizontal line; None for no budget.
        source: Where the curve comes from (legend text).
        reported: Optional (seconds, dollars) of the trials' own cost reports, as dots.
    """
    fig = _figure()
    ax = fig.add_subplot()
    span = max([*seconds, *(s for s, _ in reported), 1.0])
    unit, scale = _time_unit(span)
    ax.plot([s / scale for s in seconds], dollars, color="#1f77b4", linewidth=2, label=source)
    ax.fill_between([s / scale for s in seconds], dollars, color="#1f77b4", alpha=0.12)
    if reported:
        ax.scatter(
            [s / scale for s, _ in reported],
            [d for _, d in reported],
            s=14,
            color="#2ca02c",
            zorder=3,
            label="as reported by trials (result.json)",
        )
    if budget_usd is not None:
        ax.axhline(budget_usd, color="#d62728", linestyle="--", linewidth=1.6)
        ax.annotate(
            f"budget ${budget_usd:.4g}",
            xy=(0.01, budget_usd),
            xycoords=("axes fraction", "data"),
            xytext=(0, 4),
            textcoords="offset points",
            color="#d62728",
            fontweight="bold",
        )
        top = max([budget_usd, *dollars, *(d for _, d in reported)])
        ax.set_ylim(0, top * 1.12 if top > 0 else 1.0)
    else:
        ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    _usd_axis(ax)
    ax.set_xlabel(f"wall-clock {unit} since the sweep's first trial started")
    ax.set_ylabel("cumulative billed USD")
    ax.set_title("Spend over time" + ("" if budget_usd is not None else " (no budget set)"))
    ax.legend(loc="lower right")
    return _png(fig)


@_with_rc
def cost_breakdown_plot(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Per trial, billed dollars split into useful (bottom) and waste (top); spot bars hatched.

    Args:
        rows: `{"trial_id", "useful_usd", "waste_usd", "pricing"}` per trial, in start order.
    """
    many = len(rows) > 24
    fig = _figure(9.0, 4.6)
    ax = fig.add_subplot()
    xs = list(range(len(rows)))
    useful = [float(r["useful_usd"]) for r in rows]
    waste = [float(r["waste_usd"]) for r in rows]
    hatches = ["//" if r["pricing"] == "spot" else "" for r in rows]
    bars = ax.bar(xs, useful, color="#4c9f70", edgecolor="#2d5e42", linewidth=0.8)
    tops = ax.bar(xs, waste, bottom=useful, color="#e45756", edgecolor="#8e2d2c", linewidth=0.8)
    for bar, top, hatch in zip(bars, tops, hatches, strict=True):
        bar.set_hatch(hatch)
        top.set_hatch(hatch)
    if not many:
        for x, u, w, r in zip(xs, useful, waste, rows, strict=True):
            label = {"spot": "spot", "on_demand": "OD"}.get(str(r["pricing"]), str(r["pricing"]))
            ax.annotate(
                label,
                xy=(x, u + w),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                fontsize=8,
                color="#444444",
            )
    ax.set_xticks(xs)
    if many:
        ax.set_xticklabels([])
        ax.set_xlabel(f"{len(rows)} trials, in start order")
    else:
        ax.set_xticklabels(
            [str(r["trial_id"]) for r in rows], rotation=30 if len(rows) > 4 else 0, ha="right"
        )
        ax.set_xlabel("trial, in start order")
    top = max([u + w for u, w in zip(useful, waste, strict=True)] + [0.0])
    ax.set_ylim(0, top * 1.15 if top > 0 else 1.0)
    _usd_axis(ax)
    ax.set_ylabel("billed USD")
    ax.set_title("Cost per trial: useful vs wasted dollars")
    ax.legend(
        handles=[
            Patch(facecolor="#4c9f70", edgecolor="#2d5e42", label="useful"),
            Patch(facecolor="#e45756", edgecolor="#8e2d2c", label="waste (lost work, idle)"),
            Patch(facecolor="white", edgecolor="#444444", label="on-demand (OD)"),
            Patch(facecolor="white", edgecolor="#444444", hatch="//", label="spot"),
        ],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0,
    )
    return _png(fig)


# -------------------------------------------------------------------------------- data
@_with_rc
def reject_reasons_plot(reasons: Sequence[tuple[str, int]], rows_in: int | None) -> bytes:
    """Horizontal bars of the most frequent reject reasons, the biggest on top.

    Args:
        reasons: `(column:rule, rows)` pairs, most frequent first.
        rows_in: Rows read, for a share label per bar; None to omit it.
    """
    fig = _figure(9.0, 0.9 + 0.38 * max(len(reasons), 2))
    ax = fig.add_subplot()
    names = [name for name, _ in reasons][::-1]
    counts = [count for _, count in reasons][::-1]
    ax.barh(names, counts, color="#e45756")
    for y, count in enumerate(counts):
        share = f" ({count / rows_in:.1%})" if rows_in else ""
        ax.annotate(
            f"{count:,}{share}",
            xy=(count, y),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=9,
        )
    ax.set_xlim(0, max(counts) * 1.25)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("rejected rows")
    ax.set_title("Top reject reasons (column:rule)")
    return _png(fig)


@_with_rc
def class_balance_plot(splits: Sequence[Mapping[str, Any]]) -> bytes:
    """One stacked horizontal bar per split: the share of each class.

    Args:
        splits: `{"split", "class_fraction": {class: share}}` per split.
    """
    fig = _figure(9.0, 0.9 + 0.45 * max(len(splits), 2))
    ax = fig.add_subplot()
    classes: list[str] = []
    for split in splits:
        classes += [c for c in split["class_fraction"] if c not in classes]
    names = [str(s["split"]) for s in splits][::-1]
    left = [0.0] * len(names)
    for i, cls in enumerate(classes):
        widths = [float(s["class_fraction"].get(cls) or 0.0) for s in splits][::-1]
        ax.barh(names, widths, left=left, color=f"C{i % 10}", label=f"class {cls}")
        for y, (x0, w) in enumerate(zip(left, widths, strict=True)):
            if w >= 0.06:
                ax.text(x0 + w / 2, y, f"{w:.0%}", ha="center", va="center", color="white")
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_xlim(0, max([1.0, *left]))
    ax.grid(visible=False)
    ax.set_xlabel("share of the split's rows")
    ax.set_title("Class balance per split")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return _png(fig)


@_with_rc
def drift_plot(features: Sequence[Mapping[str, Any]], threshold: float | None) -> bytes:
    """PSI per feature as horizontal bars (drifted ones red) with the threshold line.

    Args:
        features: `{"feature", "psi", "drifted"}` per judged feature, highest PSI first.
        threshold: The PSI threshold; None to omit the line.
    """
    fig = _figure(9.0, 0.9 + 0.32 * max(len(features), 3))
    ax = fig.add_subplot()
    names = [str(f["feature"]) for f in features][::-1]
    psis = [float(f["psi"]) for f in features][::-1]
    colours = ["#d62728" if f["drifted"] else "#4c78a8" for f in features][::-1]
    ax.barh(names, psis, color=colours)
    handles: list[Artist] = [
        Patch(color="#4c78a8", label="not drifted"),
        Patch(color="#d62728", label="drifted (PSI and test agree)"),
    ]
    right = max([*psis, 0.0])
    if threshold is not None and math.isfinite(threshold):
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1.3)
        handles.append(
            Line2D([], [], color="black", linestyle="--", label=f"threshold {threshold}")
        )
        right = max(right, threshold)
    ax.set_xlim(0, right * 1.15 if right > 0 else 1.0)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("population stability index (PSI)")
    ax.set_title("Feature drift of live traffic against the training data")
    ax.legend(handles=handles, loc="best")
    return _png(fig)


# ----------------------------------------------------------------------------- monitor
@_with_rc
def live_quality_plot(series: Sequence[Mapping[str, Any]], metric: str, mode: str) -> bytes:
    """A model metric on live labelled traffic over time, one line per served version, each
    with its baseline as a dashed line of the same colour.

    Args:
        series: `{"version", "role", "minutes": [...], "values": [...], "baseline"}` per
            version; `role` is `stable`, `canary` or None; `baseline` may be None.
        metric: The metric's name.
        mode: `min` or `max` (says which way is better).
    """
    fig = _figure()
    ax = fig.add_subplot()
    for i, s in enumerate(series):
        colour = f"C{i % 10}"
        role = f" ({s['role']})" if s.get("role") else ""
        ax.plot(
            s["minutes"],
            s["values"],
            marker="o",
            markersize=6 if len(s["minutes"]) == 1 else 3.5,
            linewidth=1.6,
            color=colour,
            label=f"version {s['version']}{role}, live",
        )
        if s.get("baseline") is not None:
            ax.axhline(
                s["baseline"],
                color=colour,
                linestyle="--",
                linewidth=1.2,
                label=f"version {s['version']} baseline {s['baseline']:.4g}",
            )
    ax.set_xlim(left=0, right=max([1.0, *(m for s in series for m in s["minutes"])]) * 1.04)
    better = "lower" if mode == "min" else "higher"
    ax.set_xlabel("minutes since the monitor's first tick")
    ax.set_ylabel(f"{metric} ({better} is better)")
    ax.set_title(f"Live quality vs baseline: {metric} per model version")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return _png(fig)
