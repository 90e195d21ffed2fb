from __future__ import annotations

import pytest

from hydra_plugins.ray_ml_sweeper.ray_tune_sweeper import space_from_overrides
from ray_ml.config import RunConfig
from ray_ml.errors import ConfigError
from ray_ml.tune import SearchSpace

pytestmark = pytest.mark.unit


def test_sweep_overrides_become_one_search_space() -> None:
    data, plain = space_from_overrides(
        [
            "train.lr=tag(log,interval(1e-4,1e-1))",
            "model.dropout=interval(0,0.5)",
            "train.epochs=range(2,6)",
            "model.kind=choice(mlp,xgboost)",
            "tune.budget_usd=0.5",
        ]
    )
    assert plain == ["tune.budget_usd=0.5"]
    assert data["params"] == {
        "train.lr": {"loguniform": [1e-4, 1e-1]},
        "model.dropout": {"uniform": [0.0, 0.5]},
        "train.epochs": {"int": [2, 5]},
        "model.kind": {"choice": ["mlp", "xgboost"]},
    }
    space = SearchSpace.from_dict(data, name="hydra", base=RunConfig())
    assert set(space.to_tune()) == set(data["params"])


def test_a_misspelled_sweep_key_is_named() -> None:
    data, _ = space_from_overrides(["train.lrr=interval(0.1,0.2)"])
    with pytest.raises(ConfigError, match="train.lrr"):
        SearchSpace.from_dict(data, name="hydra", base=RunConfig())
