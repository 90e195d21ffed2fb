"""Leaderboard, Pareto front and winner rules on hand-made trial records. No Ray."""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from ray_ml.config import SortMode, WinnerRule
from ray_ml.errors import ConfigError, RayMLError
from ray_ml.tune import (
    Leaderboard,
    NoWinnerError,
    choose_winner,
    default_objectives,
    eligible,
    pareto_front,
)

pytestmark = pytest.mark.unit


def _rec(
    trial_id: str,
    value: float | None,
    cost: float | None = 1.0,
    *,
    status: str = "completed",
    latency: float | None = None,
    metric: str = "val_loss",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "trial_id": trial_id,
        "status": status,
        "config": extra.pop("config", {"train.lr": 0.01}),
        "metrics": {} if value is None else {metric: value},
        "iterations": extra.pop("iterations", 10),
        "pruned_at_rung": extra.pop("pruned_at_rung", None),
        "cost_usd": cost,
        "algorithmic_cost_usd": None if cost is None else cost / 2,
        "waste_usd": 0.0,
        "wall_s": 60.0,
        "latency_ms": latency,
        **extra,
    }


def _ids(records: list[Any]) -> list[str]:
    return [r["trial_id"] for r in records]


# ---------------------------------------------------------------------------- eligibility
def test_only_completed_or_checkpointed_budget_stopped_trials_are_eligible() -> None:
    records = [
        _rec("done", 0.5),
        _rec("pruned", 0.1, status="pruned", pruned_at_rung=3),
        _rec("failed", 0.1, status="failed"),
        _rec("running", 0.1, status="running"),
        _rec("budget_ckpt", 0.4, status="budget_stopped", checkpoint="/ckpt/3"),
        _rec("budget_bare", 0.2, status="budget_stopped"),
        _rec("nan", math.nan),
        _rec("inf", math.inf),
        _rec("missing", None),
    ]
    assert _ids(eligible(records, "val_loss")) == ["done", "budget_ckpt"]
    assert choose_winner(records, "best", "val_loss", "min").trial_id == "budget_ckpt"


def test_no_eligible_trial_is_a_clear_error() -> None:
    records = [_rec("a", 0.1, status="failed"), _rec("b", None), _rec("c", 0.2, status="pruned")]
    with pytest.raises(NoWinnerError) as info:
        choose_winner(records, "best", "val_loss", "min")
    message = str(info.value)
    assert "1 completed, 1 failed, 1 pruned" in message
    assert "b finished without reporting `val_loss`" in message
    assert isinstance(info.value, RayMLError)
    with pytest.raises(NoWinnerError, match="no trials at all"):
        choose_winner([], "best", "val_loss", "min")


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"rule": "fastest"}, r"`tune.winner_rule` must be one of best, .*'fastest'"),
        ({"mode": "up"}, r"`mode` must be one of min, max, but got mode='up'"),
        ({"eps": -0.1}, r"`tune.winner_eps` must be a finite number >= 0.*-0.1"),
        ({"rule": "best_under_latency"}, r"`tune.latency_bound_ms` is required"),
    ],
)
def test_bad_arguments_name_the_key(kwargs: dict[str, Any], pattern: str) -> None:
    args: dict[str, Any] = {"rule": "best", "metric": "val_loss", "mode": "min", **kwargs}
    with pytest.raises(ConfigError, match=pattern):
        choose_winner([_rec("a", 0.1)], **args)


# ----------------------------------------------------------------------------------- best
def test_best_breaks_ties_by_cost_then_trial_id() -> None:
    records = [
        _rec("c", 0.2, 1.0),
        _rec("b", 0.2, 0.5),
        _rec("a", 0.2, 0.5),
        _rec("d", 0.3, 0.1),
        _rec("e", 0.2, None),  # unknown cost loses cost ties
    ]
    for perm in itertools.permutations(records):
        winner = choose_winner(list(perm), WinnerRule.best, "val_loss", SortMode.min)
        assert winner.trial_id == "a"
    assert winner.value == 0.2 and winner.rule is WinnerRule.best
    assert winner.record is records[2]
    assert "best val_loss=0.2" in winner.reason


def test_best_in_max_mode() -> None:
    records = [_rec(t, v, metric="val_roc_auc") for t, v in [("a", 0.8), ("b", 0.9), ("c", 0.7)]]
    assert choose_winner(records, "best", "val_roc_auc", "max").trial_id == "b"
    assert choose_winner(records, "best", "val_roc_auc", "min").trial_id == "c"


# ---------------------------------------------------------------------- cheapest within eps
def test_cheapest_within_eps() -> None:
    records = [
        _rec("best", 0.30, 4.0),
        _rec("near", 0.305, 1.0),
        _rec("edge", 0.31, 0.5),  # exactly eps away: inside
        _rec("far", 0.32, 0.1),
    ]
    winner = choose_winner(records, "cheapest_within_eps", "val_loss", "min", eps=0.01)
    assert winner.trial_id == "edge"
    assert "within eps=0.01 of the best val_loss=0.3" in winner.reason
    assert choose_winner(records, "cheapest_within_eps", "val_loss", "min", eps=0.0).trial_id == (
        "best"
    )
    assert choose_winner(records, "cheapest_within_eps", "val_loss", "min", eps=1).trial_id == (
        "far"
    )


def test_cheapest_within_eps_float_round_off_and_max_mode() -> None:
    # 0.1 + 0.2 is 0.30000000000000004: still within eps=0.1 of 0.4 in max mode.
    records = [_rec("best", 0.4, 2.0, metric="auc"), _rec("cheap", 0.1 + 0.2, 1.0, metric="auc")]
    winner = choose_winner(records, "cheapest_within_eps", "auc", "max", eps=0.1)
    assert winner.trial_id == "cheap"


def test_cheapest_within_eps_ties_by_metric_then_id() -> None:
    records = [_rec("z", 0.31, 1.0), _rec("y", 0.30, 1.0), _rec("x", 0.30, 1.0)]
    for perm in itertools.permutations(records):
        got = choose_winner(list(perm), "cheapest_within_eps", "val_loss", "min", eps=0.05)
        assert got.trial_id == "x"


# ---------------------------------------------------------------------- best under latency
def test_best_under_latency() -> None:
    records = [
        _rec("slow_best", 0.1, latency=80.0),
        _rec("ok", 0.2, latency=50.0),  # at the bound: qualifies
        _rec("fast", 0.3, latency=5.0),
        _rec("unmeasured", 0.05, latency=None),
    ]
    winner = choose_winner(records, "best_under_latency", "val_loss", "min", latency_bound_ms=50.0)
    assert winner.trial_id == "ok"
    assert "latency_ms <= 50" in winner.reason


def test_best_under_latency_none_qualifies_names_bound_and_fastest() -> None:
    records = [
        _rec("a", 0.1, latency=80.0),
        _rec("b", 0.2, latency=30.0),
        _rec("c", 0.05, latency=1.0, status="pruned"),  # not eligible: not the fastest
    ]
    with pytest.raises(NoWinnerError, match=r"latency_bound_ms=20.*fastest eligible trial, b.*30"):
        choose_winner(records, "best_under_latency", "val_loss", "min", latency_bound_ms=20)
    with pytest.raises(NoWinnerError, match=r"none of the 1 eligible trials has a measured"):
        choose_winner(
            [_rec("a", 0.1)], "best_under_latency", "val_loss", "min", latency_bound_ms=20
        )


# ---------------------------------------------------------------------------------- pareto
def _point(tid: str, loss: float, cost: float | None, latency: float | None = None) -> dict:
    return _rec(tid, loss, cost, latency=latency)


def test_pareto_front_on_hand_made_points() -> None:
    records = [
        _point("a", 0.10, 5.0),  # best loss
        _point("b", 0.20, 1.0),  # cheapest
        _point("c", 0.15, 2.0),  # between
        _point("d", 0.20, 2.0),  # dominated by b (same loss, dearer)
        _point("e", 0.30, 3.0),  # dominated by b and c
        _point("f", 0.15, 2.0),  # a duplicate of c: neither dominates the other
        _point("g", 0.05, None),  # no cost: left out of a front that uses cost
        _point("h", 0.01, 0.1, latency=None) | {"status": "pruned"},  # not eligible
    ]
    objectives = default_objectives("val_loss", "min")  # latency: None for all, so dropped
    assert _ids(pareto_front(records, objectives)) == ["a", "c", "f", "b"]
    shuffled = records[:]
    for seed in range(5):
        random.Random(seed).shuffle(shuffled)
        assert _ids(pareto_front(shuffled, objectives)) == ["a", "c", "f", "b"]


def test_pareto_front_three_objectives_and_max_mode() -> None:
    records = [
        _point("big", 0.10, 5.0, latency=30.0),
        _point("small", 0.20, 5.0, latency=3.0),  # worse loss, but faster: stays
        _point("slow", 0.20, 5.0, latency=40.0),  # dominated by big
        _point("mid", 0.15, 1.0, latency=None),  # missing latency: left out
    ]
    assert _ids(pareto_front(records, default_objectives("val_loss", "min"))) == ["big", "small"]
    as_auc = [r | {"metrics": {"auc": -r["metrics"]["val_loss"]}} for r in records]
    assert _ids(pareto_front(as_auc, [("auc", "max"), ("latency_ms", "min")])) == [
        "big",
        "small",
    ]
    # Objectives may also be other reported metrics.
    with_size = [r | {"metrics": {**r["metrics"], "params": i}} for i, r in enumerate(records)]
    assert _ids(pareto_front(with_size, [("val_loss", "min"), ("params", "min")])) == [
        "big",
    ]


def test_pareto_front_matches_the_definition_on_random_points() -> None:
    rng = random.Random(0)
    # Values on a coarse grid so ties and duplicates are common.
    records = [
        _point(f"t{i:02d}", rng.randint(0, 5) / 10, rng.randint(0, 5), rng.randint(0, 3))
        for i in range(60)
    ]
    front = _ids(pareto_front(records, default_objectives("val_loss", "min")))

    def vec(r: dict) -> tuple[float, ...]:
        return (r["metrics"]["val_loss"], r["cost_usd"], r["latency_ms"])

    expected = {
        r["trial_id"]
        for r in records
        if not any(
            all(x <= y for x, y in zip(vec(o), vec(r), strict=True)) and vec(o) != vec(r)
            for o in records
        )
    }
    assert set(front) == expected
    assert front == sorted(front, key=lambda t: (vec(records[int(t[1:])]), t))


def test_pareto_front_needs_objectives() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        pareto_front([_point("a", 0.1, 1.0)], [])
    assert pareto_front([], default_objectives("val_loss", "min")) == []


# ----------------------------------------------------------------------------- leaderboard
def _sweep() -> list[dict[str, Any]]:
    return [
        _rec("t3", 0.30, 0.5, config={"train": {"lr": 0.1}, "model.hidden_sizes": [64]}),
        _rec(
            "t1",
            0.10,
            2.0,
            config={"train": {"lr": 0.01}, "model.hidden_sizes": [128, 64]},
            latency=4.0,
            checkpoint="/ckpt/t1",
        ),
        _rec(
            "t2",
            0.05,
            0.2,
            status="pruned",
            pruned_at_rung=3,
            iterations=3,
            config={"train": {"lr": 0.001}, "model.hidden_sizes": [64]},
        ),
        _rec("t4", None, 0.1, status="failed", config={"train": {"lr": 1.0}}),
        _rec("t5", 0.10, 1.0, config={"train": {"lr": 0.02}, "model.hidden_sizes": [64]}),
    ]


def test_leaderboard_orders_eligible_first_and_flattens_config() -> None:
    board = Leaderboard(_sweep(), "val_loss", "min")
    frame = board.frame
    assert list(frame["trial_id"]) == ["t5", "t1", "t3", "t2", "t4"]  # t5 ties t1, cheaper
    assert list(frame["rank"].astype("float").fillna(0)) == [1, 2, 3, 0, 0]
    assert list(frame.columns[:5]) == ["rank", "trial_id", "status", "val_loss", "pareto"]
    assert {"train.lr", "model.hidden_sizes", "cost_usd", "pruned_at_rung"} <= set(frame.columns)
    assert frame.loc[frame.trial_id == "t1", "model.hidden_sizes"].item() == "[128, 64]"
    assert frame.loc[frame.trial_id == "t2", "pruned_at_rung"].item() == 3
    assert frame.loc[frame.trial_id == "t1", "checkpoint"].item() == "/ckpt/t1"
    # Only t1 measured latency, so the front (cost, loss, latency) holds only trials with all three.
    assert list(frame["pareto"]) == [False, True, False, False, False]
    assert len(board) == 5 and "trials=5" in repr(board)


def test_leaderboard_max_mode() -> None:
    records = [_rec(t, v, metric="auc") for t, v in [("a", 0.7), ("b", 0.9)]]
    assert list(Leaderboard(records, "auc", "max").frame["trial_id"]) == ["b", "a"]


def test_leaderboard_files_round_trip(tmp_path: Path) -> None:
    board = Leaderboard(_sweep(), "val_loss", "min")
    parquet = board.to_parquet(tmp_path / "out" / "leaderboard.parquet")
    table = pq.read_table(parquet)
    assert json.loads(table.schema.metadata[b"ray_ml.leaderboard"]) == {
        "metric": "val_loss",
        "mode": "min",
    }
    back = table.to_pandas()
    assert list(back["trial_id"]) == list(board.frame["trial_id"])
    assert back["val_loss"].tolist()[:3] == pytest.approx([0.10, 0.10, 0.30])
    csv = pd.read_csv(board.to_csv(tmp_path / "leaderboard.csv"))
    assert list(csv["trial_id"]) == list(board.frame["trial_id"])


def test_leaderboard_markdown() -> None:
    text = str(Leaderboard(_sweep(), "val_loss", "min"))
    lines = text.splitlines()
    assert lines[0].startswith("| rank | trial_id | status")
    assert set(lines[1]) <= {"|", "-", ":", " "}
    assert len({len(line) for line in lines}) == 1  # aligned columns
    assert "| t5 " in lines[2] and "| completed " in lines[2]
    assert "[128, 64]" in text and "nan" not in text and "<NA>" not in text
    short = Leaderboard(_sweep(), "val_loss", "min").to_markdown(max_rows=2)
    assert short.count("\n| ") == 3 and "(3 more trials not shown)" in short


def test_empty_leaderboard() -> None:
    board = Leaderboard([], "val_loss", "min")
    assert len(board) == 0 and "rank" in board.to_markdown()
