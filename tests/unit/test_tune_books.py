"""The sweep's books without Ray: statuses from what happened, resume, budgets, capacity."""

from __future__ import annotations

from pathlib import Path

import pytest

from ray_ml.cluster import autoscaler_capacity
from ray_ml.config import RunConfig, load_config
from ray_ml.cost import Budget, CostMeter, PriceCatalog, TrialStatus
from ray_ml.errors import ConfigError
from ray_ml.tune import SearchSpace
from ray_ml.tune._books import SweepBooks, SweepLayout
from tests.conftest import REPO


def catalog() -> PriceCatalog:
    return PriceCatalog.from_config(load_config("tune", []).cost)  # the shipped prices


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def books(tmp_path: Path, clock: Clock, budget: Budget | None = None, resume: bool = False):
    return SweepBooks.open(
        catalog(),
        budget or Budget(),
        10,  # tune.max_t
        SweepLayout(tmp_path, "x"),
        lambda config: {"CPU": 1.0},
        resume=resume,
        clock=clock,
    )


def report(b: SweepBooks, clock: Clock, tid: str, it: int, dt: float, **extra) -> None:
    clock.t += dt
    b.on_result(tid, {"training_iteration": it, "val_loss": 1.0 / it, **extra})


def test_a_trial_the_scheduler_stopped_is_pruned_even_though_tune_marks_it_done(
    tmp_path: Path,
) -> None:
    clock = Clock()
    b = books(tmp_path, clock)
    b.on_start("a", {"train.lr": 0.1})
    report(b, clock, "a", 1, 2.0, done=True)  # Tune sets `done` on a scheduler stop too
    b.on_decision("a", "STOP")
    b.on_end("a", error=False)
    rec = b.record("a")
    assert rec.status is TrialStatus.pruned and rec.pruned_at_rung == 1
    # ... while one that trained every epoch is completed, whatever the scheduler says at max_t
    b.on_start("b", {})
    for it in (1, 2, 3):
        report(b, clock, "b", it, 1.0, training_done=it == 3)
    b.on_decision("b", "STOP")
    b.on_end("b", error=False)
    assert b.record("b").status is TrialStatus.completed
    assert b.record("b").pruned_at_rung is None
    # its own early stop is completed too
    b.on_start("c", {})
    report(b, clock, "c", 1, 1.0, training_done=True)
    b.on_end("c", error=False)
    assert b.record("c").status is TrialStatus.completed


def test_paused_time_is_not_billed_nor_wasted(tmp_path: Path) -> None:
    clock = Clock()
    b = books(tmp_path, clock)
    b.on_start("h", {})
    report(b, clock, "h", 1, 10.0)
    b.on_checkpoint("h", "/ckpt/1")
    b.on_decision("h", "PAUSE")  # HyperBand: resources released
    clock.t += 500.0  # waits
    b.on_start("h", {})  # resumed from its checkpoint
    report(b, clock, "h", 2, 10.0, training_done=True)
    b.on_end("h", error=False)
    rec = b.record("h")
    assert rec.held_s == pytest.approx(20.0)
    assert rec.waste_usd == 0.0 and rec.restarts == 0


def test_a_resumed_driver_keeps_the_books(tmp_path: Path) -> None:
    clock = Clock()
    b = books(tmp_path, clock)
    b.on_start("done", {})
    report(b, clock, "done", 1, 30.0, training_done=True)
    b.on_end("done", error=False)
    b.on_start("cut", {})
    report(b, clock, "cut", 1, 20.0)
    b.on_checkpoint("cut", "/c")
    clock.t += 5.0  # work after its checkpoint, lost when the driver dies
    b.save(force=True)
    before = b.meter.committed()
    # the driver dies; a new one opens the same books
    clock.t += 100.0  # nothing is billed while no driver runs
    r = books(tmp_path, clock, resume=True)
    assert r.resumes == 1
    assert r.meter.committed() == pytest.approx(before)
    assert r.record("done").status is TrialStatus.completed
    r.on_start("cut", {})
    report(r, clock, "cut", 2, 10.0, training_done=True)
    r.on_end("cut", error=False)
    cut = r.record("cut")
    assert cut.held_s == pytest.approx(35.0)  # 20 + 5 before the crash, 10 after
    assert cut.lost_s == pytest.approx(5.0) and cut.restarts == 1
    assert cut.status is TrialStatus.completed


def test_a_trial_that_trained_every_epoch_before_a_crash_stays_completed(tmp_path: Path) -> None:
    """Seen in the kill drill: Tune's saved state lagged the books, so the resumed Tune started a
    trial that had already trained every epoch again from an older checkpoint, and the budget
    then stopped the replay: the books said `budget_stopped` and offered the replay's checkpoint."""
    clock = Clock()
    rate = catalog().price_of({"CPU": 1.0})
    b = books(tmp_path, clock, Budget(usd=rate * 1000 / 3600))
    b.on_start("t", {})
    for it in (1, 2, 3):
        report(b, clock, "t", it, 1.0, training_done=it == 3, checkpoint_path=f"/ckpt/{it}")
        b.on_checkpoint("t", f"/ckpt/{it}")
    b.save(force=True)  # the driver dies before Tune ends the trial (or saves its own state)
    r = books(tmp_path, clock, Budget(usd=rate * 1000 / 3600), resume=True)
    r.on_start("t", {})  # Tune's stale state: restored from its first checkpoint
    report(r, clock, "t", 2, 1.0, checkpoint_path="/ckpt/2-again")
    r.on_checkpoint("t", "/ckpt/2-again")
    assert r.stop_at_report("t") is True  # the replay is waste: it stops at once
    r.on_end("t", error=False, checkpoint="/ckpt/2-again")
    rec = r.record("t", metrics={"training_iteration": 2, "val_loss": 0.5}, checkpoint="/c/2")
    assert rec.status is TrialStatus.completed
    assert rec.checkpoint == "/ckpt/3" and rec.iterations == 3
    assert rec.metrics["val_loss"] == pytest.approx(1.0 / 3)
    assert rec.held_s == pytest.approx(4.0)  # the replay's second is billed all the same
    # ... and one the resumed Tune forgot altogether (started after Tune last saved) too
    b.on_start("u", {})
    report(b, clock, "u", 1, 1.0, training_done=True, checkpoint_path="/u/1")
    b.save(force=True)
    r = books(tmp_path, clock, resume=True)
    r.close()
    assert r.record("u").status is TrialStatus.completed and r.record("u").checkpoint == "/u/1"


def test_tunes_closing_copy_of_the_last_report_is_neither_a_replay_nor_billed_twice(
    tmp_path: Path,
) -> None:
    """Ray 2.60's controller swaps a function trainable's closing duplicate result for the trial's
    last result with `done=True`, before the stopper sees it (tune_controller.py)."""
    from ray_ml.tune._hooks import BudgetStopper

    clock = Clock()
    b = books(tmp_path, clock)
    stopper = BudgetStopper(b)
    b.on_start("t", {})
    last = {"training_iteration": 3, "val_loss": 0.3, "training_done": True, "done": False}
    clock.t += 1.0
    assert stopper("t", {**last, "checkpoint_path": "/c/3"}) is False
    clock.t += 0.1
    assert stopper("t", {**last, "checkpoint_path": "/c/3", "done": True}) is False
    assert not b.facts["t"].replaying and len(b.facts["t"].report_usd) == 1


def test_budget_gate_and_stops(tmp_path: Path) -> None:
    clock = Clock()
    rate = catalog().price_of({"CPU": 1.0})
    budget = Budget(usd=rate * 100 / 3600)  # 100 CPU-seconds
    b = books(tmp_path, clock, budget)
    assert b.may_start() is None
    b.on_start("a", {})
    assert b.may_start() is not None  # no estimate yet: one trial at a time
    report(b, clock, "a", 1, 30.0)  # 30 s to its first report
    assert b.may_start() is None  # 30 + 30 (a's next) + 30 (new) <= 100
    b.on_start("b", {})
    assert b.may_start() is not None  # 30 + 30 + 30 + 30 > 100
    report(b, clock, "a", 2, 10.0)  # a: 40 s held, b: 10 s; a's next 10 s x 2 trials: 70 <= 100
    assert b.stop_at_report("a") is False
    report(b, clock, "a", 3, 20.0)  # a: 60 s, b: 30 s; a's interval 15 s x 2 trials: 120 > 100
    assert b.stop_at_report("a") is True
    assert b.facts["a"].budget_stopped
    clock.t += 40.0
    assert b.stop_all() is not None and "budget_usd" in b.stop_all()
    b.on_end("a", error=False)
    b.on_end("b", error=False)
    assert {b.record(t).status for t in "ab"} == {TrialStatus.budget_stopped}


def test_meter_snapshot_round_trip_keeps_cpu_time_across_restarts() -> None:
    cat = catalog()
    m = CostMeter(cat)
    m.start("t", {"CPU": 2}, t=0.0)
    m.update("t", t=10.0, cpu_seconds=15.0)
    m.restart("t", t=12.0)
    m.update("t", t=20.0, cpu_seconds=5.0)  # the new process counts from zero
    assert m.trial_cost("t", now=20.0).cpu_seconds == pytest.approx(20.0)
    r = CostMeter.restore(cat, m.snapshot(now=20.0), clock=lambda: 20.0)
    cost = r.trial_cost("t")
    assert cost.status is TrialStatus.paused and cost.held_s == pytest.approx(20.0)
    assert cost.cpu_seconds == pytest.approx(20.0) and cost.algorithmic_usd > 0


def test_concurrency_comes_from_what_the_autoscaler_may_launch() -> None:
    aws = autoscaler_capacity(REPO / "cluster" / "aws.yaml")
    assert aws is not None and aws["CPU"] >= 8 * 8  # a CPU-0 head, up to 12 workers
    gcp = autoscaler_capacity(REPO / "cluster" / "gcp.yaml")
    assert gcp is not None and gcp["CPU"] > 0
    assert autoscaler_capacity({"available_node_types": {}}) == {}


@pytest.mark.parametrize("key", ["data.kfold", "data.val_fraction", "train.resample"])
def test_space_refuses_keys_a_trial_cannot_change(key: str) -> None:
    value = {"data.kfold": [0, 3], "data.val_fraction": [0.1, 0.2], "train.resample": ["none"]}[key]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as info:
        SearchSpace.from_dict({"params": {key: {"choice": value}}}, base=RunConfig())
    assert "not tunable" in str(info.value) and "Fix:" in str(info.value)
