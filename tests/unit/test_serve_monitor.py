"""The serving monitor's pure-Python state: drift counts and windows, canary judge, metrics."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ray_ml.data import ColumnSpec, ColumnType, Contract, Task, bin_fractions, reference_stats
from ray_ml.serve import (
    LATENCY_BUCKETS,
    CanaryAction,
    CanaryJudge,
    DriftWindow,
    MetricsDelta,
    ServeMetrics,
    drift_counts,
    merge_counts,
)

pytestmark = pytest.mark.unit

COLORS = ("blue", "green", "red")
COLOR_P = (0.5, 0.3, 0.2)


def _contract() -> Contract:
    return Contract(
        name="toy",
        task=Task.BINARY,
        label="y",
        columns=(
            ColumnSpec("x", ColumnType.FLOAT, nullable=True),
            ColumnSpec("color", ColumnType.CATEGORY, categories=COLORS),
            ColumnSpec("flag", ColumnType.BOOL),
            ColumnSpec("level", ColumnType.INT, categories=(1, 2, 3)),
            ColumnSpec("y", ColumnType.CATEGORY, categories=("no", "yes")),
        ),
    )


def _table(n: int, seed: int, shift: float = 0.0, colors: tuple[float, ...] = COLOR_P) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "x": pa.array(rng.normal(shift, 1.0, n)),
            "color": pa.array(rng.choice(COLORS, n, p=colors).tolist()),
            "flag": pa.array(rng.random(n) < 0.3),
            "level": pa.array(rng.integers(1, 4, n)),
            "y": pa.array(rng.choice(["no", "yes"], n).tolist()),
        }
    )


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    return reference_stats(_table(20_000, seed=0), _contract())


# -- drift counts ---------------------------------------------------------------------------------
def test_numeric_counts_bin_like_bin_fractions(reference: dict[str, Any]) -> None:
    x = np.random.default_rng(1).normal(0.0, 2.0, 500)  # wide: values beyond both end edges
    x[:7] = np.nan
    edges = reference["columns"]["x"]["bin_edges"]
    x[7:10] = edges[3]  # exactly on an inner edge: the bin above, as bin_fractions does
    col = pa.array(x.tolist()[:-5] + [None] * 5, type=pa.float64())
    counts = drift_counts(pa.table({"x": col}), reference)
    assert counts["rows"] == 500
    got = counts["features"]["x"]
    assert got["nulls"] == 12  # 7 NaN + 5 null
    valid = x[:-5][~np.isnan(x[:-5])]
    assert np.allclose(np.asarray(got["counts"]) / valid.size, bin_fractions(valid, edges))
    assert sum(got["counts"]) == valid.size
    json.dumps(counts, allow_nan=False)


def test_categorical_counts_sorted_with_other_bucket(reference: dict[str, Any]) -> None:
    table = pa.table(
        {
            "color": ["red", "red", "purple", None, "blue"],
            "flag": [True, False, None, True, True],
            "level": pa.array([1, 3, 7, 3, None], type=pa.int64()),
        }
    )
    counts = drift_counts(table, reference)["features"]
    assert sorted(reference["columns"]["color"]["frequencies"]) == ["blue", "green", "red"]
    assert counts["color"] == {"counts": [1, 0, 2, 1], "nulls": 1}  # purple -> other
    assert counts["flag"] == {"counts": [1, 3, 0], "nulls": 1}  # "false", "true", other
    assert counts["level"] == {"counts": [1, 0, 2, 1], "nulls": 1}  # 7 -> other
    assert set(counts) == {"color", "flag", "level"}  # x is missing: skipped; y is the label


def test_small_tables_count_like_large_ones(reference: dict[str, Any]) -> None:
    # Tables up to 16 rows take a pure-Python path; it must agree with the Arrow path.
    edges = reference["columns"]["x"]["bin_edges"]
    x = [edges[0] - 1, edges[2], edges[5], edges[-1] + 1, float("nan"), None, 0.1, -0.3] * 5
    table = pa.table(
        {
            "x": pa.array(x, type=pa.float64()),
            "color": (["red", "purple", None, "blue", "green"] * 8),
            "flag": [True, None, False, True] * 10,
            "level": pa.array([1, 2, 3, 9, None] * 8, type=pa.int32()),
            "y": ["no"] * 40,
        }
    )
    whole = drift_counts(table, reference)  # 40 rows: Arrow
    rows: dict[str, Any] = {}
    for start in range(0, 40, 8):
        rows = merge_counts(rows, drift_counts(table.slice(start, 8), reference))
    assert rows == whole
    ints = pa.table({"x": pa.array([1, None, -2], type=pa.int64())})  # int64 for a float feature
    small = drift_counts(ints, reference)["features"]["x"]
    large = drift_counts(pa.concat_tables([ints] * 10), reference)["features"]["x"]
    assert large == {"counts": [10 * c for c in small["counts"]], "nulls": 10 * small["nulls"]}


def test_p_value_is_scipy_chisquare(reference: dict[str, Any]) -> None:
    from scipy import stats

    counts = [3, 9, 4, 6, 5, 5, 7, 4, 5, 2]
    window = DriftWindow(reference, window_rows=1000, psi_threshold=0.2)
    window.add({"rows": 50, "features": {"x": {"counts": counts, "nulls": 0}}})
    ref = np.maximum(reference["columns"]["x"]["bin_fractions"], 1e-4)
    expected = stats.chisquare(counts, ref / ref.sum() * 50).pvalue
    assert window.report()["features"]["x"]["p_value"] == pytest.approx(expected, rel=1e-9)


def test_numeric_column_that_is_not_a_number_is_a_clear_error(reference: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="`x`"):
        drift_counts(pa.table({"x": ["a"]}), reference)


def test_merge_counts(reference: dict[str, Any]) -> None:
    a = drift_counts(_table(10, seed=2), reference)
    b = drift_counts(_table(15, seed=3).drop_columns(["color"]), reference)
    before = json.dumps(a)
    merged = merge_counts(a, b)
    assert json.dumps(a) == before  # inputs untouched
    assert merged["rows"] == 25
    assert merged["features"]["color"] == a["features"]["color"]
    assert sum(merged["features"]["x"]["counts"]) == 25
    assert merged["features"]["flag"]["counts"] == [
        i + j
        for i, j in zip(
            a["features"]["flag"]["counts"], b["features"]["flag"]["counts"], strict=True
        )
    ]
    assert merge_counts({}, a) == merge_counts(a, {}) == merge_counts(a, {"rows": 0})
    bad = {"rows": 1, "features": {"x": {"counts": [1], "nulls": 0}}}
    with pytest.raises(ValueError, match="`x`"):
        merge_counts(a, bad)


# -- drift window ---------------------------------------------------------------------------------
def test_psi_small_for_the_same_distribution_and_large_for_a_shift(
    reference: dict[str, Any],
) -> None:
    same = DriftWindow(reference, window_rows=5000, psi_threshold=0.2)
    same.add(drift_counts(_table(5000, seed=4), reference))
    report = same.report()
    json.dumps(report, allow_nan=False)
    assert report["window_rows"] == 5000
    for name in ("x", "color", "flag", "level"):
        feature = report["features"][name]
        assert feature["psi"] < 0.01, name
        assert feature["p_value"] > 1e-3, name
        assert feature["drifted"] is False
        assert feature["test"] == "chi2"
        assert feature["rows"] == 5000
    assert report["drifted"] == []
    assert report["max_psi"] < 0.01

    shifted = DriftWindow(reference, window_rows=5000, psi_threshold=0.2)
    shifted.add(drift_counts(_table(5000, seed=5, shift=1.0, colors=(0.1, 0.2, 0.7)), reference))
    report = shifted.report()
    for name in ("x", "color"):
        assert report["features"][name]["psi"] > 0.2, name
        assert report["features"][name]["p_value"] < 1e-6, name
        assert report["features"][name]["drifted"] is True
    assert report["drifted"] == ["color", "x"]
    assert report["max_psi"] == max(report["features"][n]["psi"] for n in ("x", "color"))


def test_psi_formula_with_epsilon_floor(reference: dict[str, Any]) -> None:
    window = DriftWindow(reference, window_rows=1000, psi_threshold=0.2)
    # Every non-null color is "red": blue, green and other are empty and floored at 1e-4.
    window.add({"rows": 100, "features": {"color": {"counts": [0, 0, 100, 0], "nulls": 0}}})
    freqs = reference["columns"]["color"]["frequencies"]
    ref = np.maximum([freqs["blue"], freqs["green"], freqs["red"], 0.0], 1e-4)
    live = np.maximum([0.0, 0.0, 1.0, 0.0], 1e-4)
    expected = float(np.sum((live - ref) * np.log(live / ref)))
    assert window.report()["features"]["color"]["psi"] == pytest.approx(expected)


def test_window_slides(reference: dict[str, Any]) -> None:
    window = DriftWindow(reference, window_rows=300, psi_threshold=0.2)
    shifted = drift_counts(_table(200, seed=6, shift=3.0), reference)
    window.add(shifted)
    assert window.report()["features"]["x"]["drifted"] is True
    for seed in (7, 8):  # 200 + 100 fits; the third chunk pushes the shifted one out
        window.add(drift_counts(_table(100, seed=seed), reference))
    report = window.report()
    assert report["window_rows"] == 200
    assert report["features"]["x"]["rows"] == 200
    assert report["features"]["x"]["drifted"] is False
    # A chunk larger than the window on its own is kept (alone).
    window.add(drift_counts(_table(1000, seed=9), reference))
    assert window.rows == 1000
    assert window.report()["features"]["x"]["rows"] == 1000


def test_min_rows(reference: dict[str, Any]) -> None:
    window = DriftWindow(reference, window_rows=1000, psi_threshold=0.2, min_rows=50)
    window.add(drift_counts(_table(49, seed=10, shift=5.0), reference))
    feature = window.report()["features"]["x"]
    assert feature == {
        "psi": None,
        "p_value": None,
        "test": "chi2",
        "drifted": False,
        "rows": 49,
        "null_fraction": 0.0,
    }
    window.add(drift_counts(_table(1, seed=11, shift=5.0), reference))
    feature = window.report()["features"]["x"]
    assert feature["rows"] == 50
    assert feature["psi"] > 0.2
    assert feature["drifted"] is True
    # Nulls are not rows to judge on.
    nulls = DriftWindow(reference, window_rows=1000, psi_threshold=0.2)
    nulls.add({"rows": 80, "features": {"x": {"counts": [4] * 10, "nulls": 40}}})
    feature = nulls.report()["features"]["x"]
    assert (feature["psi"], feature["rows"], feature["null_fraction"]) == (None, 40, 0.5)


def test_psi_over_threshold_on_few_rows_needs_a_significant_test(
    reference: dict[str, Any],
) -> None:
    # Fifty rows drawn like the reference can have PSI > 0.2 by chance; the test keeps it quiet.
    window = DriftWindow(reference, window_rows=1000, psi_threshold=0.2, p_threshold=0.01)
    window.add(
        {"rows": 50, "features": {"x": {"counts": [10, 1, 5, 5, 5, 5, 5, 8, 5, 1], "nulls": 0}}}
    )
    feature = window.report()["features"]["x"]
    assert feature["psi"] > 0.2
    assert feature["p_value"] > 0.01
    assert feature["drifted"] is False


def test_alerts_fire_once_per_transition(reference: dict[str, Any]) -> None:
    window = DriftWindow(reference, window_rows=500, psi_threshold=0.2)
    shifted = drift_counts(_table(500, seed=12, shift=2.0), reference)
    normal = drift_counts(_table(500, seed=13), reference)
    assert window.alerts() == []
    window.add(shifted)
    assert window.alerts() == ["x"]
    window.add(shifted)
    assert window.alerts() == []  # still drifted: no second alert
    window.add(normal)
    assert window.alerts() == []  # recovered
    window.add(shifted)
    report = window.report()
    assert window.alerts(report) == ["x"]  # drifted anew


def test_add_rejects_counts_of_another_reference(reference: dict[str, Any]) -> None:
    window = DriftWindow(reference, window_rows=500, psi_threshold=0.2)
    with pytest.raises(ValueError, match="`z`"):
        window.add({"rows": 1, "features": {"z": {"counts": [1], "nulls": 0}}})
    with pytest.raises(ValueError, match="`color`.*2 bins"):
        window.add(
            {
                "rows": 1,
                "features": {
                    "x": {"counts": [1] + [0] * 9, "nulls": 0},
                    "color": {"counts": [1, 0], "nulls": 0},
                },
            }
        )
    assert window.rows == 0
    assert window.report()["features"]["x"]["rows"] == 0


def test_all_null_reference_column() -> None:
    contract = _contract()
    table = _table(200, seed=14).set_column(0, "x", pa.nulls(200, pa.float64()))
    reference = reference_stats(table, contract)
    counts = drift_counts(_table(60, seed=15), reference)
    assert counts["features"]["x"] == {"counts": [], "nulls": 0}
    window = DriftWindow(reference["columns"], window_rows=100, psi_threshold=0.2)
    window.add(counts)
    assert window.report()["features"]["x"]["psi"] is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window_rows": 0},
        {"psi_threshold": 0.0},
        {"p_threshold": 0.0},
        {"min_rows": 0},
    ],
)
def test_window_arguments_are_checked(reference: dict[str, Any], kwargs: dict[str, Any]) -> None:
    args = {"window_rows": 10, "psi_threshold": 0.2} | kwargs
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        DriftWindow(reference, **args)


# -- canary judge ---------------------------------------------------------------------------------
def _judge(**kwargs: Any) -> CanaryJudge:
    args = {"min_requests": 100, "max_error_rate": 0.05, "max_latency_ratio": 1.5} | kwargs
    return CanaryJudge(**args)


def test_no_decision_before_min_requests_then_promote() -> None:
    judge = _judge()
    judge.record_many("stable", [True] * 50, [0.010] * 50)
    judge.record_many("canary", [True] * 99, [0.011] * 99)
    assert judge.decide() is None
    judge.record("canary", True, 0.011)
    decision = judge.decide()
    assert decision is not None
    assert decision.action == "promote"
    assert decision.action is CanaryAction.PROMOTE
    assert "0.0% (0/100) <= 5.0%" in decision.reason
    assert "11.0 ms <= 1.5 x stable p95 10.0 ms" in decision.reason


def test_rollback_on_error_rate() -> None:
    judge = _judge(max_error_rate=0.1)  # budget 10 errors in 100: no early rollback below that
    judge.record_many("stable", [True] * 50, [0.01] * 50)
    judge.record_many("canary", [False] * 10 + [True] * 89, [0.01] * 99)
    assert judge.decide() is None
    judge.record("canary", False, 0.01)
    decision = judge.decide()
    assert decision is not None
    assert decision.action == "rollback"
    assert decision.reason == "canary error rate 11.0% (11/100) > 10.0%"


def test_early_rollback_on_errors() -> None:
    judge = _judge(max_error_rate=0.05, min_requests=100)  # budget: 5 errors in 100
    judge.record_many("canary", [False] * 6, [0.01] * 6)
    assert judge.decide() is None  # 6 errors, but fewer than 10 requests
    judge.record_many("canary", [True] * 3, [0.01] * 3)
    assert judge.decide() is None
    judge.record("canary", True, 0.01)
    decision = judge.decide()
    assert decision is not None and decision.action == "rollback"
    assert "(6/10)" in decision.reason and "early" in decision.reason
    # Errors within the budget do not roll back early.
    calm = _judge(max_error_rate=0.05, min_requests=100)
    calm.record_many("canary", [False] * 5 + [True] * 20, [0.01] * 25)
    assert calm.decide() is None


def test_rollback_on_latency() -> None:
    judge = _judge()
    judge.record_many("stable", [True] * 200, list(np.linspace(0.005, 0.015, 200)))
    judge.record_many("canary", [True] * 100, [0.030] * 100)
    decision = judge.decide()
    assert decision is not None and decision.action == "rollback"
    assert decision.reason.startswith("canary p95 latency 30.0 ms > 1.5 x stable p95 14.5 ms")


def test_latency_not_compared_with_few_stable_requests() -> None:
    judge = _judge()
    judge.record_many("stable", [True] * 19, [0.001] * 19)
    judge.record_many("canary", [True] * 100, [1.0] * 100)
    decision = judge.decide()
    assert decision is not None and decision.action == "promote"
    assert "latency not compared (stable has 19 < 20 requests)" in decision.reason


def test_decision_is_final_until_reset_and_stats() -> None:
    judge = _judge(min_requests=10)
    judge.record_many("stable", [True, False] * 15, [0.01, 0.03] * 15)
    judge.record_many("canary", [True] * 10, [0.01] * 10)
    first = judge.decide()
    assert first is not None and first.action == "promote"
    judge.record_many("canary", [False] * 50, [0.01] * 50)
    assert judge.decide() is first
    stats = judge.stats()
    json.dumps(stats, allow_nan=False)
    assert stats["stable"]["requests"] == 30
    assert stats["stable"]["errors"] == 15
    assert stats["stable"]["error_rate"] == 0.5
    assert stats["stable"]["p50_s"] == pytest.approx(0.02)
    assert stats["stable"]["p95_s"] == pytest.approx(0.03)
    assert stats["canary"]["requests"] == 60
    assert stats["decision"]["action"] == "promote"
    judge.reset()
    assert judge.decide() is None
    assert judge.stats()["canary"] == {
        "requests": 0,
        "errors": 0,
        "error_rate": 0.0,
        "p50_s": None,
        "p95_s": None,
    }


def test_judge_keeps_the_latest_latencies_only() -> None:
    judge = _judge()
    judge.record_many("stable", [True] * 10_000, [1.0] * 10_000)
    judge.record_many("stable", [True] * 10_000, [0.01] * 10_000)
    stats = judge.stats()["stable"]
    assert stats["requests"] == 20_000
    assert stats["p95_s"] == pytest.approx(0.01)


def test_judge_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="min_requests"):
        _judge(min_requests=0)
    with pytest.raises(ValueError, match="max_error_rate"):
        _judge(max_error_rate=1.5)
    with pytest.raises(ValueError, match="max_latency_ratio"):
        _judge(max_latency_ratio=0.0)
    judge = _judge()
    with pytest.raises(ValueError, match="role"):
        judge.record("shadow", True, 0.1)
    with pytest.raises(ValueError, match="one of each"):
        judge.record_many("canary", [True], [])


# -- metrics --------------------------------------------------------------------------------------
def _families(text: bytes) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text.decode())}


def _value(family: Any, sample_name: str, **labels: str) -> float:
    hits = [s.value for s in family.samples if s.name == sample_name and s.labels == labels]
    assert len(hits) == 1, (sample_name, labels, family.samples)
    return float(hits[0])


def test_two_replicas_merge_and_render() -> None:
    r1, r2 = MetricsDelta(), MetricsDelta()
    r1.record_request("3", "stable", 200, 0.004)
    r1.record_request("3", "stable", 200, 0.005)  # on a bound: counted in le=0.005
    r1.record_request("3", "stable", 500, 0.3)
    r1.record_request("4", "canary", 200, 12.0)  # beyond the last bound: +Inf only
    r1.record_predictions("3", ["yes", "no", "yes"])
    r2.record_request("3", "stable", 200, 0.02)
    r2.record_request("3", "stable", 422, 0.001)
    r2.record_predictions("3", ["yes", True])
    r2.record_predictions("4", [])  # regression: nothing to count

    state = ServeMetrics()
    for replica in (r1, r2):
        delta = json.loads(json.dumps(replica.drain(), allow_nan=False))  # travels as plain JSON
        state.merge(delta)
    state.set_drift(
        {
            "features": {
                "x": {"psi": 0.31, "drifted": True},
                "color": {"psi": 0.01, "drifted": False},
                "level": {"psi": None, "drifted": False},
            }
        }
    )
    fam = _families(state.render())

    req = fam["ray_ml_serve_requests"]
    assert req.type == "counter"
    total = "ray_ml_serve_requests_total"
    assert _value(req, total, version="3", role="stable", code="200") == 3
    assert _value(req, total, version="3", role="stable", code="500") == 1
    assert _value(req, total, version="3", role="stable", code="422") == 1
    assert _value(req, total, version="4", role="canary", code="200") == 1
    errors = fam["ray_ml_serve_request_errors"]
    assert _value(errors, "ray_ml_serve_request_errors_total", version="3", role="stable") == 1
    assert _value(errors, "ray_ml_serve_request_errors_total", version="4", role="canary") == 0

    hist = fam["ray_ml_serve_request_latency_seconds"]
    assert hist.type == "histogram"
    name = "ray_ml_serve_request_latency_seconds"
    les = [s.labels["le"] for s in hist.samples if s.name == f"{name}_bucket"]
    assert les[: len(LATENCY_BUCKETS) + 1] == [*(str(b) for b in LATENCY_BUCKETS), "+Inf"]
    stable = {"version": "3", "role": "stable"}
    assert _value(hist, f"{name}_bucket", le="0.001", **stable) == 1
    assert _value(hist, f"{name}_bucket", le="0.0025", **stable) == 1
    assert _value(hist, f"{name}_bucket", le="0.005", **stable) == 3
    assert _value(hist, f"{name}_bucket", le="0.025", **stable) == 4
    assert _value(hist, f"{name}_bucket", le="0.5", **stable) == 5
    assert _value(hist, f"{name}_bucket", le="+Inf", **stable) == 5
    assert _value(hist, f"{name}_count", **stable) == 5
    assert _value(hist, f"{name}_sum", **stable) == pytest.approx(0.33)
    canary = {"version": "4", "role": "canary"}
    assert _value(hist, f"{name}_bucket", le="10.0", **canary) == 0
    assert _value(hist, f"{name}_bucket", le="+Inf", **canary) == 1

    pred = fam["ray_ml_serve_predictions"]
    assert _value(pred, "ray_ml_serve_predictions_total", version="3", **{"class": "yes"}) == 3
    assert _value(pred, "ray_ml_serve_predictions_total", version="3", **{"class": "no"}) == 1
    assert _value(pred, "ray_ml_serve_predictions_total", version="3", **{"class": "true"}) == 1

    psi = fam["ray_ml_serve_drift_psi"]
    assert psi.type == "gauge"
    assert _value(psi, "ray_ml_serve_drift_psi", feature="x") == pytest.approx(0.31)
    assert not [s for s in psi.samples if s.labels["feature"] == "level"]  # no PSI yet
    alert = fam["ray_ml_serve_drift_alert"]
    assert _value(alert, "ray_ml_serve_drift_alert", feature="x") == 1
    assert _value(alert, "ray_ml_serve_drift_alert", feature="color") == 0
    assert _value(alert, "ray_ml_serve_drift_alert", feature="level") == 0

    snap = state.snapshot()
    json.dumps(snap, allow_nan=False)
    assert snap["requests"] == 6
    assert snap["errors"] == 1
    v3 = snap["versions"]["3"]
    assert v3["requests"] == 5 and v3["errors"] == 1
    assert v3["codes"] == {"200": 3, "422": 1, "500": 1}
    assert v3["predictions"] == {"no": 1, "true": 1, "yes": 3}
    assert v3["roles"]["stable"]["mean_latency_s"] == pytest.approx(0.33 / 5)
    assert snap["versions"]["4"]["roles"]["canary"]["requests"] == 1


def test_drain_resets_and_carries_canary_samples() -> None:
    delta = MetricsDelta()
    assert delta.empty
    delta.record_request("1", "canary", 200, 0.01)
    delta.record_request("1", "canary", 503, 0.02)
    delta.record_request("1", "canary", 400, 0.001)  # client error: no canary sample
    delta.record_request("1", "stable", 200, 0.03)
    assert not delta.empty
    drained = delta.drain()
    assert drained["samples"] == {
        "canary": {"ok": [True, False], "latency_s": [0.01, 0.02], "version": ["1", "1"]},
        "stable": {"ok": [True], "latency_s": [0.03], "version": ["1"]},
    }
    assert sum(d["count"] for d in drained["requests"]) == 4
    assert delta.empty
    assert delta.drain() == {"requests": [], "latency": [], "predictions": [], "samples": {}}

    judge = _judge(min_requests=2)
    judge.record_delta(drained)
    assert judge.stats()["canary"]["errors"] == 1


def test_merge_rejects_a_malformed_delta() -> None:
    state = ServeMetrics()
    with pytest.raises(ValueError, match="malformed"):
        state.merge({"requests": [{"version": "1"}]})
    with pytest.raises(ValueError, match="buckets"):
        state.merge({"latency": [{"version": "1", "role": "stable", "buckets": [1], "sum": 0.1}]})
    assert state.snapshot() == {
        "requests": 0,
        "errors": 0,
        "versions": {},
        "feedback": {"labels": {}, "rejected": {}},
    }
    assert math.isfinite(len(state.render()))


def test_judge_counts_only_the_current_canary_versions_samples() -> None:
    delta = MetricsDelta()
    delta.record_request("3", "canary", 500, 0.01)  # the previous canary, finishing late
    delta.record_request("2", "canary", 200, 0.01)
    judge = CanaryJudge(min_requests=1, max_error_rate=0.0, max_latency_ratio=10.0)
    judge.record_delta(delta.drain(), {"stable": "1", "canary": "2"})
    assert judge.stats()["canary"]["requests"] == 1
    decision = judge.decide()
    assert decision is not None and decision.action == "promote"


def test_model_costs_render_per_version_and_part_and_bad_lineage_gives_none() -> None:
    from ray_ml.serve._app import model_cost

    metrics = ServeMetrics()
    lineage = {"cost_usd": {"sweep": 0.25, "winner_training": 0.0125, "pricing": "spot"}}
    metrics.set_model_costs({"3": model_cost(lineage)})
    fam = _families(metrics.render())["ray_ml_serve_model_cost_usd"]
    assert fam.type == "gauge"
    assert _value(fam, "ray_ml_serve_model_cost_usd", version="3", part="sweep") == 0.25
    assert _value(fam, "ray_ml_serve_model_cost_usd", version="3", part="winner_training") == 0.0125
    # A record registered by hand or by an older ray_ml, or one with junk in it: no series.
    for bad in ({}, {"cost_usd": None}, {"cost_usd": 1.0}, None, {"cost_usd": {"sweep": "x"}}):
        assert model_cost(bad) == {}
    assert model_cost({"cost_usd": {"sweep": float("nan"), "winner_training": 0.5}}) == {
        "winner_training": 0.5
    }
    metrics.set_model_costs({})
    assert _families(metrics.render())["ray_ml_serve_model_cost_usd"].samples == []
