"""Cost-aware sweeps on the shared local Ray: real Train trials, metered dollars, budgets."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ray_ml.config import load_config
from ray_ml.cost import PriceCatalog
from ray_ml.errors import ConfigError
from ray_ml.tune._sweep import run_sweep, run_tune_job


def config(tmp_path: Path, *overrides: str):
    return load_config(
        "tune", ["experiment=demo", "debug=tiny", f"storage_path={tmp_path}", *overrides]
    )


def test_sweep_meters_every_trial_and_registers_the_winner(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        "tune.num_samples=3",
        "tune.max_t=2",
        "train.epochs=2",
        "tune.grace_period=1",
        "tune.reduction_factor=2",
        "tracking=mlflow",
    )
    summary = run_sweep(cfg)
    assert summary["trials"] == 3 and summary["cost_usd"] > 0
    assert set(summary["status_counts"]) <= {"completed", "pruned"}
    assert summary["pruned"] == summary["status_counts"].get("pruned", 0)
    board = pq.read_table(summary["leaderboard"]).to_pylist()
    rate = PriceCatalog.from_config(cfg.cost).price_of({"CPU": 1.0})  # 1 worker x 1 CPU
    for row in board:
        # billed dollars = held resources x held time x unit price
        assert row["cost_usd"] == pytest.approx(rate * row["wall_s"] / 3600, rel=1e-6)
    assert summary["registered"]["alias"] == "candidate"
    assert summary["best"]["trial_id"] in {r["trial_id"] for r in board}
    assert Path(summary["bundle"], "manifest.json").is_file()
    assert summary["pareto"] and summary["prices"]["illustrative"] is True
    # tracking=mlflow: one MLflow run per trial (params, metrics incl. dollars) + the summary run
    import mlflow

    from ray_ml.tracking import tracking_uri

    client = mlflow.MlflowClient(tracking_uri(cfg))
    exp = client.get_experiment_by_name(cfg.name)
    runs = client.search_runs([exp.experiment_id])
    trial_runs = [r for r in runs if r.info.run_name != f"{cfg.name}-sweep-summary"]
    assert len(trial_runs) == 3 and all("cost_usd" in r.data.metrics for r in trial_runs)
    (top,) = [r for r in runs if r.info.run_id == summary["mlflow_run_id"]]
    assert top.data.metrics["cost_usd"] == pytest.approx(summary["cost_usd"])


def test_small_budget_stops_the_sweep(tmp_path: Path) -> None:
    cfg = config(
        tmp_path, "tune.num_samples=6", "tune.budget_usd=0.0003", "tune.max_t=3", "train.epochs=3"
    )
    summary = run_sweep(cfg)
    assert "tune.budget_usd" in summary["stop_reason"]
    assert summary["trials"] < 6  # the budget ended it before every sample ran
    board = pq.read_table(summary["leaderboard"]).to_pylist()
    worst_trial = max(r["cost_usd"] for r in board)
    # overspend is at most what the running trial spent since its last report
    assert summary["cost_usd"] <= summary["budget_usd"] + worst_trial


def test_bad_space_and_negative_budget_fail_at_start(tmp_path: Path) -> None:
    from ray_ml.tune import load_space

    bad = tmp_path / "space.yaml"
    bad.write_text("params:\n  train.lrr: {loguniform: [1.0e-4, 1.0e-1]}\n")
    with pytest.raises(ConfigError, match="train.lrr"):
        load_space(bad)
    with pytest.raises(ConfigError, match="tune.space"):
        run_tune_job(config(tmp_path, "tune.space=nope"))  # before any Ray work
    with pytest.raises(ConfigError, match="budget_usd"):
        config(tmp_path, "tune.budget_usd=-1")


def _kill_trial_actor_after_first_checkpoint(storage: Path, killed: list[int]) -> None:
    """Preempt the trial: SIGKILL its Tune actor once it has reported a checkpointed epoch."""
    from ray.util.state import list_actors

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        # Tune has the first report (sent after Train registered that epoch's checkpoint).
        if any(p.stat().st_size > 0 for p in (storage / "tune").glob("*/*/result.json")):
            actors = list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
            pids = [a.pid for a in actors if a.class_name == "ImplicitFunc"]
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
                return
        time.sleep(0.2)


def test_spot_trial_survives_a_killed_trial_actor_and_charges_the_waste(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        "tune.num_samples=1",
        "tune.max_t=4",
        "train.epochs=4",
        "train.max_failures=1",
        "cost.pricing=spot",
    )
    killed: list[int] = []
    killer = threading.Thread(
        target=_kill_trial_actor_after_first_checkpoint, args=(tmp_path, killed), daemon=True
    )
    killer.start()
    summary = run_sweep(cfg)
    killer.join(timeout=5)
    assert killed, "the trial actor was never killed"
    board = pq.read_table(summary["leaderboard"]).to_pylist()
    assert [r["status"] for r in board] == ["completed"]
    # waste = only the work since the last checkpoint, not the trial's whole bill
    assert 0 < board[0]["waste_usd"] < 0.25 * board[0]["cost_usd"]
    assert summary["waste_usd"] == pytest.approx(board[0]["waste_usd"], abs=1e-6)
    # Resumed from the checkpoint, not from scratch: every epoch (0-based) reported exactly once.
    results = [
        json.loads(line)
        for path in (tmp_path / "tune").glob("*/*/result.json")
        for line in path.read_text().splitlines()
    ]
    epochs = [r["epoch"] for r in results]
    assert sorted(epochs) == [0, 1, 2, 3], epochs
    spot = PriceCatalog.from_config(cfg.cost).price_of({"CPU": 1.0})
    on_demand = PriceCatalog.from_config(config(tmp_path).cost).price_of({"CPU": 1.0})
    assert spot < on_demand
    assert board[0]["cost_usd"] <= spot * board[0]["wall_s"] / 3600 * (1 + 1e-6)
