"""The replay protocol of benchmarks/tune without Ray: tables, the simulator, the metrics.

A synthetic table of 20 configs (5 learning rates x 4 widths, 9 steps each, cost 10x apart
between the narrowest and the widest) stands in for a benchmark table.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search import Searcher

from benchmarks.tune import metrics as m
from benchmarks.tune.methods import METHODS, Method, MethodContext, build_policy, unavailable
from benchmarks.tune.protocol import evaluate, task_stats
from benchmarks.tune.replay import Policy, Replay, ReplayConfig, replay
from benchmarks.tune.tables import Table, load_parquet, table_from_rows, write_parquet
from ray_ml.config import load_config
from ray_ml.cost import PriceCatalog
from ray_ml.errors import ConfigError

pytestmark = pytest.mark.unit

LRS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
WIDTHS = (16, 32, 64, 160)
STEPS = 9


def synthetic_rows(steps: int = STEPS) -> list[dict[str, Any]]:
    rows = []
    for lr in LRS:
        for width in WIDTHS:
            quality = 0.9 - 0.08 * abs(math.log10(lr) + 2) + 0.01 * math.log2(width / 16)
            per_step = 2.0 * width / 16  # seconds per step: 2 .. 20
            for s in range(1, steps + 1):
                val = quality * (1 - math.exp(-s / 3))
                rows.append(
                    {
                        "lr": lr,
                        "width": width,
                        "step": s,
                        "val_metric": val,
                        "test_metric": val - 0.005,
                        "cost_s": per_step * s,
                        "infer_ms": 0.1 * width,
                    }
                )
    return rows


def synthetic(steps: int = STEPS) -> Table:
    return table_from_rows(synthetic_rows(steps), name="synthetic", mode="max")


@pytest.fixture(scope="module")
def catalog() -> PriceCatalog:
    return PriceCatalog.from_config(load_config("tune", ["cost=aws_illustrative"]).cost)


def budget_for(table: Table, catalog: PriceCatalog, trials: float) -> float:
    return trials * float(table.final_cost_s.mean()) * catalog.price_of({"CPU": 1.0}) / 3600.0


def run(
    name: str, table: Table, catalog: PriceCatalog, trials: float = 6, seed: int = 0, **kw: Any
) -> Replay:
    budget = budget_for(table, catalog, trials)
    ctx = MethodContext(seed, budget, grace_period=1, reduction_factor=3, workers=2)
    cfg = ReplayConfig(budget_usd=budget, num_samples=200, seed=seed, **kw)
    return replay(table, lambda: build_policy(name, table, ctx), cfg, catalog)


# ----------------------------------------------------------------------------- tables
def test_table_shape_and_space() -> None:
    t = synthetic()
    assert (t.n_configs, t.max_steps) == (20, STEPS)
    assert t.space.params["lr"].to_dict() == {"loguniform": [1e-4, 1.0]}
    assert t.space.params["width"].to_dict() == {"loguniform": [16.0, 160.0]}
    assert np.all(np.diff(t.cost_s, axis=1) > 0)


def test_index_of_maps_to_the_nearest_level_in_log_space() -> None:
    t = synthetic()
    row = t.index_of({"lr": 2.9e-3, "width": 40.0})  # log-nearest: 1e-3 (not 1e-2), 32
    assert t.config(row) == {"lr": 1e-3, "width": 32}
    assert t.index_of(t.config(7)) == 7


def test_parquet_round_trip(tmp_path: Path) -> None:
    t = synthetic()
    back = load_parquet(write_parquet(t, tmp_path / "curves.parquet"))
    assert back.mode == "max" and back.param_names == t.param_names
    np.testing.assert_allclose(back.val, t.val)
    np.testing.assert_allclose(back.cost_s, t.cost_s)
    np.testing.assert_allclose(back.infer_ms, t.infer_ms)


def test_table_refuses_a_gap_in_steps_and_a_decreasing_cost() -> None:
    rows = [r for r in synthetic_rows() if not (r["lr"] == 1.0 and r["step"] == 3)]
    with pytest.raises(ConfigError, match="without gaps"):
        table_from_rows(rows, name="gappy")
    rows = synthetic_rows()
    rows[1]["cost_s"] = 0.0
    with pytest.raises(ConfigError, match="cumulative"):
        table_from_rows(rows, name="backwards")


# --------------------------------------------------------------------------- replay
SIMPLE = ("grid", "random+fifo", "random+asha", "random+median", "top_k_one_epoch")
OPTUNA = ("tpe+asha", "optuna_tpe+median_pruner", "optuna_tpe+hyperband_pruner", "nsga2")


@pytest.mark.parametrize("name", SIMPLE + OPTUNA)
@pytest.mark.parametrize("trials", [0.5, 6])
def test_replay_never_overspends(name: str, trials: float, catalog: PriceCatalog) -> None:
    why = unavailable(name)
    if why:
        pytest.skip(why)
    rep = run(name, synthetic(), catalog, trials=trials)
    # The budget stop bills running trials up to the moment spend reaches the budget.
    assert rep.spent_usd_total <= rep.budget_usd * (1 + 1e-9)
    assert rep.ended_by not in ("stalled", "max_events", "timeout")
    assert np.all(np.diff(rep.spent_usd) >= -1e-15) and np.all(np.diff(rep.t_s) >= 0)
    assert rep.n_trials >= 1


@pytest.mark.parametrize("name", ["bohb", "blendsearch", "cfo", "cost_aware+asha"])
def test_optional_methods_replay_within_budget(name: str, catalog: PriceCatalog) -> None:
    why = unavailable(name)
    if why:
        pytest.skip(why)
    rep = run(name, synthetic(), catalog, trials=4)
    assert rep.spent_usd_total <= rep.budget_usd * (1 + 1e-9)
    assert rep.ended_by not in ("stalled", "max_events", "timeout")


def test_budget_smaller_than_one_trial_stops_it_at_the_budget(catalog: PriceCatalog) -> None:
    rep = run("random+fifo", synthetic(), catalog, trials=0.05)
    assert rep.ended_by == "budget"
    assert rep.spent_usd_total == pytest.approx(rep.budget_usd, rel=1e-9)
    assert rep.statuses.get("budget_stopped", 0) >= 1


def test_asha_prunes_on_a_table_with_learning_curves(catalog: PriceCatalog) -> None:
    rep = run("random+asha", synthetic(), catalog, trials=8)
    assert rep.statuses.get("pruned", 0) > 0
    fifo = run("random+fifo", synthetic(), catalog, trials=8)
    assert fifo.statuses.get("pruned", 0) == 0


def test_spot_preemptions_are_billed_as_waste(catalog: PriceCatalog) -> None:
    rep = run("random+fifo", synthetic(), catalog, trials=6, pricing="spot", preempt_per_hour=400.0)
    assert rep.preemptions > 0 and rep.waste_usd > 0
    assert rep.spent_usd_total <= rep.budget_usd * (1 + 1e-9)


class _Silent(Searcher):
    """A searcher that never suggests anything (Tune would wait for it forever)."""

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        return None


def test_a_searcher_that_never_suggests_ends_as_stalled(catalog: PriceCatalog) -> None:
    t = synthetic()
    cfg = ReplayConfig(budget_usd=budget_for(t, catalog, 5), num_samples=10)
    rep = replay(t, Policy(_Silent(), FIFOScheduler(), mode="max"), cfg, catalog)
    assert rep.ended_by == "stalled" and rep.n_trials == 0


def test_num_samples_caps_the_trials(catalog: PriceCatalog) -> None:
    t = synthetic()
    budget = budget_for(t, catalog, 50)
    ctx = MethodContext(0, budget, 1, 3, 2)
    cfg = ReplayConfig(budget_usd=budget, num_samples=5)
    rep = replay(t, build_policy("random+fifo", t, ctx), cfg, catalog)
    assert rep.n_trials == 5 and rep.ended_by == "num_samples"


def _never(table: Table, ctx: MethodContext) -> Policy:
    raise AssertionError("a method that is not run is never built")


def test_a_method_with_a_missing_dependency_is_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Method("fake", "needs a module that does not exist", ("no_such_module_xyz",), _never)
    monkeypatch.setitem(METHODS, "fake", fake)
    why = unavailable("fake")
    assert why is not None and "no_such_module_xyz" in why


def test_evaluate_gives_every_figure(catalog: PriceCatalog) -> None:
    t = synthetic()
    stats = task_stats(t, catalog, 6)
    out = evaluate(stats, t, run("random+asha", t, catalog), "on_demand")
    assert set(out["test_score_at"]) == {"0.1", "0.25", "0.5", "1.0"}
    assert 0.0 <= out["regret_auc"] <= 1.0 and 0.0 <= out["hv_cost"] <= 1.0
    assert out["hv_latency"] is not None and out["overspend_frac"] <= 1e-9


# -------------------------------------------------------------------------- metrics
def test_cost_to_target_is_censored_when_never_reached() -> None:
    spent = np.array([1.0, 2.0, 3.0])
    assert m.cost_to_target(spent, np.array([0.1, 0.5, 0.9]), 0.5) == 2.0
    assert m.cost_to_target(spent, np.array([0.1, 0.2, 0.3]), 0.5) is None
    assert m.cost_to_target(np.array([]), np.array([]), 0.5) is None


def test_target_score_is_the_top_one_percent() -> None:
    scores = np.arange(200, dtype=float)  # best 199, 198, ...: the top 1% is 2 configs
    assert m.target_score(scores) == 198.0


def test_incumbent_is_chosen_on_validation_and_reported_on_test() -> None:
    val = np.array([0.5, 0.7, 0.7, 0.6, 0.9])
    test = np.array([0.4, 0.2, 0.9, 0.8, 0.85])
    best, inc_test = m.incumbent_trace(val, test)
    np.testing.assert_array_equal(best, [0.5, 0.7, 0.7, 0.7, 0.9])
    np.testing.assert_array_equal(inc_test, [0.4, 0.2, 0.2, 0.2, 0.85])  # ties keep the first
    assert m.incumbent_at(np.array([1.0, 2, 3, 4, 5]), val, test, [0.5, 3.5, 9]) == [
        None,
        0.2,
        0.85,
    ]


def test_hypervolume_matches_a_hand_computed_case() -> None:
    # Two front points, one dominated, one outside the reference box:
    # [0.2, 1] x [0.6, 1] union [0.5, 1] x [0.3, 1] = 0.32 + 0.35 - 0.2 = 0.47.
    pts = np.array([[0.2, 0.6], [0.5, 0.3], [0.6, 0.7], [1.2, 0.1]])
    assert m.hypervolume_2d(pts, (1.0, 1.0)) == pytest.approx(0.47)
    assert m.hypervolume_2d(np.empty((0, 2))) == 0.0
    np.testing.assert_array_equal(m.pareto_mask(pts[:, 0], pts[:, 1]), [True, True, False, True])


def test_regret_auc_is_the_mean_capped_regret_over_the_budget() -> None:
    # regret 1 on [0, .25), .5 on [.25, .5), .2 on [.5, 1]: 0.25 + 0.125 + 0.1
    assert m.regret_auc(np.array([0.25, 0.5]), np.array([0.5, 0.2]), 1.0) == pytest.approx(0.475)
    assert m.regret_auc(np.array([]), np.array([]), 1.0) == 1.0
    assert m.regret_auc(np.array([0.5]), np.array([3.0]), 1.0) == 1.0  # capped at 1


def test_bootstrap_ratio_of_constant_costs_is_exact() -> None:
    point, lo, hi = m.bootstrap_ratio([[np.full(5, 6.0), np.full(5, 9.0)]], [np.full(5, 2.0)])
    assert (point, lo, hi) == pytest.approx((3.0, 3.0, 3.0))  # the cheaper baseline counts
    g, glo, ghi = m.bootstrap_geomean([1.0, 4.0])
    assert g == pytest.approx(2.0) and glo <= g <= ghi


def test_overspend_and_log_normalize() -> None:
    assert m.overspend(1.01, 1.0) == pytest.approx(0.01) and m.overspend(0.9, 1.0) == 0.0
    np.testing.assert_allclose(
        m.log_normalize(np.array([1.0, 10.0, 100.0, 1e4]), 1.0, 100.0), [0, 0.5, 1, 1]
    )
