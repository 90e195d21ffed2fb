"""The replay protocol: every method x task x seed, the per-run figures, aggregates and targets.

**Protocol.** Every method gets the same search space, priors, rung geometry (grace period,
reduction factor, `max_t` = the table's steps), dollar budget, `num_samples` cap and 2 workers;
a trial holds one CPU ("one thread per trial"), billed at the catalog's CPU-hour price
(`conf/cost/<cost_config>.yaml`, default node type). The budget of a task is
`budget_trials x` the mean full-fidelity config cost of its table (in random-trial
equivalents: random search affords about that many trials). Winners are chosen on validation
and reported on test.

**Per run** (`evaluate`): dollars to reach the table's top-1% validation score (None when never:
censored), the incumbent's test score at 10/25/50/100% of the budget, the cost-adjusted simple
regret (`metrics.regret_auc`), Pareto hypervolumes of (test error, trial cost) and (test error,
latency) over the validation Pareto front of the run's trials (errors are normalized regrets
clipped to [0, 1]; cost and latency log-normalized over the table's configs; reference point
(1, 1)), overspend, waste, how the run ended. The spot scenario replays the same runs at spot
prices with preemptions.

**Aggregates and targets** (`aggregate`, `targets`): per task and method, the geometric mean over
seeds of the cost to target, a censored run counting at the full budget (a lower bound on its
true cost, which flatters the methods that miss most), with the number censored; the targets
compare methods over the *cost-varying* tasks (p95/p5 of the configs' cost >= `COST_VARYING`)
and the *control* tasks (the others), with 95% bootstrap intervals over seeds.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.tune import metrics as m
from benchmarks.tune.methods import (
    METHODS,
    OURS,
    TPE_VARIANTS,
    MethodContext,
    build_policy,
    unavailable,
)
from benchmarks.tune.replay import Replay, ReplayConfig, replay
from benchmarks.tune.tables import Table, load_parquet, load_task
from ray_ml.config import CostConfig
from ray_ml.cost import PriceCatalog
from ray_ml.errors import ConfigError

__all__ = [
    "BUDGET_FRACTIONS",
    "COST_VARYING",
    "ProtocolConfig",
    "TaskStats",
    "aggregate",
    "evaluate",
    "load_any",
    "run_protocol",
    "targets",
    "task_stats",
]

COST_VARYING = 30.0  # p95/p5 of the configs' full-fidelity cost at or above this: cost-varying
BUDGET_FRACTIONS = (0.1, 0.25, 0.5, 1.0)
CURVE_FRACTIONS = tuple(float(x) for x in np.geomspace(1e-3, 1.0, 31))
TOP = 0.01  # the cost-to-target target: the table's top-1% validation score
SCENARIOS = ("on_demand", "spot")


@dataclass(frozen=True)
class ProtocolConfig:
    """One protocol run's settings.

    Attributes:
        tasks: Tier A task names (`hpobench/NAME`, ...) and Tier B Parquet paths.
        methods: Method names (`methods.METHODS`).
        seeds: Seeds, the same for every method and task.
        budget_trials: The budget in random-trial equivalents (see the module docstring).
        num_samples: Most trials per run.
        grace_period: Steps before a scheduler may stop a trial.
        reduction_factor: ASHA/HyperBand halving rate.
        workers: Trials at once.
        cost: The price catalog's config (`conf/cost/*.yaml`, as loaded).
        spot_seeds: The spot scenario replays the first this many seeds (0: no spot scenario).
        preempt_per_hour: Spot preemptions per held trial-hour.
        procs: Processes replaying runs at once.
        run_timeout_s: Wall seconds after which a run is cut and reported `timeout`.
    """

    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    budget_trials: float
    num_samples: int
    grace_period: int
    reduction_factor: int
    workers: int
    cost: CostConfig
    spot_seeds: int = 10
    preempt_per_hour: float = 0.2
    procs: int = 2
    run_timeout_s: float = 900.0

    def __post_init__(self) -> None:
        unknown = [x for x in self.methods if x not in METHODS]
        if unknown:
            raise ConfigError(
                f"`--methods` names unknown method(s) {', '.join(unknown)}. Fix: use some of "
                f"{', '.join(METHODS)}."
            )
        if not self.tasks:
            raise ConfigError(
                "no tasks given. Fix: pass `--tasks hpobench/NAME ...` or `--table PATH`."
            )
        if not self.seeds:
            raise ConfigError("no seeds given. Fix: pass `--seeds N` with N >= 1.")
        for name, value, least in (
            ("budget_trials", self.budget_trials, 1e-9),
            ("num_samples", self.num_samples, 1),
            ("grace_period", self.grace_period, 1),
            ("reduction_factor", self.reduction_factor, 2),
            ("workers", self.workers, 1),
            ("procs", self.procs, 1),
        ):
            if not value >= least:
                raise ConfigError(
                    f"`{name}` must be >= {least:g}, but got {name}={value!r}. Fix: pass a larger "
                    f"`--{name.replace('_', '-')}`."
                )
        if self.procs > 2:
            raise ConfigError(
                f"`procs` must be at most 2 (the protocol's machines have 2 cores and each run "
                f"is one thread), but got procs={self.procs}. Fix: `--procs 2`."
            )

    def catalog(self) -> PriceCatalog:
        return PriceCatalog.from_config(self.cost)


# ------------------------------------------------------------------------------- tasks
def load_any(task: str) -> Table:
    """A Tier A task name or a Tier B Parquet path, as a `Table`."""
    if task.endswith(".parquet") or Path(task).is_file():
        return load_parquet(task)
    return load_task(task)


@lru_cache(maxsize=32)
def _table(task: str) -> Table:
    return load_any(task)


@dataclass(frozen=True)
class TaskStats:
    """What a task's figures are measured against (from its table and the price).

    Attributes:
        task: The task.
        target_score: The top-1% validation score (as `sign * val`).
        best_test: The best test score of any config at any step.
        median_test: The median test score of the configs at their last step.
        best_val: Likewise on validation.
        median_val: Likewise on validation.
        cost_usd_range: Cheapest and costliest full-fidelity config, dollars on demand.
        latency_range: Lowest and highest `infer_ms`, or None without latencies.
        budget_usd: The run budget.
        cost_spread: p95/p5 of the configs' full-fidelity cost.
        cost_varying: `cost_spread >= COST_VARYING`.
    """

    task: str
    target_score: float
    best_test: float
    median_test: float
    best_val: float
    median_val: float
    cost_usd_range: tuple[float, float]
    latency_range: tuple[float, float] | None
    budget_usd: float
    cost_spread: float
    cost_varying: bool


def _usd_per_cpu_s(catalog: PriceCatalog, pricing: str = "on_demand") -> float:
    return catalog.price_of({"CPU": 1.0}, pricing) / 3600.0


def task_stats(table: Table, catalog: PriceCatalog, budget_trials: float) -> TaskStats:
    """The task's reference figures (see `TaskStats`)."""
    sign = table.sign
    price = _usd_per_cpu_s(catalog)
    cost = table.final_cost_s
    p5, p95 = np.percentile(cost, [5, 95])
    spread = float(p95 / max(p5, 1e-12))
    lat = table.infer_ms[np.isfinite(table.infer_ms)]
    test_all = sign * table.test[np.isfinite(table.test)]
    val_all = sign * table.val[np.isfinite(table.val)]
    return TaskStats(
        task=table.name,
        target_score=m.target_score(sign * table.final_val, TOP),
        best_test=float(test_all.max()),
        median_test=float(np.median(sign * table.final_test)),
        best_val=float(val_all.max()),
        median_val=float(np.median(sign * table.final_val)),
        cost_usd_range=(float(cost.min() * price), float(cost.max() * price)),
        latency_range=(float(lat.min()), float(lat.max())) if len(lat) else None,
        budget_usd=float(budget_trials * cost.mean() * price),
        cost_spread=spread,
        cost_varying=spread >= COST_VARYING,
    )


# ------------------------------------------------------------------------------ per run
def evaluate(stats: TaskStats, table: Table, rep: Replay, scenario: str) -> dict[str, Any]:
    """The protocol's figures of one replayed run (see the module docstring)."""
    sign = table.sign
    vs, ts = sign * rep.val, sign * rep.test
    budget = rep.budget_usd
    ctt = m.cost_to_target(rep.spent_usd, vs, stats.target_score)
    at = m.incumbent_at(rep.spent_usd, vs, ts, [f * budget for f in BUDGET_FRACTIONS])
    _, inc_test = m.incumbent_trace(vs, ts)
    regret = m.normalized_regret(inc_test, stats.best_test, stats.median_test)
    curve = [
        1.0
        if s is None
        else min(1.0, float(m.normalized_regret(s, stats.best_test, stats.median_test)))
        for s in m.incumbent_at(rep.spent_usd, vs, ts, [f * budget for f in CURVE_FRACTIONS])
    ]
    out: dict[str, Any] = {
        "status": "ok",
        "budget_usd": budget,
        "spent_usd": rep.spent_usd_total,
        "overspend_frac": rep.overspend_frac,
        "waste_usd": rep.waste_usd,
        "cost_to_target_usd": ctt,
        "censored": ctt is None,
        "test_score_at": {
            str(f): (
                None
                if s is None
                else float(1.0 - m.normalized_regret(s, stats.best_test, stats.median_test))
            )
            for f, s in zip(BUDGET_FRACTIONS, at, strict=True)
        },
        "test_metric_at": {
            str(f): (None if s is None else sign * s)
            for f, s in zip(BUDGET_FRACTIONS, at, strict=True)
        },
        "regret_auc": m.regret_auc(rep.spent_usd, regret, budget),
        "final_regret": float(regret[-1]) if len(regret) else None,
        "n_trials": rep.n_trials,
        "n_reports": len(rep.val),
        "statuses": rep.statuses,
        "ended_by": rep.ended_by,
        "preemptions": rep.preemptions,
        "wall_s": rep.wall_s,
        "curve": curve,
    }
    out.update(_hypervolumes(stats, rep, vs, ts) if scenario == "on_demand" else {})
    return out


def _hypervolumes(stats: TaskStats, rep: Replay, vs: np.ndarray, ts: np.ndarray) -> dict[str, Any]:
    if len(vs) == 0:
        return {"hv_cost": 0.0, "hv_latency": 0.0 if stats.latency_range else None}
    last = np.unique(rep.trial[::-1], return_index=True)[1]  # each trial's last report
    last = len(rep.trial) - 1 - last
    val_err = np.clip(m.normalized_regret(vs[last], stats.best_val, stats.median_val), 0, 1)
    test_err = np.clip(m.normalized_regret(ts[last], stats.best_test, stats.median_test), 0, 1)
    cost = m.log_normalize(rep.trial_usd[last], *stats.cost_usd_range)
    front = m.pareto_mask(val_err, cost)  # chosen on validation, judged on test
    out: dict[str, Any] = {"hv_cost": m.hypervolume_2d(np.c_[test_err[front], cost[front]])}
    if stats.latency_range:
        lat = m.log_normalize(rep.infer_ms[last], *stats.latency_range)
        front = m.pareto_mask(val_err, lat)
        out["hv_latency"] = m.hypervolume_2d(np.c_[test_err[front], lat[front]])
    else:
        out["hv_latency"] = None
    return out


class _RunTimeout(Exception):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise _RunTimeout


def run_one(pc: ProtocolConfig, task: str, method: str, seed: int, scenario: str) -> dict[str, Any]:
    """Replay and evaluate one run; never raises (errors and timeouts are reported)."""
    head = {"task": task, "method": method, "seed": seed, "scenario": scenario}
    start = time.perf_counter()
    try:
        table = _table(task)
        catalog = _catalog(pc.cost)
        stats = task_stats(table, catalog, pc.budget_trials)
        ctx = MethodContext(
            seed,
            stats.budget_usd,
            pc.grace_period,
            pc.reduction_factor,
            pc.workers,
            num_samples=pc.num_samples,
        )
        spot = scenario == "spot"
        cfg = ReplayConfig(
            budget_usd=stats.budget_usd,
            num_samples=pc.num_samples,
            workers=pc.workers,
            pricing="spot" if spot else "on_demand",
            preempt_per_hour=pc.preempt_per_hour if spot else 0.0,
            seed=seed,
            deadline_s=pc.run_timeout_s,
        )
        # A searcher stuck inside one call is cut by the alarm; the deadline cuts slow runs.
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.alarm(int(pc.run_timeout_s) + 60)
        try:
            rep = replay(table, lambda: build_policy(method, table, ctx), cfg, catalog)
        finally:
            signal.alarm(0)
        return {**head, **evaluate(stats, table, rep, scenario)}
    except _RunTimeout:
        return {
            **head,
            "status": "timeout",
            "reason": f"cut after {pc.run_timeout_s:.0f} s",
            "wall_s": time.perf_counter() - start,
        }
    except Exception as exc:  # reported in the results, never dropped
        tb = traceback.format_exc(limit=3).strip().splitlines()
        return {
            **head,
            "status": "error",
            "reason": f"{type(exc).__name__}: {exc}",
            "traceback": tb[-6:],
            "wall_s": time.perf_counter() - start,
        }


_CATALOGS: dict[str, PriceCatalog] = {}


def _catalog(cost: CostConfig) -> PriceCatalog:
    key = repr(cost)  # config dataclasses hold lists: not hashable
    if key not in _CATALOGS:
        _CATALOGS[key] = PriceCatalog.from_config(cost)
    return _CATALOGS[key]


def _run_job(args: tuple[ProtocolConfig, str, str, int, str]) -> dict[str, Any]:
    return run_one(*args)


def _init_worker() -> None:
    # Deprecation notices of the baselines' dependencies (statsmodels under hpbandster, ...)
    # would flood the log once per run.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # One thread per run: BLAS threads would contend with the other process's run.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass


def run_protocol(
    pc: ProtocolConfig, progress: Callable[[dict[str, Any], int, int], None] | None = None
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Run every available method x task x seed (and the spot scenario's seeds).

    Returns:
        (runs, not_run): one dict per run (`run_one`), and method -> why it was not run.
    """
    for task in pc.tasks:
        _table(task)  # a bad task name fails here, once; forked workers inherit the tables
    not_run = {name: why for name in pc.methods if (why := unavailable(name)) is not None}
    jobs = []
    for task in pc.tasks:  # task-major: each process keeps one table loaded
        for scenario in SCENARIOS:
            seeds = pc.seeds if scenario == "on_demand" else pc.seeds[: pc.spot_seeds]
            for seed in seeds:
                for method in pc.methods:
                    if method not in not_run:
                        jobs.append((pc, task, method, seed, scenario))
    runs: list[dict[str, Any]] = []
    if pc.procs == 1:
        _init_worker()
        for i, job in enumerate(jobs):
            runs.append(_run_job(job))
            if progress:
                progress(runs[-1], i + 1, len(jobs))
        return runs, not_run
    with ProcessPoolExecutor(max_workers=pc.procs, initializer=_init_worker) as pool:
        for i, run in enumerate(pool.map(_run_job, jobs, chunksize=1)):
            runs.append(run)
            if progress:
                progress(run, i + 1, len(jobs))
    return runs, not_run


# -------------------------------------------------------------------------- aggregation
def _censored_costs(runs: Sequence[dict[str, Any]]) -> np.ndarray:
    # A censored run counts at its budget: a lower bound on what reaching the target costs it.
    return np.array(
        [
            r["cost_to_target_usd"] if r["cost_to_target_usd"] is not None else r["budget_usd"]
            for r in runs
        ],
        dtype=float,
    )


def _mean(values: Iterable[float | None]) -> float | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else None


def _summary(runs: list[dict[str, Any]], scenario: str) -> dict[str, Any]:
    ok = [r for r in runs if r["status"] == "ok"]
    out: dict[str, Any] = {
        "runs": len(runs),
        "ok": len(ok),
        "failed": [
            {"seed": r["seed"], "status": r["status"], "reason": r.get("reason")}
            for r in runs
            if r["status"] != "ok"
        ],
    }
    if not ok:
        return out
    costs = _censored_costs(ok)
    point, lo, hi = m.bootstrap_geomean(costs)
    out["cost_to_target_usd"] = {
        "geomean": point,
        "ci95": [lo, hi],
        "median": float(np.median(costs)),
        "censored": int(sum(r["censored"] for r in ok)),
        "per_seed": [r["cost_to_target_usd"] for r in ok],
        "censoring": "a censored run counts at its full budget (a lower bound)",
    }
    out["test_score_at"] = {
        f: _mean(r["test_score_at"][f] for r in ok) for f in ok[0]["test_score_at"]
    }
    out["test_metric_at"] = {
        f: _mean(r["test_metric_at"][f] for r in ok) for f in ok[0]["test_metric_at"]
    }
    out["regret_auc"] = _mean(r["regret_auc"] for r in ok)
    out["final_regret"] = _mean(r["final_regret"] for r in ok)
    out["overspend_frac_max"] = max(r["overspend_frac"] for r in ok)
    out["spent_frac_mean"] = _mean(r["spent_usd"] / r["budget_usd"] for r in ok)
    out["waste_frac_mean"] = _mean(r["waste_usd"] / max(r["spent_usd"], 1e-300) for r in ok)
    out["trials_mean"] = _mean(r["n_trials"] for r in ok)
    statuses: Counter[str] = Counter()
    for r in ok:
        statuses.update(r["statuses"])
    out["trial_statuses"] = dict(statuses)
    out["ended_by"] = dict(Counter(r["ended_by"] for r in ok))
    out["wall_s_mean"] = _mean(r["wall_s"] for r in ok)
    if scenario == "on_demand":
        out["hv_cost"] = _mean(r["hv_cost"] for r in ok)
        out["hv_latency"] = _mean(r["hv_latency"] for r in ok)
    else:
        out["preemptions_mean"] = _mean(r["preemptions"] for r in ok)
    out["regret_curve_median"] = [float(x) for x in np.median([r["curve"] for r in ok], axis=0)]
    return out


def aggregate(
    runs: list[dict[str, Any]],
    tasks: Sequence[str],
    methods: Sequence[str],
    not_run: dict[str, str],
) -> dict[str, Any]:
    """Per scenario, task and method: the figures over seeds (or "not run" and why)."""
    out: dict[str, Any] = {}
    for scenario in SCENARIOS:
        per_task: dict[str, Any] = {}
        for task in tasks:
            per_method: dict[str, Any] = {}
            for method in methods:
                if method in not_run:
                    per_method[method] = {"status": "not run", "reason": not_run[method]}
                    continue
                rs = [
                    r
                    for r in runs
                    if (r["task"], r["method"], r["scenario"]) == (task, method, scenario)
                ]
                if rs:
                    per_method[method] = _summary(rs, scenario)
            if per_method:
                per_task[task] = per_method
        if per_task:
            out[scenario] = per_task
    return out


# ------------------------------------------------------------------------------ targets
def _costs_by_task(
    runs: list[dict[str, Any]], tasks: Sequence[str], method: str
) -> list[np.ndarray] | None:
    out = []
    for task in tasks:
        rs = [
            r
            for r in runs
            if (r["task"], r["method"], r["scenario"], r["status"])
            == (task, method, "on_demand", "ok")
        ]
        if not rs:
            return None
        out.append(_censored_costs(rs))
    return out


def _target(value: float | None, target: str, met: bool | None, **detail: Any) -> dict[str, Any]:
    return {"value": value, "target": target, "met": met, **detail}


def _ratio_target(
    runs: list[dict[str, Any]],
    tasks: Sequence[str],
    baselines: Sequence[str],
    target: str,
    check: Callable[[float, float, float], bool],
    *,
    invert: bool = False,
) -> dict[str, Any]:
    if not tasks:
        return _target(None, target, None, reason="no such task in this run")
    if not baselines:
        return _target(None, target, None, reason="no baseline among --methods")
    ours = _costs_by_task(runs, tasks, OURS)
    base = {b: _costs_by_task(runs, tasks, b) for b in baselines}
    missing = [b for b, v in base.items() if v is None]
    if ours is None or len(missing) == len(baselines):
        return _target(
            None,
            target,
            None,
            reason=f"not run: {', '.join(([OURS] if ours is None else []) + missing)}",
        )
    present = [b for b in baselines if base[b] is not None]
    per_task = [[base[b][i] for b in present] for i in range(len(tasks))]  # type: ignore[index]
    point, lo, hi = m.bootstrap_ratio(per_task, ours)
    if invert:  # ours / best instead of best / ours
        point, lo, hi = 1.0 / point, 1.0 / hi, 1.0 / lo
    censored = {
        name: int(
            sum(
                int(r["censored"])
                for r in runs
                if r["method"] == name
                and r["task"] in tasks
                and r["scenario"] == "on_demand"
                and r["status"] == "ok"
            )
        )
        for name in [OURS, *present]
    }
    return _target(
        point,
        target,
        bool(check(point, lo, hi)),
        ci95=[lo, hi],
        tasks=list(tasks),
        baselines=present,
        not_run=missing,
        censored_runs=censored,
    )


def targets(
    runs: list[dict[str, Any]], stats: dict[str, TaskStats], methods: Sequence[str]
) -> dict[str, Any]:
    """The issue's targets, each with its `value`, `target` and `met` (None: cannot tell)."""
    varying = [t for t, s in stats.items() if s.cost_varying]
    control = [t for t, s in stats.items() if not s.cost_varying]
    tpe = [v for v in TPE_VARIANTS if v in methods]
    out: dict[str, Any] = {
        "cost_to_target_vs_random_fifo": _ratio_target(
            runs,
            varying,
            ["random+fifo"],
            ">= 3x (95% CI lower bound >= 2x), cost-varying tasks",
            lambda p, lo, hi: p >= 3.0 and lo >= 2.0,
        ),
        "cost_to_target_vs_best_optuna_tpe": _ratio_target(
            runs,
            varying,
            tpe,
            ">= 1.5x (95% CI lower bound >= 1.2x) vs the best TPE+pruner "
            "variant per task, cost-varying tasks",
            lambda p, lo, hi: p >= 1.5 and lo >= 1.2,
        ),
        "control_cost_vs_best_optuna_tpe": _ratio_target(
            runs,
            control,
            tpe,
            "our cost / best TPE+pruner variant's <= 1.10, control tasks",
            lambda p, lo, hi: p <= 1.10,
            invert=True,
        ),
    }
    for name in ("blendsearch", "cfo", "bohb"):
        out[f"cost_to_target_vs_{name}"] = (
            _ratio_target(
                runs,
                varying,
                [name] if name in methods else [],
                f">= 1.0x (parity with {name}), cost-varying tasks",
                lambda p, lo, hi: p >= 1.0,
            )
            if name in methods
            else _target(None, ">= 1.0x", None, reason=f"{name} not among --methods")
        )
    out["test_at_budget_vs_best_baseline"] = _test_target(runs, list(stats), methods)
    ok = [r for r in runs if r["status"] == "ok"]
    worst = max(ok, key=lambda r: r["overspend_frac"], default=None)
    out["max_overspend_frac"] = _target(
        worst["overspend_frac"] if worst else None,
        "<= 0.02 of the budget in every run",
        (worst["overspend_frac"] <= 0.02) if worst else None,
        worst_run={k: worst[k] for k in ("task", "method", "seed", "scenario")} if worst else None,
    )
    hung = [
        {k: r[k] for k in ("task", "method", "seed", "scenario")}
        | {"why": r.get("ended_by") or r["status"]}
        for r in runs
        if r["status"] == "timeout" or r.get("ended_by") in ("stalled", "max_events", "timeout")
    ]
    out["no_hang"] = _target(
        len(hung), "0 runs timed out, stalled or cut", not hung, runs=hung[:20]
    )
    errors = [r for r in runs if r["status"] == "error"]
    out["no_errors"] = _target(
        len(errors),
        "0 runs raised",
        not errors,
        runs=[
            {k: r[k] for k in ("task", "method", "seed", "scenario", "reason")} for r in errors[:20]
        ],
    )
    return out


def _test_target(
    runs: list[dict[str, Any]], tasks: list[str], methods: Sequence[str]
) -> dict[str, Any]:
    target = "our mean normalized test score at 100% budget not significantly below the best baseline's (95% CI upper bound of ours - best >= 0), all tasks"
    full = str(BUDGET_FRACTIONS[-1])

    def scores(task: str, method: str) -> np.ndarray:
        return np.array(
            [
                r["test_score_at"][full] if r["test_score_at"][full] is not None else 0.0
                for r in runs
                if (r["task"], r["method"], r["scenario"], r["status"])
                == (task, method, "on_demand", "ok")
            ]
        )

    ours, best, chosen = [], [], {}
    for task in tasks:
        mine = scores(task, OURS)
        others = {b: scores(task, b) for b in methods if b != OURS}
        others = {b: v for b, v in others.items() if len(v)}
        if not len(mine) or not others:
            return _target(None, target, None, reason=f"{OURS} or every baseline missing on {task}")
        name = max(others, key=lambda b: others[b].mean())
        ours.append(mine)
        best.append(others[name])
        chosen[task] = name
    point, lo, hi = m.bootstrap_mean_diff(ours, best)
    return _target(
        point,
        target,
        hi >= 0.0,
        ci95=[lo, hi],
        best_baseline_per_task=chosen,
        note="normalized score: 1 = the table's best config, 0 = its median; a run "
        "without a report scores 0",
    )


# -------------------------------------------------------------------------------- JSON
def jsonable(value: Any) -> Any:
    """Plain JSON types: non-finite floats as None, numpy scalars as Python, dataclasses as dicts."""
    if isinstance(value, float | np.floating):
        v = float(value)
        return v if math.isfinite(v) else None
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | np.ndarray):
        return [jsonable(v) for v in value]
    if hasattr(value, "value") and isinstance(value.value, str):  # enums
        return value.value
    return str(value)


# ------------------------------------------------------------------------------ report
def report(
    pc: ProtocolConfig, runs: list[dict[str, Any]], not_run: dict[str, str], wall_s: float
) -> dict[str, Any]:
    """The results JSON's body: protocol, tasks, methods, per-method figures and targets."""
    catalog = _catalog(pc.cost)
    tables = {task: _table(task) for task in pc.tasks}
    stats = {task: task_stats(t, catalog, pc.budget_trials) for task, t in tables.items()}
    methods = list(pc.methods)
    return {
        "protocol": {
            "workers": pc.workers,
            "grace_period": pc.grace_period,
            "reduction_factor": pc.reduction_factor,
            "max_t": "the table's steps",
            "budget": f"{pc.budget_trials:g} x the table's mean full-fidelity config cost "
            "(random-trial equivalents), in dollars",
            "num_samples": pc.num_samples,
            "seeds": list(pc.seeds),
            "trial_resources": {"CPU": 1},
            "price_usd_per_cpu_hour": {
                "on_demand": catalog.price_of({"CPU": 1.0}, "on_demand"),
                "spot": catalog.price_of({"CPU": 1.0}, "spot"),
            },
            "prices_note": catalog.describe()["note"],
            "cost_to_target": f"dollars until the incumbent reaches the table's top-{TOP:.0%} "
            "validation score; censored runs count at their full budget",
            "winner_rule": "incumbent chosen on validation, reported on test",
            "budget_fractions": list(BUDGET_FRACTIONS),
            "regret_curve_fractions": list(CURVE_FRACTIONS),
            "cost_varying_rule": f"p95/p5 of the configs' full-fidelity cost >= {COST_VARYING:g}",
            "spot": {
                "seeds": list(pc.seeds[: pc.spot_seeds]),
                "preempt_per_hour": pc.preempt_per_hour,
                "checkpoint": "every step; a preempted step restarts from its beginning",
            },
            "run_timeout_s": pc.run_timeout_s,
        },
        "tasks": {
            task: {
                **tables[task].describe(),
                "budget_usd": stats[task].budget_usd,
                "target_score": stats[task].target_score,
                "target_metric": tables[task].sign * stats[task].target_score,
                "cost_spread_p95_over_p5": stats[task].cost_spread,
                "kind": "cost-varying" if stats[task].cost_varying else "control",
            }
            for task in pc.tasks
        },
        "methods": {
            name: {"description": METHODS[name].description}
            | (
                {"status": "not run", "reason": not_run[name]}
                if name in not_run
                else {"status": "run"}
            )
            for name in methods
        },
        "ours": OURS,
        "results": aggregate(runs, list(pc.tasks), methods, not_run),
        "targets": targets(runs, stats, [x for x in methods if x not in not_run]),
        "runs": len(runs),
        "wall_s": wall_s,
    }
