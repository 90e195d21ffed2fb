"""A sweep's books: one typed record per trial, the files a sweep writes, and the budget rules.

Pure Python (no Ray): Tune's callbacks, stopper, scheduler and searcher wrappers in `_hooks.py`
feed `SweepBooks` the events they see; everything that reads a sweep (leaderboard, Pareto
front, winner rules, report, MLflow) reads the `TrialRecord`s it produces.

**How a trial ended** is decided from what happened to it, never from Tune's `done` flag
(Tune sets `done` on a trial its scheduler stopped, too):

- `failed`: Tune gave up on it (an error after its retries).
- `completed`: its own last report says `training_done` (every epoch, or its own early
  stopping), or it reached `tune.max_t`, or it ended without anyone stopping it.
- `pruned`: the scheduler decided to stop it (ASHA, HyperBand, median); its rung is the
  iteration of that decision.
- `budget_stopped`: the budget stopped it (at a report, or when the sweep's budget ran out).

**The books survive the driver**: `sweep_state.json` holds every trial's facts and the cost
meter's state, written after every result (at most once per `_SAVE_EVERY_S`) and at every end.
A resumed sweep restores both, so dollars, statuses and the budget run on across crashes; the
work a crash lost since a trial's last checkpoint is charged as waste.

**Budgets that hold** (`tune.budget_usd`): a new trial starts only when the remaining budget can
carry it to its first report (estimated from the trials so far; until one has reported, one
trial at a time); a running trial is stopped at a report when the sweep's burn rate over that
trial's next reporting interval would cross the budget; and the whole sweep stops when spend
plus a fraction of a second of burn reaches the budget.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ray_ml._json import finite_number
from ray_ml.cost import Budget, CostMeter, PriceCatalog, TrialStatus

__all__ = ["SweepBooks", "SweepLayout", "TrialRecord"]

_STATE_VERSION = 2
_SAVE_EVERY_S = 1.0
# The sweep stops once spend plus this many seconds of the running trials' burn reaches the
# budget: Tune checks its stopper every loop step (0.1 s when idle), so this covers the time
# between the check and the trials' release.
_STOP_MARGIN_S = 0.5


@dataclass(frozen=True)
class SweepLayout:
    """Where a sweep's files live, under `storage_path`.

    Attributes:
        storage: The run's storage directory (absolute).
        name: The run's name (`cfg.name`); the sweep is `<name>-sweep`.
    """

    storage: Path
    name: str

    @property
    def sweep_name(self) -> str:
        return f"{self.name}-sweep"

    @property
    def sweep_dir(self) -> Path:
        """Our files: state, leaderboard, summary."""
        return self.storage / self.sweep_name

    @property
    def state(self) -> Path:
        return self.sweep_dir / "sweep_state.json"

    @property
    def leaderboard(self) -> Path:
        return self.sweep_dir / "leaderboard.parquet"

    @property
    def leaderboard_csv(self) -> Path:
        return self.sweep_dir / "leaderboard.csv"

    @property
    def summary(self) -> Path:
        return self.sweep_dir / "summary.json"

    @property
    def tune_root(self) -> Path:
        """Tune's `storage_path`."""
        return self.storage / "tune"

    @property
    def experiment(self) -> Path:
        """Tune's experiment directory (trial dirs, `result.json`, Tune's own state)."""
        return self.tune_root / self.sweep_name


@dataclass(frozen=True)
class TrialRecord:
    """One trial of a sweep, as the books have it.

    Attributes:
        trial_id: The Tune trial id.
        status: How it ended (see the module docstring), or `running`/`paused`.
        config: Its tuned params (dotted keys).
        metrics: Its last reported numeric metrics.
        iterations: Reports made (Tune's `training_iteration`).
        pruned_at_rung: The iteration at which the scheduler stopped it, or None.
        cost_usd: Billed dollars: held resources x held seconds x unit price.
        algorithmic_cost_usd: CPU seconds inside the trial at the CPU-hour price.
        waste_usd: Billed dollars that bought nothing (failures, work lost since a checkpoint).
        held_s: Seconds its resources were held (pauses excluded).
        lost_s: Held seconds of work lost to restores.
        restarts: Times it was restored from a checkpoint.
        cpu_seconds: CPU seconds of its processes, or None if never reported.
        latency_ms: Inference ms per 1,000 rows of its model, or None if never measured.
        checkpoint: Its last checkpoint's path, or None.
    """

    trial_id: str
    status: TrialStatus
    config: dict[str, Any]
    metrics: dict[str, float]
    iterations: int
    pruned_at_rung: int | None
    cost_usd: float
    algorithmic_cost_usd: float
    waste_usd: float
    held_s: float
    lost_s: float
    restarts: int
    cpu_seconds: float | None
    latency_ms: float | None
    checkpoint: str | None

    def to_dict(self) -> dict[str, Any]:
        """The record as the result tools take it (`ray_ml.tune._results`); `wall_s` = held."""
        data = asdict(self)
        data["status"] = self.status.value
        data["wall_s"] = self.held_s
        return data


@dataclass
class _Facts:
    """What the driver saw of one trial (plain data: saved in `sweep_state.json`)."""

    trial_id: str
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    iterations: int = 0
    training_done: bool = False
    pruned_at: int | None = None  # the scheduler's STOP, at this iteration
    budget_stopped: bool = False
    ended: str | None = None  # "terminated" or "error"
    checkpoint: str | None = None
    report_usd: list[float] = field(default_factory=list)  # billed dollars at each report
    report_held_s: list[float] = field(default_factory=list)  # held seconds at each report
    # Tune started it again from an older checkpoint after it had trained every epoch (a driver
    # killed before Tune saved its state): its reports are a replay, and it stops at the first.
    replaying: bool = False


def _numeric(result: Mapping[str, Any]) -> dict[str, float]:
    return {k: x for k, v in result.items() if (x := finite_number(v)) is not None}


class SweepBooks:
    """The driver's books of one sweep; see the module docstring.

    Args:
        meter: The cost meter (restored from the state file on a resume).
        budget: The sweep's budgets.
        max_t: `tune.max_t`: a trial that reached it completed the sweep's fidelity.
        layout: Where the state file goes.
        resources_of: A trial config -> the resources it holds (its workers, or its own process).
        facts: Facts restored from a state file.
        stop_reason: A budget stop restored from a state file.
    """

    def __init__(
        self,
        meter: CostMeter,
        budget: Budget,
        max_t: int,
        layout: SweepLayout,
        resources_of: Callable[[Mapping[str, Any]], dict[str, float]],
        *,
        facts: dict[str, _Facts] | None = None,
        stop_reason: str | None = None,
    ) -> None:
        self.meter = meter
        self.budget = budget
        self.max_t = max_t
        self.layout = layout
        self._resources_of = resources_of
        self.facts: dict[str, _Facts] = facts or {}
        self.stop_reason = stop_reason
        self.resumes = 0
        self._saved_at = 0.0
        self._stopped_at: float | None = None  # when the sweep's budget stop fired

    # ------------------------------------------------------------------------- construction
    @classmethod
    def open(
        cls,
        catalog: PriceCatalog,
        budget: Budget,
        max_t: int,
        layout: SweepLayout,
        resources_of: Callable[[Mapping[str, Any]], dict[str, float]],
        *,
        resume: bool,
        clock: Callable[[], float] = time.time,
    ) -> SweepBooks:
        """Fresh books, or on `resume` the books of the sweep's last driver (if it left any)."""
        if not (resume and layout.state.exists()):
            return cls(CostMeter(catalog, clock=clock), budget, max_t, layout, resources_of)
        state = json.loads(layout.state.read_text())
        if state.get("version") != _STATE_VERSION:
            raise ValueError(
                f"{layout.state} was written by another version of ray_ml (state version "
                f"{state.get('version')!r}, this one reads {_STATE_VERSION}). Fix: run the sweep "
                "afresh with tune.resume=false, or under another `name`."
            )
        meter = CostMeter.restore(catalog, state["meter"], clock=clock)
        facts = {tid: _Facts(**raw) for tid, raw in state["facts"].items()}
        books = cls(
            meter,
            budget,
            max_t,
            layout,
            resources_of,
            facts=facts,
            stop_reason=state.get("stop_reason"),
        )
        books.resumes = int(state.get("resumes", 0)) + 1
        for tid in meter.trial_ids:
            f = facts.get(tid)
            if (
                f is not None
                and f.ended is None
                and meter.trial_cost(tid).status is TrialStatus.paused
            ):
                # Its driver died under it: the work since its last checkpoint is lost, and
                # nothing is held until the resumed sweep starts it again.
                meter.restart(tid)
                meter.pause(tid)
        return books

    def _trial(self, trial_id: str) -> _Facts:
        if trial_id not in self.facts:
            self.facts[trial_id] = _Facts(trial_id)
        return self.facts[trial_id]

    # ------------------------------------------------------------------------------ events
    def on_start(self, trial_id: str, config: Mapping[str, Any]) -> None:
        """Tune started the trial's process (first start, restart after a failure, resume)."""
        f = self._trial(trial_id)
        f.config = dict(config)
        f.ended = None
        if trial_id not in self.meter.trial_ids:
            self.meter.start(trial_id, self._resources_of(config))
        elif self.meter.trial_cost(trial_id).status is TrialStatus.paused:
            self.meter.resume(trial_id)  # HyperBand's pause, a failure or a driver crash
        else:
            self.meter.restart(trial_id)  # started again while we thought it held resources
        self.save()

    def on_recover(self, trial_id: str) -> None:
        """The trial's process died (a preempted node, a crash); Tune will restore it."""
        if trial_id in self.meter.trial_ids and self._holding(trial_id):
            self.meter.restart(trial_id)  # the work since its last checkpoint is waste
            self.meter.pause(trial_id)  # nothing is held until it starts again
        self.save()

    def on_pause(self, trial_id: str) -> None:
        """The scheduler paused the trial (HyperBand): its resources are released, no waste."""
        if trial_id in self.meter.trial_ids and self._holding(trial_id):
            self.meter.pause(trial_id)
        self.save()

    def on_result(self, trial_id: str, result: Mapping[str, Any]) -> None:
        """A report of the trial reached the driver."""
        f = self._trial(trial_id)
        iteration = int(result.get("training_iteration", f.iterations + 1))
        has_checkpoint = bool(result.get("checkpoint_path") or result.get("has_checkpoint"))
        if f.training_done and iteration <= f.iterations:
            # It trained every epoch before a driver crash, and the resumed Tune (whose state
            # lagged) started it again from an older checkpoint: the books keep the completing
            # report and its checkpoint, and the replay is stopped (`stop_at_report`).
            f.replaying = True
        else:
            f.iterations = iteration
            f.metrics = _numeric(result)
            f.training_done = bool(result.get("training_done", False))
            if result.get("checkpoint_path"):
                f.checkpoint = str(result["checkpoint_path"])
        if isinstance(result.get("config"), Mapping) and not f.config:
            f.config = dict(result["config"])
        if trial_id in self.meter.trial_ids:
            cpu = result.get("cpu_s")
            cost = self.meter.update(
                trial_id,
                cpu_seconds=float(cpu) if isinstance(cpu, int | float) else None,
                checkpoint=has_checkpoint,
            )
            f.report_usd.append(cost.billed_usd)
            f.report_held_s.append(cost.held_s)
        self.save()

    def on_checkpoint(self, trial_id: str, path: str | None) -> None:
        """Tune registered a checkpoint of the trial: work before it is no longer at risk."""
        f = self._trial(trial_id)
        if path and not f.replaying:
            f.checkpoint = str(path)
        if trial_id in self.meter.trial_ids and self._holding(trial_id):
            self.meter.update(trial_id, checkpoint=True)

    def on_decision(self, trial_id: str, decision: str) -> None:
        """The scheduler's decision after a result: `STOP` prunes, `PAUSE` pauses."""
        f = self._trial(trial_id)
        if decision == "STOP" and not f.budget_stopped:
            f.pruned_at = f.iterations
        elif decision == "PAUSE":
            self.on_pause(trial_id)

    def on_end(self, trial_id: str, *, error: bool, checkpoint: str | None = None) -> None:
        """The trial ended for good (Tune's on_trial_complete / on_trial_error)."""
        f = self._trial(trial_id)
        f.ended = "error" if error else "terminated"
        if checkpoint and not f.replaying:
            f.checkpoint = checkpoint
        paused = (
            trial_id in self.meter.trial_ids
            and self.meter.trial_cost(trial_id).status is TrialStatus.paused
        )
        if paused and not error and self.stop_reason is None and f.pruned_at is None:
            # HyperBand stops the paused losers of a bracket itself (no decision returned):
            # a trial that ends while paused was stopped by the scheduler.
            f.pruned_at = f.iterations
        if not error and self.stop_reason is not None and not self._completed(f):
            f.budget_stopped = f.budget_stopped or f.pruned_at is None
        if trial_id in self.meter.trial_ids and self.meter.trial_cost(trial_id).status in (
            TrialStatus.running,
            TrialStatus.paused,
        ):
            self.meter.finish(trial_id, self.status_of(trial_id))
        self.save(force=True)

    # ------------------------------------------------------------------------------ status
    def _completed(self, f: _Facts) -> bool:
        return f.training_done or f.iterations >= self.max_t

    def status_of(self, trial_id: str) -> TrialStatus:
        """How the trial stands or ended; see the module docstring."""
        f = self._trial(trial_id)
        if f.ended is None:
            if trial_id in self.meter.trial_ids:
                held = self.meter.trial_cost(trial_id).status
                if held is TrialStatus.paused:
                    return TrialStatus.paused
            return TrialStatus.running
        if f.ended == "error":
            return TrialStatus.failed
        if self._completed(f):
            return TrialStatus.completed
        if f.pruned_at is not None:
            return TrialStatus.pruned
        if f.budget_stopped:
            return TrialStatus.budget_stopped
        return TrialStatus.completed  # it ended on its own, with nobody stopping it

    def _holding(self, trial_id: str) -> bool:
        return self.meter.trial_cost(trial_id).status is TrialStatus.running

    # ----------------------------------------------------------------------------- budgets
    def _running(self) -> list[str]:
        return [t for t in self.meter.trial_ids if self._holding(t)]

    def has_estimate(self) -> bool:
        """True once some trial has reported (so a new trial's cost can be estimated)."""
        return self._first_report_usd() is not None

    def _first_report_usd(self) -> float | None:
        firsts = [f.report_usd[0] for f in self.facts.values() if f.report_usd]
        return statistics.median(firsts) if firsts else None

    def _interval_usd(self, trial_id: str) -> float | None:
        """What the trial bills between two reports (its first one before it has two)."""
        f = self.facts.get(trial_id)
        if f is None or not f.report_usd:
            return None
        if len(f.report_usd) == 1:
            return f.report_usd[0]
        return (f.report_usd[-1] - f.report_usd[0]) / (len(f.report_usd) - 1)

    def _next_usd(self, trial_id: str, first: float | None) -> float:
        """What a running trial will bill until its next report (an estimate)."""
        interval = self._interval_usd(trial_id)
        if interval is not None:
            return interval
        spent = self.meter.trial_cost(trial_id).billed_usd
        return max(0.0, (first or 0.0) - spent)

    def may_start(self, pending: int = 0) -> str | None:
        """None if a new trial may start now, else why not (the budget cannot carry it).

        Args:
            pending: Trials handed to Tune that have not started yet (each will cost about a
                first report too).
        """
        if self.budget.usd is None:
            return None
        if self.stop_reason is not None:
            return self.stop_reason
        first = self._first_report_usd()
        running = self._running()
        if first is None:
            # Nothing has reported yet: one trial at a time until there is an estimate.
            probing = [t for t in running if not self.facts.get(t, _Facts(t)).report_usd]
            waiting = bool(probing) or pending > 0
            return "waiting for a first report to estimate a trial's cost" if waiting else None
        committed = self.meter.committed()
        ahead = sum(self._next_usd(t, first) for t in running) + first * pending
        projected = committed + ahead + first
        if projected > self.budget.usd:
            return (
                f"`tune.budget_usd` cannot carry another trial: ${committed:.6f} spent, "
                f"${projected - committed:.6f} more projected to the next reports (a new trial "
                f"costs about ${first:.6f} to its first report), budget ${self.budget.usd:.6f}."
            )
        return None

    def stop_at_report(self, trial_id: str) -> bool:
        """True if the trial, having just reported, must stop before its next report."""
        if trial_id in self.facts and self.facts[trial_id].replaying:
            return True  # it had trained every epoch already; the rest of a replay is waste
        if self.budget.usd is None or trial_id not in self.meter.trial_ids:
            return False
        interval = self._interval_usd(trial_id)
        if interval is None or self.facts[trial_id].training_done:
            return False
        rate = self.meter.trial_cost(trial_id).usd_per_hour
        burn = self.meter.burn_rate()
        # The sweep's whole burn over this trial's next interval (in its own seconds).
        seconds = interval / rate * 3600.0 if rate > 0 else 0.0
        projected = self.meter.committed() + burn * seconds / 3600.0
        if projected <= self.budget.usd:
            return False
        self.facts[trial_id].budget_stopped = True
        return True

    def stop_all(self) -> str | None:
        """Why the whole sweep must stop now, or None."""
        if self.stop_reason is not None:
            return self.stop_reason
        margin = self.meter.burn_rate() * _STOP_MARGIN_S / 3600.0
        reason = self.budget.exceeded(self.meter)
        if reason is None and self.budget.usd is not None:
            spent = self.meter.committed()
            if spent + margin >= self.budget.usd:
                reason = f"`tune.budget_usd` reached: spent ${spent:.6f} of ${self.budget.usd:.6f}."
        if reason is not None:
            self.stop_reason = reason
            self._stopped_at = self.meter._reading_time(None)
            self.save(force=True)
        return reason

    def close(self) -> None:
        """End the trials Tune ended without a callback.

        Tune stops every trial when the budget stop fires; one that had not reported yet may
        never reach `on_trial_complete`. It is billed up to the stop (plus the stop margin),
        not up to whenever the driver reads the books. A trial a crashed driver started after
        Tune last saved its state is unknown to the resumed Tune: it ends `failed`, unless the
        books saw its completing report.
        """
        for tid in self.meter.trial_ids:
            if self.meter.trial_cost(tid).status not in (TrialStatus.running, TrialStatus.paused):
                continue
            f = self._trial(tid)
            # Without a budget stop, a trial Tune never ended was lost with a crashed driver
            # before Tune saved it (its state is saved every second): its work is waste.
            # One whose completing report the books saw is complete, with its checkpoint.
            stopped = self._stopped_at is not None or f.training_done
            f.ended = "terminated" if stopped else "error"
            at = None
            if self._stopped_at is not None:
                at = max(self._stopped_at + _STOP_MARGIN_S, self.meter._trial(tid).last_t)
                at = min(at, self.meter._reading_time(None))
                if not self._completed(f) and f.pruned_at is None:
                    f.budget_stopped = True
            self.meter.finish(tid, self.status_of(tid), t=at)
        self.save(force=True)

    def finish_search(self, reason: str) -> None:
        """The search ended because the budget cannot carry another trial."""
        if self.stop_reason is None:
            self.stop_reason = reason
            self.save(force=True)

    # --------------------------------------------------------------------------- records
    def record(
        self,
        trial_id: str,
        *,
        config: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        checkpoint: str | None = None,
    ) -> TrialRecord:
        """The trial's record; `config`/`metrics`/`checkpoint` from Tune's result if given."""
        f = self._trial(trial_id)
        cost = self.meter.trial_cost(trial_id) if trial_id in self.meter.trial_ids else None
        if f.replaying:
            metrics, checkpoint = None, None  # Tune's last result is the replay's, not the end
        shown = _numeric(metrics) if metrics else dict(f.metrics)
        latency = shown.get("latency_ms")
        status = self.status_of(trial_id)
        return TrialRecord(
            trial_id=trial_id,
            status=status,
            config=dict(config if config is not None else f.config),
            metrics=shown,
            iterations=max(f.iterations, int(shown.get("training_iteration", 0))),
            pruned_at_rung=f.pruned_at if status is TrialStatus.pruned else None,
            cost_usd=cost.billed_usd if cost else 0.0,
            algorithmic_cost_usd=cost.algorithmic_usd if cost else 0.0,
            waste_usd=cost.waste_usd if cost else 0.0,
            held_s=cost.held_s if cost else 0.0,
            lost_s=cost.lost_s if cost else 0.0,
            restarts=cost.restarts if cost else 0,
            cpu_seconds=cost.cpu_seconds if cost else None,
            latency_ms=latency,
            # The books' is the last report's (Tune's can be one older, see `BooksCallback`).
            checkpoint=f.checkpoint or checkpoint,
        )

    # ----------------------------------------------------------------------- persistence
    def save(self, force: bool = False) -> None:
        """Write `sweep_state.json` atomically (at most every `_SAVE_EVERY_S` unless forced)."""
        now = time.monotonic()
        if not force and now - self._saved_at < _SAVE_EVERY_S:
            return
        self._saved_at = now
        state = {
            "version": _STATE_VERSION,
            "resumes": self.resumes,
            "stop_reason": self.stop_reason,
            "facts": {tid: asdict(f) for tid, f in self.facts.items()},
            "meter": self.meter.snapshot(),
            # Per-trial charges as the report reads them (`TrialCost.to_dict`), statuses ours.
            "costs": [
                {**c, "status": self.status_of(c["trial_id"]).value}
                for c in self.meter.to_records()
            ],
            "records": {
                tid: {
                    "status": self.status_of(tid).value,
                    "iterations": f.iterations,
                    "pruned_at_rung": f.pruned_at
                    if self.status_of(tid) is TrialStatus.pruned
                    else None,
                }
                for tid, f in self.facts.items()
            },
        }
        path = self.layout.state
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(state, default=str))
        os.replace(tmp, path)  # a reader (or a crash) never sees half a file
