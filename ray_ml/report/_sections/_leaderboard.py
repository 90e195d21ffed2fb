"""The leaderboard section: the best trials by the sweep's metric, with cost and config."""

from __future__ import annotations

from typing import Any

from ray_ml.report._html import Section, Table, fmt, usd
from ray_ml.report._inputs import Experiment
from ray_ml.report._sections._common import (
    LEADERBOARD_ROWS,
    by_metric,
    not_available,
    why_missing,
)


def build_leaderboard(exp: Experiment) -> Section:
    title = "Leaderboard"
    if not exp.trials:
        return not_available("leaderboard", title, why_missing(exp, "leaderboard"))
    pricing = {str(c["trial_id"]): c.get("pricing") for c in exp.costs or []}
    ordered = by_metric(exp.trials, exp.mode)
    shown = ordered[:LEADERBOARD_ROWS]
    keys: list[str] = []
    for t in shown:
        keys += [k for k in t.config if k not in keys]
    rows: list[dict[str, Any]] = [
        {
            "trial_id": t.trial_id,
            "status": t.status,
            "value": t.value,
            "rank": t.rank,
            "cost_usd": t.cost_usd,
            "waste_usd": t.waste_usd,
            "iterations": t.iterations,
            "pruned_at_rung": t.pruned_at_rung,
            "wall_s": t.wall_s,
            "pricing": pricing.get(t.trial_id),
            "config": t.config,
        }
        for t in shown
    ]
    better = "lowest" if exp.mode == "min" else "highest"
    table = Table(
        headers=[
            "#",
            "trial",
            "status",
            exp.metric,
            "cost",
            "waste",
            "iters",
            "pruned at",
            "wall s",
            "pricing",
            *keys,
        ],
        rows=[
            [
                str(i + 1),
                r["trial_id"],
                r["status"],
                fmt(r["value"]),
                usd(r["cost_usd"]),
                usd(r["waste_usd"]),
                fmt(r["iterations"]),
                fmt(r["pruned_at_rung"]),
                fmt(r["wall_s"]),
                fmt(r["pricing"]),
                *(fmt(r["config"].get(k)) if k in r["config"] else "—" for k in keys),
            ]
            for i, r in enumerate(rows)
        ],
        numeric=[True, False, False, True, True, True, True, True, True, False]
        + [False] * len(keys),
        caption=f"Top {len(rows)} of {len(ordered)} trials by {exp.metric}, {better} first",
        footer=(
            f"{len(ordered) - len(rows)} more trials not shown; all are in "
            f"{exp.sources.get('leaderboard')}."
            if len(ordered) > len(rows)
            else ""
        ),
    )
    data: dict[str, Any] = {
        "metric": exp.metric,
        "mode": exp.mode,
        "total": len(ordered),
        "rows": rows,
    }
    return Section(key="leaderboard", title=title, data=data, tables=[table])
