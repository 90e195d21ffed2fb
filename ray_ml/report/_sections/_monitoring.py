"""The monitoring section: what the monitor (`python -m jobs.monitor`) saw and did.

Two inputs, either may be missing: the ledger (`<name>/monitor/ledger.json`: partitions taken
in, retrain triggers, retrains with their canary decisions, retraining dollars per month) and
the history (`<name>/monitor/history.jsonl`, one line per tick: live quality per served
version, feature drift, serving cost).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ray_ml._json import finite_number
from ray_ml.report import _plots as plots
from ray_ml.report._html import Plot, Section, Table, fmt, pct, usd
from ray_ml.report._inputs import Experiment
from ray_ml.report._sections._common import MAX_TABLE_ROWS, as_mapping, not_available

_KEY = "monitoring"
_TITLE = "Monitoring"
_INPUTS = ("monitor_ledger", "monitor_history")
# The plotted live metric: the first of these that any version reports, else the first seen.
_PRIMARY = ("accuracy", "rmse")
_LOWER_IS_BETTER = ("mae", "rmse")  # regression errors; accuracy, f1 and roc_auc are higher
_TOP_REASONS = 3


# ------------------------------------------------------------------------------ helpers
def _integer(value: Any) -> int | None:
    out = finite_number(value)
    return int(out) if out is not None else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _epoch(when: Any) -> float | None:
    """Unix seconds of an ISO 8601 time (a time without a zone is read as UTC), or None."""
    if not isinstance(when, str):
        return None
    try:
        parsed = datetime.fromisoformat(when)
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    except (ValueError, OverflowError):
        return None


def _tick_time(tick: Mapping[str, Any]) -> float | None:
    seconds = finite_number(tick.get("time"))
    return seconds if seconds is not None else _epoch(tick.get("at"))


def _utc(seconds: float | None) -> datetime | None:
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError):  # a garbled `time` far outside the calendar
        return None


def _iso(seconds: float | None) -> str | None:
    when = _utc(seconds)
    return when.isoformat(timespec="seconds") if when is not None else None


def _version_order(version: str) -> tuple[int, int, str]:
    return (0, int(version), "") if version.isdecimal() else (1, 0, version)


def _records(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _newest_first(rows: Sequence[Any]) -> tuple[list[Any], str]:
    """The newest `MAX_TABLE_ROWS` of chronological `rows`, newest first, and a footer."""
    shown = list(rows[::-1][:MAX_TABLE_ROWS])
    hidden = len(rows) - len(shown)
    return shown, f"{hidden} older not shown (all are in report.json)" if hidden else ""


def _unreadable(exp: Experiment, key: str) -> str | None:
    """Why an input that exists could not be used; None when it was read or is just missing."""
    problem = exp.problems.get(key)
    return None if problem is None or problem.endswith("does not exist") else problem


# ------------------------------------------------------------------------------- ledger
def _partitions(ledger: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for path, raw in as_mapping(ledger.get("partitions")).items():
        if not isinstance(raw, Mapping):
            continue
        counts = {str(k): _integer(v) for k, v in as_mapping(raw.get("reasons")).items()}
        reasons = sorted(
            ((k, n) for k, n in counts.items() if n is not None), key=lambda kv: (-kv[1], kv[0])
        )
        out.append(
            {
                "path": str(path),
                "seen_at": _text(raw.get("seen_at")),
                "rows_in": _integer(raw.get("rows_in")),
                "rows_ok": _integer(raw.get("rows_ok")),
                "rows_rejected": _integer(raw.get("rows_rejected")),
                "reasons": dict(reasons),
                "quarantine": _text(raw.get("quarantine")),
            }
        )
    return out


def _triggers(ledger: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {key: _text(t.get(key)) for key in ("id", "kind", "at", "detail", "status", "reason")}
        for t in _records(ledger.get("triggers"))
    ]


def _retrains(ledger: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for r in _records(ledger.get("retrains")):
        canary = r.get("canary")
        partitions = r.get("partitions")
        out.append(
            {
                "trigger": _text(r.get("trigger")),
                "sweep": _text(r.get("sweep")),
                "started_at": _text(r.get("started_at")),
                "ended_at": _text(r.get("ended_at")),
                "cost_usd": finite_number(r.get("cost_usd")),
                "budget_usd": finite_number(r.get("budget_usd")),
                "trials": _integer(r.get("trials")),
                "version": _integer(r.get("version")),
                "warm_start": _integer(r.get("warm_start")),
                "partitions": [str(p) for p in partitions] if isinstance(partitions, list) else [],
                "resumes": _integer(r.get("resumes")),
                "canary": {k: _text(canary.get(k)) for k in ("action", "reason", "at")}
                if isinstance(canary, Mapping)
                else None,
            }
        )
    return out


def _ledger_data(ledger: Mapping[str, Any] | None, month: str) -> dict[str, Any]:
    """The ledger's numbers; counts are None (and lists empty) without a readable ledger."""
    if ledger is None:
        return {
            "model": None,
            "partitions_seen": None,
            "rows_in": None,
            "rows_ok": None,
            "rows_rejected": None,
            "reasons": {},
            "n_triggers": None,
            "trigger_statuses": {},
            "n_retrains": None,
            "retrain_cost_usd": None,
            "month_spend_usd": None,
            "monthly_budget_usd": None,
            "month_budget_used": None,
            "spend": {},
            "triggers": [],
            "retrains": [],
            "partitions": [],
        }
    partitions = _partitions(ledger)
    triggers = _triggers(ledger)
    retrains = _retrains(ledger)
    reasons: Counter[str] = Counter()
    for p in partitions:
        reasons.update(p["reasons"])
    spend = {
        str(k): v
        for k, raw in as_mapping(ledger.get("spend")).items()
        if (v := finite_number(raw)) is not None
    }
    month_usd = spend.get(month, 0.0)
    budget = finite_number(ledger.get("monthly_budget_usd"))
    return {
        "model": _text(ledger.get("model")),
        "partitions_seen": len(partitions),
        "rows_in": sum(p["rows_in"] or 0 for p in partitions),
        "rows_ok": sum(p["rows_ok"] or 0 for p in partitions),
        "rows_rejected": sum(p["rows_rejected"] or 0 for p in partitions),
        "reasons": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        "n_triggers": len(triggers),
        "trigger_statuses": dict(Counter(t["status"] or "unknown" for t in triggers).most_common()),
        "n_retrains": len(retrains),
        "retrain_cost_usd": sum(r["cost_usd"] or 0.0 for r in retrains),
        "month_spend_usd": month_usd,
        "monthly_budget_usd": budget,
        "month_budget_used": month_usd / budget if budget else None,
        "spend": spend,
        "triggers": triggers,
        "retrains": retrains,
        "partitions": partitions,
    }


# ------------------------------------------------------------------------------ history
def _live_quality(history: Sequence[Mapping[str, Any]], t0: float | None) -> dict[str, Any]:
    """Per version: the primary metric over time and the latest reading of every metric."""
    names: list[str] = []
    for tick in history:
        for reading in as_mapping(tick.get("live_quality")).values():
            for name in as_mapping(as_mapping(reading).get("metrics")):
                if str(name) not in names:
                    names.append(str(name))
    metric = next((m for m in _PRIMARY if m in names), names[0] if names else None)
    last = history[-1] if history else {}
    roles = {_text(last.get("stable")): "stable", _text(last.get("canary")): "canary"}
    versions: dict[str, dict[str, Any]] = {}
    for tick in history:
        seconds = _tick_time(tick)
        minutes = (seconds - t0) / 60.0 if seconds is not None and t0 is not None else None
        for version, raw in as_mapping(tick.get("live_quality")).items():
            reading = as_mapping(raw)
            v = versions.setdefault(
                str(version),
                {
                    "version": str(version),
                    "role": roles.get(str(version)),
                    "ticks": 0,
                    "n_labels": None,
                    "alert": False,
                    "latest": None,
                    "latest_at": None,
                    "baseline": None,
                    "drop": None,
                    "minutes": [],
                    "values": [],
                    "metrics": {},
                },
            )
            v["ticks"] += 1
            v["n_labels"] = _integer(reading.get("n_labels"))
            v["alert"] = bool(reading.get("alert"))
            for name, m in as_mapping(reading.get("metrics")).items():
                m = as_mapping(m)
                now = {
                    "value": finite_number(m.get("value")),
                    "baseline": finite_number(m.get("baseline")),
                    "drop": finite_number(m.get("drop")),
                    "alert": bool(m.get("alert")),
                }
                # Keep the last reading with a value: a tick without new labels reports null.
                if now["value"] is not None or str(name) not in v["metrics"]:
                    v["metrics"][str(name)] = now
            if metric is None:
                continue
            m = as_mapping(as_mapping(reading.get("metrics")).get(metric))
            value, baseline = finite_number(m.get("value")), finite_number(m.get("baseline"))
            if baseline is not None:
                v["baseline"] = baseline
            if value is not None:
                v["latest"], v["latest_at"] = value, _text(tick.get("at"))
                v["drop"] = finite_number(m.get("drop"))
                if minutes is not None:
                    v["minutes"].append(minutes)
                    v["values"].append(value)
    return {
        "metric": metric,
        "mode": "min" if metric in _LOWER_IS_BETTER else "max",
        "versions": sorted(versions.values(), key=lambda v: _version_order(v["version"])),
    }


def _drift(history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per feature: the latest PSI and the largest one over the history, largest first."""
    features: dict[str, dict[str, Any]] = {}
    for tick in history:
        for name, raw in as_mapping(tick.get("drift")).items():
            psi = finite_number(raw)
            if psi is None:
                continue
            at = _text(tick.get("at"))
            f = features.setdefault(
                str(name), {"feature": str(name), "max_psi": psi, "max_at": at, "ticks": 0}
            )
            f["latest_psi"], f["latest_at"] = psi, at
            f["ticks"] += 1
            if psi > f["max_psi"]:
                f["max_psi"], f["max_at"] = psi, at
    return sorted(features.values(), key=lambda f: (-f["max_psi"], f["feature"]))


def _serving_cost(history: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    for tick in reversed(history):
        cost = tick.get("serving_cost")
        if isinstance(cost, Mapping):
            return {
                "at": _text(tick.get("at")),
                "replicas": _integer(cost.get("replicas")),
                "usd_per_hour": finite_number(cost.get("usd_per_hour")),
                "usd_total": finite_number(cost.get("usd_total")),
                "predictions": _integer(cost.get("predictions")),
                "usd_per_1k_predictions": finite_number(cost.get("usd_per_1k_predictions")),
            }
    return None


# -------------------------------------------------------------------------------- build
def _why_not_available(exp: Experiment) -> str:
    unreadable = [p for k in _INPUTS if (p := _unreadable(exp, k))]
    if unreadable:
        return "; ".join(unreadable)
    if exp.monitor_history is not None:
        skipped = exp.monitor_skipped_lines
        return (
            f"{exp.monitor_dir / 'history.jsonl'} has no readable line"
            + (f" ({skipped} unreadable)" if skipped else "")
            + " and there is no ledger.json"
        )
    return (
        f"no monitor has run for this experiment (no ledger.json or history.jsonl in "
        f"{exp.monitor_dir}); start one with "
        f"`python -m jobs.monitor name={exp.name} storage_path={exp.storage}`"
    )


def build_monitoring(exp: Experiment) -> Section:
    ledger, history = exp.monitor_ledger, exp.monitor_history or []
    if ledger is None and not history:
        return not_available(_KEY, _TITLE, _why_not_available(exp))

    times = [t for t in map(_tick_time, history) if t is not None]
    t0 = min(times) if times else None
    last_tick = _text((ledger or {}).get("last_tick_at")) or (
        _text(history[-1].get("at")) if history else None
    )
    # "This month" is the month of the last tick, not of the report's build: a report of an
    # idle monitor shows what it last spent, and the same files always give the same page.
    last_seconds = _epoch(last_tick) if last_tick else (max(times) if times else None)
    month = (_utc(last_seconds) or datetime.now(UTC)).strftime("%Y-%m")
    reachable = sum(1 for tick in history if tick.get("reachable") is True)
    latest = history[-1] if history else {}
    ticks = _integer((ledger or {}).get("ticks"))
    data: dict[str, Any] = {
        "ticks": ticks if ticks is not None else len(history),
        "history_lines": len(history),
        "history_skipped": exp.monitor_skipped_lines,
        "first_tick_at": _iso(t0),
        "last_tick_at": last_tick,
        "reachable_ticks": reachable,
        "unreachable_ticks": len(history) - reachable,
        "stable": _text(latest.get("stable")),
        "canary": _text(latest.get("canary")),
        "month": month,
        **_ledger_data(ledger, month),
        "serving_cost": _serving_cost(history),
        "live_quality": _live_quality(history, t0),
        "drift": _drift(history),
        "ledger_problem": _unreadable(exp, "monitor_ledger"),
        "history_problem": _unreadable(exp, "monitor_history"),
    }
    section = Section(key=_KEY, title=_TITLE, data=data)
    if data["model"]:
        section.notes.append(f"Model watched: {data['model']}.")
    for key, lost in (
        ("ledger_problem", "partitions, triggers, retrains and spend"),
        ("history_problem", "live quality, drift and serving cost"),
    ):
        if data[key]:
            section.notes.append(f"Not shown ({lost}): {data[key]}")
    if ledger is None and not data["ledger_problem"]:
        section.notes.append(
            "No ledger.json: the monitor has not recorded partitions, triggers or retrains."
        )
    _add_facts(section, data)
    _add_quality(section, data["live_quality"], data["first_tick_at"])
    _add_tables(section, data)
    return section


def _add_facts(section: Section, data: Mapping[str, Any]) -> None:
    ticks_detail = [f"last {data['last_tick_at']}" if data["last_tick_at"] else "no tick yet"]
    if data["unreachable_ticks"]:
        ticks_detail.append(f"{data['unreachable_ticks']} with the service unreachable")
    facts = [("monitor ticks", fmt(data["ticks"]), "; ".join(ticks_detail))]
    if data["partitions_seen"] is not None:
        budget = data["monthly_budget_usd"]
        facts += [
            (
                "partitions seen",
                fmt(data["partitions_seen"]),
                f"{fmt(data['rows_ok'])} rows ok / {fmt(data['rows_rejected'])} rejected",
            ),
            (
                "retrain triggers",
                fmt(data["n_triggers"]),
                ", ".join(f"{n} {status}" for status, n in data["trigger_statuses"].items()),
            ),
            ("retrains", fmt(data["n_retrains"]), f"{usd(data['retrain_cost_usd'])} in total"),
            (
                f"retraining spend {data['month']}",
                usd(data["month_spend_usd"]),
                f"of {usd(budget)} monthly budget ({pct(data['month_budget_used'])})"
                if budget is not None
                else "no monthly budget",
            ),
        ]
    cost = data["serving_cost"]
    if cost is not None:
        facts.append(
            (
                "serving cost",
                f"{usd(cost['usd_per_hour'])} / hour",
                f"{usd(cost['usd_per_1k_predictions'])} per 1,000 predictions; "
                f"{fmt(cost['replicas'])} replicas (at {cost['at']})",
            )
        )
    else:
        facts.append(("serving cost", "—", "no serving cost in the history"))
    facts.append(
        (
            "serving",
            f"stable {data['stable']}" if data["stable"] else "nothing stable",
            f"canary {data['canary']}" if data["canary"] else "no canary",
        )
    )
    section.facts += facts


def _add_quality(section: Section, quality: Mapping[str, Any], since: str | None) -> None:
    metric, versions = quality["metric"], quality["versions"]
    if metric is None:
        section.notes.append("No live quality yet: no version has labelled predictions.")
        return
    series = [v for v in versions if v["minutes"]]
    if series:
        section.plots.append(
            Plot(
                plots.live_quality_plot(series, metric, quality["mode"]),
                alt=f"Line chart of live {metric} over time for {len(series)} model version(s) "
                "with dashed baselines",
                caption=(
                    f"Live {metric} of each served version on labelled traffic, by minutes since "
                    f"the monitor's first tick ({since}); the dashed line of the same colour is "
                    "that version's baseline."
                ),
            )
        )
    section.tables.append(
        Table(
            headers=["version", "role", "labels", metric, "baseline", "drop", "alert", "at"],
            rows=[
                [
                    v["version"],
                    v["role"] or "—",
                    fmt(v["n_labels"]),
                    fmt(v["latest"]),
                    fmt(v["baseline"]),
                    fmt(v["drop"]),
                    fmt(v["alert"]),
                    v["latest_at"] or "—",
                ]
                for v in versions
            ],
            numeric=[False, False, True, True, True, True, False, False],
            caption=f"Live quality per version: the latest {metric}",
        )
    )


def _add_tables(section: Section, data: Mapping[str, Any]) -> None:
    drift = data["drift"]
    if drift:
        shown = drift[:MAX_TABLE_ROWS]
        section.tables.append(
            Table(
                headers=["feature", "latest PSI", "max PSI", "max at", "ticks"],
                rows=[
                    [f["feature"], fmt(f["latest_psi"]), fmt(f["max_psi"]), f["max_at"] or "—"]
                    + [fmt(f["ticks"])]
                    for f in shown
                ],
                numeric=[False, True, True, False, True],
                caption="Drift per feature (PSI of live traffic), largest seen first",
                footer=f"{len(drift) - len(shown)} more features not shown"
                if len(drift) > len(shown)
                else "",
            )
        )
    elif data["history_lines"]:
        section.notes.append("No drift measured yet.")
    if data["partitions_seen"] is None:
        return
    triggers, footer = _newest_first(data["triggers"])
    if triggers:
        section.tables.append(
            Table(
                headers=["id", "kind", "at", "detail", "status", "reason"],
                rows=[
                    [t[k] or "—" for k in ("id", "kind", "at", "detail", "status", "reason")]
                    for t in triggers
                ],
                caption="Retrain triggers, newest first",
                footer=footer,
            )
        )
    else:
        section.notes.append("No retrain triggers yet.")
    retrains, footer = _newest_first(data["retrains"])
    if retrains:
        section.tables.append(
            Table(
                headers=["trigger", "sweep", "trials", "cost", "budget", "version", "resumes"]
                + ["canary", "canary reason"],
                rows=[
                    [
                        r["trigger"] or "—",
                        r["sweep"] or "—",
                        fmt(r["trials"]),
                        usd(r["cost_usd"]),
                        usd(r["budget_usd"]),
                        fmt(r["version"]),
                        fmt(r["resumes"]),
                        (r["canary"] or {}).get("action") or "—",
                        (r["canary"] or {}).get("reason") or "—",
                    ]
                    for r in retrains
                ],
                numeric=[False, False, True, True, True, True, True, False, False],
                caption="Retrains, newest first",
                footer=footer,
            )
        )
    elif triggers:
        section.notes.append("No retrains yet.")
    partitions, footer = _newest_first(data["partitions"])
    if partitions:
        section.tables.append(
            Table(
                headers=["partition", "seen at", "rows in", "ok", "rejected", "top reasons"],
                rows=[
                    [
                        p["path"],
                        p["seen_at"] or "—",
                        fmt(p["rows_in"]),
                        fmt(p["rows_ok"]),
                        fmt(p["rows_rejected"]),
                        ", ".join(
                            f"{k} ({n:,})" for k, n in list(p["reasons"].items())[:_TOP_REASONS]
                        )
                        or "—",
                    ]
                    for p in partitions
                ],
                numeric=[False, False, True, True, True, False],
                caption="Partitions taken in, newest first",
                footer=footer,
            )
        )
    else:
        section.notes.append("No partitions taken in yet.")
