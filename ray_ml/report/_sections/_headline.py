"""The headline section: best trial, spend against the budget, trials, waste, prices."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray_ml._json import finite_number
from ray_ml.report._html import Section, Table, fmt, pct, usd
from ray_ml.report._inputs import Experiment
from ray_ml.report._sections._common import (
    as_mapping,
    by_metric,
    not_available,
    tune_hint,
    why_missing,
)


def _total_usd(exp: Experiment) -> tuple[float | None, str]:
    summary = exp.sweep_summary or {}
    if finite_number(summary.get("cost_usd")) is not None:
        return finite_number(summary.get("cost_usd")), "sweep summary"
    if exp.costs:
        billed = sum(finite_number(c.get("billed_usd")) or 0.0 for c in exp.costs)
        return exp.prior_usd + billed, "cost records"
    if exp.trials:
        return sum(t.cost_usd or 0.0 for t in exp.trials), "leaderboard"
    return None, "nothing"


def _config_rows(config: Mapping[str, Any]) -> list[list[str]]:
    return [[str(k), fmt(v)] for k, v in config.items()]


def build_headline(exp: Experiment) -> Section:
    title = "Headline"
    if not exp.has_sweep:
        return not_available("headline", title, f"no sweep found; {tune_hint(exp)}")
    summary = exp.sweep_summary or {}
    metric = exp.metric
    best_raw = summary.get("best")
    best: dict[str, Any] | None = None
    if isinstance(best_raw, Mapping):
        best = {
            "trial_id": best_raw.get("trial_id"),
            "value": finite_number(best_raw.get(metric)),
            "config": dict(best_raw.get("config") or {}),
            "rule": best_raw.get("rule"),
        }
    elif exp.trials:
        eligible = by_metric(
            [t for t in exp.trials if t.eligible and t.value is not None], exp.mode
        )
        if eligible:
            top = eligible[0]
            best = {"trial_id": top.trial_id, "value": top.value, "config": top.config}
            best["rule"] = f"best {metric} ({exp.mode}) in the leaderboard"
    trials = exp.trials or []
    spent, spent_from = _total_usd(exp)
    budget = finite_number(summary.get("budget_usd"))
    waste = finite_number(summary.get("waste_usd"))
    if waste is None and exp.costs:
        waste = sum(finite_number(c.get("waste_usd")) or 0.0 for c in exp.costs)
    status_counts = summary.get("status_counts")
    if not isinstance(status_counts, Mapping):
        status_counts = {}
        for t in trials:
            status_counts[t.status] = status_counts.get(t.status, 0) + 1
    n_trials = summary.get("trials", len(trials) if exp.trials is not None else None)
    pruned = summary.get("pruned", status_counts.get("pruned", 0))
    prices = as_mapping(summary.get("prices"))
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
                str(k): finite_number(v)
                for k, v in values.items()
                if finite_number(v) is not None and not isinstance(v, bool)
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
        "wall_s": finite_number(summary.get("wall_s")),
    }
    section = Section(key="headline", title=title, data=data)
    if exp.sweep_summary is None:
        section.notes.append(
            f"No sweep summary ({why_missing(exp, 'sweep_summary')}); figures below come from "
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
