"""The protocol's methods: each one a Tune searcher and a Tune scheduler for the replay.

Every method gets the same search space (`Table.space`, its Tune `param_space` for Tune's own
searchers), the same rung geometry (`grace_period`, `reduction_factor`, `max_t` = the table's
steps), the same budget and the same two workers; the searcher seed is the run's seed. Tune's
searchers run behind a `ConcurrencyLimiter(max_concurrent=workers)`, as `ray_ml.tune` wraps them.

| name                        | searcher                                | scheduler                |
|-----------------------------|-----------------------------------------|--------------------------|
| grid                        | a coarse grid (<= 3 levels per ordered  | FIFO                     |
|                             | parameter, every categorical level),    |                          |
|                             | in seeded random order                  |                          |
| random+fifo                 | Tune's random search (`generate_variants`, as `BasicVariantGenerator`) | FIFO |
| random+asha                 | the same                                | ASHAScheduler            |
| random+median               | the same                                | MedianStoppingRule       |
| tpe+asha                    | OptunaSearch (TPESampler) through Tune  | ASHAScheduler            |
| optuna_tpe+median_pruner    | Optuna alone: ask/tell, TPESampler      | MedianPruner             |
| optuna_tpe+hyperband_pruner | Optuna alone: ask/tell, TPESampler      | HyperbandPruner          |
| nsga2                       | OptunaSearch (NSGAIISampler) through Tune, objectives (metric, cost_usd) | FIFO |
| bohb                        | TuneBOHB                                | HyperBandForBOHB         |
| blendsearch                 | FLAML BlendSearch through Tune (cost attribute `time_total_s`) | FIFO |
| cfo                         | FLAML CFO through Tune (likewise)       | FIFO                     |
| top_k_one_epoch             | every table config in random order, one step each; then the best 1/reduction_factor of each screened batch to the end | (its own, below) |
| cost_aware+asha             | ray_ml's CostAwareSearcher (defaults, the sweep's budget, no cost hints) | ASHAScheduler |

"Optuna alone" drives an Optuna study with `ask`/`tell` and its pruner's `should_prune` at each
report, on the replay's clock (the scheduler slot carries the pruner); no Tune searcher is in
between. The pruners get the rung geometry: `MedianPruner(n_warmup_steps=grace_period)` (Optuna
prunes from step `n_warmup_steps` on; steps are 1-based), `HyperbandPruner(min_resource=
grace_period, max_resource=max_t, reduction_factor=reduction_factor)`; all else is the default.
A trial the budget stopped mid-way is told PRUNED, one that failed or was never reported FAIL.

`top_k_one_epoch` screens configs at `grace_period` steps ("one epoch") and pauses them; once
half of the remaining budget is spent (or every config is screened, or the budget gate lets no
new trial start), it keeps the best
`ceil(n / reduction_factor)` of that batch, stops the others, and resumes the kept ones one at a
time to the end; then a new batch starts. Configs whose last step is the screening step simply
complete (final-fidelity tables: the method is then random search without repeats).

A method whose dependencies do not import is "not run", with the import error (`unavailable`).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher

from benchmarks.tune.replay import METRIC, Policy
from benchmarks.tune.tables import Table
from ray_ml.errors import ConfigError
from ray_ml.tune import DomainKind

__all__ = [
    "METHODS",
    "OURS",
    "TPE_VARIANTS",
    "Method",
    "MethodContext",
    "build_policy",
    "unavailable",
]

OURS = "cost_aware+asha"
TPE_VARIANTS = ("tpe+asha", "optuna_tpe+median_pruner", "optuna_tpe+hyperband_pruner")
_SCREEN_SHARE = 0.5  # top_k_one_epoch: share of the remaining budget each screening batch gets
_GRID_LEVELS = 3  # grid: levels kept per ordered parameter
# Tune's searchers return this string to end the search (`Searcher.suggest` is typed dict | None).
_FINISHED: Any = Searcher.FINISHED


@dataclass(frozen=True)
class MethodContext:
    """What every method is built from (the same for all but the seed).

    Attributes:
        seed: The run's seed.
        budget_usd: The sweep's budget.
        grace_period: Steps before a scheduler may stop a trial.
        reduction_factor: The halving rate of ASHA/HyperBand (and of top-k's selection).
        workers: Trials at once (the concurrency limit).
        num_samples: Most trials of the sweep (Tune's `num_samples`); None: no limit.
    """

    seed: int
    budget_usd: float
    grace_period: int
    reduction_factor: int
    workers: int
    num_samples: int | None = None


@dataclass(frozen=True)
class Method:
    """One method of the protocol.

    Attributes:
        name: As in the results JSON.
        description: One line for the results JSON.
        requires: Modules it imports; one missing makes it "not run".
        build: (table, context) -> the replay's `Policy`.
    """

    name: str
    description: str
    requires: tuple[str, ...]
    build: Callable[[Table, MethodContext], Policy]


# ---------------------------------------------------------------------------- schedulers
def _max_t(table: Table) -> int:
    return table.max_steps


def _grace(table: Table, ctx: MethodContext) -> int:
    return min(ctx.grace_period, _max_t(table))


def _asha(table: Table, ctx: MethodContext) -> TrialScheduler:
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=_max_t(table),
        grace_period=_grace(table, ctx),
        reduction_factor=ctx.reduction_factor,
    )


def _median(table: Table, ctx: MethodContext) -> TrialScheduler:
    from ray.tune.schedulers import MedianStoppingRule

    return MedianStoppingRule(time_attr="training_iteration", grace_period=_grace(table, ctx))


def _limit(searcher: Searcher, ctx: MethodContext) -> Searcher:
    return ConcurrencyLimiter(searcher, max_concurrent=ctx.workers)


# ----------------------------------------------------------------------------- searchers
class _RandomSearcher(Searcher):
    """Tune's random search: the param_space resolved as `BasicVariantGenerator` resolves it."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self._rng = np.random.RandomState(seed)
        self._space: dict[str, Any] = {}

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any
    ) -> bool:
        self._space = dict(config)
        return super().set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        from ray.tune.search.variant_generator import generate_variants

        _, spec = next(generate_variants({"config": self._space}, random_state=self._rng))
        return dict(spec["config"])

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        return None


class _GridSearcher(Searcher):
    """A coarse grid over the table's levels, in seeded random order, each point once."""

    def __init__(self, table: Table, seed: int) -> None:
        super().__init__()
        self._levels = []
        for j, name in enumerate(table.param_names):
            values = table.levels[j]
            ordered = table.space.params[name].kind is not DomainKind.choice
            if ordered and len(values) > _GRID_LEVELS:
                idx = np.unique(np.linspace(0, len(values) - 1, _GRID_LEVELS).round().astype(int))
                values = tuple(values[i] for i in idx)
            self._levels.append((name, values))
        self._size = math.prod(len(v) for _, v in self._levels)
        # A permutation of the grid's indices: the grid is never built as a list.
        self._order = np.random.default_rng(seed).permutation(min(self._size, 10**7))
        self._next = 0

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self._next >= len(self._order):
            return _FINISHED
        i = int(self._order[self._next])
        self._next += 1
        config = {}
        for name, values in reversed(self._levels):  # mixed-radix decoding of the index
            i, r = divmod(i, len(values))
            config[name] = values[r]
        return config

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        return None


# ----------------------------------------------------------------------- Optuna alone
class _Study:
    """One Optuna study, driven by ask/tell; shared by the searcher and pruner facades."""

    def __init__(self, table: Table, sampler: Any, pruner: Any) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        direction: Literal["minimize", "maximize"] = (
            "maximize" if table.mode == "max" else "minimize"
        )
        self.study = optuna.create_study(direction=direction, sampler=sampler, pruner=pruner)
        self.distributions = _optuna_distributions(table)
        self.trials: dict[str, Any] = {}
        self.pruned: set[str] = set()


def _optuna_distributions(table: Table) -> dict[str, Any]:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out: dict[str, Any] = {}
    for name, p in table.space.params.items():
        if p.kind is DomainKind.loguniform:
            out[name] = FloatDistribution(float(p.low), float(p.high), log=True)  # type: ignore[arg-type]
        elif p.kind is DomainKind.uniform:
            out[name] = FloatDistribution(float(p.low), float(p.high))  # type: ignore[arg-type]
        elif p.kind is DomainKind.integer:
            out[name] = IntDistribution(int(p.low), int(p.high))  # type: ignore[arg-type]
        else:
            out[name] = CategoricalDistribution(list(p.values))
    return out


class _AskTellSearcher(Searcher):
    def __init__(self, core: _Study, mode: str) -> None:
        super().__init__(metric=METRIC, mode=mode)
        self._core = core

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any
    ) -> bool:
        return False  # the study has its space and direction

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        trial = self._core.study.ask(self._core.distributions)
        self._core.trials[trial_id] = trial
        return dict(trial.params)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        from optuna.trial import TrialState

        trial = self._core.trials.pop(trial_id, None)
        if trial is None:
            return
        study = self._core.study
        if trial_id in self._core.pruned:
            study.tell(trial, state=TrialState.PRUNED)
        elif error or not result or METRIC not in result:
            study.tell(trial, state=TrialState.FAIL)
        elif not result.get("training_done", True):
            study.tell(trial, state=TrialState.PRUNED)  # the budget stopped it mid-way
        else:
            study.tell(trial, float(result[METRIC]))


class _PrunerScheduler(FIFOScheduler):
    """Optuna's pruner at each report: `trial.report` then `trial.should_prune`."""

    def __init__(self, core: _Study) -> None:
        super().__init__()
        self._core = core

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        ot = self._core.trials.get(trial.trial_id)
        if ot is None:
            return TrialScheduler.CONTINUE
        ot.report(float(result[METRIC]), int(result["training_iteration"]))
        if not result.get("training_done") and ot.should_prune():
            self._core.pruned.add(trial.trial_id)
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE


def _optuna_alone(pruner_kind: str) -> Callable[[Table, MethodContext], Policy]:
    def build(table: Table, ctx: MethodContext) -> Policy:
        import optuna

        if pruner_kind == "median":
            pruner: Any = optuna.pruners.MedianPruner(n_warmup_steps=_grace(table, ctx))
        else:
            pruner = optuna.pruners.HyperbandPruner(
                min_resource=_grace(table, ctx),
                max_resource=_max_t(table),
                reduction_factor=ctx.reduction_factor,
            )
        core = _Study(table, optuna.samplers.TPESampler(seed=ctx.seed), pruner)
        return Policy(
            _limit(_AskTellSearcher(core, table.mode), ctx), _PrunerScheduler(core), mode=table.mode
        )

    return build


# ------------------------------------------------------------------------------- top k
class _TopKScheduler(FIFOScheduler):
    """Screen at `grace` steps and pause; keep the best 1/rf of a batch (module docstring)."""

    def __init__(self, table: Table, ctx: MethodContext) -> None:
        super().__init__()
        self._grace = _grace(table, ctx)
        self._rf = ctx.reduction_factor
        self._budget = ctx.budget_usd
        self._sign = table.sign
        self._cost: dict[str, float] = {}  # trial id -> its last reported dollars
        self._waiting: dict[Any, float] = {}  # paused screened trial -> score
        self._queue: list[Any] = []  # kept trials, best first
        self._kept: set[Any] = set()
        self.screening = True
        self.exhausted = False  # the searcher has screened every config
        self._round_end = _SCREEN_SHARE * self._budget

    def _spent(self) -> float:
        return sum(self._cost.values())

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        self._cost[trial.trial_id] = float(result.get("cost_usd", 0.0))
        step = int(result["training_iteration"])
        if self.screening and step == self._grace and not result.get("training_done"):
            self._waiting[trial] = self._sign * float(result[METRIC])
            return TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        self._kept.discard(trial)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._kept.discard(trial)
        self._waiting.pop(trial, None)

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        pending = next((t for t in tune_controller.get_trials() if t.status == Trial.PENDING), None)
        # Select when the batch's share is spent, every config is screened, or no new trial
        # came (the budget gate cannot carry one): screened trials must not wait forever.
        if (
            self.screening
            and self._waiting
            and (self._spent() >= self._round_end or self.exhausted or pending is None)
        ):
            ranked = sorted(self._waiting, key=lambda t: -self._waiting[t])
            keep = max(1, math.ceil(len(ranked) / self._rf))
            self._waiting = {}
            for t in ranked[keep:]:
                tune_controller.stop_trial(t)
            self._queue = ranked[:keep]
            self._kept = set(self._queue)
            self.screening = False
        if not self.screening:
            while self._queue:
                t = self._queue.pop(0)
                if t.status == Trial.PAUSED:
                    return t
            if not any(t.status == Trial.RUNNING for t in self._kept):
                spent = self._spent()
                self._round_end = spent + _SCREEN_SHARE * max(0.0, self._budget - spent)
                self.screening = True
            return None
        return pending


class _ScreenSearcher(Searcher):
    """Every table config once, in seeded random order, while the scheduler screens."""

    def __init__(self, table: Table, seed: int, scheduler: _TopKScheduler) -> None:
        super().__init__()
        self._table = table
        self._order = np.random.default_rng(seed).permutation(table.n_configs)
        self._next = 0
        self._scheduler = scheduler

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if not self._scheduler.screening:
            return None
        if self._next >= len(self._order):
            self._scheduler.exhausted = True
            return _FINISHED
        row = int(self._order[self._next])
        self._next += 1
        return self._table.config(row)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        return None


def _top_k(table: Table, ctx: MethodContext) -> Policy:
    scheduler = _TopKScheduler(table, ctx)
    # No ConcurrencyLimiter: screened trials wait paused, and the two workers limit the rest.
    return Policy(_ScreenSearcher(table, ctx.seed, scheduler), scheduler, mode=table.mode)


# ------------------------------------------------------------------------------ builders
def _random(
    scheduler: Callable[[Table, MethodContext], TrialScheduler] | None,
) -> Callable[[Table, MethodContext], Policy]:
    def build(table: Table, ctx: MethodContext) -> Policy:
        sched = scheduler(table, ctx) if scheduler else FIFOScheduler()
        return Policy(_limit(_RandomSearcher(ctx.seed), ctx), sched, mode=table.mode)

    return build


def _grid(table: Table, ctx: MethodContext) -> Policy:
    return Policy(_limit(_GridSearcher(table, ctx.seed), ctx), FIFOScheduler(), mode=table.mode)


def _tpe_asha(table: Table, ctx: MethodContext) -> Policy:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = OptunaSearch(
        sampler=optuna.samplers.TPESampler(seed=ctx.seed), metric=METRIC, mode=table.mode
    )
    return Policy(_limit(searcher, ctx), _asha(table, ctx), mode=table.mode)


def _nsga2(table: Table, ctx: MethodContext) -> Policy:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = OptunaSearch(
        sampler=optuna.samplers.NSGAIISampler(seed=ctx.seed),
        metric=[METRIC, "cost_usd"],
        mode=[table.mode, "min"],
    )
    # As ray_ml's sweep: with two objectives Tune gets no metric; the scheduler is FIFO.
    return Policy(_limit(searcher, ctx), FIFOScheduler(), metric=None, mode=None)


def _bohb(table: Table, ctx: MethodContext) -> Policy:
    from ray.tune.schedulers import HyperBandForBOHB
    from ray.tune.search.bohb import TuneBOHB

    scheduler = HyperBandForBOHB(
        time_attr="training_iteration", max_t=_max_t(table), reduction_factor=ctx.reduction_factor
    )
    return Policy(_limit(TuneBOHB(seed=ctx.seed), ctx), scheduler, mode=table.mode)


def _flaml(kind: str) -> Callable[[Table, MethodContext], Policy]:
    def build(table: Table, ctx: MethodContext) -> Policy:
        from flaml import CFO, BlendSearch

        cls = BlendSearch if kind == "blendsearch" else CFO
        # The trial's held seconds are its cost (FLAML's "auto" uses them only under its own
        # time budget, which the protocol leaves to ray_ml's budget stopper).
        searcher = cls(metric=METRIC, mode=table.mode, seed=ctx.seed, cost_attr="time_total_s")
        return Policy(_limit(searcher, ctx), FIFOScheduler(), mode=table.mode)

    return build


def _cost_aware(table: Table, ctx: MethodContext) -> Policy:
    from ray_ml.tune import CostAwareSearcher

    searcher = CostAwareSearcher(
        table.space,
        METRIC,
        table.mode,
        budget_usd=ctx.budget_usd,
        seed=ctx.seed,
        horizon_trials=ctx.num_samples,  # as `run_sweep` passes `tune.num_samples`
    )
    return Policy(_limit(searcher, ctx), _asha(table, ctx), mode=table.mode)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "grid", "coarse grid (<=3 levels per ordered parameter), random order, FIFO", (), _grid
        ),
        Method("random+fifo", "Tune random search, FIFO", (), _random(None)),
        Method("random+asha", "Tune random search, ASHA", (), _random(_asha)),
        Method("random+median", "Tune random search, MedianStoppingRule", (), _random(_median)),
        Method("tpe+asha", "OptunaSearch TPE through Tune, ASHA", ("optuna",), _tpe_asha),
        Method(
            "optuna_tpe+median_pruner",
            "Optuna alone (ask/tell), TPE, MedianPruner",
            ("optuna",),
            _optuna_alone("median"),
        ),
        Method(
            "optuna_tpe+hyperband_pruner",
            "Optuna alone (ask/tell), TPE, HyperbandPruner",
            ("optuna",),
            _optuna_alone("hyperband"),
        ),
        Method(
            "nsga2",
            "OptunaSearch NSGA-II (metric, cost_usd) through Tune, FIFO",
            ("optuna",),
            _nsga2,
        ),
        Method(
            "bohb",
            "TuneBOHB + HyperBandForBOHB",
            ("hpbandster.optimizers.config_generators.bohb", "ConfigSpace"),
            _bohb,
        ),
        Method(
            "blendsearch", "FLAML BlendSearch through Tune, FIFO", ("flaml",), _flaml("blendsearch")
        ),
        Method("cfo", "FLAML CFO through Tune, FIFO", ("flaml",), _flaml("cfo")),
        Method(
            "top_k_one_epoch",
            "every config one step, keep the top 1/reduction_factor, train them to the end",
            (),
            _top_k,
        ),
        Method(
            OURS,
            "ray_ml CostAwareSearcher (defaults, no cost hints), ASHA",
            ("sklearn",),
            _cost_aware,
        ),
    )
}


def unavailable(name: str) -> str | None:
    """Why method `name` cannot run here (its first failing import), or None."""
    for module in METHODS[name].requires:
        try:
            importlib.import_module(module)
        except Exception as exc:  # an import may fail with more than ImportError
            return f"`import {module}` failed: {type(exc).__name__}: {exc}"
    return None


def build_policy(name: str, table: Table, ctx: MethodContext) -> Policy:
    """The replay policy of method `name` for `table`.

    Raises:
        ConfigError: An unknown method name (the message lists the methods).
    """
    if name not in METHODS:
        raise ConfigError(f"method {name!r} is unknown. Fix: use one of {', '.join(METHODS)}.")
    return METHODS[name].build(table, ctx)
