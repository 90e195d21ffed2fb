"""`build_report`: one experiment's artefacts -> `index.html` (plots inline) + `report.json`.

Each section is computed once as plain numbers (`Section.data`, written to report.json) and the
page's cards, tables and plots are drawn from those same numbers, so the two files cannot
disagree. A section whose inputs are missing says "not available" and why; it never fails the
report.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ray_ml.report import _plots
from ray_ml.report._html import Plot, Section, Table, fmt, pct, render_page, usd
from ray_ml.report._inputs import Experiment, Trial, load_experiment, number

__all__ = ["build_report", "build_sections"]

LEADERBOARD_ROWS = 20
_MAX_TABLE_ROWS = 50
_MAX_BARS = 30


# ------------------------------------------------------------------------------ helpers
def _better(mode: str) -> float:
    """Sort sign: ascending sort of sign * value puts the best first."""
    return 1.0 if mode == "min" else -1.0


def _by_metric(trials: Sequence[Trial], mode: str) -> list[Trial]:
    sign = _better(mode)
    return sorted(
        trials,
        key=lambda t: (
            t.value is None,
            sign * t.value if t.value is not None else 0.0,
            t.cost_usd if t.cost_usd is not None else math.inf,
            t.trial_id,
        ),
    )


def _statuses(exp: Experiment) -> dict[str, str]:
    """Trial id -> status: the leaderboard's, else the cost record's."""
    out = {str(c["trial_id"]): str(c.get("status") or "unknown") for c in exp.costs or []}
    out.update({t.trial_id: t.status for t in exp.trials or []})
    return out


def _not_available(key: str, title: str, why: str) -> Section:
    return Section(key=key, title=title, available=False, why=why)


def _tune_hint(exp: Experiment) -> str:
    return f"run the sweep first: `python -m jobs.tune name={exp.name} storage_path={exp.storage}`"


def _problem(exp: Experiment, *keys: str) -> str:
    found = [exp.problems[k] for k in keys if k in exp.problems]
    return "; ".join(found) if found else "no usable rows"


def _winner_id(exp: Experiment) -> str | None:
    best = (exp.sweep_summary or {}).get("best")
    if isinstance(best, Mapping) and best.get("trial_id") is not None:
        return str(best["trial_id"])
    eligible = [t for t in exp.trials or [] if t.eligible and t.value is not None]
    return _by_metric(eligible, exp.mode)[0].trial_id if eligible else None


def _total_usd(exp: Experiment) -> tuple[float | None, str]:
    summary = exp.sweep_summary or {}
    if number(summary.get("cost_usd")) is not None:
        return number(summary.get("cost_usd")), "sweep summary"
    if exp.costs:
        billed = sum(number(c.get("billed_usd")) or 0.0 for c in exp.costs)
        return exp.prior_usd + billed, "cost records"
    if exp.trials:
        return sum(t.cost_usd or 0.0 for t in exp.trials), "leaderboard"
    return None, "nothing"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _config_rows(config: Mapping[str, Any]) -> list[list[str]]:
    return [[str(k), fmt(v)] for k, v in config.items()]


# ----------------------------------------------------------------------------- headline
def _headline(exp: Experiment) -> Section:
    title = "Headline"
    if not exp.has_sweep:
        return _not_available("headline", title, f"no sweep found; {_tune_hint(exp)}")
    summary = exp.sweep_summary or {}
    metric = exp.metric
    best_raw = summary.get("best")
    best: dict[str, Any] | None = None
    if isinstance(best_raw, Mapping):
        best = {
            "trial_id": best_raw.get("trial_id"),
            "value": number(best_raw.get(metric)),
            "config": dict(best_raw.get("config") or {}),
            "rule": best_raw.get("rule"),
        }
    elif exp.trials:
        eligible = _by_metric(
            [t for t in exp.trials if t.eligible and t.value is not None], exp.mode
        )
        if eligible:
            top = eligible[0]
            best = {"trial_id": top.trial_id, "value": top.value, "config": top.config}
            best["rule"] = f"best {metric} ({exp.mode}) in the leaderboard"
    trials = exp.trials or []
    spent, spent_from = _total_usd(exp)
    budget = number(summary.get("budget_usd"))
    waste = number(summary.get("waste_usd"))
    if waste is None and exp.costs:
        waste = sum(number(c.get("waste_usd")) or 0.0 for c in exp.costs)
    status_counts = summary.get("status_counts")
    if not isinstance(status_counts, Mapping):
        status_counts = {}
        for t in trials:
            status_counts[t.status] = status_counts.get(t.status, 0) + 1
    n_trials = summary.get("trials", len(trials) if exp.trials is not None else None)
    pruned = summary.get("pruned", status_counts.get("pruned", 0))
    prices = _mapping(summary.get("prices"))
    read_on = prices.get("read_on")
    read_on_list = (
        [str(d) for d in read_on]
        if isinstance(read_on, list)
        else ([str(read_on)] if read_on else [])
    )
    winner_metrics: dict[str, dict[str, float | None]] = {}
    for split, values in (summary.get("winner_metrics") or {}).items():
        if isinstance(values, Mapping):
            winner_metrics[str(split)] = {
                str(k): number(v)
                for k, v in values.items()
                if number(v) is not None and not isinstance(v, bool)
            }
    data: dict[str, Any] = {
        "metric": metric,
        "mode": exp.mode,
        "best": best,
        "cost_usd": spent,
        "cost_from": spent_from,
        "budget_usd": budget,
        "budget_used": spent / budget if spent is not None and budget else None,
        "waste_usd": waste,
        "waste_share": waste / spent if waste is not None and spent else None,
        "trials": n_trials,
        "pruned": pruned,
        "status_counts": dict(status_counts),
        "stop_reason": summary.get("stop_reason"),
        "prices": {
            "illustrative": prices.get("illustrative"),
            "read_on": read_on_list,
            "pricing": prices.get("pricing"),
        },
        "winner_metrics": winner_metrics,
        "registered": summary.get("registered"),
        "bundle": summary.get("bundle"),
        "wall_s": number(summary.get("wall_s")),
    }
    section = Section(key="headline", title=title, data=data)
    if exp.sweep_summary is None:
        section.notes.append(
            f"No sweep summary ({_problem(exp, 'sweep_summary')}); figures below come from "
            f"the {spent_from}."
        )
    better = "lower" if exp.mode == "min" else "higher"
    if best is not None:
        section.facts.append(
            (f"best {metric}", fmt(best["value"]), f"trial {best['trial_id']} ({better} is better)")
        )
    else:
        why = summary.get("why") or "no trial finished"
        section.facts.append((f"best {metric}", "none", str(why)))
    if budget is not None:
        detail = f"of {usd(budget)} budget ({pct(data['budget_used'])} used)"
    else:
        detail = "no budget set"
    section.facts.append(("spent", usd(spent), detail))
    counts = ", ".join(
        f"{v} {k}" for k, v in sorted(status_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    section.facts.append(("trials", fmt(n_trials), counts or f"{fmt(pruned)} pruned"))
    section.facts.append(("waste", usd(waste), f"{pct(data['waste_share'])} of spend"))
    stop = summary.get("stop_reason")
    section.facts.append(
        ("stop reason", str(stop) if stop else "none", "" if stop else "the search ran to its end")
    )
    if prices:
        kind = "illustrative" if prices.get("illustrative") else "list prices"
        dates = ", ".join(read_on_list) or "date unknown"
        section.facts.append(
            ("prices", kind, f"read on {dates}; {prices.get('pricing') or 'pricing unknown'}")
        )
    registered = summary.get("registered")
    if isinstance(registered, Mapping):
        section.facts.append(
            (
                "registered",
                f"{registered.get('model')} v{registered.get('version')}",
                f"alias {registered.get('alias')}; bundle {summary.get('bundle')}",
            )
        )
    if data["wall_s"] is not None:
        section.facts.append(("sweep wall time", f"{fmt(data['wall_s'])} s", ""))
    if best is not None and best["config"]:
        section.tables.append(
            Table(
                headers=["key", "value"],
                rows=_config_rows(best["config"]),
                caption=f"Best config (trial {best['trial_id']})",
                footer=str(best.get("rule") or ""),
            )
        )
    if winner_metrics:
        splits = list(winner_metrics)
        names: list[str] = []
        for values in winner_metrics.values():
            names += [n for n in values if n not in names]
        section.tables.append(
            Table(
                headers=["metric", *splits],
                rows=[[n, *(fmt(winner_metrics[s].get(n)) for s in splits)] for n in names],
                numeric=[False, *([True] * len(splits))],
                caption="Winner retrained: metrics per split",
            )
        )
    return section


# --------------------------------------------------------------------------- leaderboard
def _leaderboard(exp: Experiment) -> Section:
    title = "Leaderboard"
    if not exp.trials:
        return _not_available("leaderboard", title, _problem(exp, "leaderboard"))
    pricing = {str(c["trial_id"]): c.get("pricing") for c in exp.costs or []}
    ordered = _by_metric(exp.trials, exp.mode)
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


# -------------------------------------------------------------------------------- pareto
def pareto_front_2d(points: Sequence[Mapping[str, Any]], mode: str) -> list[dict[str, Any]]:
    """The trials no other trial beats on both cost and metric, cheapest first.

    Args:
        points: `{"trial_id", "cost_usd", "value", ...}` with both numbers set.
        mode: `min` or `max` for the metric.
    """
    sign = _better(mode)
    front: list[dict[str, Any]] = []
    best = math.inf
    for p in sorted(points, key=lambda p: (p["cost_usd"], sign * p["value"], p["trial_id"])):
        if sign * p["value"] < best:
            front.append(dict(p))
            best = sign * p["value"]
    return front


def _pareto(exp: Experiment) -> Section:
    title = "Pareto front: quality vs cost"
    if not exp.trials:
        return _not_available("pareto", title, _problem(exp, "leaderboard"))
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
        return _not_available(
            "pareto", title, f"no trial in the leaderboard has both a cost and {exp.metric}"
        )
    front = pareto_front_2d([p for p in points if p["eligible"]], exp.mode)
    winner = _winner_id(exp)
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
            _plots.pareto_plot(points, front, exp.metric, exp.mode, winner),
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


# ----------------------------------------------------------------------- learning curves
def _curves(exp: Experiment) -> Section:
    title = "Learning curves"
    if not exp.events:
        return _not_available("learning_curves", title, _problem(exp, "events"))
    statuses = _statuses(exp)
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
        return _not_available(
            "learning_curves",
            title,
            f"no report in {exp.tune_dir}/*/result.json carries {exp.metric} and "
            "training_iteration",
        )
    order = {t.trial_id: i for i, t in enumerate(_by_metric(exp.trials or [], exp.mode))}
    curves.sort(key=lambda c: (order.get(c["trial_id"], len(order)), c["trial_id"]))
    log_y = all(v > 0 for c in curves for v in c["values"])
    winner = _winner_id(exp)
    sign = _better(exp.mode)
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
            _plots.learning_curves_plot(curves, exp.metric, log_y, winner),
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
    shown = rows[:_MAX_TABLE_ROWS]
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


# --------------------------------------------------------------------------------- spend
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
        start = number(c.get("started_at"))
        billed = number(c.get("billed_usd"))
        if start is None or billed is None:
            continue
        end = number(c.get("ended_at"))
        if end is None:
            end = start + (number(c.get("held_s")) or 0.0)
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


def _spend(exp: Experiment) -> Section:
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
        return _not_available(
            "spend",
            title,
            "no cost records with start times and no cost_usd in Tune's reports ("
            + _problem(exp, "costs", "events")
            + ")",
        )
    budget = number((exp.sweep_summary or {}).get("budget_usd"))
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
            _plots.spend_plot([s for s, _ in points], [d for _, d in points], budget, source, dots),
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


# ------------------------------------------------------------------------ cost breakdown
def _breakdown(exp: Experiment) -> Section:
    title = "Cost per trial"
    statuses = _statuses(exp)
    rows: list[dict[str, Any]] = []
    if exp.costs:
        source = "cost records (sweep_state.json)"
        for c in exp.costs:
            billed = number(c.get("billed_usd")) or 0.0
            waste = min(number(c.get("waste_usd")) or 0.0, billed)
            rows.append(
                {
                    "trial_id": str(c["trial_id"]),
                    "status": statuses.get(str(c["trial_id"]), "unknown"),
                    "pricing": str(c.get("pricing") or "unknown"),
                    "node_type": c.get("node_type"),
                    "usd_per_hour": number(c.get("usd_per_hour")),
                    "held_s": number(c.get("held_s")),
                    "lost_s": number(c.get("lost_s")),
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
        return _not_available("cost_breakdown", title, _problem(exp, "costs", "leaderboard"))
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
            _plots.cost_breakdown_plot(rows),
            alt=f"Stacked bars of useful and wasted dollars for {len(rows)} trials",
            caption=(
                "Green is useful billed time; red is waste (work lost to spot preemption and "
                "restarts, idle time). Hatched bars ran on spot nodes. Source: " + source + "."
            ),
        )
    )
    shown = rows[:_MAX_TABLE_ROWS]
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


# ---------------------------------------------------------------------------------- data
def _data_quality(exp: Experiment) -> Section:
    title = "Data quality"
    summary = exp.data_summary
    if summary is None:
        return _not_available(
            "data",
            title,
            f"{_problem(exp, 'data')}; run the data stage: "
            f"`python -m jobs.data name={exp.name} storage_path={exp.storage}`",
        )
    rows_in = number(summary.get("rows_in"))
    reasons_raw = _mapping(summary.get("reasons"))
    reasons = sorted(
        ((str(k), int(number(v) or 0)) for k, v in reasons_raw.items()),
        key=lambda kv: (-kv[1], kv[0]),
    )
    splits: list[dict[str, Any]] = []
    for name, split in (summary.get("splits") or {}).items():
        if isinstance(split, Mapping):
            fractions = split.get("class_fraction")
            splits.append(
                {
                    "split": str(name),
                    "rows": number(split.get("rows")),
                    "fraction": number(split.get("fraction")),
                    "class_fraction": {str(k): number(v) for k, v in fractions.items()}
                    if isinstance(fractions, Mapping)
                    else {},
                }
            )
    data: dict[str, Any] = {
        "rows_in": summary.get("rows_in"),
        "rows_ok": summary.get("rows_ok"),
        "rows_rejected": summary.get("rows_rejected"),
        "reject_rate": number(summary.get("reject_rate")),
        "max_reject_rate": number(summary.get("max_reject_rate")),
        "passed": summary.get("passed"),
        "fingerprint": summary.get("fingerprint"),
        "quarantine": summary.get("quarantine"),
        "features": summary.get("features"),
        "sources": summary.get("sources"),
        "reasons": [{"reason": k, "rows": v} for k, v in reasons],
        "splits": splits,
    }
    section = Section(key="data", title=title, data=data)
    passed = data["passed"]
    section.facts += [
        ("rows in", fmt(data["rows_in"]), ", ".join(map(str, data["sources"] or [])) or ""),
        ("rows ok", fmt(data["rows_ok"]), f"{fmt(data['features'])} features"),
        (
            "rows rejected",
            fmt(data["rows_rejected"]),
            f"{pct(data['reject_rate'])} (limit {pct(data['max_reject_rate'])})"
            + ("" if passed is None else "; passed" if passed else "; FAILED"),
        ),
        ("fingerprint", fmt(data["fingerprint"]), f"quarantine: {fmt(data['quarantine'])}"),
    ]
    if reasons:
        top = reasons[:_MAX_BARS]
        section.plots.append(
            Plot(
                _plots.reject_reasons_plot(top, int(rows_in) if rows_in else None),
                alt=f"Bar chart of the top {len(top)} reject reasons",
                caption="Rows rejected per column:rule; a row can break several rules.",
            )
        )
    else:
        section.notes.append("No rows were rejected.")
    with_classes = [s for s in splits if s["class_fraction"]]
    if with_classes:
        section.plots.append(
            Plot(
                _plots.class_balance_plot(with_classes),
                alt="Stacked bars of the class shares in each split",
                caption="Share of each class in each split; stratified splits look alike.",
            )
        )
    if reasons:
        shown = reasons[:LEADERBOARD_ROWS]
        section.tables.append(
            Table(
                headers=["column:rule", "rows", "share of rows in"],
                rows=[[k, fmt(v), pct(v / rows_in) if rows_in else "—"] for k, v in shown],
                numeric=[False, True, True],
                caption="Reject reasons",
                footer=f"{len(reasons) - len(shown)} more reasons not shown"
                if len(reasons) > len(shown)
                else "",
            )
        )
    if splits:
        classes: list[str] = []
        for s in splits:
            classes += [c for c in s["class_fraction"] if c not in classes]
        section.tables.append(
            Table(
                headers=["split", "rows", "fraction", *(f"class {c}" for c in classes)],
                rows=[
                    [s["split"], fmt(s["rows"]), pct(s["fraction"])]
                    + [pct(s["class_fraction"].get(c)) for c in classes]
                    for s in splits
                ],
                numeric=[False, True, True, *([True] * len(classes))],
                caption="Splits and class balance",
            )
        )
    return section


# --------------------------------------------------------------------------------- drift
def _drift(exp: Experiment) -> Section:
    title = "Drift"
    drift = exp.drift
    if drift is None:
        return _not_available(
            "drift", title, f"{_problem(exp, 'drift')} (the model was not served yet)"
        )
    raw = _mapping(drift.get("features"))
    features: list[dict[str, Any]] = [
        {
            "feature": str(name),
            "psi": number(f.get("psi")),
            "p_value": number(f.get("p_value")),
            "drifted": bool(f.get("drifted")),
            "rows": f.get("rows"),
        }
        for name, f in raw.items()
        if isinstance(f, Mapping)
    ]
    features.sort(key=lambda f: (f["psi"] is None, -(f["psi"] or 0.0), f["feature"]))
    threshold = number(drift.get("threshold"))
    drifted = drift.get("drifted")
    if not isinstance(drifted, list):
        drifted = [f["feature"] for f in features if f["drifted"]]
    alerts = drift.get("alerts")
    alerts = alerts if isinstance(alerts, list) else []
    judged = [f for f in features if f["psi"] is not None]
    data: dict[str, Any] = {
        "window_rows": drift.get("window_rows"),
        "threshold": threshold,
        "p_threshold": number(drift.get("p_threshold")),
        "max_psi": number(drift.get("max_psi")),
        "drifted": [str(d) for d in drifted],
        "features": features,
        "alerts": alerts,
    }
    section = Section(key="drift", title=title, data=data)
    section.facts += [
        ("live rows in window", fmt(data["window_rows"]), ""),
        (
            "PSI threshold",
            fmt(threshold),
            f"and p-value under {fmt(data['p_threshold'])}" if data["p_threshold"] else "",
        ),
        ("max PSI", fmt(data["max_psi"]), ""),
        (
            "drifted features",
            f"{len(data['drifted'])} of {len(features)}",
            ", ".join(data["drifted"][:8]) + (" ..." if len(data["drifted"]) > 8 else ""),
        ),
    ]
    if judged:
        top = judged[:_MAX_BARS]
        section.plots.append(
            Plot(
                _plots.drift_plot(top, threshold),
                alt=f"Bar chart of PSI for {len(top)} features with the threshold line",
                caption=(
                    "Population stability index of the live window against the training data, "
                    "highest first. A feature counts as drifted only when its PSI is over the "
                    "threshold and the chi-square test agrees."
                    + (
                        f" {len(judged) - len(top)} more features not shown."
                        if len(judged) > len(top)
                        else ""
                    )
                ),
            )
        )
    else:
        section.notes.append("No feature has enough live rows to be judged yet.")
    shown = features[:_MAX_TABLE_ROWS]
    section.tables.append(
        Table(
            headers=["feature", "PSI", "p-value", "drifted", "rows"],
            rows=[
                [f["feature"], fmt(f["psi"]), fmt(f["p_value"]), fmt(f["drifted"]), fmt(f["rows"])]
                for f in shown
            ],
            numeric=[False, True, True, False, True],
            caption="Per feature (not judged: too few live rows)",
            footer=f"{len(features) - len(shown)} more features not shown"
            if len(features) > len(shown)
            else "",
        )
    )
    for alert in alerts:
        text = alert if isinstance(alert, str) else json.dumps(alert, default=str)
        section.notes.append(f"Alert: {text}")
    return section


# --------------------------------------------------------------------------------- build
def build_sections(exp: Experiment) -> list[Section]:
    """Every section of the report, in page order.

    Args:
        exp: What `load_experiment` found.
    """
    return [
        _headline(exp),
        _leaderboard(exp),
        _pareto(exp),
        _curves(exp),
        _spend(exp),
        _breakdown(exp),
        _data_quality(exp),
        _drift(exp),
    ]


def _jsonable(value: Any) -> Any:
    """Plain JSON types; NaN and infinities become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return _jsonable(value.item())
    if isinstance(value, (datetime,)):
        return value.isoformat()
    return str(value)


def build_report(storage_path: str | Path, name: str, out_dir: str | Path | None = None) -> Path:
    """Write one experiment's report: `index.html` (plots inline) and `report.json`.

    Sections: headline figures, leaderboard, Pareto front of quality vs cost, learning curves,
    spend over time against the budget, cost per trial (useful vs waste, spot vs on-demand),
    data quality and, when the model was served, drift. A section whose inputs are missing says
    "not available" and why. The page needs no network: CSS is inline and plots are `data:`
    PNGs. report.json holds every number the page shows (NaN as null).

    Args:
        storage_path: The jobs' `storage_path` (e.g. `runs`).
        name: The experiment name (the jobs' `name`).
        out_dir: Where to write; default `<storage_path>/<name>/report`.

    Returns:
        The path of `index.html`.

    Raises:
        RayMLError: Neither a sweep nor a data summary exists for `name` under
            `storage_path`; the message names the folders looked in and the job to run.

    Example:
        >>> build_report("runs", "demo")  # doctest: +SKIP
        PosixPath('/.../runs/demo/report/index.html')
    """
    t0 = time.perf_counter()
    exp = load_experiment(storage_path, name)
    sections = build_sections(exp)
    out = Path(out_dir) if out_dir is not None else exp.storage / exp.name / "report"
    out.mkdir(parents=True, exist_ok=True)
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    build_s = round(time.perf_counter() - t0, 2)  # reading and plotting; writing is quick
    report = {
        "name": exp.name,
        "storage_path": str(exp.storage),
        "generated_at": generated,
        "build_s": build_s,
        "metric": exp.metric,
        "mode": exp.mode,
        "inputs": {"read": exp.sources, "not_available": exp.problems},
        "notes": exp.notes,
        "sections": {
            s.key: {
                "title": s.title,
                "available": s.available,
                "why": s.why or None,
                "plots": [p.alt for p in s.plots],
                **s.data,
            }
            for s in sections
        },
    }
    (out / "report.json").write_text(
        json.dumps(_jsonable(report), indent=2, allow_nan=False) + "\n"
    )
    meta = [
        f"storage {exp.storage} · metric {exp.metric} ({exp.mode}) · generated {generated} "
        f"in {build_s} s"
    ]
    page = render_page(
        f"Experiment report: {exp.name}", meta, sections, exp.sources, exp.problems, exp.notes
    )
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
