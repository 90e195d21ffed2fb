"""`run_sweep`: a cost-aware Ray Tune sweep whose trials are real Ray Train runs.

The data stage runs once; every trial is `train_driver_fn`, which applies the trial's params to
the run config and runs the training issue's `_fit` (a TorchTrainer or XGBoostTrainer) with a
Train callback that forwards each report to Tune with the trial's dollars so far (`cost_usd`:
its held resources x wall time x unit price). On the driver, `CostCallback` meters every trial
with the same catalog (pruned, failed and budget-stopped work included) and `BudgetStopper`
ends the sweep once committed spend reaches a budget: running trials stop at their next report,
so the overspend is at most one reporting interval of the trials running then.

The winner (by `tune.winner_rule`) is retrained at full fidelity, bundled and registered as
`candidate`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray_ml.cost import Budget, CostMeter, PriceCatalog
from ray_ml.errors import ConfigError
from ray_ml.train._run import _scaling_resources
from ray_ml.tune._results import (
    Leaderboard,
    NoWinnerError,
    choose_winner,
    default_objectives,
    pareto_front,
)
from ray_ml.tune._space import SearchSpace, apply_params, load_space

if TYPE_CHECKING:
    from ray_ml.config import RunConfig
    from ray_ml.data import PreparedData

__all__ = ["run_sweep", "run_tune_job", "train_driver_fn"]


def _cost_report_callback(usd_per_hour: float) -> Any:
    from ray.tune.integration.ray_train import TuneReportCallback

    class CostReportCallback(TuneReportCallback):
        """Tune's Train->Tune forwarder, adding the trial's billed dollars to every report."""

        def __init__(self) -> None:
            super().__init__()
            self._t0 = time.time()

        def after_report(
            self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any
        ) -> None:
            held_s = time.time() - self._t0
            first = {**metrics[0], "cost_usd": usd_per_hour * held_s / 3600.0, "held_s": held_s}
            super().after_report(run_context, [first, *metrics[1:]], checkpoint)

    return CostReportCallback()


def train_driver_fn(
    config: dict[str, Any], *, base: RunConfig, prepared: PreparedData, catalog: PriceCatalog
) -> None:
    """One Tune trial: the trial's params on top of `base`, trained by Ray Train."""
    from ray import tune

    from ray_ml.train._run import _fit

    cfg = apply_params(base, config)
    # Failures are handled by Tune, not inside the trial: a dead worker (a preempted spot node)
    # fails the trial, Tune restarts it (`train.max_failures` times) and it continues its own
    # Train run from the last checkpoint; the meter charges the work lost since as waste.
    cfg = dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, resume=True, max_failures=0)
    )
    trial_id = tune.get_context().get_trial_id()
    rate = catalog.price_of(_scaling_resources(cfg))
    _fit(
        cfg,
        prepared,
        prepared.splits.train,
        prepared.splits.validation,
        f"trial_{trial_id}",
        [_cost_report_callback(rate)],
    )


def _make_callback_and_stopper(
    meter: CostMeter,
    budget: Budget,
    max_t: int,
    prior_usd: float,
    state_path: Path,
    train_resources: dict[str, float],
) -> tuple[Any, Any]:
    from ray import tune

    class BudgetStopper(tune.Stopper):
        """Stops the whole sweep when a budget is reached (checked after every result)."""

        def __init__(self) -> None:
            self.reason: str | None = None

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return False

        def stop_all(self) -> bool:
            if self.reason is None:
                self.reason = budget.exceeded(meter) or _prior_exceeded()
            return self.reason is not None

    def _prior_exceeded() -> str | None:
        if budget.usd is not None and prior_usd and meter.committed() + prior_usd >= budget.usd:
            return f"`tune.budget_usd` reached: spent ${meter.committed() + prior_usd:.4f} (incl. ${prior_usd:.4f} before the resume) of ${budget.usd:.4f}."
        return None

    stopper = BudgetStopper()

    class CostCallback(tune.Callback):
        """Meters every trial on the driver; records how each ended and at which rung."""

        def __init__(self) -> None:
            self.records: dict[str, dict[str, Any]] = {}
            self._last_progress = 0.0

        def on_trial_start(
            self, iteration: int, trials: list[Any], trial: Any, **info: Any
        ) -> None:
            # A trial holds its Train workers' resources (its own driver asks for 0 CPUs).
            tid = trial.trial_id
            if tid not in meter.trial_ids:
                meter.start(tid, train_resources)
            elif meter.trial_cost(tid).status == "paused":
                meter.resume(tid)  # restarted after a failure (see on_trial_recover)
            else:
                meter.restart(tid)

        def on_trial_recover(
            self, iteration: int, trials: list[Any], trial: Any, **info: Any
        ) -> None:
            # The trial's actor died (a spot node preempted, a crash); Tune restarts it from its
            # last checkpoint: the work since that checkpoint is waste, and nothing is held
            # until the trial starts again.
            if trial.trial_id in meter.trial_ids:
                meter.restart(trial.trial_id)
                meter.pause(trial.trial_id)

        def on_trial_result(
            self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
        ) -> None:
            # Train's checkpoints reach Tune as a `checkpoint_path` metric (TuneReportCallback).
            meter.update(trial.trial_id, checkpoint="checkpoint_path" in result)
            self._progress(trials)

        def _progress(self, trials: list[Any], force: bool = False) -> None:
            """One stderr line with trials and spend vs budget, at most every 10 s."""
            now = time.monotonic()
            if not force and now - self._last_progress < 10.0:
                return
            self._last_progress = now
            done = len(self.records)
            pruned = sum(1 for r in self.records.values() if r["status"] == "pruned")
            running = sum(1 for t in trials if t.status == "RUNNING")
            spent = meter.committed() + prior_usd
            cap = f" of ${budget.usd:.4f} budget" if budget.usd is not None else ""
            print(
                f"[sweep] {done} done ({pruned} pruned), {running} running, "
                f"${spent:.4f} spent{cap}",
                file=sys.stderr,
                flush=True,
            )

        def _end(self, trial: Any, status: str) -> None:
            last = trial.last_result or {}
            it = int(last.get("training_iteration", 0))
            if status == "terminated":
                if it >= max_t:
                    status = "completed"
                elif stopper.reason is not None:
                    status = "budget_stopped"
                elif last.get("done"):
                    status = "completed"  # the trial ended on its own (early stopping)
                else:
                    status = "pruned"
            if trial.trial_id in meter.trial_ids:
                meter.finish(trial.trial_id, status)
            self.records[trial.trial_id] = {
                "status": status,
                "iterations": it,
                "pruned_at_rung": it if status == "pruned" else None,
            }
            state_path.write_text(
                json.dumps(
                    {"records": self.records, "costs": meter.to_records(), "prior_usd": prior_usd},
                    default=str,
                )
            )

        def on_trial_complete(
            self, iteration: int, trials: list[Any], trial: Any, **info: Any
        ) -> None:
            self._end(trial, "terminated")
            self._progress(trials, force=True)

        def on_trial_error(
            self, iteration: int, trials: list[Any], trial: Any, **info: Any
        ) -> None:
            self._end(trial, "failed")

    return CostCallback(), stopper


def _searcher(cfg: RunConfig, space: SearchSpace) -> Any:
    t = cfg.tune
    kind = str(t.searcher)
    if kind in ("random", "grid"):
        return None  # Tune's BasicVariantGenerator: random samples and grid_search expansion
    if kind == "cost_aware":
        from ray_ml.tune._cost_aware import CostAwareSearcher

        return CostAwareSearcher(
            space, t.metric, str(t.mode), budget_usd=t.budget_usd, seed=cfg.seed
        )
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    if kind == "optuna_tpe":
        return OptunaSearch(sampler=optuna.samplers.TPESampler(seed=cfg.seed))
    if kind == "optuna_nsga2":  # two objectives: quality and dollars
        return OptunaSearch(
            sampler=optuna.samplers.NSGAIISampler(seed=cfg.seed),
            metric=[t.metric, "cost_usd"],
            mode=[str(t.mode), "min"],
        )
    raise ConfigError(f"tune.searcher={kind!r} is not supported.")


def _scheduler(cfg: RunConfig) -> Any:
    from ray.tune.schedulers import (
        ASHAScheduler,
        FIFOScheduler,
        HyperBandScheduler,
        MedianStoppingRule,
    )

    t = cfg.tune
    kind = str(t.scheduler)
    # The same rung settings for every method, so that comparisons are fair.
    if kind == "asha":
        return ASHAScheduler(
            time_attr="training_iteration",
            max_t=t.max_t,
            grace_period=t.grace_period,
            reduction_factor=t.reduction_factor,
        )
    if kind == "hyperband":
        return HyperBandScheduler(
            time_attr="training_iteration", max_t=t.max_t, reduction_factor=t.reduction_factor
        )
    if kind == "median":
        return MedianStoppingRule(time_attr="training_iteration", grace_period=t.grace_period)
    return FIFOScheduler()


def _max_concurrent(cfg: RunConfig) -> int:
    import ray

    if cfg.tune.max_concurrent_trials:
        return cfg.tune.max_concurrent_trials
    need = _scaling_resources(cfg)
    have = ray.cluster_resources()
    fits = [math.floor(have.get(k, 0.0) / v) for k, v in need.items() if v > 0]
    return max(1, min(fits) if fits else 1)


def _sweep_placement_groups() -> set[str] | None:
    """Placement groups of this job that are not removed (None: no State API to ask)."""
    import ray
    from ray.util.state import list_placement_groups

    try:
        groups = list_placement_groups(
            filters=[("creator_job_id", "=", ray.get_runtime_context().get_job_id())],
            limit=10_000,
            raise_on_missing_output=False,
        )
    except Exception:  # no dashboard on a joined cluster: nothing to reap with
        return None
    return {g.placement_group_id for g in groups if g.state != "REMOVED"}


def _reap_placement_groups(before: set[str] | None) -> int:
    """Remove the worker placement groups that trials stopped during start-up left behind.

    Ray 2.60: a trial stopped (by the budget, say) while its Train controller is still starting
    its workers leaves the workers' placement group CREATED, with nobody left to remove it; the
    next Train run then waits for those CPUs forever. Once `fit()` has returned no trial of this
    sweep runs, so every group this job created during the sweep and still holds is such a
    leftover.
    """
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    after = _sweep_placement_groups()
    if before is None or after is None:
        return 0
    leaked = after - before
    for pg_id in leaked:
        remove_placement_group(PlacementGroup(PlacementGroupID.from_hex(pg_id)))
    return len(leaked)


def run_sweep(
    cfg: RunConfig, *, prepared: PreparedData | None = None, space: SearchSpace | None = None
) -> dict[str, Any]:
    """Run the configured sweep on the current Ray cluster; see the module docstring.

    Args:
        cfg: The run config (`tune.*` drives the sweep).
        prepared: The data stage's output, if already computed.
        space: A search space (the Hydra sweeper builds one); None loads `tune.space`.
    """
    from ray import tune

    from ray_ml.data import prepare_data
    from ray_ml.train._run import run_training

    t0 = time.perf_counter()
    t = cfg.tune
    space = space or load_space(t.space, base=cfg)
    catalog = PriceCatalog.from_config(cfg.cost)
    budget = Budget.from_config(t)
    storage = Path(cfg.storage_path).resolve()
    sweep_name = f"{cfg.name}-sweep"
    sweep_dir = storage / sweep_name
    sweep_dir.mkdir(parents=True, exist_ok=True)
    state_path = sweep_dir / "sweep_state.json"
    tune_path = storage / "tune"
    exp_dir = tune_path / sweep_name
    if not t.resume:  # a fresh sweep: nothing of an earlier one with this name carries over
        shutil.rmtree(exp_dir, ignore_errors=True)
        state_path.unlink(missing_ok=True)
    prior = json.loads(state_path.read_text()) if (t.resume and state_path.exists()) else {}
    prior_usd = float(prior.get("prior_usd", 0.0)) + sum(
        float(c.get("billed_usd", 0.0)) for c in prior.get("costs", [])
    )

    prepared = prepared or prepare_data(cfg.data, cfg.seed, storage / cfg.name / "data")
    # Materialized once, before any trial holds CPUs: trials then need no Ray Data tasks.
    prepared.splits.train = prepared.splits.train.materialize()
    prepared.splits.validation = prepared.splits.validation.materialize()

    meter = CostMeter(catalog, clock=time.time)
    callback, stopper = _make_callback_and_stopper(
        meter, budget, t.max_t, prior_usd, state_path, _scaling_resources(cfg)
    )
    trainable = tune.with_resources(
        tune.with_parameters(train_driver_fn, base=cfg, prepared=prepared, catalog=catalog),
        # The trial only drives Train; its workers hold the CPUs. Tune wants a non-empty bundle:
        # one byte of memory reserves nothing that matters and leaves every CPU to the workers.
        {"cpu": 0, "memory": 1},
    )
    from ray_ml.tracking import log_sweep, mlflow_callback

    tracker = mlflow_callback(cfg)  # before any trial spends money: a down server fails here
    run_config = tune.RunConfig(
        name=sweep_name,
        storage_path=str(tune_path),
        stop=stopper,
        callbacks=[callback] + ([tracker] if tracker is not None else []),
        failure_config=tune.FailureConfig(max_failures=max(cfg.train.max_failures, 0)),
        verbose=1,
    )
    # Tune saves its experiment state on an adaptive period; trials here last seconds to
    # minutes, so save at least every second: a killed driver then loses at most the trials
    # that finished in its last second, which the resumed sweep reruns.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    if t.resume and tune.Tuner.can_restore(str(exp_dir)):
        tuner = tune.Tuner.restore(
            str(exp_dir), trainable=trainable, resume_unfinished=True, resume_errored=True
        )
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=space.to_tune(),
            tune_config=tune.TuneConfig(
                metric=t.metric,
                mode=str(t.mode),
                search_alg=_searcher(cfg, space),
                scheduler=_scheduler(cfg),
                num_samples=t.num_samples,
                max_concurrent_trials=_max_concurrent(cfg),
                reuse_actors=t.reuse_actors,
            ),
            run_config=run_config,
        )
    groups_before = _sweep_placement_groups()
    grid = tuner.fit()
    reaped = _reap_placement_groups(groups_before)

    records = []
    for result in (grid[i] for i in range(len(grid))):
        trial_id = str(result.metrics.get("trial_id")) if result.metrics else None
        if trial_id is None:
            continue
        rec = callback.records.get(
            trial_id,
            {
                "status": "failed" if result.error else "completed",
                "iterations": 0,
                "pruned_at_rung": None,
            },
        )
        cost = meter.trial_cost(trial_id) if trial_id in meter.trial_ids else None
        metrics = {
            k: v
            for k, v in (result.metrics or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        records.append(
            {
                "trial_id": trial_id,
                "status": rec["status"],
                "config": {k: v for k, v in (result.config or {}).items()},
                "metrics": metrics,
                "iterations": rec["iterations"],
                "pruned_at_rung": rec["pruned_at_rung"],
                "cost_usd": cost.billed_usd if cost else metrics.get("cost_usd", 0.0),
                "algorithmic_cost_usd": cost.algorithmic_usd if cost else None,
                "waste_usd": cost.waste_usd if cost else 0.0,
                "wall_s": cost.held_s if cost else None,
                "latency_ms": None,
                "checkpoint": result.checkpoint.path if result.checkpoint else None,
            }
        )
    board = Leaderboard(records, t.metric, str(t.mode))
    board.to_parquet(sweep_dir / "leaderboard.parquet")
    board.to_csv(sweep_dir / "leaderboard.csv")
    print(board, flush=True)
    front = pareto_front(records, default_objectives(t.metric, str(t.mode)))
    totals = meter.total()
    try:
        winner = choose_winner(
            records, str(t.winner_rule), t.metric, str(t.mode), t.winner_eps, t.latency_bound_ms
        )
    except NoWinnerError as exc:
        if stopper.reason is None:
            raise
        # The budget ran out before any trial finished: say so, with what was spent.
        summary = {
            "job": "tune",
            "name": cfg.name,
            "best": None,
            "why": str(exc),
            "cost_usd": round(totals.billed_usd + prior_usd, 6),
            "budget_usd": budget.usd,
            "stop_reason": stopper.reason,
            "trials": len(records),
            "pruned": 0,
            "pareto": [],
        }
        summary["mlflow_run_id"] = log_sweep(cfg, summary, records)
        (sweep_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        return summary
    best_cfg = apply_params(cfg, winner.record["config"])
    final = run_training(best_cfg, prepared=prepared, run_name=f"{cfg.name}-winner")
    from ray_ml.registry import Registry

    version = Registry(cfg.serve.registry_root).register(
        final["bundle"],
        cfg.name,
        aliases=["candidate"],
        reason=f"sweep {sweep_name} winner {winner.trial_id}",
    )
    registered = {"model": cfg.name, "version": version.version, "alias": "candidate"}
    summary = {
        "job": "tune",
        "name": cfg.name,
        "best": {
            "trial_id": winner.trial_id,
            "config": winner.record["config"],
            t.metric: winner.value,
            "rule": winner.reason,
        },
        "cost_usd": round(totals.billed_usd + prior_usd, 6),
        "waste_usd": round(totals.waste_usd, 6),
        "budget_usd": budget.usd,
        "stop_reason": stopper.reason,
        "reaped_placement_groups": reaped,
        "trials": len(records),
        "pruned": sum(1 for r in records if r["status"] == "pruned"),
        "status_counts": {
            s: sum(1 for r in records if r["status"] == s)
            for s in sorted({r["status"] for r in records})
        },
        "pareto": [
            {
                "trial_id": r["trial_id"],
                t.metric: r["metrics"].get(t.metric),
                "cost_usd": r["cost_usd"],
            }
            for r in front
        ],
        "leaderboard": str(sweep_dir / "leaderboard.parquet"),
        "winner_metrics": final["metrics"],
        "bundle": final["bundle"],
        "registered": registered,
        "prices": {
            "illustrative": catalog.illustrative,
            "read_on": catalog.prices_read_on,
            "pricing": str(cfg.cost.pricing),
        },
        "wall_s": round(time.perf_counter() - t0, 3),
    }
    summary["mlflow_run_id"] = log_sweep(cfg, summary, records)
    (sweep_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def run_tune_job(cfg: RunConfig, space: SearchSpace | None = None) -> dict[str, Any]:
    """`python -m jobs.tune`: embedded (or joined) Ray, then `run_sweep`."""
    from ray_ml.cluster import start_ray, stop_ray

    space = space or load_space(cfg.tune.space, base=cfg)  # a bad space fails before Ray starts
    # Train V2 under Tune frees each finished trial's worker placement group through its
    # PlacementGroupCleaner, which asks the State API (served by the dashboard): without it the
    # groups leak and the next trial waits for CPUs forever (seen on 2.60 here).
    handle = start_ray(cfg.cluster, include_dashboard=True)
    try:
        return run_sweep(cfg, space=space)
    finally:
        stop_ray(handle)
