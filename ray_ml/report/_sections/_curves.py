"""The learning-curves section: each trial's metric over its training iterations."""

from __future__ import annotations

from typing import Any

from ray_ml.report import _plots as plots
from ray_ml.report._html import Plot, Section, Table, fmt
from ray_ml.report._inputs import Experiment
from ray_ml.report._sections._common import (
    MAX_TABLE_ROWS,
    better_sign,
    by_metric,
    not_available,
    trial_statuses,
    why_missing,
    winner_id,
)


def build_curves(exp: Experiment) -> Section:
    title = "Learning curves"
    if not exp.events:
        return not_available("learning_curves", title, why_missing(exp, "events"))
    statuses = trial_statuses(exp)
    curves: list[dict[str, Any]] = []
    for trial_id, reports in exp.events.items():
        pts = [
            (r["training_iteration"], r["value"])
            for r in reports
            if r["training_iteration"] is not None and r["value"] is not None
        ]
        if pts:
            curves.append(
                {
                    "trial_id": trial_id,
                    "status": statuses.get(trial_id, "unknown"),
                    "iterations": [i for i, _ in pts],
                    "values": [v for _, v in pts],
                }
            )
    if not curves:
        return not_available(
            "learning_curves",
            title,
            f"no report in {exp.tune_dir}/*/result.json carries {exp.metric} and "
            "training_iteration",
        )
    order = {t.trial_id: i for i, t in enumerate(by_metric(exp.trials or [], exp.mode))}
    curves.sort(key=lambda c: (order.get(c["trial_id"], len(order)), c["trial_id"]))
    log_y = all(v > 0 for c in curves for v in c["values"])
    winner = winner_id(exp)
    sign = better_sign(exp.mode)
    rows: list[dict[str, Any]] = [
        {
            "trial_id": c["trial_id"],
            "status": c["status"],
            "reports": len(c["values"]),
            "first": c["values"][0],
            "last": c["values"][-1],
            "best": min(c["values"], key=lambda v: sign * v),
        }
        for c in curves
    ]
    data: dict[str, Any] = {"metric": exp.metric, "log_y": log_y, "curves": curves, "summary": rows}
    section = Section(key="learning_curves", title=title, data=data)
    pruned = sum(c["status"] == "pruned" for c in curves)
    section.plots.append(
        Plot(
            plots.learning_curves_plot(curves, exp.metric, log_y, winner),
            alt=f"{exp.metric} against training iteration for {len(curves)} trials",
            caption=(
                f"One line per trial ({len(curves)}), from Tune's result.json reports"
                + (f"; the winner {winner} is drawn thicker" if winner else "")
                + (
                    f"; an x marks where each of the {pruned} pruned trials stopped"
                    if pruned
                    else ""
                )
                + (". Log y axis." if log_y else ". Linear y axis (some values are not positive).")
                + (
                    " Every trial reported once, so each curve is a single point."
                    if all(len(c["values"]) == 1 for c in curves)
                    else ""
                )
            ),
        )
    )
    shown = rows[:MAX_TABLE_ROWS]
    section.tables.append(
        Table(
            headers=["trial", "status", "reports", "first", "last", "best"],
            rows=[
                [
                    r["trial_id"],
                    r["status"],
                    fmt(r["reports"]),
                    fmt(r["first"]),
                    fmt(r["last"]),
                    fmt(r["best"]),
                ]
                for r in shown
            ],
            numeric=[False, False, True, True, True, True],
            caption=f"{exp.metric} per trial",
            footer=f"{len(rows) - len(shown)} more trials not shown"
            if len(rows) > len(shown)
            else "",
        )
    )
    return section
