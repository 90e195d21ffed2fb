"""The Pareto-front section: quality against billed cost, and the two-objective front."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ray_ml.report import _plots as plots
from ray_ml.report._html import Plot, Section, Table, fmt, usd
from ray_ml.report._inputs import Experiment
from ray_ml.report._sections._common import (
    better_sign,
    not_available,
    why_missing,
    winner_id,
)


def pareto_front_2d(points: Sequence[Mapping[str, Any]], mode: str) -> list[dict[str, Any]]:
    """The trials no other trial beats on both cost and metric, cheapest first.

    Args:
        points: `{"trial_id", "cost_usd", "value", ...}` with both numbers set.
        mode: `min` or `max` for the metric.
    """
    sign = better_sign(mode)
    front: list[dict[str, Any]] = []
    best = math.inf
    for p in sorted(points, key=lambda p: (p["cost_usd"], sign * p["value"], p["trial_id"])):
        if sign * p["value"] < best:
            front.append(dict(p))
            best = sign * p["value"]
    return front


def build_pareto(exp: Experiment) -> Section:
    title = "Pareto front: quality vs cost"
    if not exp.trials:
        return not_available("pareto", title, why_missing(exp, "leaderboard"))
    points: list[dict[str, Any]] = [
        {
            "trial_id": t.trial_id,
            "status": t.status,
            "cost_usd": t.cost_usd,
            "value": t.value,
            "eligible": t.eligible,
        }
        for t in exp.trials
        if t.cost_usd is not None and t.value is not None
    ]
    if not points:
        return not_available(
            "pareto", title, f"no trial in the leaderboard has both a cost and {exp.metric}"
        )
    front = pareto_front_2d([p for p in points if p["eligible"]], exp.mode)
    winner = winner_id(exp)
    data: dict[str, Any] = {
        "metric": exp.metric,
        "mode": exp.mode,
        "points": points,
        "front": front,
        "winner": winner,
        "left_out": len(exp.trials) - len(points),
    }
    section = Section(key="pareto", title=title, data=data)
    section.plots.append(
        Plot(
            plots.pareto_plot(points, front, exp.metric, exp.mode, winner),
            alt=f"Scatter of {exp.metric} against billed cost for {len(points)} trials",
            caption=(
                "Each dot is a trial. The black step line is the Pareto front over the trials "
                "that can win (completed, or budget-stopped with a checkpoint): moving right "
                "along it buys a better metric for more dollars. Pruned trials are shown but "
                "were judged under-trained on purpose."
            ),
        )
    )
    section.tables.append(
        Table(
            headers=["trial", "status", exp.metric, "cost"],
            rows=[[p["trial_id"], p["status"], fmt(p["value"]), usd(p["cost_usd"])] for p in front],
            numeric=[False, False, True, True],
            caption="Trials on the front, cheapest first",
        )
    )
    if data["left_out"]:
        section.notes.append(
            f"{data['left_out']} trial(s) without a cost or a {exp.metric} are not plotted."
        )
    return section
