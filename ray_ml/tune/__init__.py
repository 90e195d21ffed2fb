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

from ray_ml.tune._results import (
    ELIGIBLE_STATUSES,
    Leaderboard,
    NoWinnerError,
    Winner,
    choose_winner,
    default_objectives,
    eligible,
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

_LAZY = {"CostAwareSearcher", "DEFAULT_COST_HINTS"}  # they import ray.tune


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from ray_ml.tune import _cost_aware

        return getattr(_cost_aware, name)
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
    "Winner",
    "apply_params",
    "available_spaces",
    "choose_winner",
    "default_objectives",
    "eligible",
    "load_space",
    "pareto_front",
    "tunable_keys",
]
