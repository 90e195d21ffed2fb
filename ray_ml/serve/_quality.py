"""Live model quality: ground-truth feedback joined to served predictions, per model version.

`LiveQuality.remember` keeps each answered request's predictions in a bounded in-memory index
(the newest requests; the oldest are forgotten first), the same per-row predictions the
`PredictionLog` writes. `add_feedback` joins labels (`{"request_id", "row", "label"}`, the body
of `POST /v1/feedback`) to them, after checking every label against the index and the task:
any problem is a `RequestError` (4xx) naming the label and the fix, and then no label of the
call is taken. Accepted labels enter a sliding window per served version (its last
`window_rows` labelled rows), over which `metrics`, `status` (alerts against the bundle's test
metrics) and `compare` (the canary's quality against production's) are computed.

Metrics come from `sklearn.metrics` with the conventions of the bundle's test metrics
(`ray_ml.train.compute_metrics`), so that the two compare: classes are the contract's, in index
order; `f1` is the positive class's (index 1) for binary and the macro average over all classes
for multiclass; `roc_auc` needs the class probabilities of every row in the window and two
classes among its labels, and for multiclass is the macro one-vs-rest average over the classes
present. Regression has `mae` and `rmse`.

A prediction, per row, is `{"prediction": value, "scores": [p_0, ..., p_k-1] | None}`
(`row_predictions` splits a model's `{"predictions": [...], "scores": [...]}` result into
those); `prediction_parts` is the one place that reads it. Nothing here imports Ray or torch.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn import metrics as skm
from sklearn.preprocessing import label_binarize

from ray_ml._json import finite_number
from ray_ml.data import Contract, Task
from ray_ml.errors import ConfigError
from ray_ml.serve._validate import RequestError, _clip, _describe

__all__ = [
    "HIGHER_IS_BETTER",
    "FeedbackResult",
    "LiveQuality",
    "prediction_parts",
    "row_predictions",
]

#: Whether each live metric is better when higher (True) or lower (False).
HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "f1": True,
    "roc_auc": True,
    "mae": False,
    "rmse": False,
}
_CLASSIFICATION_METRICS = ("accuracy", "f1", "roc_auc")
_REGRESSION_METRICS = ("mae", "rmse")
_LABEL_KEYS = frozenset(("request_id", "row", "label"))
_MAX_LISTED_CLASSES = 10


def row_predictions(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One prediction dict per row from a model's result (`Predictor.predict`, `/v1/predict`).

    Args:
        result: `{"predictions": [...], "scores": [[p, ...], ...] | None}`.

    Returns:
        `[{"prediction": value, "scores": [p, ...] | None}, ...]`, in row order.

    Raises:
        ValueError: `scores` is given and differs in length from `predictions`.
    """
    preds = list(result["predictions"])
    scores = result.get("scores")  # a regression result may leave it out
    if scores is None:
        return [{"prediction": p, "scores": None} for p in preds]
    if len(scores) != len(preds):
        raise ValueError(
            f"row_predictions: {len(preds)} predictions but {len(scores)} score rows; a model "
            "result has one of each per row."
        )
    return [{"prediction": p, "scores": list(s)} for p, s in zip(preds, scores, strict=True)]


def prediction_parts(prediction: Any) -> tuple[Any, list[float] | None]:
    """The predicted value and the class probabilities (None if absent) of one row's prediction.

    Args:
        prediction: A `row_predictions` dict, `{"prediction": value, "scores": [...] | None}`
            (`scores` may be left out), or the bare predicted value (a class or a number).

    Raises:
        ValueError: A dict without a `prediction` key.
    """
    if isinstance(prediction, Mapping):
        if "prediction" not in prediction:
            raise ValueError(
                "a prediction dict needs a `prediction` key (and optionally `scores`), but got "
                f"keys {sorted(map(str, prediction))}. Use `row_predictions(result)`."
            )
        scores = prediction.get("scores")
        return prediction["prediction"], None if scores is None else [float(p) for p in scores]
    return prediction, None


@dataclass(frozen=True)
class FeedbackResult:
    """What one `add_feedback` call accepted.

    Attributes:
        accepted: Labels accepted (all those given: a call with any bad label raises).
        by_version: Accepted labels per model version that served the labelled rows.
    """

    accepted: int
    by_version: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "by_version": dict(self.by_version)}


@dataclass
class _Request:
    """One remembered request: its version, per-row (prediction, scores), rows labelled so far."""

    version: str
    predicted: list[Any]  # class index (classification) or float (regression), per row
    scores: list[list[float] | None]
    seq: int = 0  # the order it was remembered in (`LiveQuality.mark`)
    labelled: set[int] = field(default_factory=set)


class LiveQuality:
    """Joins feedback labels to remembered predictions; live metrics per version over a window.

    Thread-safe: one lock guards the index and the windows (a Serve replica answers requests
    from an event loop and from threads); metrics are computed on a copy, outside the lock.

    Args:
        task: `binary`, `multiclass` or `regression` (a `Task` or its string).
        classes: The classes in index order (the contract's label categories: integers or
            strings); empty for regression.
        window_rows: Labelled rows kept per version (the newest).
        max_requests: Most requests remembered for the join; the oldest are forgotten first.
        max_rows: Most predicted rows remembered over all requests (the newest request is
            always kept, whatever its size).
        max_labels_per_call: Most labels one `add_feedback` call may carry (more is a 413).
        primary_metric: The metric `compare` judges on; default `accuracy` for classification,
            `rmse` for regression.

    Raises:
        ConfigError: A bad argument.
    """

    def __init__(
        self,
        task: Task | str,
        classes: Sequence[Any] = (),
        *,
        window_rows: int = 1_000,
        max_requests: int = 100_000,
        max_rows: int = 1_000_000,
        max_labels_per_call: int = 10_000,
        primary_metric: str | None = None,
    ) -> None:
        try:
            self.task = Task(task)
        except ValueError:
            raise ConfigError(
                f"task must be one of {[t.value for t in Task]}, but got task={task!r}."
            ) from None
        self.classes = list(classes)
        if self.task.is_classification:
            k = len(self.classes)
            if k < 2 or (self.task is Task.BINARY and k != 2):
                need = "exactly 2" if self.task is Task.BINARY else "at least 2"
                raise ConfigError(
                    f"task={self.task.value} needs {need} classes, but got classes="
                    f"{self.classes!r}. Pass the contract's label categories "
                    "(`LiveQuality.from_contract`)."
                )
            bad = [c for c in self.classes if type(c) not in (int, str)]
            if bad or len(set(self.classes)) != k:
                raise ConfigError(
                    f"classes must be distinct integers or strings, but got classes="
                    f"{self.classes!r}."
                )
        elif self.classes:
            raise ConfigError(
                f"task=regression has no classes, but got classes={self.classes!r}. Fix: pass "
                "classes=()."
            )
        for key, value in (
            ("window_rows", window_rows),
            ("max_requests", max_requests),
            ("max_rows", max_rows),
            ("max_labels_per_call", max_labels_per_call),
        ):
            if type(value) is not int or value < 1:
                raise ConfigError(f"{key} must be a positive integer, but got {key}={value!r}.")
        names = self.metric_names
        primary = primary_metric or ("accuracy" if self.task.is_classification else "rmse")
        if primary not in names:
            raise ConfigError(
                f"primary_metric must be one of {list(names)} for task={self.task.value}, but "
                f"got primary_metric={primary_metric!r}."
            )
        self.primary_metric = primary
        self.window_rows = window_rows
        self.max_requests = max_requests
        self.max_rows = max_rows
        self.max_labels_per_call = max_labels_per_call
        self._index = {c: i for i, c in enumerate(self.classes)}
        self._lock = threading.Lock()
        self._requests: OrderedDict[str, _Request] = OrderedDict()
        self._rows = 0  # predicted rows in `_requests`
        self._seq = 0  # requests remembered so far
        # Per version: (true, predicted, scores, request seq) of its newest labelled rows.
        self._windows: dict[str, deque[tuple[Any, Any, list[float] | None, int]]] = {}

    @classmethod
    def from_contract(cls, contract: Contract, **kwargs: Any) -> LiveQuality:
        """A `LiveQuality` for the task and classes of a bundle's contract; `kwargs` as above."""
        return cls(contract.task, contract.classes, **kwargs)

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The metrics of this task, in the order `metrics` lists them."""
        return _CLASSIFICATION_METRICS if self.task.is_classification else _REGRESSION_METRICS

    # -- predictions --------------------------------------------------------------------------
    def remember(self, request_id: str, version: str, predictions: Sequence[Any]) -> None:
        """Keep one answered request's predictions for the join with later feedback.

        Remembering an id again replaces the earlier request (and forgets its labelled rows).

        Args:
            request_id: The id the client will quote in its feedback.
            version: The model version that answered.
            predictions: One prediction per row (see `prediction_parts`).

        Raises:
            ValueError: A predicted class is not one of `classes`, or a regression prediction
                is not a number (the model's output does not fit this task).
        """
        predicted: list[Any] = []
        scores: list[list[float] | None] = []
        for pred in predictions:
            value, probs = prediction_parts(pred)
            predicted.append(self._predicted(value))
            scores.append(probs)
        with self._lock:
            self._seq += 1
            entry = _Request(str(version), predicted, scores, self._seq)
            old = self._requests.pop(request_id, None)
            if old is not None:
                self._rows -= len(old.predicted)
            self._requests[request_id] = entry
            self._rows += len(predicted)
            while len(self._requests) > 1 and (
                len(self._requests) > self.max_requests or self._rows > self.max_rows
            ):
                _, gone = self._requests.popitem(last=False)
                self._rows -= len(gone.predicted)

    def _predicted(self, value: Any) -> Any:
        if self.task.is_classification:
            if isinstance(value, np.generic):  # a numpy class value from a model's output
                value = value.item()
            i = self._class_of(value)
            if i is None:
                raise ValueError(
                    f"the predicted class {value!r} is not one of the classes {self.classes}; "
                    "the model and this LiveQuality were made for different contracts."
                )
            return i
        number = finite_number(value)
        if number is None:
            raise ValueError(f"a regression prediction must be a finite number, got {value!r}.")
        return number

    def _class_of(self, value: Any) -> int | None:
        """The index of class `value`; None unless it equals a class of the same type.

        The type check keeps 1.0 and True from matching the class 1 (they hash alike).
        """
        i = self._index.get(value) if type(value) in (int, str) else None
        return i if i is not None and type(self.classes[i]) is type(value) else None

    def mark(self) -> int:
        """A point in the stream of remembered requests: `metrics(since=mark)` and
        `compare(since=mark)` count only labels of requests remembered after it (the canary
        judge marks the canary's start, so both versions are judged on the same window)."""
        with self._lock:
            return self._seq

    @property
    def remembered_requests(self) -> int:
        """Requests currently remembered for the join."""
        with self._lock:
            return len(self._requests)

    # -- feedback -----------------------------------------------------------------------------
    def add_feedback(self, labels: Any) -> FeedbackResult:
        """Join ground-truth labels to remembered predictions; all or none are accepted.

        Args:
            labels: A list of `{"request_id": str, "row": int, "label": value}`: `row` is the
                row's index in the request, `label` one of `classes` (integer or string, as the
                contract has them) or, for regression, a finite number.

        Returns:
            How many labels were accepted, per version.

        Raises:
            RequestError: 413 `too_many_labels` (more than `max_labels_per_call`), 422
                `invalid_feedback` (not a non-empty list of such objects), `unknown_request_id`
                (never remembered, or forgotten as too old), `row_out_of_range`, `bad_label`
                (not a class, or not a finite number), or 409 `duplicate_feedback` (the row
                already has a label, earlier or in this call). Nothing is accepted then.
        """
        if type(labels) is not list:
            raise RequestError(
                422,
                "invalid_feedback",
                f'"labels" must be an array of {{"request_id", "row", "label"}} objects, but got '
                f"{_describe(labels)}.",
                "labels",
            )
        if not labels:
            raise RequestError(
                422, "invalid_feedback", '"labels" is empty; send at least one label.', "labels"
            )
        if len(labels) > self.max_labels_per_call:
            raise RequestError(
                413,
                "too_many_labels",
                f'"labels" has {len(labels)} labels, over the limit of '
                f"{self.max_labels_per_call}. Split them over several requests.",
                "labels",
            )
        with self._lock:  # checks and updates under one lock: concurrent duplicates are caught
            accepted: list[tuple[str, int, Any, _Request]] = []
            seen: dict[tuple[str, int], int] = {}
            for i, item in enumerate(labels):
                rid, row, truth, entry = self._check(i, item)
                first = seen.setdefault((rid, row), i)
                if first != i:
                    raise RequestError(
                        409,
                        "duplicate_feedback",
                        f"labels[{i}] labels row {row} of request {_quote_id(rid)} again "
                        f"(labels[{first}] already does); send one label per row.",
                        f"labels[{i}]",
                    )
                accepted.append((rid, row, truth, entry))
            by_version: dict[str, int] = {}
            for _, row, truth, entry in accepted:
                entry.labelled.add(row)
                window = self._windows.get(entry.version)
                if window is None:
                    window = self._windows[entry.version] = deque(maxlen=self.window_rows)
                window.append((truth, entry.predicted[row], entry.scores[row], entry.seq))
                by_version[entry.version] = by_version.get(entry.version, 0) + 1
        return FeedbackResult(len(accepted), by_version)

    def _check(self, i: int, item: Any) -> tuple[str, int, Any, _Request]:
        """One label checked against the index and the task: (request id, row, truth, request)."""
        where = f"labels[{i}]"
        if type(item) is not dict:
            raise RequestError(
                422,
                "invalid_feedback",
                f'{where} must be an object {{"request_id", "row", "label"}}, but got '
                f"{_describe(item)}.",
                where,
            )
        missing = sorted(_LABEL_KEYS - item.keys())
        extra = sorted(str(k) for k in item.keys() - _LABEL_KEYS)
        if missing or extra:
            what = f"lacks {missing}" if missing else f"has unknown key `{_clip(extra[0])}`"
            raise RequestError(
                422,
                "invalid_feedback",
                f'{where} {what}; each label is {{"request_id": str, "row": int, "label": ...}}.',
                where,
            )
        rid, row, label = item["request_id"], item["row"], item["label"]
        if type(rid) is not str:
            raise RequestError(
                422,
                "invalid_feedback",
                f"{where}.request_id must be a string (the id of the predict request), but got "
                f"{_describe(rid)}.",
                f"{where}.request_id",
            )
        entry = self._requests.get(rid)
        if entry is None:
            raise RequestError(
                422,
                "unknown_request_id",
                f"{where}.request_id {_quote_id(rid)} is unknown: no prediction with this id is "
                f"remembered (it was never made, or is older than the newest {self.max_requests} "
                f"requests / {self.max_rows} rows kept). Send feedback with the id the prediction "
                "returned, before it ages out.",
                f"{where}.request_id",
            )
        n = len(entry.predicted)
        if type(row) is not int or not 0 <= row < n:
            shown = _describe(row) if type(row) is not int else f"row={row}"
            raise RequestError(
                422,
                "row_out_of_range",
                f"{where}.row must be an integer in [0, {n - 1}] (request {_quote_id(rid)} had "
                f"{n} row{'s' if n != 1 else ''}), but got {shown}.",
                f"{where}.row",
            )
        if row in entry.labelled:
            raise RequestError(
                409,
                "duplicate_feedback",
                f"{where}: row {row} of request {_quote_id(rid)} already has a label; each row "
                "takes one label.",
                f"{where}.row",
            )
        return rid, row, self._truth(where, label), entry

    def _truth(self, where: str, label: Any) -> Any:
        if self.task.is_classification:
            i = self._class_of(label)
            if i is None:
                shown = self.classes[:_MAX_LISTED_CLASSES]
                more = "" if len(self.classes) <= _MAX_LISTED_CLASSES else ", ..."
                kind = "integers" if type(self.classes[0]) is int else "strings"
                raise RequestError(
                    422,
                    "bad_label",
                    f"{where}.label must be one of the classes {shown}{more} ({kind}, as in the "
                    f"contract), but got {_describe(label)}.",
                    f"{where}.label",
                )
            return i
        number = finite_number(label)
        if number is None:
            raise RequestError(
                422,
                "bad_label",
                f"{where}.label must be a finite number (the regression target), but got "
                f"{_describe(label)}.",
                f"{where}.label",
            )
        return number

    # -- quality ------------------------------------------------------------------------------
    @property
    def versions(self) -> list[str]:
        """Versions with at least one labelled row, sorted."""
        with self._lock:
            return sorted(self._windows)

    def metrics(self, version: str, *, since: int = 0) -> dict[str, Any]:
        """Live metrics of `version` over its window.

        Args:
            version: The served version.
            since: Only labels of requests remembered after this `mark()` (0: the whole window).

        Returns:
            `{"n_labels": rows in the window, metric: value | None, ...}` with `accuracy`,
            `f1`, `roc_auc` (classification) or `mae`, `rmse` (regression); None where the
            window is empty (and `roc_auc` where it is undefined, see the module docstring).
        """
        with self._lock:
            window = [w for w in self._windows.get(version, ()) if w[3] > since]
        out: dict[str, Any] = {"n_labels": len(window)}
        out.update(dict.fromkeys(self.metric_names))
        if not window:
            return out
        truth = [w[0] for w in window]
        predicted = [w[1] for w in window]
        if not self.task.is_classification:
            y, p = np.asarray(truth, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
            out["mae"] = float(skm.mean_absolute_error(y, p))
            out["rmse"] = float(skm.root_mean_squared_error(y, p))
            return out
        y, p = np.asarray(truth, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
        labels = list(range(len(self.classes)))
        binary = self.task is Task.BINARY
        out["accuracy"] = float(skm.accuracy_score(y, p))
        out["f1"] = float(
            skm.f1_score(
                y,
                p,
                labels=labels,
                pos_label=1,
                average="binary" if binary else "macro",
                zero_division=0,
            )
        )
        out["roc_auc"] = self._roc_auc(y, [w[2] for w in window])
        return out

    def _roc_auc(self, y: np.ndarray, scores: list[list[float] | None]) -> float | None:
        k = len(self.classes)
        if any(s is None or len(s) != k for s in scores):
            return None
        present = np.unique(y)
        if present.size < 2:
            return None  # undefined with a single class among the labels
        proba = np.asarray(scores, dtype=np.float64)
        if k == 2:  # binary (or a two-class multiclass): the AUC of class 1's probability
            return float(skm.roc_auc_score(y, proba[:, 1]))
        # One-vs-rest over the classes present, as the bundle's test metrics: an absent class
        # has no positives, so its AUC is undefined.
        onehot = label_binarize(y, classes=list(range(k)))
        return float(skm.roc_auc_score(onehot[:, present], proba[:, present], average="macro"))

    def status(
        self,
        baseline: Mapping[str, float | None],
        tolerance: float,
        min_labels: int,
        *,
        versions: Sequence[str] | None = None,
        relative: bool = False,
    ) -> dict[str, dict[str, Any]]:
        """Each version's live metrics against the bundle's test metrics, with alerts.

        A metric alerts when it is worse than its baseline by more than `tolerance`, in its
        own direction (`HIGHER_IS_BETTER`: accuracy, f1 and roc_auc drop, mae and rmse rise),
        and only once the version has `min_labels` labelled rows in its window. A metric that
        is undefined live, or missing from `baseline`, never alerts.

        Args:
            baseline: The bundle's test metrics, e.g. `{"accuracy": 0.91, "f1": 0.88, ...}`
                (other keys are ignored).
            tolerance: How much worse than the baseline a metric may get, >= 0: absolute, or a
                fraction of the baseline with `relative=True`.
            min_labels: Labelled rows a version needs before it can alert, >= 1.
            versions: The versions `baseline` belongs to; default every version with labels.
            relative: Read `tolerance` as a fraction of `|baseline|`.

        Returns:
            `{version: {"n_labels", "min_labels", "alert": any metric alerting, "alerts":
            [names], "metrics": {name: {"value", "baseline", "drop", "alert"}}}}`. `drop` is how
            much worse than the baseline the value is (negative when better), None when either
            is missing.

        Raises:
            ConfigError: A negative or non-finite `tolerance`, or `min_labels` < 1.
        """
        if not (isinstance(tolerance, int | float) and math.isfinite(tolerance) and tolerance >= 0):
            raise ConfigError(
                f"tolerance must be a finite number >= 0, but got tolerance={tolerance!r}."
            )
        if type(min_labels) is not int or min_labels < 1:
            raise ConfigError(
                f"min_labels must be a positive integer, but got min_labels={min_labels!r}."
            )
        out: dict[str, dict[str, Any]] = {}
        for version in self.versions if versions is None else list(versions):
            live = self.metrics(version)
            n = int(live["n_labels"])
            per_metric: dict[str, dict[str, Any]] = {}
            for name in self.metric_names:
                value = live[name]
                base = finite_number(baseline[name]) if name in baseline else None
                drop = None
                if value is not None and base is not None:
                    drop = base - value if HIGHER_IS_BETTER[name] else value - base
                allowed = tolerance * abs(base) if relative and base is not None else tolerance
                alert = drop is not None and n >= min_labels and drop > allowed
                per_metric[name] = {"value": value, "baseline": base, "drop": drop, "alert": alert}
            alerts = [name for name, m in per_metric.items() if m["alert"]]
            out[version] = {
                "n_labels": n,
                "min_labels": min_labels,
                "alert": bool(alerts),
                "alerts": alerts,
                "metrics": per_metric,
            }
        return out

    def compare(
        self, candidate: str, production: str, *, min_labels: int = 1, since: int = 0
    ) -> dict[str, Any]:
        """The canary judge's view: both versions' live metrics and which is better.

        Args:
            candidate: The canary's version.
            production: The stable version.
            min_labels: Labelled rows each version needs before a winner is named.
            since: Only labels of requests remembered after this `mark()`: the same window for
                both versions (the canary's lifetime).

        Returns:
            `{"primary": metric, "higher_is_better": bool, "min_labels": n,
            "candidate": {"version", "n_labels", "metrics"}, "production": {...},
            "difference": candidate - production on the primary metric (None if either is
            missing), "better": "candidate" | "production" | "tie" | None}`; `better` is None
            while either version has fewer than `min_labels` labels or no primary metric.

        Raises:
            ConfigError: `min_labels` < 1.
        """
        if type(min_labels) is not int or min_labels < 1:
            raise ConfigError(
                f"min_labels must be a positive integer, but got min_labels={min_labels!r}."
            )
        primary = self.primary_metric
        sides: dict[str, dict[str, Any]] = {}
        for role, version in (("candidate", candidate), ("production", production)):
            live = self.metrics(version, since=since)
            n = int(live.pop("n_labels"))
            sides[role] = {"version": version, "n_labels": n, "metrics": live}
        c, p = sides["candidate"], sides["production"]
        cv, pv = c["metrics"][primary], p["metrics"][primary]
        difference = None if cv is None or pv is None else cv - pv
        better: str | None = None
        if difference is not None and min(c["n_labels"], p["n_labels"]) >= min_labels:
            if difference == 0:
                better = "tie"
            else:
                higher = HIGHER_IS_BETTER[primary]
                better = "candidate" if (difference > 0) == higher else "production"
        return {
            "primary": primary,
            "higher_is_better": HIGHER_IS_BETTER[primary],
            "min_labels": min_labels,
            "since": since,
            "candidate": c,
            "production": p,
            "difference": difference,
            "better": better,
        }


def _quote_id(rid: str) -> str:
    return repr(_clip(rid))
