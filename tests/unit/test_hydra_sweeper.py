from __future__ import annotations

import pytest

from hydra_plugins.ray_ml_sweeper.ray_tune_sweeper import build_search_space, space_from_overrides
from ray_ml.config import RunConfig
from ray_ml.errors import ConfigError

pytestmark = pytest.mark.unit


def test_sweep_overrides_become_one_search_space() -> None:
    sweep = space_from_overrides(
        [
            "train.lr=tag(log,interval(1e-4,1e-1))",
            "model.dropout=interval(0,0.5)",
            "train.epochs=range(2,6)",
            "model.max_depth=int(interval(2,10))",
            "model.kind=choice(mlp,xgboost)",
            "tune.budget_usd=0.5",
        ]
    )
    assert sweep.plain == ["tune.budget_usd=0.5"]
    assert sweep.space["params"] == {
        "train.lr": {"loguniform": [1e-4, 1e-1]},
        "model.dropout": {"uniform": [0.0, 0.5]},
        "train.epochs": {"int": [2, 5]},
        "model.max_depth": {"int": [2, 10]},
        "model.kind": {"choice": ["mlp", "xgboost"]},
    }
    space = build_search_space(sweep, RunConfig())
    assert set(space.to_tune()) == set(sweep.space["params"])


def test_a_misspelled_sweep_key_is_named_with_its_override() -> None:
    sweep = space_from_overrides(["train.lrr=interval(0.1,0.2)"])
    with pytest.raises(ConfigError, match=r"'train.lrr=interval\(0.1,0.2\)'.*train\.lrr"):
        build_search_space(sweep, RunConfig())
