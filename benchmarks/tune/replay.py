"""Replay a sweep on a `Table`: Ray Tune's own searchers and schedulers on a simulated clock.

Nothing here starts Ray. The replay plays the part of Tune's `TuneController` for one sweep
with `workers` trial slots (2 in the protocol), and drives the real objects through the same
calls, in the same order, as Tune 2.60 does (`ray/tune/execution/tune_controller.py`):

- **New trials** (`_maybe_update_trial_queue` / `SearchGenerator`): when a slot is free and no
  trial is pending, the searcher (already wrapped in a `ConcurrencyLimiter` where the method
  wants one, as `ray_ml.tune` does) is asked `suggest(trial_id)`; `None` means not now,
  `Searcher.FINISHED` ends the search. Before asking, the budget gate of `ray_ml.tune` decides
  whether the budget can carry a new trial (`SweepBooks.may_start`, as `BudgetGate` does), and
  at most `num_samples` trials are created (Tune's `num_samples`). A new trial goes to
  `scheduler.on_trial_add`.
- **Starting** (`_maybe_add_actors`): `scheduler.choose_trial_to_run(controller)` first, else the
  oldest pending trial. A paused trial that is chosen resumes from its last step.
- **A report** (`_process_trial_result`): the budget stopper first (`SweepBooks.on_result` +
  `stop_at_report`, as `BudgetStopper` does); if it does not stop the trial,
  `scheduler.on_trial_result(controller, trial, result)`, whose STOP/PAUSE go to the books (as
  `RecordingScheduler` does); unless the decision is STOP, `searcher.on_trial_result`. Then the
  decision is carried out: STOP and the last step end the trial (`stop_trial`: scheduler
  `on_trial_complete` and searcher `on_trial_complete` with the last result), PAUSE frees the
  slot. Tune's duplicate final result, sent when a function trainable returns, is not replayed.
- **The sweep's budget stop** (`BudgetStopper.stop_all`): the replay computes the moment the
  running trials' spend reaches the budget and stops everything then; trials are billed up to
  that moment (Tune checks every loop step, at most 0.1 s apart when idle, and bills up to its
  release margin; the replay checks continuously, which gives the same bill).

The controller that schedulers see (`_Controller`) has what Tune's schedulers use:
`get_trials`, `get_live_trials`, `stop_trial` and `search_alg.searcher` (HyperBandForBOHB calls
`on_pause`/`on_unpause` on it). Trials are stand-ins with `trial_id`, `status`, `config`,
`last_result` and `is_saving` (always False: checkpoints cost nothing here).

**Time and money.** A trial holds one CPU ("one thread per trial"); its step k takes
`cost_s[k] - cost_s[k-1]` simulated seconds; the books' `CostMeter` (the real one, on the
simulated clock) bills held seconds at the catalog's CPU price, on-demand or spot. Results carry
what ray_ml's trials report: `val_metric`, `cost_usd` (the trial's billed dollars so far),
`time_total_s`, `training_iteration`, `training_done`, a checkpoint flag (every step
checkpoints) and the config as Tune flattens it (`config/NAME`).

**Spot scenario** (`preempt_per_hour > 0`): each running step may be preempted, with an
exponential time to preemption per held hour; the work since the last checkpoint (the start of
the step) is lost and billed as waste (`SweepBooks.on_recover`, the meter's `restart`), and the
trial restarts the step at once on a replacement node.

**No hang.** A run ends when the search is over and nothing is live, when the budget stop fires,
or when nothing runs and nothing can start (`ended_by="stalled"`: Tune itself would wait
forever there); also after `max_events` reports or `deadline_s` wall seconds.

The global `random` and `numpy.random` generators are seeded per run: ASHA draws its bracket
and hpbandster its samples from them.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from benchmarks.tune.tables import Table
from ray_ml.cost import Budget, CostMeter, PriceCatalog
from ray_ml.errors import ConfigError
from ray_ml.tune import SweepBooks, SweepLayout

__all__ = ["METRIC", "Policy", "Replay", "ReplayConfig", "replay"]

METRIC = "val_metric"  # the result key every method optimizes
_RESOURCES = {"CPU": 1.0}  # one thread per trial
_LIVE = (Trial.PENDING, Trial.RUNNING, Trial.PAUSED)


@dataclass(frozen=True)
class ReplayConfig:
    """One replayed sweep's settings (the protocol's, apart from the seed).

    Attributes:
        budget_usd: The sweep's dollar budget (`tune.budget_usd`).
        num_samples: Most trials created (Tune's `num_samples`).
        workers: Trials running at once.
        pricing: `on_demand` or `spot`.
        preempt_per_hour: Spot preemptions per held hour of a trial; 0 for none.
        seed: Seeds the preemptions and the global generators.
        max_events: Most reports before the run is cut (`ended_by="max_events"`).
        deadline_s: Most wall seconds before the run is cut (`ended_by="timeout"`); None: none.
    """

    budget_usd: float
    num_samples: int
    workers: int = 2
    pricing: str = "on_demand"
    preempt_per_hour: float = 0.0
    seed: int = 0
    max_events: int = 1_000_000
    deadline_s: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.budget_usd) and self.budget_usd > 0):
            raise ConfigError(
                f"`budget_usd` must be positive, but got budget_usd={self.budget_usd!r}. Fix: "
                "pass a positive budget (e.g. --budget-trials 50)."
            )
        for name, value in (("num_samples", self.num_samples), ("workers", self.workers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"`{name}` must be an integer >= 1, but got {name}={value!r}. Fix: pass a "
                    "positive whole number."
                )
        if not (math.isfinite(self.preempt_per_hour) and self.preempt_per_hour >= 0):
            raise ConfigError(
                f"`preempt_per_hour` must be >= 0, but got preempt_per_hour="
                f"{self.preempt_per_hour!r}. Fix: pass a rate such as 0.2, or 0 for none."
            )


@dataclass
class Policy:
    """What a method hands the replay: a Tune searcher and a Tune scheduler.

    Attributes:
        searcher: A `ray.tune.search.Searcher` (a `ConcurrencyLimiter` around one, typically).
        scheduler: A `ray.tune.schedulers.TrialScheduler`.
        metric: What `set_search_properties` gets, as Tune's `TuneConfig.metric` (None when the
            searcher has its own objectives, as NSGA-II does).
        mode: Likewise `TuneConfig.mode`.
    """

    searcher: Searcher
    scheduler: TrialScheduler
    metric: str | None = METRIC
    mode: str | None = None


@dataclass(frozen=True)
class Replay:
    """What one replayed sweep did: every report the searchers saw, and how it ended.

    Report arrays (one entry per report, in time order): `t_s` (simulated seconds),
    `spent_usd` (the sweep's billed dollars then, running trials included), `trial` (trial
    index), `row` (table row), `step`, `val`, `test`, `trial_usd` (that trial's billed dollars
    then) and `infer_ms`.

    Attributes:
        budget_usd: The budget.
        spent_usd_total: Billed dollars at the end.
        waste_usd: Billed dollars that bought nothing (preempted work).
        n_trials: Trials started.
        statuses: Final status -> trials (`completed`, `pruned`, `budget_stopped`, ...).
        ended_by: `budget` (the stop fired), `budget_cannot_carry` (the gate refused a new
            trial with nothing live), `num_samples`, `search_finished`, `stalled`,
            `max_events` or `timeout`.
        stop_reason: The books' stop reason, if any.
        preemptions: Spot preemptions.
        wall_s: Wall seconds the replay took.
    """

    t_s: np.ndarray
    spent_usd: np.ndarray
    trial: np.ndarray
    row: np.ndarray
    step: np.ndarray
    val: np.ndarray
    test: np.ndarray
    trial_usd: np.ndarray
    infer_ms: np.ndarray
    budget_usd: float
    spent_usd_total: float
    waste_usd: float
    n_trials: int
    statuses: dict[str, int]
    ended_by: str
    stop_reason: str | None
    preemptions: int
    wall_s: float

    @property
    def overspend_frac(self) -> float:
        """Spend beyond the budget, as a share of it (0 when within)."""
        return max(0.0, self.spent_usd_total - self.budget_usd) / self.budget_usd


# ------------------------------------------------------------------------------ stand-ins
class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class _Books(SweepBooks):
    """ray_ml's sweep books, kept in memory: a replay writes no state file."""

    def save(self, force: bool = False) -> None:
        return None


@dataclass(eq=False)  # hashed by identity, as Tune's Trial
class _Trial:
    trial_id: str
    config: dict[str, Any]
    row: int
    index: int
    status: str = Trial.PENDING
    is_saving: bool = False
    started: bool = False
    steps_done: int = 0
    last_result: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.trial_id


class _SearchAlg:
    """Tune's `SearchGenerator` as schedulers see it: `search_alg.searcher`."""

    def __init__(self, searcher: Searcher) -> None:
        self.searcher = searcher


class _Controller:
    """The parts of `TuneController` that Tune's schedulers call."""

    def __init__(self, replayer: _Replayer) -> None:
        self._r = replayer
        self.search_alg = _SearchAlg(replayer.policy.searcher)

    def get_trials(self) -> list[_Trial]:
        return self._r.trials

    def get_live_trials(self) -> set[_Trial]:
        return {t for t in self._r.trials if t.status in _LIVE}

    def stop_trial(self, trial: _Trial) -> None:
        self._r.stop_trial(trial)


# ------------------------------------------------------------------------------- replayer
class _Replayer:
    def __init__(
        self, table: Table, policy: Policy, cfg: ReplayConfig, catalog: PriceCatalog
    ) -> None:
        self.table = table
        self.policy = policy
        self.cfg = cfg
        self.clock = _Clock()
        meter = CostMeter(catalog, cfg.pricing, clock=self.clock, opened_at=0.0)
        self.books = _Books(
            meter,
            Budget(usd=cfg.budget_usd),
            table.max_steps,
            SweepLayout(Path("replay-never-written"), "replay"),
            lambda config: dict(_RESOURCES),
        )
        # Tune's schedulers are typed for TuneController and Trial; they get the stand-ins.
        self.scheduler: Any = policy.scheduler
        self.trials: list[_Trial] = []
        self.running: dict[_Trial, tuple[float, str]] = {}  # next event: (time, report|preempt)
        self.ctrl = _Controller(self)
        self.search_finished = False
        self.ended_by: str | None = None
        self.attempts = 0
        self.preemptions = 0
        self.rng = np.random.default_rng([cfg.seed, 7])
        self.rows: list[tuple[float, ...]] = []

    # --------------------------------------------------------------------------- setup
    def setup(self) -> None:
        p = self.policy
        mode = p.mode or self.table.mode
        metric = p.metric
        # As `tune.Tuner` does: the searcher gets the param_space; False means "I have mine".
        p.searcher.set_search_properties(metric, mode if metric else None, self.table.param_space())
        if metric:
            p.scheduler.set_search_properties(metric, mode)

    # ----------------------------------------------------------------------------- loop
    def run(self) -> None:
        start = time.perf_counter()
        self.fill()
        events = 0
        while True:
            if events >= self.cfg.max_events:
                self.ended_by = "max_events"
                break
            if (
                self.cfg.deadline_s is not None
                and time.perf_counter() - start > self.cfg.deadline_s
            ):
                self.ended_by = "timeout"
                break
            nxt = min(self.running.items(), key=lambda kv: kv[1][0], default=None)
            t_stop = self._budget_stop_time()
            if t_stop is not None and (nxt is None or t_stop <= nxt[1][0]):
                self.clock.t = max(self.clock.t, t_stop)
                if self.books.stop_all() is not None:
                    self.ended_by = "budget"
                    break
                # Rounding left the spend a hair under the budget: carry on to the next event.
            if nxt is None:
                if not self.fill():
                    self.ended_by = self._idle_reason()
                    break
                continue
            trial, (t, kind) = nxt
            self.clock.t = max(self.clock.t, t)
            events += 1
            if kind == "preempt":
                self._preempt(trial)
            else:
                self._report(trial)
            self.fill()

    def _idle_reason(self) -> str:
        live = any(t.status in _LIVE for t in self.trials)
        if self.ended_by is not None and not live:
            return self.ended_by
        if self.search_finished and not live:
            return "search_finished"
        return "stalled"

    def _budget_stop_time(self) -> float | None:
        meter = self.books.meter
        burn = meter.burn_rate()  # USD per hour of the trials holding resources
        if burn <= 0 or self.books.budget.usd is None:
            return None
        left = self.books.budget.usd - meter.committed()
        return self.clock.t + max(0.0, left) / burn * 3600.0

    # -------------------------------------------------------------------------- trials
    def fill(self) -> bool:
        """Start trials while slots are free; True if any started."""
        started = False
        for _ in range(self.cfg.workers + len(self.trials) + 1):
            if len(self.running) >= self.cfg.workers:
                break
            if not any(t.status == Trial.PENDING for t in self.trials):
                self._new_trial()
            chosen = self.scheduler.choose_trial_to_run(self.ctrl)
            if chosen is None or chosen.status not in (Trial.PENDING, Trial.PAUSED):
                chosen = next((t for t in self.trials if t.status == Trial.PENDING), None)
            if chosen is None:
                break
            self._start(chosen)
            started = True
        return started

    def _new_trial(self) -> None:
        if self.search_finished:
            return
        why = self.books.may_start(pending=0)
        if why is not None:
            if not any(t.status in _LIVE for t in self.trials):
                if self.books.stop_reason is None and self.books.has_estimate():
                    self.books.finish_search(why)  # as BudgetGate: nothing runs, nothing fits
                if self.books.stop_reason is not None:
                    self.search_finished = True
                    self.ended_by = "budget_cannot_carry"
            return
        if len(self.trials) >= self.cfg.num_samples:
            self.search_finished = True
            self.ended_by = "num_samples"
            return
        trial_id = f"t{self.attempts:06d}"  # Tune draws a new id for every attempt too
        self.attempts += 1
        config = self.policy.searcher.suggest(trial_id)
        if config is None:
            return
        if config == Searcher.FINISHED:
            self.search_finished = True
            self.ended_by = "search_finished"
            return
        trial = _Trial(trial_id, dict(config), self.table.index_of(config), len(self.trials))
        self.trials.append(trial)
        self.scheduler.on_trial_add(self.ctrl, trial)

    def _start(self, trial: _Trial) -> None:
        # The books start a new trial's meter, or resume a paused one's.
        self.books.on_start(trial.trial_id, trial.config)
        trial.started = True
        trial.status = Trial.RUNNING
        self._schedule_step(trial)

    def _schedule_step(self, trial: _Trial) -> None:
        cost = self.table.cost_s[trial.row]
        k = trial.steps_done  # the step about to run is k + 1
        seconds = float(cost[k] - (cost[k - 1] if k > 0 else 0.0))
        end = self.clock.t + seconds
        if self.cfg.preempt_per_hour > 0:
            at = self.clock.t + float(self.rng.exponential(3600.0 / self.cfg.preempt_per_hour))
            if at < end:
                self.running[trial] = (at, "preempt")
                return
        self.running[trial] = (end, "report")

    def _preempt(self, trial: _Trial) -> None:
        self.preemptions += 1
        self.books.on_recover(trial.trial_id)  # the work since the last checkpoint is waste
        self.books.on_start(trial.trial_id, trial.config)  # a replacement node, at once
        self._schedule_step(trial)

    def _report(self, trial: _Trial) -> None:
        tid, row = trial.trial_id, trial.row
        trial.steps_done += 1
        k = trial.steps_done
        done = k >= int(self.table.n_steps[row])
        cost = self.books.meter.trial_cost(tid)
        result: dict[str, Any] = {
            "trial_id": tid,
            "training_iteration": k,
            METRIC: float(self.table.val[row, k - 1]),
            "cost_usd": cost.billed_usd,
            "time_total_s": cost.held_s,
            "time_this_iter_s": float(
                self.table.cost_s[row, k - 1] - (self.table.cost_s[row, k - 2] if k > 1 else 0.0)
            ),
            "training_done": done,
            "has_checkpoint": True,
            "done": False,
            **{f"config/{key}": value for key, value in trial.config.items()},
        }
        # 1. The budget stopper sees every result first.
        self.books.on_result(tid, result)
        self.rows.append(
            (
                self.clock.t,
                self.books.meter.committed(),
                trial.index,
                row,
                k,
                float(self.table.val[row, k - 1]),
                float(self.table.test[row, k - 1]),
                self.books.meter.trial_cost(tid).billed_usd,
                float(self.table.infer_ms[row]),
            )
        )
        if self.books.stop_at_report(tid):
            decision = TrialScheduler.STOP
        else:
            # 2. The scheduler, its STOP/PAUSE recorded in the books.
            decision = self.scheduler.on_trial_result(self.ctrl, trial, result)
            if decision in (TrialScheduler.STOP, TrialScheduler.PAUSE):
                self.books.on_decision(tid, decision)
        if decision != TrialScheduler.STOP:
            # 3. The searcher hears of results only of trials that go on.
            self.policy.searcher.on_trial_result(tid, result)
        trial.last_result = result
        self.running.pop(trial, None)
        if trial.status != Trial.RUNNING:
            return  # the scheduler stopped it while deciding
        if decision == TrialScheduler.STOP or done:  # a trainable past its last step returns
            trial.last_result = dict(result, done=True)
            self.stop_trial(trial)
        elif decision == TrialScheduler.PAUSE:
            trial.status = Trial.PAUSED  # the books paused its meter at the decision
        else:
            self._schedule_step(trial)

    def stop_trial(self, trial: _Trial) -> None:
        """Tune's `TuneController.stop_trial`: end a trial, telling scheduler and searcher."""
        if trial.status not in _LIVE:
            return
        if trial.status in (Trial.PENDING, Trial.PAUSED):
            self.scheduler.on_trial_remove(self.ctrl, trial)
            self.policy.searcher.on_trial_complete(trial.trial_id)
        else:
            self.scheduler.on_trial_complete(self.ctrl, trial, trial.last_result)
            self.policy.searcher.on_trial_complete(trial.trial_id, result=trial.last_result)
        trial.status = Trial.TERMINATED
        self.running.pop(trial, None)
        if trial.started:
            self.books.on_end(trial.trial_id, error=False)

    # ------------------------------------------------------------------------- results
    def finish(self, wall_s: float) -> Replay:
        self.books.close()  # bills and ends what the budget stop (or a stall) left running
        meter = self.books.meter
        totals = meter.total()
        statuses = Counter(self.books.status_of(t.trial_id).value for t in self.trials if t.started)
        cols = list(zip(*self.rows, strict=True)) if self.rows else [()] * 9
        arr = [np.asarray(c, dtype=float) for c in cols]
        return Replay(
            t_s=arr[0],
            spent_usd=arr[1],
            trial=arr[2].astype(np.int64),
            row=arr[3].astype(np.int64),
            step=arr[4].astype(np.int64),
            val=arr[5],
            test=arr[6],
            trial_usd=arr[7],
            infer_ms=arr[8],
            budget_usd=self.cfg.budget_usd,
            spent_usd_total=totals.billed_usd,
            waste_usd=totals.waste_usd,
            n_trials=sum(1 for t in self.trials if t.started),
            statuses=dict(statuses),
            ended_by=self.ended_by or "stalled",
            stop_reason=self.books.stop_reason,
            preemptions=self.preemptions,
            wall_s=wall_s,
        )


def replay(
    table: Table,
    policy: Policy | Callable[[], Policy],
    cfg: ReplayConfig,
    catalog: PriceCatalog,
) -> Replay:
    """Replay one sweep of `policy` on `table` (see the module docstring).

    Args:
        table: The benchmark table.
        policy: The method's searcher and scheduler, or a function building them (called after
            the global generators are seeded, so samplers that read them at construction are
            reproducible too).
        cfg: Budget, workers, pricing, preemptions, seed.
        catalog: Prices; a trial holds one CPU.

    Returns:
        The reports and how the sweep ended.
    """
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % (2**32))
    start = time.perf_counter()
    built = policy() if callable(policy) else policy
    r = _Replayer(table, built, cfg, catalog)
    r.setup()
    r.run()
    return r.finish(time.perf_counter() - start)
