"""The searchers a sweep builds survive Tune's save/restore of their state. No Ray cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from ray_ml.config import load_config
from ray_ml.tune import load_space
from ray_ml.tune._sweep import _searcher

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("kind", ["optuna_tpe", "optuna_nsga2", "cost_aware"])
def test_searcher_state_saves_and_restores_mid_sweep(tmp_path: Path, kind: str) -> None:
    # Tune pickles the searcher (`Searcher.save`) at every experiment checkpoint, the first one
    # right after the sweep starts; optuna 5.1's GA samplers (NSGA-II) hold a thread lock, which
    # failed that pickle and with it the sweep.
    cfg = load_config("tune", ["experiment=demo", f"tune.searcher={kind}"])
    space = load_space(cfg.tune.space)
    searcher = _searcher(cfg, space)
    metric = ["val_loss", "cost_usd"] if kind == "optuna_nsga2" else cfg.tune.metric
    mode = ["min", "min"] if kind == "optuna_nsga2" else str(cfg.tune.mode)
    assert searcher.set_search_properties(metric, mode, space.to_tune())
    for i in range(3):
        assert searcher.suggest(f"t{i}") is not None
        searcher.on_trial_complete(
            f"t{i}",
            {
                "val_loss": 1.0 / (i + 1),
                "cost_usd": 0.01 * i,
                "training_iteration": 1,
                cfg.tune.metric: 0.5 + i / 10,
            },
        )
    path = tmp_path / "searcher.pkl"
    searcher.save(str(path))
    restored = _searcher(cfg, space)
    restored.restore(str(path))
    config = restored.suggest("t3")  # the restored searcher goes on suggesting
    assert config is not None and set(config) == set(space.to_tune())
