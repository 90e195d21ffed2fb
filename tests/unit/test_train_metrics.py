"""compute_metrics against scikit-learn directly, and whole-split accumulation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.preprocessing import label_binarize

from ray_ml.train import MetricAccumulator, compute_metrics

pytestmark = pytest.mark.unit


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _binary_data(n: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.3 * y + 0.7 * rng.random(n), 0.001, 0.999)
    return y, p


def _multiclass_data(n: int = 600, k: int = 4, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    z = rng.normal(size=(n, k))
    z[np.arange(n), y] += 1.0  # a scorer better than chance
    return y, _softmax(z)


def _assert_json_plain(value: object) -> None:
    json.dumps(value, allow_nan=False)  # strict JSON: no NaN, only Python types
    if isinstance(value, dict):
        for v in value.values():
            _assert_json_plain(v)
    elif isinstance(value, list):
        for v in value:
            _assert_json_plain(v)
    else:
        assert value is None or type(value) in (int, float, bool, str), type(value)


def test_binary_metrics_match_sklearn() -> None:
    y, p = _binary_data()
    pred = (p >= 0.5).astype(int)
    m = compute_metrics("binary", y, p, classes=["no", "yes"])
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["precision_macro"] == pytest.approx(skm.precision_score(y, pred, average="macro"))
    assert m["recall_macro"] == pytest.approx(skm.recall_score(y, pred, average="macro"))
    assert m["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(y, p))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, p))
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
    assert m["support"] == len(y)
    per = skm.precision_recall_fscore_support(y, pred)
    for i, name in enumerate(["no", "yes"]):
        assert m["per_class"][name] == {
            "precision": pytest.approx(per[0][i]),
            "recall": pytest.approx(per[1][i]),
            "f1": pytest.approx(per[2][i]),
            "support": int(per[3][i]),
        }
    _assert_json_plain(m)


def test_binary_two_column_scores_equal_one_column() -> None:
    y, p = _binary_data()
    assert compute_metrics("binary", y, np.stack([1 - p, p], axis=1)) == compute_metrics(
        "binary", y, p
    )


def test_multiclass_metrics_match_sklearn() -> None:
    y, proba = _multiclass_data()
    pred = proba.argmax(axis=1)
    m = compute_metrics("multiclass", y, proba)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    for key in ("precision", "precision_macro"):
        assert m[key] == pytest.approx(skm.precision_score(y, pred, average="macro"))
    for key in ("recall", "recall_macro"):
        assert m[key] == pytest.approx(skm.recall_score(y, pred, average="macro"))
    for key in ("f1", "f1_macro"):
        assert m[key] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["roc_auc"] == pytest.approx(
        skm.roc_auc_score(y, proba, multi_class="ovr", average="macro")
    )
    assert m["pr_auc"] == pytest.approx(
        skm.average_precision_score(label_binarize(y, classes=range(4)), proba, average="macro")
    )
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba))
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
    assert sorted(m["per_class"]) == ["0", "1", "2", "3"]
    f1s = skm.f1_score(y, pred, average=None)
    assert [m["per_class"][str(i)]["f1"] for i in range(4)] == pytest.approx(list(f1s))
    _assert_json_plain(m)


def test_multiclass_missing_class_does_not_crash() -> None:
    y, proba = _multiclass_data(k=4)
    keep = y != 2
    y, proba = y[keep], proba[keep]
    m = compute_metrics("multiclass", y, proba, classes=["a", "b", "c", "d"])
    present = [0, 1, 3]
    assert m["roc_auc"] == pytest.approx(
        skm.roc_auc_score(label_binarize(y, classes=present), proba[:, present], average="macro")
    )
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=[0, 1, 2, 3]))
    assert len(m["confusion_matrix"]) == 4
    assert m["per_class"]["c"]["support"] == 0
    _assert_json_plain(m)


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_single_class_gives_none_aucs(task: str) -> None:
    y = np.zeros(20, dtype=np.int64)
    scores = np.full(20, 0.2) if task == "binary" else _softmax(np.zeros((20, 3)))
    m = compute_metrics(task, y, scores)
    assert m["roc_auc"] is None and m["pr_auc"] is None
    assert m["accuracy"] == 1.0
    _assert_json_plain(m)


def test_regression_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(2)
    y = rng.normal(size=300)
    pred = y + rng.normal(scale=0.5, size=300)
    m = compute_metrics("regression", y, pred)
    assert m["mse"] == pytest.approx(skm.mean_squared_error(y, pred))
    assert m["rmse"] == pytest.approx(skm.root_mean_squared_error(y, pred))
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert m["r2"] == pytest.approx(skm.r2_score(y, pred))
    assert m["support"] == 300
    _assert_json_plain(m)
    assert compute_metrics("regression", y[:1], pred[:1])["r2"] is None  # undefined, not NaN


@pytest.mark.parametrize(
    ("task", "y", "scores", "match"),
    [
        ("ranking", [0, 1], [0.1, 0.9], "task must be one of"),
        ("binary", [0, 1, 1], [0.1, 0.9], "same number of rows"),
        ("binary", [], [], "empty"),
        ("binary", [0, 2], [0.1, 0.9], "outside 0..1"),
        ("multiclass", [0, 1], [0.1, 0.9], r"shape \(n, k\)"),
        ("binary", [0.5, 1.0], [0.1, 0.9], "class indices"),
    ],
)
def test_bad_input_raises(task: str, y: list, scores: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compute_metrics(task, np.asarray(y), np.asarray(scores))


def test_multiclass_classes_must_match_columns() -> None:
    y, proba = _multiclass_data(k=4)
    with pytest.raises(ValueError, match="4 columns but classes has 3"):
        compute_metrics("multiclass", y, proba, classes=["a", "b", "c"])


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_accumulating_uneven_chunks_equals_one_chunk(task: str) -> None:
    if task == "binary":
        y, s = _binary_data(n=101)
    elif task == "multiclass":
        y, s = _multiclass_data(n=101, k=3)
    else:
        rng = np.random.default_rng(3)
        y, s = rng.normal(size=101), rng.normal(size=101)
    acc = MetricAccumulator()
    for lo, hi in ((0, 7), (7, 60), (60, 101)):
        acc.add(y[lo:hi], s[lo:hi])
    assert len(acc) == 101
    assert acc.compute(task) == compute_metrics(task, y, s)

    # The same chunks spread over two "workers" and merged.
    a, b = MetricAccumulator(), MetricAccumulator()
    a.add(y[:7], s[:7])
    b.add(y[7:60], s[7:60])
    b.add(y[60:], s[60:])
    assert a.merge(b).compute(task) == compute_metrics(task, y, s)


def test_accumulated_accuracy_differs_from_mean_of_chunk_accuracies() -> None:
    # Chunk 1: one row, right. Chunk 2: nine rows, all wrong.
    y1, s1 = np.array([1]), np.array([0.9])
    y2, s2 = np.ones(9, dtype=int), np.full(9, 0.1)
    acc = MetricAccumulator()
    acc.add(y1, s1)
    acc.add(y2, s2)
    whole = acc.compute("binary")["accuracy"]
    mean_of_chunks = np.mean(
        [compute_metrics("binary", y, s)["accuracy"] for y, s in ((y1, s1), (y2, s2))]
    )
    assert whole == pytest.approx(0.1)
    assert mean_of_chunks == pytest.approx(0.5)


def test_accumulator_rejects_mismatches_and_empty() -> None:
    acc = MetricAccumulator()
    with pytest.raises(ValueError, match="empty"):
        acc.to_arrays()
    with pytest.raises(ValueError, match="same number of rows"):
        acc.add(np.zeros(3), np.zeros(2))
    acc.add(np.zeros(3), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="score columns"):
        acc.add(np.zeros(2), np.zeros((2, 3)))


def test_imbalanced_pr_auc_far_below_roc_auc() -> None:
    rng = np.random.default_rng(4)
    n = 20_000
    y = (rng.random(n) < 0.01).astype(int)
    score = 1 / (1 + np.exp(-(rng.normal(size=n) + 0.8 * y)))  # a weak scorer
    m = compute_metrics("binary", y, score)
    assert m["roc_auc"] > 0.6
    assert m["pr_auc"] < 0.1
    assert m["pr_auc"] < m["roc_auc"] / 5
