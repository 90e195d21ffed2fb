"""The cost-aware searcher, driven by hand on synthetic objectives. No Ray cluster."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ray import tune

from ray_ml.config import RunConfig, load_config
from ray_ml.errors import ConfigError
from ray_ml.tune import CostAwareSearcher, SearchSpace, apply_params, load_space

pytestmark = pytest.mark.unit

# Quality needs both a good learning rate and many epochs; cost is what the epochs cost.
SIM = SearchSpace.from_dict(
    {"params": {"train.lr": {"loguniform": [1e-4, 1e-1]}, "train.epochs": {"int": [1, 50]}}},
    name="sim",
)
EVERY_KIND = SearchSpace.from_dict(
    {
        "params": {
            "train.lr": {"loguniform": [1e-4, 1e-1]},
            "train.weight_decay": {"qloguniform": [1e-6, 1e-2, 1e-6]},
            "model.dropout": {"quniform": [0.0, 0.5, 0.05]},
            "train.warmup_fraction": {"uniform": [0.0, 0.3]},
            "train.epochs": {"int": [1, 20]},
            "train.batch_size": {"grid": [32, 64, 128]},
            "model.hidden_sizes": {"choice": [[64], [128, 64], [256, 128]]},
            "model.norm": {"choice": ["none", "batch", "layer"]},
        }
    },
    name="every_kind",
)


def _objective(config: dict[str, Any]) -> tuple[float, float]:
    """val_loss = f(lr) + g(epochs); cost_usd grows with epochs."""
    loss = 0.3 * (math.log10(config["train.lr"]) + 2.0) ** 2 + 2.0 / config["train.epochs"]
    return loss, 0.01 * config["train.epochs"]


def _drive(searcher: CostAwareSearcher, n: int, start: int = 0) -> list[tuple[float, float]]:
    """Run n trials one after another; (cumulative cost, loss) after each."""
    out, spent = [], 0.0
    for i in range(start, start + n):
        config = searcher.suggest(f"t{i}")
        assert config is not None
        loss, cost = _objective(config)
        spent += cost
        out.append((spent, loss))
        searcher.on_trial_complete(f"t{i}", {"val_loss": loss, "cost_usd": cost})
    return out


def _random_search(seed: int, n: int) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    out, spent = [], 0.0
    for _ in range(n):
        lr = float(np.exp(rng.uniform(np.log(1e-4), np.log(1e-1))))
        loss, cost = _objective({"train.lr": lr, "train.epochs": int(rng.integers(1, 51))})
        spent += cost
        out.append((spent, loss))
    return out


def _cost_to_target(curve: list[tuple[float, float]], target: float) -> float | None:
    return next((spent for spent, loss in curve if loss <= target), None)


# ----------------------------------------------------------------------- search quality
def test_reaches_a_target_for_less_money_than_random_search() -> None:
    target, n_trials, seeds = 0.1, 20, range(5)
    ours, theirs = [], []
    for seed in seeds:
        searcher = CostAwareSearcher(SIM, "val_loss", "min", budget_usd=5.0, seed=seed)
        hit = _cost_to_target(_drive(searcher, n_trials), target)
        assert hit is not None, f"seed {seed}: the target was not reached in {n_trials} trials"
        ours.append(hit)
        baseline = _random_search(seed, n_trials)
        # A miss counts as the whole spend: a lower bound, in random search's favour.
        theirs.append(_cost_to_target(baseline, target) or baseline[-1][0])
    # Measured when written: cost-aware $1.12 on average vs random $1.80.
    assert np.mean(ours) < np.mean(theirs), (ours, theirs)


def test_improves_in_max_mode_too() -> None:
    searcher = CostAwareSearcher(SIM, "score", "max", budget_usd=3.0, seed=1, n_candidates=128)
    scores = []
    for i in range(14):
        config = searcher.suggest(f"t{i}")
        assert config is not None
        loss, cost = _objective(config)
        scores.append(-loss)
        searcher.on_trial_complete(f"t{i}", {"score": -loss, "cost_usd": cost})
    assert max(scores[4:]) > max(scores[:4])  # the model beats its initial design


# ---------------------------------------------------------------------- domain, encoding
@pytest.mark.parametrize("space", [EVERY_KIND, load_space("mlp"), load_space("xgboost")])
def test_suggestions_stay_in_the_domain_and_apply(space: SearchSpace) -> None:
    searcher = CostAwareSearcher(space, "val_loss", "min", seed=3, n_candidates=64)
    categories: dict[str, list[Any]] = {}
    for key, domain in space.to_tune().items():
        if isinstance(domain, tune.search.sample.Categorical):
            categories[key] = domain.categories
        elif isinstance(domain, dict):  # a grid is searched like a choice, encoded alike
            categories[key] = domain["grid_search"]
    rng = np.random.default_rng(0)
    for i in range(10):  # the initial design, then the models
        config = searcher.suggest(f"t{i}")
        assert config is not None
        assert searcher.contains(config), config
        for key, value in config.items():
            param = space.params[key]
            if key in categories:
                assert value in categories[key]  # the encoding `to_tune` uses: JSON for lists
                continue
            assert param.low is not None and param.high is not None
            assert param.low <= value <= param.high
            if param.kind.value == "int":
                assert isinstance(value, int)
            else:
                assert isinstance(value, float)
                if param.q:
                    assert value / param.q == pytest.approx(round(value / param.q))
        apply_params(RunConfig(), config)  # a valid trial config
        result = {"val_loss": float(rng.random()), "cost_usd": float(rng.random())}
        searcher.on_trial_complete(f"t{i}", result)


def test_first_suggestions_are_the_cheap_ones() -> None:
    space = SearchSpace.from_dict(
        {
            "params": {
                "train.lr": {"loguniform": [1e-4, 1e-1]},
                "train.epochs": {"int": [1, 40]},
                "train.batch_size": {"choice": [32, 64, 128, 256]},
                "model.hidden_sizes": {"choice": [[256, 128], [64], [128, 64], [32]]},
            }
        }
    )
    searcher = CostAwareSearcher(space, "val_loss", "min", n_initial=6, seed=0)
    first = [searcher.suggest(f"t{i}") for i in range(6)]
    for config in first:
        assert config is not None
        assert config["train.epochs"] <= 20  # the cheap half of 1..40
        assert config["train.batch_size"] in (128, 256)  # bigger batches: cheaper epochs
        assert config["model.hidden_sizes"] in ("[64]", "[32]")  # smallest sum of widths
    # A Latin hypercube: the six learning rates fall in six different sixths of the log range.
    sixths = {int((math.log10(c["train.lr"]) + 4) / 3 * 6) for c in first if c}
    assert sixths == set(range(6))
    # Hints can be overridden: with epochs unhinted, they span the whole range.
    free = CostAwareSearcher(space, "val_loss", "min", n_initial=6, cost_hints={"train.epochs": 0})
    assert max(c["train.epochs"] for c in (free.suggest(f"t{i}") for i in range(6)) if c) > 20


def test_concurrent_suggestions_spread_out() -> None:
    searcher = CostAwareSearcher(SIM, "val_loss", "min", budget_usd=5.0, n_candidates=128)
    _drive(searcher, 6)
    batch = [searcher.suggest(f"p{i}") for i in range(4)]  # none completes in between
    assert len({json.dumps(c, sort_keys=True) for c in batch}) == 4


# ------------------------------------------------------------------------ save / restore
def test_save_restore_replays_the_same_suggestions(tmp_path: Path) -> None:
    kwargs: dict[str, Any] = {"budget_usd": 5.0, "seed": 7, "n_candidates": 128}
    original = CostAwareSearcher(EVERY_KIND, "val_loss", "min", **kwargs)
    rng = np.random.default_rng(1)
    for i in range(6):
        assert original.suggest(f"t{i}") is not None
        original.on_trial_complete(f"t{i}", {"val_loss": float(rng.random()), "cost_usd": 0.1})
    assert original.suggest("running") is not None  # still running when the driver dies
    path = tmp_path / "searcher-state-default.pkl"  # Tune's file name; the content is JSON
    original.save(str(path))
    assert json.loads(path.read_text())["pending"].keys() == {"running"}

    resumed = CostAwareSearcher(EVERY_KIND, "val_loss", "min", **kwargs)
    resumed.restore(str(path))
    assert resumed.history == original.history
    for searcher in (original, resumed):
        searcher.on_trial_complete("running", {"val_loss": 0.5, "cost_usd": 0.2})
    assert [original.suggest(f"n{i}") for i in range(3)] == [
        resumed.suggest(f"n{i}") for i in range(3)
    ]


def test_a_restored_searcher_starts_its_models_where_the_original_left_them(
    tmp_path: Path,
) -> None:
    # Each suggestion's GP hyperparameters are optimized from the previous suggestion's optimum;
    # a restored searcher must start from the same place to suggest the same.
    kwargs: dict[str, Any] = {"budget_usd": 100.0, "seed": 3, "n_candidates": 64}
    original = CostAwareSearcher(SIM, "val_loss", "min", **kwargs)
    _drive(original, 25)
    path = tmp_path / "state.json"
    original.save(str(path))
    resumed = CostAwareSearcher(SIM, "val_loss", "min", **kwargs)
    resumed.restore(str(path))
    assert _drive(original, 1, start=25) == _drive(resumed, 1, start=25)
    # The same models, not merely the same argmax over a few candidates.
    assert set(original._thetas) == {"metric", "cost"}
    assert original._thetas == resumed._thetas
    assert _drive(original, 8, start=26) == _drive(resumed, 8, start=26)


def test_restore_refuses_another_space_or_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    CostAwareSearcher(SIM, "val_loss", "min").save(str(path))
    with pytest.raises(ConfigError, match="saved with another space"):
        CostAwareSearcher(EVERY_KIND, "val_loss", "min").restore(str(path))
    with pytest.raises(ConfigError, match="saved with another metric"):
        CostAwareSearcher(SIM, "val_auc", "min").restore(str(path))
    path.write_bytes(b"\x80\x04pickle")
    with pytest.raises(ConfigError, match="cannot read cost-aware searcher state"):
        CostAwareSearcher(SIM, "val_loss", "min").restore(str(path))


# ---------------------------------------------------------------------- trial outcomes
def test_failed_pruned_and_unknown_trials() -> None:
    searcher = CostAwareSearcher(SIM, "val_loss", "min", budget_usd=1.0)
    searcher.suggest("failed")
    searcher.on_trial_complete("failed", {"cost_usd": 0.1}, error=True)
    searcher.suggest("pruned")  # ends with no result: the last interim result is used
    searcher.on_trial_result("pruned", {"val_loss": 0.9, "cost_usd": 0.15, "training_iteration": 3})
    searcher.on_trial_complete("pruned")
    searcher.suggest("removed")  # removed while pending: nothing ran, nothing to learn
    searcher.on_trial_complete("removed")
    # A trial the searcher did not suggest (e.g. from before a resume), config as Tune flattens it.
    searcher.on_trial_complete(
        "foreign",
        {"val_loss": 0.4, "cost_usd": 0.25, "config/train.lr": 0.01, "config/train.epochs": 5},
    )
    history = {h["trial_id"]: h for h in searcher.history}
    assert set(history) == {"failed", "pruned", "foreign"}
    assert history["failed"]["value"] is None and history["failed"]["error"]
    assert history["pruned"]["value"] == 0.9 and history["pruned"]["iterations"] == 3
    assert history["foreign"]["config"] == {"train.lr": 0.01, "train.epochs": 5}
    assert searcher.spent_usd == pytest.approx(0.5)
    assert searcher.alpha == pytest.approx(0.5)  # half the budget spent


def test_alpha_cools_with_budget_or_horizon() -> None:
    by_budget = CostAwareSearcher(SIM, "val_loss", "min", budget_usd=0.5, n_candidates=32)
    by_trials = CostAwareSearcher(SIM, "val_loss", "min", horizon_trials=4, n_candidates=32)
    neither = CostAwareSearcher(SIM, "val_loss", "min", n_candidates=32)
    for searcher in (by_budget, by_trials, neither):
        assert searcher.alpha == 1.0
        _drive(searcher, 4)
    assert by_trials.alpha == 0.0 and neither.alpha == 1.0
    assert by_budget.alpha == max(0.0, 1 - by_budget.spent_usd / 0.5)


def test_alpha_cools_with_whichever_runs_out_first() -> None:
    """Cheap trials that would use up `num_samples` with most of the budget left cool alpha
    by the trial count; an expensive sweep cools by its dollars (both limits given)."""
    cheap = CostAwareSearcher(SIM, "val_loss", "min", budget_usd=1e6, horizon_trials=8)
    _drive(cheap, 4)
    assert cheap.spent_usd / 1e6 < 1e-3
    assert cheap.alpha == pytest.approx(0.5)  # 4 of 8 trials, whatever the dollars say
    # The first trials come from the initial design, the same whatever the limits.
    spent = _drive(CostAwareSearcher(SIM, "val_loss", "min"), 3)[-1][0]
    both = CostAwareSearcher(SIM, "val_loss", "min", budget_usd=spent / 0.75, horizon_trials=1000)
    _drive(both, 3)
    assert both.alpha == pytest.approx(0.25)  # 3/4 of the dollars, 3/1000 of the trials


def test_run_sweep_cools_the_cost_aware_searcher_over_num_samples(tmp_path: Path) -> None:
    from ray_ml.tune._sweep import _searcher

    cfg = load_config(
        "tune",
        [
            "experiment=demo",
            f"storage_path={tmp_path}",
            "tune.searcher=cost_aware",
            "tune.num_samples=12",
        ],
    )
    searcher = _searcher(cfg, load_space("mlp"))
    assert searcher._horizon == 12


# ------------------------------------------------------------------------------ Tune API
def test_set_search_properties() -> None:
    searcher = CostAwareSearcher(SIM, "val_loss", "min")
    assert searcher.set_search_properties("val_loss", "min", SIM.to_tune() | {"seed": 1})
    assert searcher.set_search_properties(None, None, {})
    with pytest.raises(ConfigError, match=r"optimizes `val_loss`, but Tune was given metric='acc'"):
        searcher.set_search_properties("acc", "min", {})
    with pytest.raises(ConfigError, match=r"mode='min', but Tune was given mode='max'"):
        searcher.set_search_properties("val_loss", "max", {})
    with pytest.raises(ConfigError, match=r"`param_space` samples model.dropout"):
        searcher.set_search_properties(None, None, {"model.dropout": tune.uniform(0, 0.5)})


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"mode": "up"}, r"`mode` must be one of min, max"),
        ({"metric": ""}, r"`metric` must be a non-empty"),
        ({"budget_usd": 0.0}, r"`budget_usd` must be positive"),
        ({"n_candidates": 0}, r"`n_candidates` must be an integer >= 1"),
        ({"n_initial": -1}, r"`n_initial` must be an integer >= 0"),
        ({"cost_hints": {"model.dropout": 1}}, r"names `model.dropout`.*does not tune"),
        ({"cost_hints": {"train.epochs": 2}}, r"must be 1, -1 or 0"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], pattern: str) -> None:
    args: dict[str, Any] = {"space": SIM, "metric": "val_loss", "mode": "min", **kwargs}
    with pytest.raises(ConfigError, match=pattern):
        CostAwareSearcher(**args)
