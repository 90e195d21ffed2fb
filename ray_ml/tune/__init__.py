"""Hyperparameter sweeps: search spaces in YAML turned into Ray Tune domains.

Loading and checking a space needs no Ray; `SearchSpace.to_tune()` imports `ray.tune` but starts
nothing. The result tools (`Leaderboard`, `pareto_front`, `choose_winner`) need no Ray either.
`CostAwareSearcher` subclasses `ray.tune.search.Searcher`, so it is imported on first use: loading
a space still imports no Ray.

Example:
    >>> from ray_ml.config import RunConfig
    >>> space = load_space("mlp")
    >>> sorted(space.to_tune())[:2]
    ['model.dropout', 'model.hidden_sizes']
    >>> apply_params(RunConfig(), {"train.lr": 0.01}).train.lr
    0.01
"""

from typing import TYPE_CHECKING, Any

from ray_ml.tune._books import SweepBooks, SweepLayout, TrialRecord
from ray_ml.tune._results import (
    ELIGIBLE_STATUSES,
    Leaderboard,
    NoWinnerError,
    Winner,
    choose_winner,
    default_objectives,
    eligible,
    flatten_mapping,
    pareto_front,
)
from ray_ml.tune._space import (
    DomainKind,
    Param,
    SearchSpace,
    apply_params,
    available_spaces,
    load_space,
    tunable_keys,
)

if TYPE_CHECKING:
    from ray_ml.tune._cost_aware import DEFAULT_COST_HINTS, CostAwareSearcher
    from ray_ml.tune._sweep import registered_reason, run_sweep, run_tune_job, warm_start_points

# Imported on first use: they import ray.tune (and the sweep imports torch through train).
_LAZY = {
    "CostAwareSearcher": "_cost_aware",
    "DEFAULT_COST_HINTS": "_cost_aware",
    "run_sweep": "_sweep",
    "run_tune_job": "_sweep",
    "registered_reason": "_sweep",
    "warm_start_points": "_sweep",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"ray_ml.tune.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_COST_HINTS",
    "ELIGIBLE_STATUSES",
    "CostAwareSearcher",
    "DomainKind",
    "Leaderboard",
    "NoWinnerError",
    "Param",
    "SearchSpace",
    "SweepBooks",
    "SweepLayout",
    "TrialRecord",
    "Winner",
    "apply_params",
    "available_spaces",
    "choose_winner",
    "default_objectives",
    "eligible",
    "flatten_mapping",
    "load_space",
    "pareto_front",
    "registered_reason",
    "run_sweep",
    "run_tune_job",
    "tunable_keys",
    "warm_start_points",
]
