"""The spend section: cumulative billed dollars over wall-clock time against the budget."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ray_ml._json import finite_number
from ray_ml.report import _plots as plots
from ray_ml.report._html import Plot, Section, fmt, usd
from ray_ml.report._inputs import Experiment
from ray_ml.report._sections._common import (
    not_available,
    why_missing,
)


def billed_curve(
    costs: Sequence[Mapping[str, Any]], prior_usd: float = 0.0
) -> tuple[float, list[tuple[float, float]]]:
    """Cumulative billed dollars over time from cost records, exact and piecewise linear.

    A trial's bill grows linearly from `started_at` to `ended_at` (`started_at + held_s` while
    it runs) up to its `billed_usd`: the meter bills held time at a constant rate.

    Args:
        costs: Cost records (`sweep_state.json` `costs`).
        prior_usd: Dollars billed before this run (a resumed sweep), the curve's start.

    Returns:
        The start time (unix seconds) and `(seconds since start, dollars)` points.
    """
    spans = []
    for c in costs:
        start = finite_number(c.get("started_at"))
        billed = finite_number(c.get("billed_usd"))
        if start is None or billed is None:
            continue
        end = finite_number(c.get("ended_at"))
        if end is None:
            end = start + (finite_number(c.get("held_s")) or 0.0)
        spans.append((start, max(end, start), billed))
    if not spans:
        return 0.0, []
    t0 = min(s for s, _, _ in spans)
    # Sweep line: +rate at each start, -rate at each end; zero-length spans are jumps.
    changes: dict[float, list[float]] = {}  # time -> [rate change, jump]
    for start, end, billed in spans:
        if end > start:
            rate = billed / (end - start)
            changes.setdefault(start, [0.0, 0.0])[0] += rate
            changes.setdefault(end, [0.0, 0.0])[0] -= rate
        else:
            changes.setdefault(start, [0.0, 0.0])[1] += billed
    points = [(0.0, prior_usd)]
    total, rate, last = prior_usd, 0.0, t0
    for t in sorted(changes):
        total += rate * (t - last)
        d_rate, jump = changes[t]
        if jump:
            points.append((t - t0, total))
            total += jump
        points.append((t - t0, total))
        rate += d_rate
        last = t
    return t0, points


def _reported_curve(exp: Experiment) -> list[tuple[float, float]]:
    """(unix time, dollars) as the trials reported them: the sum of each one's latest cost."""
    stamped = [
        (r["timestamp"], trial_id, r["cost_usd"])
        for trial_id, reports in exp.events.items()
        for r in reports
        if r["timestamp"] is not None and r["cost_usd"] is not None
    ]
    latest: dict[str, float] = {}
    out = []
    for stamp, trial_id, cost in sorted(stamped):
        latest[trial_id] = cost
        out.append((stamp, exp.prior_usd + sum(latest.values())))
    return out


def build_spend(exp: Experiment) -> Section:
    title = "Spend over time"
    t0, points = billed_curve(exp.costs or [], exp.prior_usd)
    reported = _reported_curve(exp)
    if points:
        source = "billed (cost records, sweep_state.json)"
        start = min([t0, *(s for s, _ in reported)])
        shift = t0 - start
        points = [(s + shift, d) for s, d in points]
        dots = [(s - start, d) for s, d in reported]
    elif reported:
        source = "reported by trials (result.json)"
        start = reported[0][0]
        points = [(0.0, exp.prior_usd)] + [(s - start, d) for s, d in reported]
        dots = []
    else:
        return not_available(
            "spend",
            title,
            "no cost records with start times and no cost_usd in Tune's reports ("
            + why_missing(exp, "costs", "events")
            + ")",
        )
    budget = finite_number((exp.sweep_summary or {}).get("budget_usd"))
    crossed = next((s for s, d in points if budget is not None and d >= budget), None)
    data: dict[str, Any] = {
        "source": source,
        "start_unix": start,
        "start_utc": datetime.fromtimestamp(start, UTC).isoformat(timespec="seconds"),
        "duration_s": points[-1][0],
        "prior_usd": exp.prior_usd,
        "total_usd": points[-1][1],
        "budget_usd": budget,
        "budget_reached_at_s": crossed,
        "curve": [[s, d] for s, d in points],
        "reported": [[s, d] for s, d in dots],
    }
    section = Section(key="spend", title=title, data=data)
    section.plots.append(
        Plot(
            plots.spend_plot([s for s, _ in points], [d for _, d in points], budget, source, dots),
            alt="Cumulative billed dollars over wall-clock time with the budget line",
            caption=(
                "The line is what the cost meter billed, each trial's bill growing evenly over "
                "the time it held its node"
                + (
                    "; dots are the cost each trial reported with its results (they lag the "
                    "bill, which also counts time after a trial's last report)"
                    if dots
                    else ""
                )
                + ("." if budget is not None else ". No budget was set for this sweep.")
            ),
        )
    )
    section.facts += [
        ("started", datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), ""),
        ("duration", f"{fmt(round(data['duration_s'], 1))} s", ""),
        ("billed in total", usd(data["total_usd"]), f"prior runs {usd(exp.prior_usd)}"),
        (
            "budget",
            usd(budget) if budget is not None else "none",
            f"reached after {fmt(round(crossed, 1))} s" if crossed is not None else "not reached",
        ),
    ]
    return section
