"""Sweep budgets in dollars, GPU-hours, wall seconds and finished trials; any subset.

Two questions, two methods:

- `exceeded`: is a budget used up (spent >= limit)? Then start nothing more.
- `would_exceed`: would the next interval overspend (projected > limit)? Then do not start
  another trial now; spending exactly the limit is allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ray_ml.config import TuneConfig
from ray_ml.cost._meter import CostMeter
from ray_ml.errors import ConfigError

__all__ = ["Budget"]

_S_PER_H = 3600.0


def _usd(x: float) -> str:
    # Sweeps on a laptop cost cents: two decimals would print $0.00 for all of them.
    return f"${x:,.2f}" if abs(x) >= 100 else f"${x:.4f}"


@dataclass(frozen=True)
class Budget:
    """Limits on a sweep; None means no limit on that quantity.

    Attributes:
        usd: Billed dollars (finished trials plus running ones so far).
        gpu_hours: GPU-hours held.
        wall_s: Wall seconds since the meter opened (or since the first trial started).
        trials: Finished trials, whatever their status.
    """

    usd: float | None = None
    gpu_hours: float | None = None
    wall_s: float | None = None
    trials: int | None = None

    def __post_init__(self) -> None:
        for name, value in self._limits().items():
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(
                    f"`{_KEYS[name]}` must be null or positive, but got {name}={value!r}. "
                    f"Fix: set `{_KEYS[name]}=null` (no limit) or a positive value."
                )

    @classmethod
    def from_config(cls, tune_cfg: TuneConfig) -> Budget:
        """The budgets of a validated `tune` config group."""
        return cls(
            usd=tune_cfg.budget_usd,
            gpu_hours=tune_cfg.budget_gpu_hours,
            wall_s=tune_cfg.budget_wall_s,
            trials=tune_cfg.budget_trials,
        )

    @property
    def unlimited(self) -> bool:
        """True when no limit is set."""
        return all(v is None for v in self._limits().values())

    def _limits(self) -> dict[str, float | None]:
        return {
            "usd": self.usd,
            "gpu_hours": self.gpu_hours,
            "wall_s": self.wall_s,
            "trials": None if self.trials is None else float(self.trials),
        }

    def spent(self, meter: CostMeter, now: float | None = None) -> dict[str, float]:
        """What the sweep has used so far of each quantity, limited or not."""
        totals = meter.total(now)
        return {
            "usd": totals.billed_usd,
            "gpu_hours": totals.gpu_hours,
            "wall_s": meter.elapsed_s(now),
            "trials": float(totals.trials_finished),
        }

    def remaining(self, meter: CostMeter, now: float | None = None) -> dict[str, float]:
        """What is left of each limited quantity (never below 0); unlimited ones are absent."""
        spent = self.spent(meter, now)
        return {
            name: max(0.0, limit - spent[name])
            for name, limit in self._limits().items()
            if limit is not None
        }

    def exceeded(self, meter: CostMeter, now: float | None = None) -> str | None:
        """Why the sweep must stop starting trials, or None while every budget has room.

        Args:
            meter: The sweep's cost meter.
            now: Reading time; None uses the meter's default (see `CostMeter`).

        Returns:
            None, or a sentence naming the first budget used up (dollars first), what was
            spent and the limit, e.g. "`tune.budget_usd` reached: spent $1.0200 of $1.0000.".
        """
        spent = self.spent(meter, now)
        for name, limit in self._limits().items():
            if limit is not None and spent[name] >= limit:
                return (
                    f"`{_KEYS[name]}` reached: spent {_fmt(name, spent[name])} of "
                    f"{_fmt(name, limit)}."
                )
        return None

    def would_exceed(
        self,
        meter: CostMeter,
        next_interval_usd: float | None = None,
        *,
        interval_s: float | None = None,
        new_trials: int = 0,
        now: float | None = None,
    ) -> str | None:
        """Why the next interval would overspend a budget, or None if it fits.

        Args:
            meter: The sweep's cost meter.
            next_interval_usd: What the running trials (plus any trial about to start) will
                bill over the next interval. None with `interval_s` set: the meter's current
                burn rate over `interval_s`.
            interval_s: Length of the next interval; projects GPU-hours (GPUs held now) and
                wall time too. None projects dollars only.
            new_trials: Trials about to start; with the running ones they count against
                `trials` as if already finished.
            now: Reading time; None uses the meter's default.

        Returns:
            None, or a sentence naming the budget, the spend so far, the projected addition
            and the limit.
        """
        if interval_s is not None and not (math.isfinite(interval_s) and interval_s >= 0):
            raise ValueError(f"`interval_s` must be >= 0, but got interval_s={interval_s!r}.")
        hours = 0.0 if interval_s is None else interval_s / _S_PER_H
        if next_interval_usd is None:
            next_interval_usd = meter.burn_rate() * hours
        totals = meter.total(now)
        spent = self.spent(meter, now)
        extra = {
            "usd": next_interval_usd,
            "gpu_hours": meter.gpus_held() * hours,
            "wall_s": 0.0 if interval_s is None else interval_s,
            "trials": float(totals.trials_running + new_trials),
        }
        for name, limit in self._limits().items():
            if limit is not None and spent[name] + extra[name] > limit:
                return (
                    f"`{_KEYS[name]}` would be overspent: {_fmt(name, spent[name])} so far + "
                    f"{_fmt(name, extra[name])} next = {_fmt(name, spent[name] + extra[name])} "
                    f"> {_fmt(name, limit)}."
                )
        return None


_KEYS = {
    "usd": "tune.budget_usd",
    "gpu_hours": "tune.budget_gpu_hours",
    "wall_s": "tune.budget_wall_s",
    "trials": "tune.budget_trials",
}


def _fmt(name: str, value: float) -> str:
    if name == "usd":
        return _usd(value)
    if name == "gpu_hours":
        return f"{value:.3f} GPU-hours"
    if name == "wall_s":
        return f"{value:,.1f} s"
    return f"{value:.0f} trials"
