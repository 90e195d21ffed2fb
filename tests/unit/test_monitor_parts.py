"""The loop's pure parts: the monitor's ledger and trigger rules, the canary judge on live
quality, serving dollars, and the warm start of a retrain's sweep. No Ray."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ray_ml.config import MonitorConfig, load_config
from ray_ml.errors import ConfigError, RayMLError
from ray_ml.monitor import (
    MonitorLedger,
    new_data_condition,
    schedule_condition,
    serve_conditions,
)
from ray_ml.serve import CanaryJudge, LiveQuality, ServingCost
from ray_ml.tune import Leaderboard, load_space, warm_start_points

pytestmark = pytest.mark.unit


# ---------------------------------------------------------------------------------- ledger
def test_ledger_round_trips_and_counts_only_rows_landed_after_the_last_retrain(
    tmp_path: Path,
) -> None:
    ledger = MonitorLedger(tmp_path, "exp", "exp", 10.0)
    ledger.add_partition("a.csv", {"baseline": True, "rows_ok": None})
    ledger.add_partition("b.csv", {"baseline": False, "rows_ok": 300, "rows_rejected": 2})
    assert ledger.rows_since_last_retrain() == 300
    t = ledger.add_trigger("new_data", "300 rows")
    ledger.set_status(t["id"], "retraining")
    ledger.retrains.append({"trigger": t["id"], "started_at": "9999-01-01T00:00:00.000+00:00"})
    assert ledger.in_flight() == t
    assert ledger.rows_since_last_retrain() == 0  # b.csv landed before the retrain started
    ledger.book(0.25, "2026-12-02T10:00:00.000+00:00")
    ledger.book(0.5, "2026-12-31T23:59:59.000+00:00")
    ledger.book(1.0, "2027-01-01T00:00:00.000+00:00")
    ledger.save()
    again = MonitorLedger(tmp_path, "exp", "exp", 10.0)
    assert again.spent("2026-12") == 0.75 and again.spent("2027-01") == 1.0
    assert again.trigger("t0001")["status"] == "retraining"
    assert not list(tmp_path.glob("*.tmp*"))  # written through a rename


def test_a_corrupt_or_foreign_ledger_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "ledger.json").write_text("{not json")
    with pytest.raises(RayMLError, match="not valid JSON.*move it away"):
        MonitorLedger(tmp_path, "exp", "exp", 1.0)
    (tmp_path / "ledger.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(RayMLError, match="is not a monitor ledger"):
        MonitorLedger(tmp_path, "exp", "exp", 1.0)


# -------------------------------------------------------------------------------- triggers
def _alert(t: float, version: str, value: float = 0.4) -> dict[str, Any]:
    return {
        "time": t,
        "version": version,
        "metrics": {"accuracy": {"value": value, "baseline": 0.95}},
    }


def test_each_alert_triggers_once_and_only_for_the_stable_version() -> None:
    models = {"stable": "1", "quality_alerts": [_alert(10.0, "1"), _alert(11.0, "2")]}
    drift = {"reference_version": "1", "alerts": [{"time": 5.0, "feature": "x1", "psi": 0.9}]}
    enabled = ["quality", "drift"]
    conds, cursors = serve_conditions(models, drift, {"quality": 0.0, "drift": 0.0}, enabled)
    assert [c.kind for c in conds] == ["quality", "drift"]
    assert "accuracy 0.4 vs test 0.95" in conds[0].detail and "x1 PSI 0.900" in conds[1].detail
    assert all(c.edge for c in conds)
    assert cursors == {"quality": 11.0, "drift": 5.0}
    again, _ = serve_conditions(models, drift, cursors, enabled)
    assert again == []  # the same alerts read again trigger nothing
    # A canary's alert alone (version 2) is the canary judge's business, not a retrain.
    canary_only = {"stable": "1", "quality_alerts": [_alert(12.0, "2")]}
    conds, cursors = serve_conditions(canary_only, None, cursors, enabled)
    assert conds == [] and cursors["quality"] == 12.0


def test_a_disabled_trigger_moves_its_cursor_so_enabling_it_later_replays_nothing() -> None:
    models = {"stable": "1", "quality_alerts": [_alert(10.0, "1")]}
    conds, cursors = serve_conditions(models, None, {}, ["drift"])
    assert conds == [] and cursors["quality"] == 10.0
    assert serve_conditions(models, None, cursors, ["quality"])[0] == []
    assert serve_conditions(None, None, cursors, ["quality"]) == ([], cursors)  # app down


def test_new_data_and_schedule_conditions() -> None:
    assert new_data_condition(299, 300, ["new_data"]) is None
    cond = new_data_condition(300, 300, ["new_data"])
    assert cond is not None and not cond.edge and "300 new rows" in cond.detail
    assert new_data_condition(10_000, 300, ["quality"]) is None
    assert schedule_condition(100.0, None, ["schedule"]) is None
    assert schedule_condition(99.0, 100.0, ["schedule"]) is None
    assert schedule_condition(100.0, 100.0, ["schedule"]) is not None


def test_monitor_config_is_validated_and_composes() -> None:
    with pytest.raises(ConfigError, match="monitor.serve_url"):
        MonitorConfig(serve_url="localhost:8000")
    with pytest.raises(ConfigError, match="monitor.retrain_budget_usd"):
        MonitorConfig(retrain_budget_usd=0)
    with pytest.raises(ConfigError, match="monitor.train_partitions"):
        MonitorConfig(train_partitions=0)
    with pytest.raises(ConfigError, match="monitor.retry_failed"):
        MonitorConfig(retry_failed=-1)
    with pytest.raises(ConfigError, match="monitor.retry_after_s"):
        load_config("monitor", ["monitor.retry_after_s=0"])
    with pytest.raises(ConfigError, match="monitor.triggers"):
        load_config("monitor", ["monitor.triggers=[drfit]"])
    cfg = load_config("monitor", ["monitor.max_ticks=1", "monitor.triggers=[new_data]"])
    assert cfg.monitor.max_ticks == 1 and [str(t) for t in cfg.monitor.triggers] == ["new_data"]


# ------------------------------------------------------------------ the canary on quality
def _quality_with(canary_right: int, stable_right: int, n: int = 50) -> LiveQuality:
    q = LiveQuality("binary", [0, 1])
    for version, right in (("2", canary_right), ("1", stable_right)):
        for i in range(n):
            rid = f"{version}-{i}"
            q.remember(rid, version, [{"prediction": 1, "scores": [0.2, 0.8]}])
            q.add_feedback([{"request_id": rid, "row": 0, "label": 1 if i < right else 0}])
    return q


def _judge_with_requests(**kwargs: Any) -> CanaryJudge:
    judge = CanaryJudge(20, 0.05, 1.5, **kwargs)
    judge.record_many("canary", [True] * 30, [0.01] * 30)
    judge.record_many("stable", [True] * 30, [0.01] * 30)
    return judge


def test_a_canary_worse_on_live_feedback_is_rolled_back_with_the_numbers() -> None:
    q = _quality_with(canary_right=25, stable_right=45)
    decision = _judge_with_requests().decide(q.compare("2", "1", min_labels=40))
    assert decision is not None and decision.action == "rollback"
    assert "canary accuracy 0.5 vs stable 0.9" in decision.reason
    assert "0.4 worse > 0.02" in decision.reason


def test_a_canary_better_on_live_feedback_is_promoted_and_says_so() -> None:
    q = _quality_with(canary_right=48, stable_right=30)
    decision = _judge_with_requests().decide(q.compare("2", "1", min_labels=40))
    assert decision is not None and decision.action == "promote"
    assert "canary accuracy 0.96 vs stable 0.6" in decision.reason


def test_the_judge_waits_for_labels_when_asked_to() -> None:
    few = _quality_with(canary_right=5, stable_right=5, n=5)
    judge = _judge_with_requests(min_labels=40)
    assert judge.decide(few.compare("2", "1", min_labels=40)) is None
    assert judge.decide(None) is None
    # Without min_labels it judges on errors and latency, and says quality was not compared.
    decision = _judge_with_requests().decide(few.compare("2", "1", min_labels=40))
    assert decision is not None and decision.action == "promote"
    assert "live quality not compared" in decision.reason


def test_compare_since_a_mark_judges_both_versions_on_the_same_window() -> None:
    q = LiveQuality("binary", [0, 1])
    for i in range(30):  # before the canary: stable is always right
        q.remember(f"old{i}", "1", [1])
        q.add_feedback([{"request_id": f"old{i}", "row": 0, "label": 1}])
    mark = q.mark()
    for i in range(30):  # since: both see the new world, where stable is always wrong
        for version in ("1", "2"):
            rid = f"{version}-{i}"
            q.remember(rid, version, [1 if version == "1" else 0])
            q.add_feedback([{"request_id": rid, "row": 0, "label": 0}])
    whole = q.compare("2", "1")
    same = q.compare("2", "1", since=mark)
    assert whole["production"]["metrics"]["accuracy"] == pytest.approx(0.5)
    assert same["production"]["metrics"]["accuracy"] == 0.0
    assert same["production"]["n_labels"] == same["candidate"]["n_labels"] == 30
    assert same["better"] == "candidate" and same["since"] == mark


# -------------------------------------------------------------------------- serving dollars
class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_serving_cost_bills_the_replicas_held_while_they_were_held() -> None:
    clock = _Clock()
    cost = ServingCost(0.36, live_s=2.0, clock=clock)  # $0.36 an hour: $0.0001 a second
    for t in range(0, 3600, 1):  # one replica for an hour, then a second for another hour
        clock.now = float(t)
        cost.observe("a", rows=10)
    for t in range(3600, 7200, 1):
        clock.now = float(t)
        cost.observe("a", rows=10)
        cost.observe("b", rows=10)
    clock.now = 7200.0
    snap = cost.snapshot()
    assert snap["replicas"] == 2 and snap["usd_per_hour"] == pytest.approx(0.72)
    assert snap["usd_total"] == pytest.approx(0.36 + 0.72, rel=1e-3)
    assert snap["predictions"] == 3600 * 10 + 3600 * 20
    assert snap["usd_per_1k_predictions"] == pytest.approx(1.08 / 108.0, rel=1e-3)
    clock.now = 7300.0  # both stopped flushing: no longer billed
    assert cost.snapshot()["replicas"] == 0
    assert cost.snapshot()["usd_total"] == pytest.approx(1.08, rel=1e-3)
    with pytest.raises(ValueError, match="usd_per_replica_hour"):
        ServingCost(float("nan"))


# ------------------------------------------------------------------------------ warm start
def test_warm_start_reads_the_best_eligible_configs_of_a_leaderboard(tmp_path: Path) -> None:
    space = load_space("xgboost")
    keys = space.keys

    def rec(tid: str, value: float | None, status: str = "completed", **over: Any) -> Any:
        config = {k: 0.8 for k in keys} | {"model.max_depth": 3, "model.eta": 0.1} | over
        return {
            "trial_id": tid,
            "status": status,
            "config": config,
            "metrics": {} if value is None else {"val_loss": value},
            "iterations": 5,
            "cost_usd": 0.01,
            "wall_s": 1.0,
        }

    records = [
        rec("a", 0.3, **{"model.max_depth": 4}),
        rec("b", 0.1, **{"model.max_depth": 5}),
        rec("c", 0.05, status="failed", **{"model.max_depth": 6}),
        rec("d", 0.2, **{"model.max_depth": 7}),
        # Better, but outside today's domain (the space was edited since): Optuna refuses it.
        rec("e", 0.01, **{"model.eta": 0.9}),
    ]
    board = tmp_path / "leaderboard.parquet"
    Leaderboard(records, "val_loss", "min").to_parquet(board)
    points = warm_start_points(board, space, 2)
    assert [p["model.max_depth"] for p in points] == [5, 7]
    assert all(set(p) == set(keys) for p in points)
    assert warm_start_points(tmp_path / "missing.parquet", space, 3) == []
    assert warm_start_points(board, load_space("mlp"), 3) == []  # another space's rows


def test_the_cost_aware_searcher_tries_warm_start_points_first() -> None:
    from ray_ml.tune import CostAwareSearcher

    space = load_space("xgboost")
    point = {k: p for k, p in zip(space.keys, [3, 0.1, 0.9, 0.8, 1.0, 0.5], strict=True)}
    searcher = CostAwareSearcher(space, "val_loss", "min", points_to_evaluate=[point])
    assert searcher.suggest("t1") == point
    assert searcher.suggest("t2") != point
    with pytest.raises(ConfigError, match="points_to_evaluate"):
        CostAwareSearcher(space, "val_loss", "min", points_to_evaluate=[{"model.eta": 0.1}])


# ------------------------------------------------------------------ a kill after registering
def test_a_resumed_retrain_adopts_the_winner_its_killed_predecessor_registered(
    tmp_path: Path,
) -> None:
    """Killed between the registry's write and the ledger's: the restarted monitor must not
    sweep (and register) again for the same trigger."""
    from ray_ml.monitor import Monitor
    from ray_ml.registry import Registry
    from ray_ml.tune import registered_reason
    from tests._bundles import make_bundle

    cfg = load_config(
        "monitor",
        ["name=exp", f"storage_path={tmp_path}", "serve.canary_percent=20", "debug=tiny"],
    )
    monitor = Monitor(cfg, token=None)
    registry = Registry(cfg.serve.registry_root)
    bundle = make_bundle(tmp_path / "b", epochs=1)
    registry.register(bundle, "exp", aliases=["production"], reason="first")
    ledger = monitor.ledger
    trigger = ledger.add_trigger("quality", "version 1 accuracy 0.5 vs test 0.9")
    run = "exp-retrain-t0001"
    ledger.retrains.append(
        {
            "trigger": trigger["id"],
            "run": run,
            "sweep": f"{run}-sweep",
            "started_at": "2026-12-02T10:00:00.000+00:00",
            "budget_usd": 0.5,
            "partitions": [],
            "resumes": 0,
            "warm_configs": [],
            "warm_start": 0,
        }
    )
    ledger.set_status(trigger["id"], "retraining")
    sweep_dir = tmp_path / f"{run}-sweep"
    sweep_dir.mkdir()
    (sweep_dir / "summary.json").write_text(json.dumps({"cost_usd": 0.2, "trials": 3}))
    registry.register(
        bundle, "exp", aliases=["candidate"], reason=f"{registered_reason(f'{run}-sweep')}t_abc"
    )
    # Only the adoption runs here: a sweep would need Ray, and must not be started.
    monitor._sweep = lambda *a: pytest.fail("swept again")  # type: ignore[method-assign]
    monitor._retrain(trigger)
    retrain = ledger.retrain_of(trigger["id"])
    assert retrain is not None and retrain["version"] == 2 and retrain["resumes"] == 1
    assert retrain["cost_usd"] == 0.2 and ledger.spent("2026-12") == 0.2
    assert ledger.trigger(trigger["id"])["status"] == "canary"
    assert [v.version for v in registry.list_versions("exp")] == [1, 2]


def test_a_spent_month_or_a_retrain_in_flight_skips_alerts_and_waits_on_standing_conditions(
    tmp_path: Path,
) -> None:
    from ray_ml.monitor import Condition, Monitor
    from ray_ml.monitor._ledger import month_of, now_iso

    cfg = load_config(
        "monitor",
        ["name=exp", f"storage_path={tmp_path}", "monitor.monthly_budget_usd=1.0", "debug=tiny"],
    )
    monitor = Monitor(cfg, token=None)
    monitor._retrain = lambda t: pytest.fail("retrained")  # type: ignore[method-assign]
    monitor.ledger.book(1.0, now_iso())  # this month's retraining budget is spent
    alert = Condition("quality", "version 1 accuracy 0.5 vs test 0.9", edge=True)
    standing = Condition("new_data", "500 new rows", edge=False)
    assert monitor._act([standing]) is None and monitor.ledger.triggers == []
    tid = monitor._act([alert, standing])
    t = monitor.ledger.trigger(str(tid))
    assert t["status"] == "skipped" and t["kind"] == "quality"
    assert f"retraining budget of {month_of(now_iso())} is spent ($1.00" in t["reason"]
    assert "new_data: 500 new rows" in t["detail"]
    # A retrain in flight holds the next alert back the same way, whatever the budget.
    monitor.ledger.data["spend"] = {}
    busy = monitor.ledger.add_trigger("drift", "x1")
    monitor.ledger.set_status(busy["id"], "canary")
    t2 = monitor.ledger.trigger(str(monitor._act([alert])))
    assert t2["status"] == "skipped" and f"trigger {busy['id']} is still in flight" in t2["reason"]


def test_one_monitor_per_experiment(tmp_path: Path) -> None:
    from ray_ml.monitor import Monitor

    cfg = load_config("monitor", ["name=exp", f"storage_path={tmp_path}", "debug=tiny"])
    first = Monitor(cfg, token=None)
    with pytest.raises(RayMLError, match=r"another monitor \(pid \d+\) is running"):
        Monitor(cfg, token=None)
    first._lock.close()  # the first one exits
    Monitor(cfg, token=None)


def test_an_undecided_canary_is_taken_back_after_the_timeout(tmp_path: Path) -> None:
    from ray_ml.monitor import Monitor
    from ray_ml.registry import Registry
    from tests._bundles import make_bundle

    cfg = load_config(
        "monitor",
        ["name=exp", f"storage_path={tmp_path}", "debug=tiny", "monitor.canary_timeout_s=60"],
    )
    monitor = Monitor(cfg, token=None)
    registry = Registry(cfg.serve.registry_root)
    bundle = make_bundle(tmp_path / "b", epochs=1)
    registry.register(bundle, "exp", aliases=["production"], reason="first")
    registry.register(bundle, "exp", aliases=["candidate"], reason="sweep x winner t")
    trigger = monitor.ledger.add_trigger("new_data", "500 rows")
    monitor.ledger.set_status(trigger["id"], "canary")
    retrain = {"trigger": trigger["id"], "version": 2, "ended_at": "2026-01-01T00:00:00+00:00"}
    monitor.ledger.retrains.append(retrain)
    monitor._follow_canary(None)
    t = monitor.ledger.trigger(trigger["id"])
    assert t["status"] == "rolled_back" and "undecided after" in t["reason"]
    assert "candidate" not in registry.aliases("exp")
    assert registry.audit("exp")[-1].reason.startswith("monitor: canary of v2 undecided")
    assert monitor.ledger.in_flight() is None  # later triggers can act again


def test_a_replica_that_flushes_late_is_billed_and_a_gone_one_is_not() -> None:
    clock = _Clock()
    cost = ServingCost(3.6, live_s=2.0, bill_gap_s=30.0, clock=clock)  # $0.001 a second
    cost.observe("a")
    clock.now = 20.0  # loading a model: 20 s without a flush, still held
    cost.observe("a")
    clock.now = 120.0  # gone for 100 s, then a new life
    cost.observe("a")
    assert cost.snapshot()["usd_total"] == pytest.approx(0.020)


def test_partitions_are_listed_once_complete_and_a_bad_prefix_says_why(tmp_path: Path) -> None:
    from ray_ml.errors import SourceError
    from ray_ml.monitor._monitor import _partition_uris

    landing = tmp_path / "landing"
    assert _partition_uris(str(landing)) == []  # not there yet
    landing.mkdir()
    assert _partition_uris(str(landing)) == []  # empty
    (landing / ".part-1.csv.tmp").write_text("x\n1\n")  # still being written
    (landing / "_part-2.csv").write_text("x\n1\n")
    assert _partition_uris(str(landing)) == []
    (landing / "part-0.csv").write_text("x\n1\n")
    assert _partition_uris(str(landing)) == [str(landing / "part-0.csv")]
    (landing / "part-1.parquet").write_bytes(b"PAR1")
    with pytest.raises(SourceError, match="mixes formats"):
        _partition_uris(str(landing))


def test_a_failed_retrain_is_tried_again_after_the_cooldown_up_to_retry_failed_times(
    tmp_path: Path,
) -> None:
    """The alert a failed retrain answered never comes back (alerts are edge-triggered), so
    without a retry the stale model would be served for good."""
    from ray_ml.monitor import Condition, Monitor
    from ray_ml.monitor._ledger import now_iso

    cfg = load_config(
        "monitor",
        [
            "name=exp",
            f"storage_path={tmp_path}",
            "debug=tiny",
            "monitor.retry_failed=2",
            "monitor.retry_after_s=600",
        ],
    )
    monitor = Monitor(cfg, token=None)
    attempts: list[str] = []

    def failing_sweep(trigger: dict[str, Any], retrain: dict[str, Any], resume: bool) -> Any:
        attempts.append(trigger["id"])
        raise RuntimeError("object store full")

    monitor._sweep = failing_sweep  # type: ignore[method-assign]
    monitor._training_partitions = lambda: []  # type: ignore[method-assign]
    monitor._previous_leaderboard = lambda: tmp_path / "none.parquet"  # type: ignore[method-assign]
    ledger = monitor.ledger

    def age_last_attempt(seconds: float) -> None:
        ended = datetime.now(UTC) - timedelta(seconds=seconds)
        ledger.last_retrain()["ended_at"] = ended.isoformat()  # type: ignore[index]

    first = monitor._act([Condition("quality", "version 1 accuracy 0.5 vs test 0.9", edge=True)])
    assert ledger.trigger(str(first))["status"] == "failed"
    assert "object store full" in ledger.trigger(str(first))["reason"]
    assert monitor._due_retry() is None  # the cooldown is not over
    age_last_attempt(601)
    retry = monitor._due_retry()
    assert retry is not None and retry.kind == "retry" and retry.retry_of == first
    assert "attempt 2 for t0001 (quality)" in retry.detail and "object store full" in retry.detail
    second = monitor._act([retry])
    assert ledger.trigger(str(second))["retry_of"] == first
    age_last_attempt(601)
    third = monitor._act([monitor._due_retry()])  # type: ignore[list-item]
    assert "attempt 3 for t0001" in ledger.trigger(str(third))["detail"]
    age_last_attempt(10_000)
    assert monitor._due_retry() is None  # two retries spent
    assert attempts == ["t0001", "t0002", "t0003"]
    assert [r["trigger"] for r in ledger.retrains] == attempts
    # A new alert is a new trigger with retries of its own; a retry of it that the month's
    # spent budget holds back is not recorded tick after tick: it waits.
    fourth = monitor._act([Condition("drift", "x1 PSI 0.4", edge=True)])
    assert ledger.trigger(str(fourth))["status"] == "failed"
    age_last_attempt(601)
    ledger.book(cfg.monitor.monthly_budget_usd, now_iso())
    for _ in range(3):
        waiting = monitor._due_retry()
        assert waiting is not None and waiting.retry_of == fourth
        assert monitor._act([waiting]) is None
    assert len(ledger.triggers) == 4 and len(attempts) == 4
    # retry_failed=0: never.
    monitor.cfg = dataclasses.replace(cfg, monitor=dataclasses.replace(cfg.monitor, retry_failed=0))
    assert monitor._due_retry() is None
