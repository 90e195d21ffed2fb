"""Building blocks of the closed loop after serving: the Parquet prediction log and live quality
from feedback labels (`PredictionLog`, `read_predictions`, `LiveQuality`). No Ray."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sklearn import metrics as skm

from ray_ml.data import ColumnSpec, ColumnType, Contract, Task
from ray_ml.errors import ConfigError
from ray_ml.serve import (
    HIGHER_IS_BETTER,
    PREDICTION_SCHEMA,
    LiveQuality,
    PredictionLog,
    RequestError,
    prediction_parts,
    read_predictions,
    row_predictions,
)

pytestmark = pytest.mark.unit

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
DAY = 86_400.0


def _wait_for(condition: Any, timeout_s: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return bool(condition())


class _Capture(logging.Handler):
    """Records of one logger, whatever its propagation (Ray configures the `ray` loggers)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


# -- the prediction log ---------------------------------------------------------------------------
@pytest.mark.parametrize("as_uri", [False, True], ids=["path", "file-uri"])
def test_log_round_trip_writes_one_partition_per_day(tmp_path: Path, as_uri: bool) -> None:
    root = tmp_path / "log"
    uri = f"file://{root}" if as_uri else str(root)
    log = PredictionLog(uri, background=False)
    table = pa.table({"x": [1.5, -2.0, 0.25], "color": ["red", None, "blue"]})
    preds_a = row_predictions({"predictions": ["yes", "no", "yes"], "scores": [[0.2, 0.8]] * 3})
    rows_b = [{"x": float("nan"), "color": "green"}, {"x": 3.0, "color": "red"}]
    preds_b = [{"prediction": "no", "scores": [0.9, 0.1]}, {"prediction": "yes", "scores": None}]
    assert log.record("req-a", "3", table, preds_a, 12.5, ts=T0) == 3
    assert log.record("req-b", "4", rows_b, preds_b, 7.0, ts=T0 + DAY) == 2
    assert log.pending_rows == 5
    assert log.flush() == 5
    assert log.pending_rows == 0
    assert log.stats()["written_rows"] == 5 and log.stats()["written_files"] == 2

    days = sorted(p.name for p in (root / "predictions").iterdir())
    assert days == ["date=2023-11-14", "date=2023-11-15"]
    for day in days:
        files = [p.name for p in (root / "predictions" / day).iterdir()]
        assert len(files) == 1 and files[0].startswith("part-") and files[0].endswith(".parquet")

    got = read_predictions(uri)
    assert got.schema.names == [*PREDICTION_SCHEMA.names, "date"]
    assert got.num_rows == 5
    assert got.column("request_id").to_pylist() == ["req-a"] * 3 + ["req-b"] * 2
    assert got.column("row").to_pylist() == [0, 1, 2, 0, 1]
    assert got.column("version").to_pylist() == ["3", "3", "3", "4", "4"]
    assert got.column("latency_ms").to_pylist() == [12.5] * 3 + [7.0] * 2
    assert got.column("date").to_pylist() == ["2023-11-14"] * 3 + ["2023-11-15"] * 2
    stamps = [datetime.fromtimestamp(t, tz=UTC) for t in (T0, T0, T0, T0 + DAY, T0 + DAY)]
    assert got.column("ts").to_pylist() == stamps
    rows = [json.loads(r) for r in got.column("row_json").to_pylist()]
    assert rows == [
        *table.to_pylist(),
        {"x": None, "color": "green"},  # NaN is not JSON: stored as null
        {"x": 3.0, "color": "red"},
    ]
    preds = [json.loads(p) for p in got.column("prediction_json").to_pylist()]
    assert preds == [*preds_a, *preds_b]


def test_one_flush_of_mixed_requests_keeps_every_row_with_its_own_request(
    tmp_path: Path,
) -> None:
    """Two versions with different contracts (schemas), dict rows, sampled rows and values
    JSON cannot take as they are (NaN, numpy) in one flush: each row lands with its request."""
    log = PredictionLog(tmp_path, background=False, sample_fraction=1.0)
    a = pa.table({"x": [1.0, 2.5, float("nan")], "c": ["p", 'q"uote', None]})
    b = pa.table({"y": pa.array([7, 8], type=pa.int64())})
    log.record("r1", "1", a, [0, 1, 1], 1.0, ts=T0)
    log.record("r2", "2", b, [{"prediction": np.float64(0.5), "scores": None}] * 2, 2.0, ts=T0)
    log.record("r3", "1", [{"x": 3.0, "c": "s"}], [np.int64(0)], 3.0, ts=T0)
    log.record("r4", "1", a.slice(0, 1), [1], 4.0, ts=T0)
    assert log.flush() == 7
    got = read_predictions(tmp_path).to_pylist()
    by = {(r["request_id"], r["row"]): r for r in got}
    assert json.loads(by[("r1", 1)]["row_json"]) == {"x": 2.5, "c": 'q"uote'}
    assert json.loads(by[("r1", 2)]["row_json"]) == {"x": None, "c": None}  # NaN: null
    assert json.loads(by[("r2", 0)]["row_json"]) == {"y": 7}
    assert json.loads(by[("r2", 1)]["prediction_json"]) == {"prediction": 0.5, "scores": None}
    assert json.loads(by[("r3", 0)]["row_json"]) == {"x": 3.0, "c": "s"}
    assert json.loads(by[("r3", 0)]["prediction_json"]) == 0
    assert json.loads(by[("r4", 0)]["row_json"]) == {"x": 1.0, "c": "p"}
    assert [by[("r1", i)]["version"] for i in range(3)] == ["1", "1", "1"]


def test_read_predictions_of_an_empty_root_is_an_empty_table(tmp_path: Path) -> None:
    got = read_predictions(str(tmp_path / "nothing-yet"))
    assert got.num_rows == 0
    assert got.schema.names == [*PREDICTION_SCHEMA.names, "date"]


def test_sampling_is_deterministic_per_request_id_and_keeps_the_fraction(tmp_path: Path) -> None:
    def fill(log: PredictionLog) -> list[int]:
        kept = []
        for r in range(200):
            rows: Any = [{"i": r * 10 + j} for j in range(10)]
            if r % 2:
                rows = pa.Table.from_pylist(rows)  # the Arrow path samples with `take`
            kept.append(log.record(f"req-{r}", "1", rows, [r * 10 + j for j in range(10)], 1.0))
        return kept

    first = PredictionLog(str(tmp_path / "a"), sample_fraction=0.3, seed=7, background=False)
    again = PredictionLog(str(tmp_path / "b"), sample_fraction=0.3, seed=7, background=False)
    other = PredictionLog(str(tmp_path / "c"), sample_fraction=0.3, seed=8, background=False)
    kept = fill(first)
    assert fill(again) == kept
    assert fill(other) != kept
    assert 0.25 < sum(kept) / 2000 < 0.35  # ~5 standard deviations either side of 0.3

    for log in (first, again):
        log.flush()
    a, b = read_predictions(str(tmp_path / "a")), read_predictions(str(tmp_path / "b"))
    assert a.num_rows == sum(kept)
    keys = list(zip(a.column("request_id").to_pylist(), a.column("row").to_pylist(), strict=True))
    other_keys = zip(b.column("request_id").to_pylist(), b.column("row").to_pylist(), strict=True)
    assert sorted(keys) == sorted(other_keys)  # the same rows of the same requests
    for (rid, row), row_json, pred_json in zip(
        keys, a.column("row_json").to_pylist(), a.column("prediction_json").to_pylist(), strict=True
    ):
        want = int(rid.removeprefix("req-")) * 10 + row  # the stored row is the sampled one
        assert json.loads(row_json) == {"i": want}
        assert json.loads(pred_json) == want


def test_full_sampling_keeps_every_row_and_a_request_may_keep_none(tmp_path: Path) -> None:
    log = PredictionLog(str(tmp_path), background=False)
    assert log.record("r", "1", [{"a": 1}] * 7, [0] * 7, 1.0) == 7
    sparse = PredictionLog(str(tmp_path), sample_fraction=1e-9, background=False)
    assert sparse.record("r", "1", [{"a": 1}] * 7, [0] * 7, 1.0) == 0
    assert sparse.pending_rows == 0 and sparse.flush() == 0
    assert sparse.stats()["recorded_rows"] == 0


def test_failed_writes_are_counted_logged_once_and_retried(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the log's directory should be")
    uri = str(blocker / "log")
    capture = _Capture()
    logger = logging.getLogger("ray.serve")
    logger.addHandler(capture)
    try:
        log = PredictionLog(uri, background=False)
        assert log.record("r1", "1", [{"a": 1}, {"a": 2}], [10, 20], 3.0) == 2
        assert log.flush() == 0  # does not raise
        assert log.flush() == 0
    finally:
        logger.removeHandler(capture)
    stats = log.stats()
    assert stats["write_failures"] == 2
    assert stats["pending_rows"] == 2  # kept for the next flush
    assert stats["dropped_rows"] == 0 and stats["written_rows"] == 0
    assert stats["last_error"]
    warnings = [r for r in capture.records if "prediction log cannot write" in r.getMessage()]
    assert len(warnings) == 1  # repeated failures are logged at most once a minute
    assert uri in warnings[0].getMessage()

    blocker.unlink()  # storage is back: the kept rows are written
    assert log.flush() == 2
    got = read_predictions(uri)
    assert [json.loads(r) for r in got.column("row_json").to_pylist()] == [{"a": 1}, {"a": 2}]
    assert log.stats()["write_failures"] == 2


class _StuckStorage:
    """A filesystem whose writes hang until released, then fail (slow, then down)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def create_dir(self, path: str, recursive: bool = True) -> None:
        self.entered.set()
        self.release.wait(10)
        raise OSError("storage unavailable")


def test_record_never_blocks_on_slow_storage_and_counts_dropped_rows() -> None:
    storage = _StuckStorage()
    log = PredictionLog(
        "bucket/log",
        filesystem=storage,  # type: ignore[arg-type]
        flush_s=3600,
        max_rows=2,
        max_buffer_rows=10,
    )
    try:
        log.record("r0", "1", [{"a": 0}, {"a": 1}], [0, 1], 1.0)  # reaches max_rows: a write
        assert storage.entered.wait(3), "the flusher did not start writing"
        errors: list[BaseException] = []

        def requests() -> None:
            try:
                for i in range(30):
                    log.record(f"r{i + 1}", "1", [{"a": i}], [i], 1.0)
            except BaseException as exc:
                errors.append(exc)

        worker = threading.Thread(target=requests)
        worker.start()
        worker.join(3)
        assert not worker.is_alive(), "record() waited for the stuck write"
        assert errors == []
        # The 2 rows being written are out of the buffer; of 30 more, the newest 10 are kept.
        assert log.pending_rows == 10
        assert log.dropped_rows == 20

        storage.release.set()  # the write fails: its 2 rows come back as the oldest, and go
        assert _wait_for(lambda: log.write_failures >= 2)  # the retry, woken by the records
        assert log.dropped_rows == 22
        assert log.pending_rows == 10
    finally:
        storage.release.set()
        log.close()
    assert log.dropped_rows == 32  # close() gives up on what storage would not take
    assert log.pending_rows == 0 and log.written_rows == 0
    assert log.stats()["recorded_rows"] == 32


def test_the_cap_drops_the_oldest_requests_first(tmp_path: Path) -> None:
    log = PredictionLog(str(tmp_path), max_rows=5, max_buffer_rows=10, background=False)
    for r in range(4):
        log.record(f"r{r}", "1", [{"r": r}] * 3, [r] * 3, 1.0)
    assert log.dropped_rows == 3  # 12 rows > 10: r0 goes
    assert log.pending_rows == 9
    assert log.flush() == 9
    got = read_predictions(str(tmp_path))
    assert sorted(set(got.column("request_id").to_pylist())) == ["r1", "r2", "r3"]

    log.record("huge", "1", [{"r": 0}] * 11, [0] * 11, 1.0)  # larger than the cap on its own
    assert log.dropped_rows == 14 and log.pending_rows == 0


def test_background_flush_and_close(tmp_path: Path) -> None:
    log = PredictionLog(str(tmp_path), flush_s=0.02)
    log.record("r1", "1", [{"a": 1}], ["x"], 1.0)
    assert _wait_for(lambda: log.written_rows == 1), "the flusher did not write on its period"
    log.record("r2", "1", [{"a": 2}], ["y"], 1.0)
    log.close()  # writes what is left at once
    assert read_predictions(str(tmp_path)).column("request_id").to_pylist() == ["r1", "r2"]
    log.close()  # idempotent
    assert log.record("late", "1", [{"a": 3}], ["z"], 1.0) == 0
    assert log.dropped_rows == 1


def test_close_flushes_what_the_thread_has_not_written(tmp_path: Path) -> None:
    with PredictionLog(str(tmp_path), flush_s=3600) as log:
        log.record("r1", "1", [{"a": 1}, {"a": 2}], [1, 2], 4.0)
        assert log.written_rows == 0
    assert log.written_rows == 2
    assert read_predictions(str(tmp_path)).num_rows == 2


def test_log_arguments_and_caller_bugs_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sample_fraction"):
        PredictionLog(str(tmp_path), sample_fraction=0.0, background=False)
    with pytest.raises(ConfigError, match="max_rows"):
        PredictionLog(str(tmp_path), max_rows=11, max_buffer_rows=10, background=False)
    with pytest.raises(ConfigError, match="flush_s"):
        PredictionLog(str(tmp_path), flush_s=0, background=False)
    with pytest.raises(ConfigError, match="cannot open"):
        PredictionLog("nosuchscheme://bucket/log", background=False)
    log = PredictionLog(str(tmp_path), background=False)
    with pytest.raises(ValueError, match="2 rows but 1 predictions"):
        log.record("r", "1", [{"a": 1}, {"a": 2}], [0], 1.0)
    assert log.pending_rows == 0


# -- predictions ----------------------------------------------------------------------------------
def test_prediction_parts_reads_row_dicts_and_bare_values() -> None:
    rows = row_predictions({"predictions": ["a", "b"], "scores": [[0.7, 0.3], [0.1, 0.9]]})
    assert rows == [
        {"prediction": "a", "scores": [0.7, 0.3]},
        {"prediction": "b", "scores": [0.1, 0.9]},
    ]
    assert prediction_parts(rows[1]) == ("b", [0.1, 0.9])
    assert row_predictions({"predictions": [1.5], "scores": None}) == [
        {"prediction": 1.5, "scores": None}
    ]
    assert prediction_parts({"prediction": 1.5}) == (1.5, None)
    assert prediction_parts(2.5) == (2.5, None)
    with pytest.raises(ValueError, match="`prediction` key"):
        prediction_parts({"label": 1})
    with pytest.raises(ValueError, match="2 predictions but 1 score rows"):
        row_predictions({"predictions": [1, 2], "scores": [[0.5, 0.5]]})


# -- live quality ---------------------------------------------------------------------------------
def _labelled(q: LiveQuality, version: str, preds: list[Any], labels: list[Any], rid: str) -> None:
    q.remember(rid, version, preds)
    q.add_feedback([{"request_id": rid, "row": i, "label": y} for i, y in enumerate(labels)])


def test_binary_metrics_equal_sklearn() -> None:
    rng = np.random.default_rng(0)
    classes = ["no", "yes"]
    q = LiveQuality(Task.BINARY, classes, window_rows=10_000)
    y_true: list[str] = []
    y_pred: list[str] = []
    p_yes: list[float] = []
    for r in range(120):
        n = int(rng.integers(1, 4))
        p = rng.random(n)
        preds = ["yes" if x >= 0.5 else "no" for x in p]
        truth = [c if rng.random() < 0.75 else classes[1 - classes.index(c)] for c in preds]
        result = {"predictions": preds, "scores": [[1 - x, x] for x in p]}
        q.remember(f"req-{r}", "7", row_predictions(result))
        out = q.add_feedback(
            [{"request_id": f"req-{r}", "row": i, "label": y} for i, y in enumerate(truth)]
        )
        assert out.accepted == n and out.by_version == {"7": n}
        y_true += truth
        y_pred += preds
        p_yes += p.tolist()
    m = q.metrics("7")
    assert m["n_labels"] == len(y_true)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y_true, y_pred, pos_label="yes"))
    truth01 = [int(y == "yes") for y in y_true]
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(truth01, p_yes))
    assert 0.6 < m["accuracy"] < 0.9  # the data is neither trivial nor random


def test_multiclass_metrics_equal_sklearn() -> None:
    rng = np.random.default_rng(1)
    classes = [0, 1, 2]  # an int label column: the classes are integers
    q = LiveQuality("multiclass", classes, window_rows=10_000)
    scores = rng.dirichlet([1.0, 1.0, 1.0], size=300)
    preds = scores.argmax(axis=1).tolist()
    truth = [p if rng.random() < 0.6 else int(rng.integers(0, 3)) for p in preds]
    for start in range(0, 300, 30):
        sl = slice(start, start + 30)
        result = {"predictions": preds[sl], "scores": scores[sl].tolist()}
        _labelled(q, "2", row_predictions(result), truth[sl], f"req-{start}")
    m = q.metrics("2")
    assert m["n_labels"] == 300
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(truth, preds))
    assert m["f1"] == pytest.approx(skm.f1_score(truth, preds, labels=classes, average="macro"))
    auc = skm.roc_auc_score(truth, scores, multi_class="ovr", average="macro", labels=classes)
    assert m["roc_auc"] == pytest.approx(auc)


def test_regression_metrics_equal_sklearn() -> None:
    rng = np.random.default_rng(2)
    q = LiveQuality("regression")
    pred = rng.normal(0.0, 1.0, 50)
    truth = pred + rng.normal(0.0, 0.5, 50)
    _labelled(q, "1", pred.tolist(), truth.tolist(), "req")  # bare numbers as predictions
    m = q.metrics("1")
    assert m == {
        "n_labels": 50,
        "mae": pytest.approx(skm.mean_absolute_error(truth, pred)),
        "rmse": pytest.approx(math.sqrt(skm.mean_squared_error(truth, pred))),
    }


def test_roc_auc_needs_probabilities_and_both_classes() -> None:
    q = LiveQuality("binary", ["no", "yes"])
    _labelled(q, "1", ["yes", "no"], ["yes", "no"], "bare")  # no scores
    m = q.metrics("1")
    assert m["accuracy"] == 1.0 and m["roc_auc"] is None
    one_class = [{"prediction": "yes", "scores": [0.3, 0.7]}] * 3
    _labelled(q, "2", one_class, ["yes", "yes", "yes"], "same")
    assert q.metrics("2")["roc_auc"] is None
    assert q.metrics("never-served") == {
        "n_labels": 0,
        "accuracy": None,
        "f1": None,
        "roc_auc": None,
    }


def _two_row_quality(**kwargs: Any) -> LiveQuality:
    q = LiveQuality("binary", ["no", "yes"], **kwargs)
    q.remember("req-1", "1", [{"prediction": "yes", "scores": [0.2, 0.8]}] * 2)
    return q


def _feedback_error(q: LiveQuality, labels: Any) -> RequestError:
    with pytest.raises(RequestError) as info:
        q.add_feedback(labels)
    return info.value


@pytest.mark.parametrize(
    ("labels", "status", "code", "field", "says"),
    [
        ({"request_id": "req-1"}, 422, "invalid_feedback", "labels", "must be an array"),
        ([], 422, "invalid_feedback", "labels", "empty"),
        (["req-1"], 422, "invalid_feedback", "labels[0]", "must be an object"),
        ([{"request_id": "req-1", "row": 0}], 422, "invalid_feedback", "labels[0]", "'label'"),
        (
            [{"request_id": "req-1", "row": 0, "label": "yes", "weight": 2}],
            422,
            "invalid_feedback",
            "labels[0]",
            "unknown key `weight`",
        ),
        (
            [{"request_id": 1, "row": 0, "label": "yes"}],
            422,
            "invalid_feedback",
            "labels[0].request_id",
            "must be a string",
        ),
        (
            [{"request_id": "nope", "row": 0, "label": "yes"}],
            422,
            "unknown_request_id",
            "labels[0].request_id",
            "'nope' is unknown",
        ),
        (
            [{"request_id": "req-1", "row": 2, "label": "yes"}],
            422,
            "row_out_of_range",
            "labels[0].row",
            "in [0, 1]",
        ),
        (
            [{"request_id": "req-1", "row": -1, "label": "yes"}],
            422,
            "row_out_of_range",
            "labels[0].row",
            "row=-1",
        ),
        (
            [{"request_id": "req-1", "row": True, "label": "yes"}],
            422,
            "row_out_of_range",
            "labels[0].row",
            "the boolean true",
        ),
        (
            [{"request_id": "req-1", "row": 0, "label": "maybe"}],
            422,
            "bad_label",
            "labels[0].label",
            "one of the classes ['no', 'yes']",
        ),
        (
            [{"request_id": "req-1", "row": 0, "label": 1}],
            422,
            "bad_label",
            "labels[0].label",
            "the number 1",
        ),
        (
            [
                {"request_id": "req-1", "row": 0, "label": "yes"},
                {"request_id": "req-1", "row": 0, "label": "no"},
            ],
            409,
            "duplicate_feedback",
            "labels[1]",
            "labels[0] already does",
        ),
    ],
    ids=[
        "not-a-list",
        "empty",
        "not-an-object",
        "missing-key",
        "extra-key",
        "id-not-a-string",
        "unknown-request",
        "row-too-large",
        "row-negative",
        "row-bool",
        "unknown-class",
        "class-of-wrong-type",
        "duplicate-in-call",
    ],
)
def test_bad_feedback_is_a_4xx_naming_the_problem(
    labels: Any, status: int, code: str, field: str, says: str
) -> None:
    q = _two_row_quality()
    err = _feedback_error(q, labels)
    assert (err.status, err.code, err.field) == (status, code, field)
    assert says in err.message
    assert q.metrics("1")["n_labels"] == 0  # nothing of a bad call is taken


def test_feedback_is_all_or_nothing_and_a_row_takes_one_label() -> None:
    q = _two_row_quality()
    good = {"request_id": "req-1", "row": 0, "label": "yes"}
    bad = {"request_id": "req-1", "row": 1, "label": "perhaps"}
    err = _feedback_error(q, [good, bad])
    assert err.field == "labels[1].label"
    assert q.metrics("1")["n_labels"] == 0
    assert q.add_feedback([good]).accepted == 1  # the good label was not taken: no duplicate
    err = _feedback_error(q, [good])
    assert (err.status, err.code) == (409, "duplicate_feedback")
    assert "already has a label" in err.message
    assert q.metrics("1")["n_labels"] == 1


def test_labels_per_call_are_capped() -> None:
    q = _two_row_quality(max_labels_per_call=3)
    labels = [{"request_id": "req-1", "row": 0, "label": "yes"}] * 4
    err = _feedback_error(q, labels)
    assert (err.status, err.code) == (413, "too_many_labels")
    assert "4 labels, over the limit of 3" in err.message


@pytest.mark.parametrize(
    ("label", "says"),
    [("3.5", "the string '3.5'"), (math.nan, "NaN"), (math.inf, "Infinity"), (True, "boolean")],
)
def test_regression_labels_must_be_finite_numbers(label: Any, says: str) -> None:
    q = LiveQuality("regression")
    q.remember("r", "1", [1.0])
    err = _feedback_error(q, [{"request_id": "r", "row": 0, "label": label}])
    assert (err.status, err.code, err.field) == (422, "bad_label", "labels[0].label")
    assert "finite number" in err.message and says in err.message
    assert q.add_feedback([{"request_id": "r", "row": 0, "label": 2}]).accepted == 1  # an int


@pytest.mark.parametrize("label", [1.0, True, "1"])
def test_integer_classes_take_only_integers(label: Any) -> None:
    q = LiveQuality("multiclass", [0, 1, 2])
    q.remember("r", "1", [{"prediction": 1, "scores": None}])
    err = _feedback_error(q, [{"request_id": "r", "row": 0, "label": label}])
    assert err.code == "bad_label" and "(integers, as in the contract)" in err.message


def test_concurrent_duplicates_are_caught() -> None:
    q = _two_row_quality()
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def send() -> None:
        barrier.wait()
        try:
            q.add_feedback([{"request_id": "req-1", "row": 1, "label": "no"}])
            outcomes.append("ok")
        except RequestError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert sorted(outcomes) == ["duplicate_feedback"] * 7 + ["ok"]
    assert q.metrics("1")["n_labels"] == 1


def test_the_index_forgets_the_oldest_requests() -> None:
    q = LiveQuality("regression", max_requests=2, max_rows=5)
    for r in range(3):
        q.remember(f"r{r}", "1", [0.0])
    assert q.remembered_requests == 2
    err = _feedback_error(q, [{"request_id": "r0", "row": 0, "label": 1.0}])
    assert err.code == "unknown_request_id"
    assert q.add_feedback([{"request_id": "r2", "row": 0, "label": 1.0}]).accepted == 1
    q.remember("big", "1", [0.0] * 4)  # 1 + 1 + 4 rows > 5: r1 goes, r2 and big stay
    assert q.remembered_requests == 2
    assert _feedback_error(q, [{"request_id": "r1", "row": 0, "label": 1.0}]).code == (
        "unknown_request_id"
    )
    q.remember("huge", "1", [0.0] * 9)  # the newest request is kept whatever its size
    assert q.remembered_requests == 1
    assert q.add_feedback([{"request_id": "huge", "row": 8, "label": 1.0}]).accepted == 1


def test_remember_refuses_predictions_that_do_not_fit_the_task() -> None:
    q = LiveQuality("binary", ["no", "yes"])
    with pytest.raises(ValueError, match="'maybe' is not one of the classes"):
        q.remember("r", "1", ["maybe"])
    assert q.remembered_requests == 0
    q.remember("r", "1", [np.str_("yes")])  # numpy values from a model's output are fine
    with pytest.raises(ValueError, match="finite number"):
        LiveQuality("regression").remember("r", "1", [math.nan])


def test_window_keeps_the_newest_labelled_rows_per_version() -> None:
    q = LiveQuality("binary", ["no", "yes"], window_rows=4)
    _labelled(q, "1", ["yes"] * 4, ["no"] * 4, "old")  # all wrong
    assert q.metrics("1")["accuracy"] == 0.0
    _labelled(q, "1", ["yes"] * 3, ["yes"] * 3, "new")  # three right: 3 of the last 4
    assert q.metrics("1") | {"f1": None, "roc_auc": None} == {
        "n_labels": 4,
        "accuracy": 0.75,
        "f1": None,
        "roc_auc": None,
    }
    _labelled(q, "1", ["yes"], ["yes"], "newer")
    assert q.metrics("1")["accuracy"] == 1.0
    _labelled(q, "2", ["no"], ["yes"], "other-version")
    assert q.metrics("2") | {"f1": None} == {
        "n_labels": 1,
        "accuracy": 0.0,
        "f1": None,
        "roc_auc": None,
    }
    assert q.metrics("1")["n_labels"] == 4
    assert q.versions == ["1", "2"]


def _accuracy_half(q: LiveQuality, version: str, n: int = 10) -> None:
    """`n` labels of `version`, half of them right: accuracy 0.5."""
    preds = ["yes"] * n
    labels = ["yes" if i % 2 else "no" for i in range(n)]
    _labelled(q, version, preds, labels, f"half-{version}-{n}")


def test_classification_alerts_when_a_metric_drops() -> None:
    q = LiveQuality("binary", ["no", "yes"])
    _accuracy_half(q, "1")
    worse = q.status({"accuracy": 0.9, "f1": 0.5}, tolerance=0.05, min_labels=10)["1"]
    acc = worse["metrics"]["accuracy"]
    assert acc == {"value": 0.5, "baseline": 0.9, "drop": pytest.approx(0.4), "alert": True}
    assert worse["alert"] is True and worse["alerts"] == ["accuracy"]
    assert worse["n_labels"] == 10
    # f1 of the positive class: 2 * (0.5 * 1.0) / 1.5 = 2/3, better than 0.5: a negative drop.
    assert worse["metrics"]["f1"]["drop"] == pytest.approx(0.5 - 2 / 3)
    assert worse["metrics"]["f1"]["alert"] is False
    assert worse["metrics"]["roc_auc"] == {
        "value": None,
        "baseline": None,
        "drop": None,
        "alert": False,
    }
    better = q.status({"accuracy": 0.3}, tolerance=0.05, min_labels=10)["1"]
    assert better["metrics"]["accuracy"]["drop"] == pytest.approx(-0.2)
    assert better["alert"] is False
    within = q.status({"accuracy": 0.52}, tolerance=0.05, min_labels=10)["1"]
    assert within["alert"] is False


def test_regression_alerts_when_an_error_rises() -> None:
    q = LiveQuality("regression")
    _labelled(q, "1", [0.0] * 10, [2.0] * 10, "r")  # mae = rmse = 2
    worse = q.status({"mae": 1.0, "rmse": 1.5}, tolerance=0.1, min_labels=5)["1"]
    assert worse["metrics"]["mae"] == {"value": 2.0, "baseline": 1.0, "drop": 1.0, "alert": True}
    assert worse["alerts"] == ["mae", "rmse"]
    better = q.status({"mae": 5.0, "rmse": 5.0}, tolerance=0.1, min_labels=5)["1"]
    assert better["metrics"]["mae"]["drop"] == -3.0 and better["alert"] is False
    assert HIGHER_IS_BETTER["mae"] is False and HIGHER_IS_BETTER["accuracy"] is True


def test_relative_tolerance_is_a_fraction_of_the_baseline() -> None:
    q = LiveQuality("regression")
    _labelled(q, "1", [0.0] * 10, [1.5] * 10, "r")  # mae 1.5
    base = {"mae": 1.0}
    assert q.status(base, 0.6, 1, relative=True)["1"]["alert"] is False  # 0.5 <= 0.6 * 1.0
    assert q.status(base, 0.4, 1, relative=True)["1"]["alert"] is True
    assert q.status({"mae": 10.0}, 0.4, 1, relative=True)["1"]["alert"] is False
    assert q.status({"mae": 1.4}, 0.4, 1)["1"]["alert"] is False  # absolute: 0.1 <= 0.4


def test_no_alert_before_min_labels() -> None:
    q = LiveQuality("binary", ["no", "yes"])
    _accuracy_half(q, "1")
    base = {"accuracy": 0.9}
    early = q.status(base, 0.05, min_labels=11)["1"]
    assert early["alert"] is False and early["n_labels"] == 10
    assert early["metrics"]["accuracy"]["drop"] == pytest.approx(0.4)  # the numbers still show
    assert q.status(base, 0.05, min_labels=10)["1"]["alert"] is True
    assert set(q.status(base, 0.05, 1, versions=["1", "9"])) == {"1", "9"}
    assert q.status(base, 0.05, 1, versions=["9"])["9"]["n_labels"] == 0
    with pytest.raises(ConfigError, match="min_labels"):
        q.status(base, 0.05, min_labels=0)
    with pytest.raises(ConfigError, match="tolerance"):
        q.status(base, -0.1, min_labels=1)


def test_compare_names_the_better_version_on_the_primary_metric() -> None:
    q = LiveQuality("binary", ["no", "yes"])
    _labelled(q, "prod", ["yes"] * 5, ["yes", "yes", "yes", "no", "no"], "p")  # 0.6
    _labelled(q, "cand", ["yes"] * 5, ["yes", "yes", "yes", "yes", "no"], "c")  # 0.8
    out = q.compare("cand", "prod")
    assert out["primary"] == "accuracy" and out["higher_is_better"] is True
    assert out["candidate"]["version"] == "cand" and out["candidate"]["n_labels"] == 5
    assert out["candidate"]["metrics"]["accuracy"] == pytest.approx(0.8)
    assert out["production"]["metrics"]["accuracy"] == pytest.approx(0.6)
    assert out["difference"] == pytest.approx(0.2)
    assert out["better"] == "candidate"
    assert q.compare("prod", "cand")["better"] == "production"
    assert q.compare("cand", "prod", min_labels=6)["better"] is None  # too few labels yet
    assert q.compare("cand", "unseen")["better"] is None


def test_compare_regression_prefers_the_lower_error() -> None:
    q = LiveQuality("regression")
    _labelled(q, "prod", [0.0] * 4, [1.0] * 4, "p")  # rmse 1
    _labelled(q, "cand", [0.0] * 4, [3.0] * 4, "c")  # rmse 3
    out = q.compare("cand", "prod")
    assert out["primary"] == "rmse" and out["higher_is_better"] is False
    assert out["difference"] == pytest.approx(2.0)
    assert out["better"] == "production"
    assert LiveQuality("regression", primary_metric="mae").compare("a", "b")["primary"] == "mae"


def test_live_quality_from_contract_and_bad_arguments() -> None:
    contract = Contract(
        name="toy",
        task=Task.BINARY,
        label="y",
        columns=(
            ColumnSpec("x", ColumnType.FLOAT),
            ColumnSpec("y", ColumnType.CATEGORY, categories=("no", "yes")),
        ),
    )
    q = LiveQuality.from_contract(contract, window_rows=5)
    assert (q.task, q.classes, q.window_rows) == (Task.BINARY, ["no", "yes"], 5)
    with pytest.raises(ConfigError, match="exactly 2"):
        LiveQuality("binary", ["a", "b", "c"])
    with pytest.raises(ConfigError, match="no classes"):
        LiveQuality("regression", ["a"])
    with pytest.raises(ConfigError, match="task must be one of"):
        LiveQuality("ranking")
    with pytest.raises(ConfigError, match="primary_metric"):
        LiveQuality("binary", ["a", "b"], primary_metric="mae")
    with pytest.raises(ConfigError, match="window_rows"):
        LiveQuality("regression", window_rows=0)
