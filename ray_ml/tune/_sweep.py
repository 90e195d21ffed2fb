"""`run_sweep`: a cost-aware Ray Tune sweep whose trials train real models, with books.

The data stage runs once. Every trial is `train_driver_fn`, which applies the trial's params to
the run config and trains:

- **in its own process** when the config fits one worker (`scaling.num_workers=1`): the training
  loop runs inside the Tune trial (`TrialSession`), reporting to Tune with real Tune checkpoints.
  No Train controller, worker group or DDP set-up: on this 2-core box those cost 15-25 s per
  trial, most of a small trial's bill;
- **as a Ray Train run** otherwise (DDP, distributed XGBoost), its reports forwarded to Tune with
  the trial's dollars (`CostReportCallback`).

The books (`_books.SweepBooks`, fed by the hooks in `_hooks.py`) meter every trial with the
price catalog, record how each ended (from the scheduler's own decisions), keep the budget, and
survive the driver: a resumed sweep continues the same meter, statuses and budget.

The winner (by `tune.winner_rule`) is retrained at full fidelity, bundled and registered as
`candidate`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray_ml.config import Scheduler, Searcher
from ray_ml.console import current_console, progress_enabled
from ray_ml.cost import Budget, PriceCatalog
from ray_ml.errors import ConfigError
from ray_ml.train import (
    FitInputs,
    TrialSession,
    class_counts,
    fit_inputs,
    fit_trainer,
    loop_spec,
    run_loop,
    scaling_resources,
    train_parts,
)
from ray_ml.tune._books import SweepBooks, SweepLayout, TrialRecord
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

__all__ = [
    "registered_reason",
    "run_sweep",
    "run_tune_job",
    "train_driver_fn",
    "trains_in_trial",
    "warm_start_points",
]


# Training splits up to this many rows are swept on one worker per trial (`tune.trial_workers`).
ONE_WORKER_ROWS = 500_000


def _trial_base(cfg: RunConfig, space: SearchSpace, train_rows: int) -> RunConfig:
    """The config trials start from: `scaling.num_workers` sized to the data."""
    workers = cfg.tune.trial_workers
    if workers is None:
        if "scaling.num_workers" in space.keys or train_rows > ONE_WORKER_ROWS:
            return cfg
        workers = 1
    return dataclasses.replace(cfg, scaling=dataclasses.replace(cfg.scaling, num_workers=workers))


def trains_in_trial(cfg: RunConfig) -> bool:
    """True when a trial with this config trains in its own process (one worker)."""
    return cfg.scaling.num_workers == 1


def _trial_cfg(base: RunConfig, config: Mapping[str, Any]) -> RunConfig:
    cfg = apply_params(base, config)
    # Failures are handled by Tune, not inside the trial: a dead worker (a preempted spot node)
    # fails the trial, Tune restarts it (`train.max_failures` times) and it continues from its
    # last checkpoint; the books charge the work lost since as waste.
    return dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, resume=True, max_failures=0)
    )


def _cost_report_callback(usd_per_hour: float) -> Any:
    from ray.tune.integration.ray_train import TuneReportCallback

    class CostReportCallback(TuneReportCallback):
        """Tune's Train->Tune forwarder, adding the trial's dollars and its workers' CPU time."""

        def __init__(self) -> None:
            # Unannotated in Ray; `untyped_calls_exclude` does not reach calls through super().
            super().__init__()  # type: ignore[no-untyped-call]
            self._t0 = time.time()

        def after_report(
            self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any
        ) -> None:
            held_s = time.time() - self._t0
            cpu_s = sum(float(m.get("cpu_s", 0.0)) for m in metrics)  # every worker's
            first = {
                **metrics[0],
                "cost_usd": usd_per_hour * held_s / 3600.0,
                "held_s": held_s,
                "cpu_s": cpu_s,
            }
            super().after_report(run_context, [first, *metrics[1:]], checkpoint)

    return CostReportCallback()


def train_driver_fn(
    config: dict[str, Any],
    *,
    base: RunConfig,
    prepared: PreparedData,
    inputs: FitInputs,
    counts: list[int],
    catalog: PriceCatalog,
) -> None:
    """One Tune trial: the trial's params on top of `base`, trained (see the module docstring)."""
    from ray import tune

    cfg = _trial_cfg(base, config)
    rate = catalog.price_of(scaling_resources(cfg))
    trial_id = tune.get_context().get_trial_id()
    if trains_in_trial(cfg):
        t0 = time.time()
        spec = loop_spec(cfg, prepared, train_rows=inputs.spec.train_rows, counts=counts)
        spec.chaos_dir = str(Path(cfg.storage_path).resolve() / "chaos" / f"trial_{trial_id}")

        def dollars() -> dict[str, float]:
            held_s = time.time() - t0
            return {"cost_usd": rate * held_s / 3600.0, "held_s": held_s}

        session = TrialSession(
            {"train": inputs.train, "validation": inputs.validation},
            use_gpu=cfg.scaling.use_gpu,
            extra=dollars,
        )
        run_loop(FitInputs(spec, inputs.train, inputs.validation), session)
        return
    fit_trainer(
        cfg,
        prepared,
        inputs.train,
        inputs.validation,
        f"trial_{trial_id}",
        [_cost_report_callback(rate)],
    )


def _trial_resources(base: RunConfig) -> Any:
    """Per trial config: what the trial's own process reserves."""
    from ray.tune.execution.placement_groups import PlacementGroupFactory

    def resources(config: dict[str, Any]) -> PlacementGroupFactory:
        cfg = apply_params(base, config)
        if trains_in_trial(cfg):
            # The trial trains itself: it holds its one worker's resources.
            return PlacementGroupFactory([scaling_resources(cfg)])
        # The trial only drives Train; its workers hold the CPUs. Tune wants a non-empty
        # bundle: one byte of memory reserves nothing that matters.
        return PlacementGroupFactory([{"CPU": 0, "memory": 1}])

    return resources


def _searcher(cfg: RunConfig, space: SearchSpace, warm: list[dict[str, Any]] | None = None) -> Any:
    warm = list(warm or [])
    t = cfg.tune
    kind = t.searcher
    if kind in (Searcher.random, Searcher.grid):
        return None  # Tune's BasicVariantGenerator: random samples and grid_search expansion
    if kind == Searcher.cost_aware:
        from ray_ml.tune._cost_aware import CostAwareSearcher

        return CostAwareSearcher(
            space,
            t.metric,
            str(t.mode),
            budget_usd=t.budget_usd,
            seed=cfg.seed,
            horizon_trials=t.num_samples,  # alpha cools with the budget or the trials, first
            points_to_evaluate=warm,
        )
    from ray.tune.search.optuna import OptunaSearch

    from ray_ml.tune._samplers import NSGAIISampler, TPESampler

    if kind == Searcher.optuna_tpe:
        return OptunaSearch(
            sampler=TPESampler(seed=cfg.seed),
            metric=t.metric,
            mode=str(t.mode),
            points_to_evaluate=warm or None,
        )
    if kind == Searcher.optuna_nsga2:  # two objectives: quality and dollars
        return OptunaSearch(
            sampler=NSGAIISampler(seed=cfg.seed),
            metric=[t.metric, "cost_usd"],
            mode=[str(t.mode), "min"],
            points_to_evaluate=warm or None,
        )
    raise ConfigError(f"tune.searcher={str(kind)!r} is not supported.")


def warm_start_points(leaderboard: str | Path, space: SearchSpace, k: int) -> list[dict[str, Any]]:
    """The `k` best eligible configs of an earlier sweep's leaderboard that fit `space`.

    A warm start for the next sweep (`run_sweep(warm_start=...)`): rows ranked by the
    leaderboard (eligible trials only, best first), their tuned keys read back as the search
    space encodes them. Rows that do not fit `space` (a key missing, or a value outside its
    domain since the space was edited: Optuna would refuse it) are left out; a missing
    leaderboard gives none.
    """
    import pyarrow.parquet as pq

    path = Path(leaderboard)
    if k < 1 or not path.is_file():
        return []
    rows = pq.read_table(path).to_pylist()
    points: list[dict[str, Any]] = []
    for row in sorted((r for r in rows if r.get("rank") is not None), key=lambda r: r["rank"]):
        if not all(key in row and space.params[key].contains(row[key]) for key in space.keys):
            continue
        point = {key: row[key] for key in space.keys}
        if point not in points:
            points.append(point)
        if len(points) == k:
            break
    return points


def _search_alg(
    cfg: RunConfig,
    space: SearchSpace,
    books: SweepBooks,
    concurrency: int,
    warm: list[dict[str, Any]],
) -> Any:
    """The searcher, limited to `concurrency` trials at once, behind the budget gate."""
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, SearchGenerator

    from ray_ml.tune._hooks import BudgetGate

    searcher = _searcher(cfg, space, warm)
    inner: Any
    if searcher is None:
        # Seeded: the same config and seed sample the same trials.
        inner = BasicVariantGenerator(
            max_concurrent=concurrency, random_state=cfg.seed, points_to_evaluate=warm or None
        )
    else:
        inner = SearchGenerator(ConcurrencyLimiter(searcher, max_concurrent=concurrency))
    return BudgetGate(inner, books)


def _scheduler(cfg: RunConfig, with_metric: bool) -> Any:
    from ray.tune.schedulers import (
        ASHAScheduler,
        FIFOScheduler,
        HyperBandScheduler,
        MedianStoppingRule,
    )

    t = cfg.tune
    kind = t.scheduler
    # With a two-objective searcher (NSGA-II) the TuneConfig has no metric (Tune would overwrite
    # the searcher's two objectives with one), so the scheduler gets it directly.
    common: dict[str, Any] = {"time_attr": "training_iteration"}
    if with_metric:
        common.update(metric=t.metric, mode=str(t.mode))
    # The same rung settings for every method, so that comparisons are fair.
    if kind == Scheduler.asha:
        return ASHAScheduler(
            max_t=t.max_t,
            grace_period=t.grace_period,
            reduction_factor=t.reduction_factor,
            **common,
        )
    if kind == Scheduler.hyperband:
        return HyperBandScheduler(max_t=t.max_t, reduction_factor=t.reduction_factor, **common)
    if kind == Scheduler.median:
        return MedianStoppingRule(grace_period=t.grace_period, **common)
    return FIFOScheduler()


def _max_concurrent(cfg: RunConfig) -> int:
    """Trials at once: `tune.max_concurrent_trials`, else what the cluster can hold at full scale.

    Full scale is the autoscaler's maximum (`cluster.autoscaling_config`), not the resources
    the cluster has now: an autoscaling cluster that starts with no workers would otherwise
    run one trial at a time.
    """
    import ray

    from ray_ml.cluster import autoscaler_capacity

    if cfg.tune.max_concurrent_trials:
        return cfg.tune.max_concurrent_trials
    need = scaling_resources(cfg)
    have = dict(ray.cluster_resources())
    for key, total in (autoscaler_capacity(cfg.cluster.autoscaling_config) or {}).items():
        have[key] = max(have.get(key, 0.0), total)
    fits = [math.floor(have.get(k, 0.0) / v) for k, v in need.items() if v > 0]
    return max(1, min(fits) if fits else 1)


def _state_api_address() -> str:
    """The address of the Ray this driver is connected to, for State API calls.

    Without one, the State API looks for "the" Ray on the machine and fails when there are two
    ("Found multiple active Ray instances"). The dashboard's bare host:port took 40 s to fail
    here; the GCS address answers at once.
    """
    import ray

    return str(ray.get_runtime_context().gcs_address)


def _sweep_placement_groups(address: str) -> set[str] | None:
    """Placement groups of this job that are not removed (None: no State API to ask)."""
    import ray
    from ray.util.state import list_placement_groups

    try:
        groups = list_placement_groups(  # the address of the Ray we mean: there may be two
            address=address,
            filters=[("creator_job_id", "=", ray.get_runtime_context().get_job_id())],
            limit=10_000,
            raise_on_missing_output=False,
        )
    except Exception:  # no dashboard on a joined cluster: nothing to reap with
        return None
    return {g.placement_group_id for g in groups if g.state != "REMOVED"}


def _reap_placement_groups(before: set[str] | None, address: str) -> int:
    """Remove the worker placement groups that trials stopped during start-up left behind.

    Ray 2.60: a trial stopped (by the budget, say) while its Train controller is still starting
    its workers leaves the workers' placement group CREATED, with nobody left to remove it; the
    next Train run then waits for those CPUs forever. Once `fit()` has returned no trial of this
    sweep runs, so every group this job created during the sweep and still holds is such a
    leftover.
    """
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    after = _sweep_placement_groups(address)
    if before is None or after is None:
        return 0
    leaked = after - before
    for pg_id in leaked:
        remove_placement_group(PlacementGroup(PlacementGroupID.from_hex(pg_id)))
    return len(leaked)


def _records(grid: Any, books: SweepBooks) -> list[TrialRecord]:
    """One record per trial the books saw, with Tune's final config, metrics and checkpoint."""
    from_tune: dict[str, Any] = {}
    for result in (grid[i] for i in range(len(grid))):
        trial_id = (result.metrics or {}).get("trial_id")
        if trial_id is not None:
            from_tune[str(trial_id)] = result
    records = []
    for trial_id in books.facts:
        result = from_tune.get(trial_id)
        records.append(
            books.record(
                trial_id,
                config=result.config if result is not None and result.config else None,
                metrics=result.metrics if result is not None and result.metrics else None,
                checkpoint=result.checkpoint.path
                if result is not None and result.checkpoint
                else None,
            )
        )
    return records


def run_sweep(
    cfg: RunConfig,
    *,
    prepared: PreparedData | None = None,
    space: SearchSpace | None = None,
    warm_start: list[dict[str, Any]] | None = None,
    lineage: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the configured sweep on the current Ray cluster; see the module docstring.

    The winner is registered as `candidate` of model `serve.model` (null: the run's `name`).

    Args:
        cfg: The run config (`tune.*` drives the sweep).
        prepared: The data stage's output, if already computed.
        space: A search space (the Hydra sweeper builds one); None loads `tune.space`.
        warm_start: Configs tried first (`warm_start_points` of an earlier sweep); they count
            toward `tune.num_samples`.
        lineage: Extra lineage kept in the registered version's record (a retrain's trigger
            and data partitions).
    """
    from ray import tune

    from ray_ml.data import prepare_data
    from ray_ml.train import run_training
    from ray_ml.tune._hooks import BooksCallback, BudgetStopper, RecordingScheduler, attach_books

    t0 = time.perf_counter()
    t = cfg.tune
    space = space or load_space(t.space, base=cfg)
    catalog = PriceCatalog.from_config(cfg.cost)
    budget = Budget.from_config(t)
    layout = SweepLayout(Path(cfg.storage_path).resolve(), cfg.name)
    layout.sweep_dir.mkdir(parents=True, exist_ok=True)
    if not t.resume:  # a fresh sweep: nothing of an earlier one with this name carries over
        shutil.rmtree(layout.experiment, ignore_errors=True)
        layout.state.unlink(missing_ok=True)

    prepared = prepared or prepare_data(cfg.data, cfg.seed, layout.storage / cfg.name / "data")
    # Prepared (oversampled if configured) and materialized once, before any trial holds CPUs:
    # trials then need no Ray Data tasks.
    inputs = fit_inputs(cfg, prepared, prepared.splits.train, prepared.splits.validation)
    counts = class_counts(prepared, train_parts(prepared))
    base = _trial_base(cfg, space, inputs.spec.train_rows)

    def resources_of(config: Mapping[str, Any]) -> dict[str, float]:
        return scaling_resources(apply_params(base, config))

    books = SweepBooks.open(catalog, budget, t.max_t, layout, resources_of, resume=t.resume)
    in_trial = trains_in_trial(base) and all(
        not k.startswith("scaling.num_workers") for k in space.keys
    )
    # Reused actors are safe for trials that train in their own process, unless the scheduler
    # pauses trials (HyperBand, median): Ray 2.60 then logged one trial's results into another
    # reused trial's files (seen here), so pausing schedulers get a fresh actor per trial.
    pauses = t.scheduler in (Scheduler.hyperband, Scheduler.median)
    reuse = t.reuse_actors if t.reuse_actors is not None else (in_trial and not pauses)
    trainable = tune.with_resources(
        tune.with_parameters(
            train_driver_fn,
            base=base,
            prepared=prepared,
            inputs=inputs,
            counts=counts,
            catalog=catalog,
        ),
        _trial_resources(base),
    )
    from ray_ml.tune._tracking import log_sweep, mlflow_callback

    tracker = mlflow_callback(cfg)  # before any trial spends money: a down server fails here
    callback = BooksCallback(
        books,
        progress=progress_enabled(),
        metric=None if t.searcher == Searcher.optuna_nsga2 else t.metric,
        mode=str(t.mode),
        total=t.num_samples,
    )
    stopper = BudgetStopper(books)
    attach_books(books)  # also for hooks Tune unpickles from its own state on a resume
    callbacks = [callback] + ([tracker] if tracker is not None else [])
    # Tune saves its experiment state on an adaptive period; trials here last seconds to
    # minutes, so save at least every second: a killed driver then loses at most the trials
    # that finished in its last second, which the resumed sweep reruns.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    exp_dir = str(layout.experiment)
    if t.resume and tune.Tuner.can_restore(exp_dir):
        tuner = tune.Tuner.restore(
            exp_dir, trainable=trainable, resume_unfinished=True, resume_errored=True
        )
        # Ray 2.60: `Tuner.restore` unpickles the RunConfig, scheduler and search algorithm of
        # the sweep's first start (tuner.pkl), callbacks and stopper included; give them this
        # driver's books, or the resumed sweep would meter nothing.
        internal = tuner._local_tuner
        assert internal is not None  # a local (not Ray Client) driver
        restored = internal.get_run_config()
        restored.callbacks = callbacks
        restored.stop = stopper
        tune_cfg = internal._tune_config
        attach_books(books, tune_cfg.search_alg, tune_cfg.scheduler)
    else:
        concurrency = _max_concurrent(base)
        multi = t.searcher == Searcher.optuna_nsga2
        tuner = tune.Tuner(
            trainable,
            param_space=space.to_tune(),
            tune_config=tune.TuneConfig(
                # None with NSGA-II: Tune would replace its two objectives with this one.
                metric=None if multi else t.metric,
                mode=None if multi else str(t.mode),
                search_alg=_search_alg(cfg, space, books, concurrency, list(warm_start or [])),
                scheduler=RecordingScheduler(_scheduler(cfg, with_metric=multi), books),
                num_samples=t.num_samples,
                reuse_actors=reuse,
            ),
            run_config=tune.RunConfig(
                name=layout.sweep_name,
                storage_path=str(layout.tune_root),
                stop=stopper,
                callbacks=callbacks,
                failure_config=tune.FailureConfig(max_failures=max(cfg.train.max_failures, 0)),
                verbose=1 if current_console().verbose else 0,  # Tune's trial tables
            ),
        )
    state_api = _state_api_address()
    groups_before = _sweep_placement_groups(state_api)
    with current_console().quiet_stdout():  # Tune's own boxes and tables go to the log
        grid = tuner.fit()
    books.close()  # trials Tune stopped without telling its callbacks (budget stops)
    reaped = _reap_placement_groups(groups_before, state_api)

    trial_records = _records(grid, books)
    books.save(force=True)
    records = [r.to_dict() for r in trial_records]
    board = Leaderboard(records, t.metric, str(t.mode))
    board.to_parquet(layout.leaderboard)
    board.to_csv(layout.leaderboard_csv)
    if current_console().verbose:
        print(board, flush=True)
    front = pareto_front(records, default_objectives(t.metric, str(t.mode)))
    totals = books.meter.total()
    statuses = [r["status"] for r in records]
    summary: dict[str, Any] = {
        "job": "tune",
        "name": cfg.name,
        "best": None,
        "cost_usd": round(totals.billed_usd, 6),
        "algorithmic_cost_usd": round(totals.algorithmic_usd, 6),
        "waste_usd": round(totals.waste_usd, 6),
        "budget_usd": budget.usd,
        "stop_reason": books.stop_reason,
        "resumes": books.resumes,
        "trains_in_trial": in_trial,
        "trial_workers": base.scaling.num_workers,
        "reaped_placement_groups": reaped,
        "trials": len(records),
        "pruned": statuses.count("pruned"),
        "status_counts": {s: statuses.count(s) for s in sorted(set(statuses))},
        "pareto": [
            {
                "trial_id": r["trial_id"],
                t.metric: r["metrics"].get(t.metric),
                "cost_usd": r["cost_usd"],
                "latency_ms": r["latency_ms"],
            }
            for r in front
        ],
        "leaderboard": str(layout.leaderboard),
        "prices": {
            "illustrative": catalog.illustrative,
            "read_on": catalog.prices_read_on,
            "pricing": str(cfg.cost.pricing),
        },
    }
    try:
        winner = choose_winner(
            records, str(t.winner_rule), t.metric, str(t.mode), t.winner_eps, t.latency_bound_ms
        )
    except NoWinnerError as exc:
        if books.stop_reason is None:
            raise
        # The budget ran out before any trial finished: say so, with what was spent.
        summary.update({"why": str(exc), "wall_s": round(time.perf_counter() - t0, 3)})
        summary["mlflow_run_id"] = log_sweep(cfg, summary, records)
        layout.summary.write_text(json.dumps(summary, indent=2, default=str))
        return summary
    best_cfg = apply_params(base, winner.record["config"])  # as the trial trained
    # A winner that trained every epoch already is the full-fidelity model: bundle its own
    # checkpoint instead of paying for the same training again.
    done = books.facts[winner.trial_id].training_done and winner.record.get("checkpoint")
    final = run_training(
        best_cfg,
        prepared=prepared,
        run_name=f"{cfg.name}-winner",
        from_checkpoint=str(winner.record["checkpoint"]) if done else None,
    )
    from ray_ml.registry import Registry

    # The full-fidelity retrain of the winner, outside the sweep's books (0 when reused).
    winner_usd = (
        0.0
        if done
        else round(catalog.price_of(scaling_resources(best_cfg)) * final["wall_s"] / 3600, 6)
    )
    model = cfg.serve.model or cfg.name
    version = Registry(cfg.serve.registry_root).register(
        final["bundle"],
        model,
        aliases=["candidate"],
        reason=f"{registered_reason(layout.sweep_name)}{winner.trial_id}",
        lineage={
            "sweep": layout.sweep_name,
            # What the version cost to make, for the serving app's /metrics and /v1/models.
            "cost_usd": {
                "sweep": summary["cost_usd"],
                "winner_training": winner_usd,
                "pricing": str(cfg.cost.pricing),
            },
            **dict(lineage or {}),
        },
    )
    summary.update(
        {
            "best": {
                "trial_id": winner.trial_id,
                "config": winner.record["config"],
                t.metric: winner.value,
                "latency_ms": winner.record.get("latency_ms"),
                "rule": winner.reason,
            },
            "winner_metrics": final["metrics"],
            "winner_retrained": not done,
            "bundle": final["bundle"],
            "registered": {"model": model, "version": version.version, "alias": "candidate"},
            "winner_cost_usd": winner_usd,
            "wall_s": round(time.perf_counter() - t0, 3),
        }
    )
    summary["mlflow_run_id"] = log_sweep(cfg, summary, records)
    layout.summary.write_text(json.dumps(summary, indent=2, default=str))
    return summary


def registered_reason(sweep_name: str) -> str:
    """How the registry's record of a sweep's winner starts (`reason`): a resumed driver finds
    a winner its killed predecessor registered by it, and does not register it twice."""
    return f"sweep {sweep_name} winner "


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
