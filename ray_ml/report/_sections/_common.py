"""What the section builders share: sizes, orderings, the winner and "not available"."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ray_ml.report._html import Section
from ray_ml.report._inputs import Experiment, Trial

LEADERBOARD_ROWS = 20
MAX_TABLE_ROWS = 50
MAX_BARS = 30


def better_sign(mode: str) -> float:
    """Sort sign: ascending sort of sign * value puts the best first."""
    return 1.0 if mode == "min" else -1.0


def by_metric(trials: Sequence[Trial], mode: str) -> list[Trial]:
    sign = better_sign(mode)
    return sorted(
        trials,
        key=lambda t: (
            t.value is None,
            sign * t.value if t.value is not None else 0.0,
            t.cost_usd if t.cost_usd is not None else math.inf,
            t.trial_id,
        ),
    )


def trial_statuses(exp: Experiment) -> dict[str, str]:
    """Trial id -> status: the leaderboard's, else the cost record's."""
    out = {str(c["trial_id"]): str(c.get("status") or "unknown") for c in exp.costs or []}
    out.update({t.trial_id: t.status for t in exp.trials or []})
    return out


def not_available(key: str, title: str, why: str) -> Section:
    return Section(key=key, title=title, available=False, why=why)


def tune_hint(exp: Experiment) -> str:
    return f"run the sweep first: `python -m jobs.tune name={exp.name} storage_path={exp.storage}`"


def why_missing(exp: Experiment, *keys: str) -> str:
    found = [exp.problems[k] for k in keys if k in exp.problems]
    return "; ".join(found) if found else "no usable rows"


def winner_id(exp: Experiment) -> str | None:
    best = (exp.sweep_summary or {}).get("best")
    if isinstance(best, Mapping) and best.get("trial_id") is not None:
        return str(best["trial_id"])
    eligible = [t for t in exp.trials or [] if t.eligible and t.value is not None]
    return by_metric(eligible, exp.mode)[0].trial_id if eligible else None


def as_mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
