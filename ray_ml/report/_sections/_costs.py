"""The cost-per-trial section: useful against wasted dollars, spot against on-demand."""

from __future__ import annotations

from typing import Any

from ray_ml._json import finite_number
from ray_ml.report import _plots as plots
from ray_ml.report._html import Plot, Section, Table, fmt, pct, usd
from ray_ml.report._inputs import Experiment
from ray_ml.report._sections._common import (
    MAX_TABLE_ROWS,
    not_available,
    trial_statuses,
    why_missing,
)


def build_costs(exp: Experiment) -> Section:
    title = "Cost per trial"
    statuses = trial_statuses(exp)
    rows: list[dict[str, Any]] = []
    if exp.costs:
        source = "cost records (sweep_state.json)"
        for c in exp.costs:
            billed = finite_number(c.get("billed_usd")) or 0.0
            waste = min(finite_number(c.get("waste_usd")) or 0.0, billed)
            rows.append(
                {
                    "trial_id": str(c["trial_id"]),
                    "status": statuses.get(str(c["trial_id"]), "unknown"),
                    "pricing": str(c.get("pricing") or "unknown"),
                    "node_type": c.get("node_type"),
                    "usd_per_hour": finite_number(c.get("usd_per_hour")),
                    "held_s": finite_number(c.get("held_s")),
                    "lost_s": finite_number(c.get("lost_s")),
                    "restarts": c.get("restarts"),
                    "billed_usd": billed,
                    "useful_usd": billed - waste,
                    "waste_usd": waste,
                }
            )
    elif exp.trials:
        source = "leaderboard (no cost records: pricing unknown)"
        for t in exp.trials:
            billed = t.cost_usd or 0.0
            waste = min(t.waste_usd or 0.0, billed)
            rows.append(
                {
                    "trial_id": t.trial_id,
                    "status": t.status,
                    "pricing": "unknown",
                    "node_type": None,
                    "usd_per_hour": None,
                    "held_s": t.wall_s,
                    "lost_s": None,
                    "restarts": None,
                    "billed_usd": billed,
                    "useful_usd": billed - waste,
                    "waste_usd": waste,
                }
            )
    else:
        return not_available("cost_breakdown", title, why_missing(exp, "costs", "leaderboard"))
    total = sum(r["billed_usd"] for r in rows)
    waste = sum(r["waste_usd"] for r in rows)
    data: dict[str, Any] = {
        "source": source,
        "rows": rows,
        "total_billed_usd": total,
        "total_useful_usd": total - waste,
        "total_waste_usd": waste,
        "spot_trials": sum(r["pricing"] == "spot" for r in rows),
        "on_demand_trials": sum(r["pricing"] == "on_demand" for r in rows),
    }
    section = Section(key="cost_breakdown", title=title, data=data)
    section.facts += [
        ("billed", usd(total), f"{len(rows)} trials"),
        ("useful", usd(total - waste), pct((total - waste) / total) if total else ""),
        ("waste", usd(waste), pct(waste / total) if total else ""),
        ("spot / on-demand", f"{data['spot_trials']} / {data['on_demand_trials']}", "trials"),
    ]
    section.plots.append(
        Plot(
            plots.cost_breakdown_plot(rows),
            alt=f"Stacked bars of useful and wasted dollars for {len(rows)} trials",
            caption=(
                "Green is useful billed time; red is waste (work lost to spot preemption and "
                "restarts, idle time). Hatched bars ran on spot nodes. Source: " + source + "."
            ),
        )
    )
    shown = rows[:MAX_TABLE_ROWS]
    section.tables.append(
        Table(
            headers=[
                "trial",
                "status",
                "pricing",
                "node",
                "$/h",
                "held s",
                "lost s",
                "restarts",
                "billed",
                "useful",
                "waste",
            ],
            rows=[
                [
                    r["trial_id"],
                    r["status"],
                    r["pricing"],
                    fmt(r["node_type"]),
                    fmt(r["usd_per_hour"]),
                    fmt(r["held_s"]),
                    fmt(r["lost_s"]),
                    fmt(r["restarts"]),
                    usd(r["billed_usd"]),
                    usd(r["useful_usd"]),
                    usd(r["waste_usd"]),
                ]
                for r in shown
            ],
            numeric=[False, False, False, False, True, True, True, True, True, True, True],
            caption="Per trial, in start order",
            footer=f"{len(rows) - len(shown)} more trials not shown"
            if len(rows) > len(shown)
            else "",
        )
    )
    return section
