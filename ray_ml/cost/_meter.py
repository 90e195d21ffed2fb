"""Charge each trial for the resources it holds, and total what a sweep has spent.

Each trial gets two figures:

- **billed**: held resources x wall time held x unit price, what the cloud charges;
- **algorithmic**: CPU time spent inside the trial x the CPU-hour price, what the search itself
  needed (the gap to billed is idle or waiting time).

Waste is billed money that bought nothing: the whole bill of a trial that ended `failed` or
`preempted`, and, for a trial restored from a checkpoint, the work since that checkpoint.
Pruned trials are not waste: early stopping pays for them on purpose.

Time is injected: every event takes `t=` (seconds on any clock, e.g. `time.monotonic()`), or
the meter calls its `clock`. Readings (`total`, `committed`, ...) take `now=`; without it they use
the clock, or with no clock the latest event time, so tests never sleep.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from ray_ml.config import Pricing
from ray_ml.cost._catalog import PriceCatalog, as_pricing

__all__ = ["CostMeter", "CostTotals", "TrialCost", "TrialStatus"]

_S_PER_H = 3600.0


class TrialStatus(StrEnum):
    """Where a metered trial stands; every status but `running` and `paused` is final."""

    running = "running"
    paused = "paused"  # resources released (e.g. by HyperBand), may resume
    completed = "completed"
    pruned = "pruned"  # stopped early by the scheduler
    failed = "failed"
    preempted = "preempted"  # its node went away (spot reclaim) and it was not resumed
    budget_stopped = "budget_stopped"


_FINAL = frozenset(
    {
        TrialStatus.completed,
        TrialStatus.pruned,
        TrialStatus.failed,
        TrialStatus.preempted,
        TrialStatus.budget_stopped,
    }
)
_WASTED = frozenset({TrialStatus.failed, TrialStatus.preempted})


@dataclass(frozen=True)
class TrialCost:
    """One trial's charges as of a moment.

    Attributes:
        trial_id: The Tune trial id.
        status: Where the trial stands.
        node_type: The node type it is priced on.
        pricing: The price column used.
        resources: The resources it holds, e.g. `{"CPU": 2, "GPU": 1}`.
        usd_per_hour: Price of holding `resources` for an hour.
        started_at: Time of `start`.
        ended_at: Time of `finish`; None while not finished.
        held_s: Wall seconds the resources were held (pauses excluded).
        cpu_seconds: CPU time reported from inside the trial; None if never reported.
        billed_usd: `usd_per_hour * held_s / 3600`.
        algorithmic_usd: `cpu_seconds` at the CPU-hour price; 0 if never reported.
        waste_usd: Billed money that bought nothing (see the module docstring).
        lost_s: Seconds of work lost to restores from checkpoints.
        restarts: Times the trial was restored.
        cpu_hours: Held CPUs x held hours.
        gpu_hours: Held GPUs x held hours.
    """

    trial_id: str
    status: TrialStatus
    node_type: str
    pricing: Pricing
    resources: dict[str, float]
    usd_per_hour: float
    started_at: float
    ended_at: float | None
    held_s: float
    cpu_seconds: float | None
    billed_usd: float
    algorithmic_usd: float
    waste_usd: float
    lost_s: float
    restarts: int
    cpu_hours: float
    gpu_hours: float

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready data (enums as their values)."""
        data = asdict(self)
        data["status"] = self.status.value
        data["pricing"] = self.pricing.value
        return data


@dataclass(frozen=True)
class CostTotals:
    """Sums over every trial of a meter, running ones charged up to the reading time.

    Attributes:
        billed_usd: Billed dollars, finished and running trials (what budgets count).
        settled_usd: Billed dollars of finished trials only.
        running_usd: Billed dollars of trials not finished yet.
        algorithmic_usd: Algorithmic dollars.
        waste_usd: Wasted dollars.
        cpu_hours: CPU-hours held.
        gpu_hours: GPU-hours held.
        trials_started: Trials started.
        trials_finished: Trials with a final status.
        trials_running: Trials running or paused.
    """

    billed_usd: float
    settled_usd: float
    running_usd: float
    algorithmic_usd: float
    waste_usd: float
    cpu_hours: float
    gpu_hours: float
    trials_started: int
    trials_finished: int
    trials_running: int


@dataclass
class _Trial:
    trial_id: str
    node_type: str
    resources: dict[str, float]
    usd_per_hour: float
    cpu_usd_per_hour: float
    started_at: float
    last_t: float
    status: TrialStatus = TrialStatus.running
    ended_at: float | None = None
    held_closed_s: float = 0.0  # held seconds of intervals already closed by pause/finish
    held_since: float | None = None  # start of the open interval; None when not holding
    held_at_checkpoint_s: float = 0.0
    cpu_seconds: float | None = None  # closed segments plus the current one
    cpu_closed_s: float = 0.0  # CPU seconds of processes that ended (before a restart/resume)
    lost_s: float = 0.0
    restarts: int = 0

    def held_s(self, now: float) -> float:
        open_s = max(0.0, now - self.held_since) if self.held_since is not None else 0.0
        return self.held_closed_s + open_s


def _check_seconds(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"`{name}` must be a finite number >= 0, but got {name}={value!r}.")
    return value


class CostMeter:
    """Charges trials for the resources they hold; see the module docstring for the figures.

    Example:
        >>> from ray_ml.config import CostConfig
        >>> meter = CostMeter(PriceCatalog.from_config(CostConfig()), pricing="spot")
        >>> meter.start("t1", {"CPU": 2}, t=0.0)
        >>> meter.finish("t1", "completed", t=1800.0).billed_usd
        0.0
    """

    def __init__(
        self,
        catalog: PriceCatalog,
        pricing: str | Pricing | None = None,
        *,
        node_type: str | None = None,
        clock: Callable[[], float] | None = None,
        opened_at: float | None = None,
    ) -> None:
        """Create an empty meter.

        Args:
            catalog: Unit prices.
            pricing: `on_demand` or `spot`; None uses the catalog's (`cost.pricing`).
            node_type: Node type trials run on unless `start` names one; None uses the
                catalog's default.
            clock: Seconds now, e.g. `time.monotonic`; used when an event has no `t=`. Without
                one, every event needs `t=`.
            opened_at: When the sweep began, for `elapsed_s`; None: the first trial's start.
        """
        self.catalog = catalog
        self.pricing = catalog.pricing if pricing is None else as_pricing(pricing)
        self.node_type = catalog.node(node_type).node.name
        self._clock = clock
        if opened_at is None and clock is not None:
            opened_at = clock()
        self.opened_at = opened_at
        self._trials: dict[str, _Trial] = {}
        self._latest: float | None = opened_at

    # -------------------------------------------------------------------------------- events
    def start(
        self,
        trial_id: str,
        resources: Mapping[str, float],
        t: float | None = None,
        *,
        node_type: str | None = None,
    ) -> None:
        """Begin charging a trial for `resources`.

        Args:
            trial_id: The Tune trial id; must be new to this meter (see `restart`/`resume`).
            resources: Everything the trial holds, e.g. the sum of its placement group bundles.
            t: Time now; None asks the clock.
            node_type: Node type to price on; None uses the meter's.

        Raises:
            ValueError: The trial was started before.
            ConfigError: The resources cannot be priced on the node type (e.g. GPUs on a CPU
                node), so a misconfigured sweep fails at its first trial.
        """
        if trial_id in self._trials:
            raise ValueError(
                f"trial {trial_id!r} was already started. Fix: use `restart` for a trial "
                "restored from a checkpoint, `resume` for a paused one."
            )
        now = self._event_time(t)
        node = self.catalog.node(node_type or self.node_type)
        res = {k: float(v) for k, v in resources.items()}
        usd_per_hour = self.catalog.price_of(res, self.pricing, node.node.name)
        trial = _Trial(
            trial_id=trial_id,
            node_type=node.node.name,
            resources=res,
            usd_per_hour=usd_per_hour,
            cpu_usd_per_hour=node.units(self.pricing).cpu_usd_per_hour,
            started_at=now,
            last_t=now,
            held_since=now,
        )
        self._trials[trial_id] = trial

    def update(
        self,
        trial_id: str,
        t: float | None = None,
        cpu_seconds: float | None = None,
        *,
        checkpoint: bool = False,
    ) -> TrialCost:
        """Record progress of a running trial.

        Args:
            trial_id: The trial.
            t: Time now; None asks the clock.
            cpu_seconds: CPU time used inside the trial's current processes so far, summed over
                its workers (cumulative since the trial last started, restarted or resumed: the
                latest value replaces the previous one; earlier processes' time is kept).
            checkpoint: The trial saved a checkpoint now; work before it is no longer at risk.

        Returns:
            The trial's charges as of `t`.
        """
        trial = self._trial(trial_id)
        now = self._advance(trial, t)
        if cpu_seconds is not None:
            trial.cpu_seconds = trial.cpu_closed_s + _check_seconds("cpu_seconds", cpu_seconds)
        if checkpoint:
            trial.held_at_checkpoint_s = trial.held_s(now)
        return self._cost(trial, now)

    def pause(self, trial_id: str, t: float | None = None) -> None:
        """Stop charging a trial that released its resources but may resume (HyperBand)."""
        trial = self._trial(trial_id)
        self._require_status(trial, {TrialStatus.running}, "pause")
        now = self._advance(trial, t)
        self._close_interval(trial, now)
        trial.status = TrialStatus.paused

    def resume(self, trial_id: str, t: float | None = None) -> None:
        """Charge a paused trial again."""
        trial = self._trial(trial_id)
        self._require_status(trial, {TrialStatus.paused}, "resume")
        now = self._advance(trial, t)
        trial.held_since = now
        trial.status = TrialStatus.running
        trial.cpu_closed_s = trial.cpu_seconds or 0.0  # a new process counts from zero

    def restart(
        self, trial_id: str, lost_seconds: float | None = None, t: float | None = None
    ) -> None:
        """A trial was restored from its last checkpoint: the work since then is waste.

        A trial that had finished (e.g. `failed` or `preempted`) is reopened and charged again
        from `t`; its earlier bill then counts as waste only through `lost_seconds`.

        Args:
            trial_id: The trial.
            lost_seconds: Held seconds of work lost; None: the held time since the last
                `update(checkpoint=True)` (or since the start).
            t: Time now; None asks the clock.
        """
        trial = self._trial(trial_id)
        now = self._advance(trial, t)
        held = trial.held_s(now)
        lost = (
            held - trial.held_at_checkpoint_s
            if lost_seconds is None
            else _check_seconds("lost_seconds", lost_seconds)
        )
        trial.lost_s += max(0.0, lost)
        trial.restarts += 1
        trial.held_at_checkpoint_s = held
        trial.cpu_closed_s = trial.cpu_seconds or 0.0  # the restored process counts from zero
        if trial.status in _FINAL:
            trial.status = TrialStatus.running
            trial.ended_at = None
            trial.held_since = now
        elif trial.status is TrialStatus.paused:
            trial.status = TrialStatus.running
            trial.held_since = now

    def finish(
        self,
        trial_id: str,
        status: str | TrialStatus,
        t: float | None = None,
        *,
        cpu_seconds: float | None = None,
    ) -> TrialCost:
        """Stop charging a trial and record how it ended.

        Args:
            trial_id: The trial.
            status: `completed`, `pruned`, `failed`, `preempted` or `budget_stopped`.
            t: Time now; None asks the clock.
            cpu_seconds: A last cumulative CPU-time report, if any.

        Returns:
            The trial's final charges.
        """
        final = _as_status(status)
        if final not in _FINAL:
            choices = ", ".join(s.value for s in TrialStatus if s in _FINAL)
            raise ValueError(
                f"`status` must be a final status ({choices}), but got status={status!r}."
            )
        trial = self._trial(trial_id)
        self._require_status(trial, {TrialStatus.running, TrialStatus.paused}, "finish")
        now = self._advance(trial, t)
        if cpu_seconds is not None:
            trial.cpu_seconds = trial.cpu_closed_s + _check_seconds("cpu_seconds", cpu_seconds)
        self._close_interval(trial, now)
        trial.status = final
        trial.ended_at = now
        return self._cost(trial, now)

    # ------------------------------------------------------------------------------ readings
    @property
    def trial_ids(self) -> list[str]:
        """Trial ids in start order."""
        return list(self._trials)

    def trial_cost(self, trial_id: str, now: float | None = None) -> TrialCost:
        """One trial's charges as of `now` (see the module docstring for the default)."""
        return self._cost(self._trial(trial_id), self._reading_time(now))

    def costs(self, now: float | None = None) -> list[TrialCost]:
        """Every trial's charges as of `now`, in start order."""
        at = self._reading_time(now)
        return [self._cost(trial, at) for trial in self._trials.values()]

    def total(self, now: float | None = None) -> CostTotals:
        """Sums over every trial, running ones charged up to `now`."""
        costs = self.costs(now)
        finished = [c for c in costs if c.status in _FINAL]
        open_ = [c for c in costs if c.status not in _FINAL]
        return CostTotals(
            billed_usd=sum(c.billed_usd for c in costs),
            settled_usd=sum(c.billed_usd for c in finished),
            running_usd=sum(c.billed_usd for c in open_),
            algorithmic_usd=sum(c.algorithmic_usd for c in costs),
            waste_usd=sum(c.waste_usd for c in costs),
            cpu_hours=sum(c.cpu_hours for c in costs),
            gpu_hours=sum(c.gpu_hours for c in costs),
            trials_started=len(costs),
            trials_finished=len(finished),
            trials_running=len(open_),
        )

    def committed(self, now: float | None = None) -> float:
        """Billed dollars so far: finished trials plus running ones up to `now`."""
        return self.total(now).billed_usd

    def gpu_hours(self, now: float | None = None) -> float:
        """GPU-hours held so far, finished and running trials."""
        return self.total(now).gpu_hours

    def elapsed_s(self, now: float | None = None) -> float:
        """Wall seconds since `opened_at` (or the first trial's start); 0 before anything."""
        at = self._reading_time(now)
        origin = self.opened_at
        if origin is None and self._trials:
            origin = min(t.started_at for t in self._trials.values())
        return 0.0 if origin is None else max(0.0, at - origin)

    def burn_rate(self) -> float:
        """USD per hour of the trials holding resources right now."""
        return sum(t.usd_per_hour for t in self._holding())

    def gpus_held(self) -> float:
        """GPUs held right now by running trials."""
        return sum(t.resources.get("GPU", 0.0) for t in self._holding())

    def by_node_type(self, now: float | None = None) -> dict[str, float]:
        """Billed dollars per node type (node types with trials only)."""
        out: dict[str, float] = {}
        for c in self.costs(now):
            out[c.node_type] = out.get(c.node_type, 0.0) + c.billed_usd
        return out

    def by_status(self, now: float | None = None) -> dict[str, float]:
        """Billed dollars per trial status (statuses with trials only)."""
        out: dict[str, float] = {}
        for c in self.costs(now):
            out[c.status.value] = out.get(c.status.value, 0.0) + c.billed_usd
        return out

    def to_records(self, now: float | None = None) -> list[dict[str, Any]]:
        """One plain dict per trial (`TrialCost.to_dict`), in start order, for a leaderboard."""
        return [c.to_dict() for c in self.costs(now)]

    # ------------------------------------------------------------------------- persistence
    def snapshot(self, now: float | None = None) -> list[dict[str, Any]]:
        """Every trial's state as plain JSON-ready data, open intervals closed at `now`.

        `CostMeter.restore` reads it back: a sweep whose driver died continues the same books.
        """
        at = self._reading_time(now)
        out = []
        for trial in self._trials.values():
            data = asdict(trial)
            data["status"] = trial.status.value
            data["held_closed_s"] = trial.held_s(at)
            data["held_since"] = None
            out.append(data)
        return out

    @classmethod
    def restore(
        cls,
        catalog: PriceCatalog,
        snapshot: list[dict[str, Any]],
        pricing: str | Pricing | None = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> CostMeter:
        """A meter holding the trials of a `snapshot`, for the driver of a resumed sweep.

        Trials that were holding resources when the snapshot was taken (their driver died) are
        `paused` at their held time then: nothing is charged while no driver watches them, and
        the resumed sweep `restart`s them (the work since their last checkpoint is waste) or
        `resume`s them when Tune starts them again.
        """
        meter = cls(catalog, pricing, clock=clock)
        now = meter._reading_time(None)
        for data in snapshot:
            fields = {f: data[f] for f in _Trial.__dataclass_fields__ if f in data}
            trial = _Trial(**fields)
            trial.status = TrialStatus(data["status"])
            if trial.status is TrialStatus.running:
                trial.status = TrialStatus.paused
            trial.held_since = None
            trial.last_t = min(trial.last_t, now)  # clocks of two processes: never backwards
            meter._trials[trial.trial_id] = trial
        return meter

    # ------------------------------------------------------------------------------ internals
    def _trial(self, trial_id: str) -> _Trial:
        try:
            return self._trials[trial_id]
        except KeyError:
            raise KeyError(
                f"trial {trial_id!r} was never started on this meter. Fix: call "
                "`meter.start(trial_id, resources)` first."
            ) from None

    def _holding(self) -> list[_Trial]:
        return [t for t in self._trials.values() if t.held_since is not None]

    @staticmethod
    def _require_status(trial: _Trial, allowed: set[TrialStatus], action: str) -> None:
        if trial.status not in allowed:
            names = ", ".join(sorted(s.value for s in allowed))
            raise ValueError(
                f"cannot {action} trial {trial.trial_id!r}: its status is "
                f"{trial.status.value!r}, but {action} needs {names}."
            )

    @staticmethod
    def _close_interval(trial: _Trial, now: float) -> None:
        trial.held_closed_s = trial.held_s(now)
        trial.held_since = None

    def _event_time(self, t: float | None) -> float:
        if t is None:
            if self._clock is None:
                raise ValueError(
                    "this meter has no clock, so every event needs `t=`. Fix: pass t=SECONDS "
                    "or build the meter with `clock=time.monotonic`."
                )
            t = self._clock()
        now = float(t)
        if not math.isfinite(now):
            raise ValueError(f"`t` must be a finite number of seconds, but got t={t!r}.")
        self._latest = now if self._latest is None else max(self._latest, now)
        return now

    def _advance(self, trial: _Trial, t: float | None) -> float:
        now = self._event_time(t)
        if now < trial.last_t:
            raise ValueError(
                f"time went backwards for trial {trial.trial_id!r}: t={now:g} is before its "
                f"last event at t={trial.last_t:g}. Fix: use one monotonic clock for every event."
            )
        trial.last_t = now
        return now

    def _reading_time(self, now: float | None) -> float:
        if now is not None:
            return float(now)
        if self._clock is not None:
            return self._clock()
        return 0.0 if self._latest is None else self._latest

    def _cost(self, trial: _Trial, now: float) -> TrialCost:
        held = trial.held_s(now)
        billed = trial.usd_per_hour * held / _S_PER_H
        algorithmic = (trial.cpu_seconds or 0.0) * trial.cpu_usd_per_hour / _S_PER_H
        if trial.status in _WASTED:
            waste = billed
        else:
            waste = min(billed, trial.usd_per_hour * trial.lost_s / _S_PER_H)
        return TrialCost(
            trial_id=trial.trial_id,
            status=trial.status,
            node_type=trial.node_type,
            pricing=self.pricing,
            resources=dict(trial.resources),
            usd_per_hour=trial.usd_per_hour,
            started_at=trial.started_at,
            ended_at=trial.ended_at,
            held_s=held,
            cpu_seconds=trial.cpu_seconds,
            billed_usd=billed,
            algorithmic_usd=algorithmic,
            waste_usd=waste,
            lost_s=trial.lost_s,
            restarts=trial.restarts,
            cpu_hours=trial.resources.get("CPU", 0.0) * held / _S_PER_H,
            gpu_hours=trial.resources.get("GPU", 0.0) * held / _S_PER_H,
        )


def _as_status(status: str | TrialStatus) -> TrialStatus:
    try:
        return TrialStatus(status)
    except ValueError:
        choices = ", ".join(s.value for s in TrialStatus)
        raise ValueError(f"`status` must be one of {choices}, but got status={status!r}.") from None
