"""Hyperparameter sweeps: search spaces in YAML turned into Ray Tune domains.

Loading and checking a space needs no Ray; `SearchSpace.to_tune()` imports `ray.tune` but starts
nothing.

Example:
    >>> from ray_ml.config import RunConfig
    >>> space = load_space("mlp")
    >>> sorted(space.to_tune())[:2]
    ['model.dropout', 'model.hidden_sizes']
    >>> apply_params(RunConfig(), {"train.lr": 0.01}).train.lr
    0.01
"""

from ray_ml.tune._space import (
    DomainKind,
    Param,
    SearchSpace,
    apply_params,
    available_spaces,
    load_space,
    tunable_keys,
)

__all__ = [
    "DomainKind",
    "Param",
    "SearchSpace",
    "apply_params",
    "available_spaces",
    "load_space",
    "tunable_keys",
]
