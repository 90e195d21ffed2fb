"""Evaluation metrics, computed once over a whole split with scikit-learn.

Every number comes from `sklearn.metrics`; this module only shapes inputs and outputs. Metrics
are never averaged across batches or shards (the mean of per-shard accuracies is not the accuracy,
and AUCs do not average at all): workers collect `(y_true, scores)` in a `MetricAccumulator`, the
accumulators are merged, and `compute_metrics` runs once on the concatenated arrays.

Conventions:
    * `y_true` holds class indices `0..k-1` for classification (what `Preprocessor.labels`
      returns) and float targets for regression.
    * `scores` are probabilities for classification (binary: `(n,)` probability of class 1, or
      `(n, 2)`; multiclass: `(n, k)`) and predictions for regression (`(n,)`).
    * The predicted class is `argmax` (multiclass) or `p(class 1) >= 0.5` (binary).
    * `precision`, `recall`, `f1`: the positive class (index 1) for binary, the macro average for
      multiclass. `precision_macro`, `recall_macro`, `f1_macro` are always the macro average, so
      a report can read the same key for both tasks.
    * `per_class` is keyed by `str(class value)` (JSON object keys are strings).
    * `support` is the number of rows evaluated; `per_class[c]["support"]` the rows of class c.
    * `roc_auc` and `pr_auc` are None when y_true has fewer than two classes (they are undefined);
      for multiclass they are the macro one-vs-rest average over the classes present in y_true.
    * Undefined precision/recall (no predicted or no true rows of a class) count as 0.
    * Every value is a plain Python int, float, None, list or dict: `json.dumps` takes the result
      as is. A non-finite float (e.g. r2 of a single row) becomes None.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn import metrics as skm
from sklearn.preprocessing import label_binarize

from ray_ml._json import jsonable

__all__ = ["TASKS", "MetricAccumulator", "compute_metrics"]

TASKS = ("binary", "multiclass", "regression")


def compute_metrics(
    task: str,
    y_true: np.ndarray,
    scores: np.ndarray,
    classes: list[Any] | None = None,
) -> dict[str, Any]:
    """Metrics of one whole split; see the module docstring for the conventions.

    Args:
        task: `binary`, `multiclass` or `regression`.
        y_true: Class indices `0..k-1` (classification) or targets (regression), shape `(n,)`.
        scores: Probabilities (classification) or predictions (regression); shapes as in the
            module docstring.
        classes: Class values in index order, used to name `per_class` entries and to fix k
            (so a class absent from this split still gets a row in the confusion matrix).
            Defaults to `0..k-1` with k from `scores` (2 for binary).

    Returns:
        Classification: accuracy, precision, recall, f1, precision_macro, recall_macro,
        f1_macro, roc_auc, pr_auc, log_loss, confusion_matrix, support, per_class.
        Regression: mse, rmse, mae, r2, support.

    Raises:
        ValueError: Unknown task, empty input, mismatched lengths or shapes, or class indices
            outside `0..k-1`.
    """
    task = str(task)
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, but got task={task!r}.")
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"y_true must be 1-D, but got shape {y.shape}.")
    if y.shape[0] == 0:
        raise ValueError("cannot compute metrics of an empty split (y_true has 0 rows).")
    if s.shape[0] != y.shape[0]:
        raise ValueError(
            f"y_true and scores must have the same number of rows, but got {y.shape[0]} and "
            f"{s.shape[0]}."
        )
    if task == "regression":
        return _regression(y.astype(np.float64), _as_1d(s, "regression"))
    proba, k = _class_scores(task, s, classes)
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.mod(y, 1) == 0):
            raise ValueError(
                "y_true must hold class indices 0..k-1 for classification, but got non-integer "
                "values. Map labels with `Preprocessor.labels` first."
            )
        y = y.astype(np.int64)
    bad = (y < 0) | (y >= k)
    if bad.any():
        raise ValueError(
            f"y_true holds class indices outside 0..{k - 1} (e.g. {int(y[bad][0])}); with "
            f"k={k} classes, pass `classes` with every class or scores with k columns."
        )
    names = [str(c) for c in (classes if classes is not None else range(k))]
    return _classification(task, y, proba, k, names)


def _as_1d(s: np.ndarray, task: str) -> np.ndarray:
    if s.ndim == 2 and s.shape[1] == 1:
        return s[:, 0]
    if s.ndim != 1:
        raise ValueError(f"{task} scores must have shape (n,) or (n, 1), but got {s.shape}.")
    return s


def _class_scores(task: str, s: np.ndarray, classes: list[Any] | None) -> tuple[np.ndarray, int]:
    """Scores -> (probabilities: (n,) of class 1 for binary, (n, k) for multiclass, k)."""
    if task == "binary":
        if classes is not None and len(classes) != 2:
            raise ValueError(f"task=binary needs exactly 2 classes, but got classes={classes}.")
        if s.ndim == 2 and s.shape[1] == 2:
            return s[:, 1], 2
        return _as_1d(s, "binary"), 2
    if s.ndim != 2:
        raise ValueError(f"multiclass scores must have shape (n, k), but got {s.shape}.")
    k = s.shape[1]
    if classes is not None and len(classes) != k:
        raise ValueError(
            f"multiclass scores have {k} columns but classes has {len(classes)} entries "
            f"({classes}); they must match."
        )
    sums = s.sum(axis=1, keepdims=True)
    if np.all(np.abs(sums - 1.0) < 1e-4):
        # float32 softmax rows sum to 1 only within ~1e-7, and sklearn's log_loss warns beyond
        # ~1e-8; rows this close are probabilities up to rounding, so rescale them exactly.
        s = s / sums
    return s, k


def _classification(
    task: str, y: np.ndarray, proba: np.ndarray, k: int, names: list[str]
) -> dict[str, Any]:
    labels = list(range(k))
    pred = (proba >= 0.5).astype(np.int64) if task == "binary" else proba.argmax(axis=1)
    prec, rec, f1, sup = skm.precision_recall_fscore_support(
        y, pred, labels=labels, average=None, zero_division=0
    )
    macro = skm.precision_recall_fscore_support(
        y, pred, labels=labels, average="macro", zero_division=0
    )
    out: dict[str, Any] = {"accuracy": skm.accuracy_score(y, pred)}
    if task == "binary":
        pos = skm.precision_recall_fscore_support(
            y, pred, labels=labels, pos_label=1, average="binary", zero_division=0
        )
        out.update(precision=pos[0], recall=pos[1], f1=pos[2])
    else:
        out.update(precision=macro[0], recall=macro[1], f1=macro[2])
    out.update(precision_macro=macro[0], recall_macro=macro[1], f1_macro=macro[2])

    present = np.unique(y)
    if present.size < 2:
        out["roc_auc"] = out["pr_auc"] = None  # undefined with a single class in y_true
    elif task == "binary":
        out["roc_auc"] = skm.roc_auc_score(y, proba)
        out["pr_auc"] = skm.average_precision_score(y, proba, pos_label=1)
    else:
        # One-vs-rest over the classes present: an absent class has no positives, so its AUC is
        # undefined (sklearn's multi_class="ovr" returns NaN for the whole average then).
        onehot = label_binarize(y, classes=present)
        out["roc_auc"] = skm.roc_auc_score(onehot, proba[:, present], average="macro")
        out["pr_auc"] = skm.average_precision_score(onehot, proba[:, present], average="macro")
    out["log_loss"] = skm.log_loss(y, proba, labels=labels)
    out["confusion_matrix"] = skm.confusion_matrix(y, pred, labels=labels).tolist()
    out["support"] = int(y.shape[0])
    out["per_class"] = {
        name: {"precision": prec[i], "recall": rec[i], "f1": f1[i], "support": sup[i]}
        for i, name in enumerate(names)
    }
    plain: dict[str, Any] = jsonable(out)  # numpy numbers -> Python; NaN and inf -> None
    return plain


def _regression(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    out = {
        "mse": skm.mean_squared_error(y, pred),
        "rmse": skm.root_mean_squared_error(y, pred),
        "mae": skm.mean_absolute_error(y, pred),
        # r2 is undefined for fewer than two rows: sklearn warns and returns NaN (-> None).
        "r2": skm.r2_score(y, pred) if y.shape[0] >= 2 else math.nan,
        "support": int(y.shape[0]),
    }
    plain: dict[str, Any] = jsonable(out)  # numpy numbers -> Python; NaN and inf -> None
    return plain


class MetricAccumulator:
    """Collects `(y_true, scores)` chunks from many batches or shards for one `compute_metrics`.

    Each worker adds its validation batches, the accumulators travel to one place (they hold
    plain numpy arrays, so they pickle) and are merged, and the metrics are computed once over
    the concatenation. Never average per-shard metrics instead: shards differ in size and class
    mix, and ranking metrics such as ROC AUC do not decompose over shards at all.

    Example:
        >>> acc = MetricAccumulator()
        >>> for y, s in batches:
        ...     acc.add(y, s)
        >>> metrics = acc.compute("binary", classes=[0, 1])
    """

    def __init__(self) -> None:
        self._y: list[np.ndarray] = []
        self._scores: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(int(y.shape[0]) for y in self._y)

    def add(self, y_true: Any, scores: Any) -> None:
        """Append one chunk (numpy arrays or torch tensors already on the CPU).

        Args:
            y_true: Labels of the chunk, shape `(m,)`.
            scores: Scores of the chunk, `(m,)` or `(m, k)`; every chunk must have the same
                trailing shape.

        Raises:
            ValueError: Lengths differ or the score shape differs from earlier chunks.
        """
        y = np.asarray(y_true).reshape(-1)
        s = np.asarray(scores)
        if s.shape[0] != y.shape[0]:
            raise ValueError(
                f"y_true and scores must have the same number of rows, but got {y.shape[0]} "
                f"and {s.shape[0]}."
            )
        if self._scores and s.shape[1:] != self._scores[0].shape[1:]:
            raise ValueError(
                f"scores of shape {s.shape} do not match earlier chunks of shape "
                f"(m, {', '.join(map(str, self._scores[0].shape[1:]))}); every chunk must have "
                "the same number of score columns."
            )
        self._y.append(y)
        self._scores.append(s)

    def merge(self, other: MetricAccumulator) -> MetricAccumulator:
        """Append all chunks of `other` (e.g. another worker's) to this one; returns self."""
        for y, s in zip(other._y, other._scores, strict=True):
            self.add(y, s)
        return self

    def to_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All chunks concatenated in the order added: `(y_true, scores)`.

        Raises:
            ValueError: Nothing was added.
        """
        if not self._y:
            raise ValueError(
                "MetricAccumulator is empty: no validation rows were added. Check that the "
                "validation split is not empty."
            )
        return np.concatenate(self._y), np.concatenate(self._scores)

    def compute(self, task: str, classes: list[Any] | None = None) -> dict[str, Any]:
        """`compute_metrics` over everything added; see its documentation."""
        y, s = self.to_arrays()
        return compute_metrics(task, y, s, classes)
