"""Read one experiment's artefacts from its storage folder into plain, typed Python. No Ray.

Everything here is forgiving on purpose: a report of a half-finished experiment is still worth
having, so a missing or unreadable file becomes a line in `Experiment.problems` (shown in the
report as "not available: ...") instead of an exception. Only an experiment with no sweep and no
data summary at all is an error, because then there is nothing to report.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray_ml._json import finite_number
from ray_ml.errors import RayMLError
from ray_ml.tune import flatten_mapping

__all__ = ["Experiment", "Trial", "load_experiment"]

DEFAULT_METRIC = "val_loss"
# Statuses a trial can win with (see ray_ml.tune._results): budget_stopped needs a checkpoint.
ELIGIBLE = ("completed", "budget_stopped")
# Leaderboard columns that are not tuned keys (ray_ml.tune._results.Leaderboard).
_FIXED = (
    "rank",
    "trial_id",
    "status",
    "pareto",
    "config",
    "metrics",
    "cost_usd",
    "algorithmic_cost_usd",
    "waste_usd",
    "wall_s",
    "latency_ms",
    "iterations",
    "pruned_at_rung",
    "checkpoint",
)
_SUMMARY_BEST_KEYS = ("trial_id", "config", "rule")
# What the monitor (`python -m jobs.monitor`) writes in its ledger.json.
MONITOR_LEDGER_FORMAT = "ray_ml.monitor.ledger"
MONITOR_LEDGER_VERSION = 1


@dataclass
class Trial:
    """One leaderboard row, normalised from either leaderboard layout.

    Attributes:
        trial_id: The Tune trial id.
        status: completed, pruned, budget_stopped, failed or running.
        value: Its value of the sweep's metric, or None.
        config: Tuned keys (dotted) and their values.
        metrics: Other numeric metrics the row carries (struct layout only).
        rank: The leaderboard's rank (eligible trials only), or None.
        eligible: Whether the trial can win (and so sit on the Pareto front).
        iterations: Reports done, or None.
        pruned_at_rung: The rung it was pruned at, or None.
        cost_usd: Billed dollars, or None.
        algorithmic_cost_usd: Dollars of CPU time the search itself needed, or None.
        waste_usd: Billed dollars that bought nothing, or None.
        wall_s: Wall seconds held, or None.
        latency_ms: Inference latency, or None.
        checkpoint: Its last checkpoint, or None.
    """

    trial_id: str
    status: str
    value: float | None
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float | None] = field(default_factory=dict)
    rank: int | None = None
    eligible: bool = False
    iterations: int | None = None
    pruned_at_rung: int | None = None
    cost_usd: float | None = None
    algorithmic_cost_usd: float | None = None
    waste_usd: float | None = None
    wall_s: float | None = None
    latency_ms: float | None = None
    checkpoint: str | None = None


@dataclass
class Experiment:
    """Everything found on disk for one experiment.

    Attributes:
        storage: The storage folder, resolved.
        name: The experiment name.
        metric: The sweep's metric (from the leaderboard or summary; default `val_loss`).
        mode: `min` or `max`.
        data_summary: `<name>/data/summary.json`, or None.
        sweep_summary: `<name>-sweep/summary.json`, or None.
        trials: Leaderboard rows in file order, or None without a leaderboard.
        costs: Per-trial cost records from `sweep_state.json`, in start order, or None.
        prior_usd: Dollars billed before a resumed sweep's current run.
        events: Per trial id, Tune's result.json reports sorted by training_iteration.
        drift: `<name>/serve/drift.json`, or None.
        monitor_ledger: `<name>/monitor/ledger.json` (partitions, triggers, retrains, spend),
            or None when missing or unreadable.
        monitor_history: `<name>/monitor/history.jsonl`, one dict per readable line (one per
            monitor tick) in file order, or None when missing or unreadable.
        monitor_skipped_lines: Lines of history.jsonl that were not a JSON object.
        sources: Input name -> path of each input that was read.
        problems: Input name -> why it is not available (missing or unreadable).
        notes: Things worth telling the reader (skipped lines, stale trial folders).
    """

    storage: Path
    name: str
    metric: str = DEFAULT_METRIC
    mode: str = "min"
    data_summary: dict[str, Any] | None = None
    sweep_summary: dict[str, Any] | None = None
    trials: list[Trial] | None = None
    costs: list[dict[str, Any]] | None = None
    prior_usd: float = 0.0
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    drift: dict[str, Any] | None = None
    monitor_ledger: dict[str, Any] | None = None
    monitor_history: list[dict[str, Any]] | None = None
    monitor_skipped_lines: int = 0
    sources: dict[str, str] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def sweep_dir(self) -> Path:
        return self.storage / f"{self.name}-sweep"

    @property
    def tune_dir(self) -> Path:
        return self.storage / "tune" / f"{self.name}-sweep"

    @property
    def monitor_dir(self) -> Path:
        return self.storage / self.name / "monitor"

    @property
    def has_sweep(self) -> bool:
        """Whether any sweep artefact was found."""
        return bool(
            self.sweep_summary is not None
            or self.trials is not None
            or self.costs is not None
            or self.events
        )


# ------------------------------------------------------------------------------- helpers
def _integer(value: Any) -> int | None:
    out = finite_number(value)
    return int(out) if out is not None else None


def _read_json(path: Path, key: str, exp: Experiment) -> dict[str, Any] | None:
    if not path.is_file():
        exp.problems[key] = f"{path} does not exist"
        return None
    try:
        loaded = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        exp.problems[key] = f"{path} could not be read ({type(exc).__name__}: {exc})"
        return None
    if not isinstance(loaded, dict):
        exp.problems[key] = f"{path} holds a {type(loaded).__name__}, not a JSON object"
        return None
    exp.sources[key] = str(path)
    return loaded


# --------------------------------------------------------------------------- the metric
def _metric_from_summary(summary: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    if not summary:
        return None, None
    best = summary.get("best")
    metric = mode = None
    if isinstance(best, Mapping):
        numeric = [
            k
            for k, v in best.items()
            if k not in _SUMMARY_BEST_KEYS and finite_number(v) is not None
        ]
        metric = numeric[0] if numeric else None
        found = re.search(r"\((min|max)\)", str(best.get("rule", "")))
        mode = found.group(1) if found else None
    if metric is None:
        for entry in summary.get("pareto") or []:
            if isinstance(entry, Mapping):
                rest = [k for k in entry if k not in ("trial_id", "cost_usd")]
                if rest:
                    metric = str(rest[0])
                    break
    return metric, mode


# ------------------------------------------------------------------------- leaderboard
def _read_leaderboard(path: Path, exp: Experiment) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows and the `ray_ml.leaderboard` metadata ({} if absent); ([], {}) on a problem."""
    if not path.is_file():
        exp.problems["leaderboard"] = f"{path} does not exist"
        return [], {}
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt or foreign file
        exp.problems["leaderboard"] = f"{path} could not be read ({type(exc).__name__}: {exc})"
        return [], {}
    meta: dict[str, Any] = {}
    raw = (table.schema.metadata or {}).get(b"ray_ml.leaderboard")
    if raw:
        try:
            loaded = json.loads(raw)
            meta = loaded if isinstance(loaded, dict) else {}
        except json.JSONDecodeError:
            meta = {}
    exp.sources["leaderboard"] = str(path)
    return table.to_pylist(), meta


def _trial(row: Mapping[str, Any], metric: str, has_rank: bool) -> Trial:
    """One row of either layout: flat (what `Leaderboard.to_parquet` writes: one column per
    tuned key, the metric as a column) or struct (`config` and `metrics` struct columns)."""
    if isinstance(row.get("config"), Mapping):
        config = flatten_mapping(row["config"])
    else:
        config = {}
        for key, value in row.items():
            if key in _FIXED or key == metric:
                continue
            # Leaderboard prefixes a tuned key that collides with a fixed column with `config.`.
            name = key[len("config.") :] if key.startswith("config.") else key
            config[name] = value
    metrics: dict[str, float | None] = {}
    if isinstance(row.get("metrics"), Mapping):
        metrics = {str(k): finite_number(v) for k, v in row["metrics"].items()}
    value = finite_number(row.get(metric)) if metric in row else metrics.get(metric)
    status = str(row.get("status") or "unknown")
    checkpoint = row.get("checkpoint")
    rank = _integer(row.get("rank"))
    if has_rank:
        can_win = rank is not None
    else:
        can_win = value is not None and (
            status == "completed" or (status == "budget_stopped" and bool(checkpoint))
        )
    return Trial(
        trial_id=str(row.get("trial_id")),
        status=status,
        value=value,
        config=config,
        metrics=metrics,
        rank=rank,
        eligible=can_win,
        iterations=_integer(row.get("iterations")),
        pruned_at_rung=_integer(row.get("pruned_at_rung")),
        cost_usd=finite_number(row.get("cost_usd")),
        algorithmic_cost_usd=finite_number(row.get("algorithmic_cost_usd")),
        waste_usd=finite_number(row.get("waste_usd")),
        wall_s=finite_number(row.get("wall_s")),
        latency_ms=finite_number(row.get("latency_ms")),
        checkpoint=str(checkpoint) if checkpoint else None,
    )


def _json_lines(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The JSON objects of a JSON-lines file, and how many lines were not one (a writer
    killed mid-line leaves half a line). Blank lines are skipped.

    Raises:
        OSError: The file cannot be read.
    """
    records: list[dict[str, Any]] = []
    bad = 0
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            bad += 1
    return records, bad


# ------------------------------------------------------------------------ tune events
def _read_events(exp: Experiment, known: set[str]) -> None:
    """Tune's result.json lines of every trial folder, keeping what the report plots."""
    if not exp.tune_dir.is_dir():
        exp.problems["events"] = f"{exp.tune_dir} does not exist"
        return
    files = sorted(exp.tune_dir.glob("*/result.json"))
    if not files:
        exp.problems["events"] = f"no */result.json under {exp.tune_dir}"
        return
    events: dict[str, list[dict[str, Any]]] = {}
    bad_lines = 0
    stale: set[str] = set()
    for path in files:
        try:
            reports, bad = _json_lines(path)
        except OSError:
            bad_lines += 1
            continue
        bad_lines += bad
        for report in reports:
            if report.get("trial_id") is None:
                bad_lines += 1
                continue
            trial_id = str(report["trial_id"])
            if known and trial_id not in known:
                stale.add(trial_id)
                continue
            events.setdefault(trial_id, []).append(
                {
                    "training_iteration": _integer(report.get("training_iteration")),
                    "timestamp": finite_number(report.get("timestamp")),
                    "value": finite_number(report.get(exp.metric)),
                    "cost_usd": finite_number(report.get("cost_usd")),
                }
            )
    for reports in events.values():
        reports.sort(key=lambda r: (r["training_iteration"] or 0, r["timestamp"] or 0.0))
    exp.events = events
    exp.sources["events"] = f"{exp.tune_dir}/*/result.json ({len(files)} files)"
    if bad_lines:
        exp.notes.append(f"{bad_lines} unreadable line(s) in {exp.tune_dir}/*/result.json skipped")
    if stale:
        exp.notes.append(
            f"{len(stale)} trial folder(s) in {exp.tune_dir} belong to no trial of this sweep's "
            f"leaderboard or cost records (left over from an earlier run) and are not shown: "
            + ", ".join(sorted(stale)[:10])
            + (" ..." if len(stale) > 10 else "")
        )


# ------------------------------------------------------------------------------ monitor
def _read_monitor(exp: Experiment) -> None:
    """The monitor's ledger.json and history.jsonl; each is None when missing or unreadable."""
    path = exp.monitor_dir / "ledger.json"
    ledger = _read_json(path, "monitor_ledger", exp)
    if ledger is not None:
        found = ledger.get("format")
        if found is not None and found != MONITOR_LEDGER_FORMAT:
            exp.problems["monitor_ledger"] = (
                f"{path} could not be read (format {found!r}, not {MONITOR_LEDGER_FORMAT!r})"
            )
            del exp.sources["monitor_ledger"]
            ledger = None
        else:
            version = _integer(ledger.get("format_version"))
            if version is not None and version > MONITOR_LEDGER_VERSION:
                exp.notes.append(
                    f"{path} has format_version {version}; this report reads version "
                    f"{MONITOR_LEDGER_VERSION} and may miss newer fields"
                )
    exp.monitor_ledger = ledger

    path = exp.monitor_dir / "history.jsonl"
    if not path.is_file():
        exp.problems["monitor_history"] = f"{path} does not exist"
        return
    try:
        history, bad = _json_lines(path)
    except OSError as exc:
        exp.problems["monitor_history"] = f"{path} could not be read ({type(exc).__name__}: {exc})"
        return
    exp.monitor_history = history
    exp.monitor_skipped_lines = bad
    exp.sources["monitor_history"] = f"{path} ({len(history)} lines)"
    if bad:
        exp.notes.append(f"{bad} unreadable line(s) in {path} skipped")


# ------------------------------------------------------------------------------- loader
def load_experiment(storage_path: str | Path, name: str) -> Experiment:
    """Read every artefact of experiment `name` under `storage_path`.

    Args:
        storage_path: The jobs' `storage_path` (e.g. `runs`).
        name: The experiment name (the jobs' `name`).

    Returns:
        What was found; missing or unreadable inputs are listed in `problems`.

    Raises:
        RayMLError: Neither a sweep nor a data summary exists for `name` under `storage_path`.
    """
    storage = Path(storage_path).expanduser().resolve()
    exp = Experiment(storage=storage, name=str(name))

    exp.data_summary = _read_json(storage / exp.name / "data" / "summary.json", "data", exp)
    exp.sweep_summary = _read_json(exp.sweep_dir / "summary.json", "sweep_summary", exp)
    rows, meta = _read_leaderboard(exp.sweep_dir / "leaderboard.parquet", exp)

    metric, mode = _metric_from_summary(exp.sweep_summary)
    exp.metric = str(meta.get("metric") or metric or DEFAULT_METRIC)
    exp.mode = str(meta.get("mode") or mode or "min")
    if exp.mode not in ("min", "max"):
        exp.notes.append(f"unknown metric mode {exp.mode!r} in the leaderboard; assumed min")
        exp.mode = "min"

    if rows:
        has_rank = "rank" in rows[0]
        exp.trials = [_trial(row, exp.metric, has_rank) for row in rows]
    elif "leaderboard" in exp.sources:
        exp.trials = []

    state = _read_json(exp.sweep_dir / "sweep_state.json", "costs", exp)
    if state is not None:
        costs = [c for c in state.get("costs") or [] if isinstance(c, dict) and "trial_id" in c]
        costs.sort(key=lambda c: finite_number(c.get("started_at")) or 0.0)
        exp.costs = costs
        exp.prior_usd = finite_number(state.get("prior_usd")) or 0.0

    known = {t.trial_id for t in exp.trials or []} | {str(c["trial_id"]) for c in exp.costs or []}
    _read_events(exp, known)

    exp.drift = _read_json(storage / exp.name / "serve" / "drift.json", "drift", exp)
    _read_monitor(exp)

    if not exp.has_sweep and exp.data_summary is None:
        raise RayMLError(
            f"No experiment `{exp.name}` under storage_path={str(storage)!r}: looked in "
            f"{exp.sweep_dir} (sweep: summary.json, leaderboard.parquet, sweep_state.json), "
            f"{exp.tune_dir} (Tune results) and {storage / exp.name / 'data'} (data "
            f"summary.json) and found none of them. Fix: run the sweep first, "
            f"`python -m jobs.tune name={exp.name} storage_path={storage}` (or "
            f"`python -m jobs.data name={exp.name} storage_path={storage}` for the data stage "
            "alone), or pass the storage path and name that job used."
        )
    return exp
