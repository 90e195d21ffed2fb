"""Request and prediction metrics: per-replica deltas and the aggregated Prometheus page.

Each replica records what it answered in a `MetricsDelta` and flushes its `drain()` (a plain
JSON-able dict) to the state deployment about every 0.5 s, which folds it into `ServeMetrics`:
the `/metrics` page and the `/v1/models` totals. Pure Python: no Ray, no torch.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from ray_ml.serve._canary import MAX_LATENCY_SAMPLES

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "MetricsDelta", "ServeMetrics"]

#: Content type of `ServeMetrics.render()` (Prometheus text format 0.0.4).
CONTENT_TYPE = CONTENT_TYPE_LATEST
#: Upper bounds (seconds) of the latency histogram buckets; `+Inf` is implied.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_N_BUCKETS = len(LATENCY_BUCKETS) + 1  # with +Inf


def _label(value: Any) -> str:
    """A class value as a label, written the way `reference_stats` writes categories."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return str(value)


class MetricsDelta:
    """Per-replica request and prediction counts since the last `drain()` (replica side).

    Besides the aggregated counters it keeps each request's outcome (`status < 500`) and latency
    per role for the `CanaryJudge` (at most `max_samples` per role and flush; 4xx answers are
    left out, as a client's bad request says nothing about the model); see
    `CanaryJudge.record_delta`.

    Args:
        max_samples: Most per-request samples kept per role between two drains.
    """

    def __init__(self, max_samples: int = MAX_LATENCY_SAMPLES) -> None:
        self._lock = threading.Lock()
        self._max_samples = int(max_samples)
        self._clear()

    def _clear(self) -> None:
        self._requests: dict[tuple[str, str, int], int] = {}
        self._latency: dict[tuple[str, str], list[Any]] = {}  # [bucket counts, sum]
        self._predictions: dict[tuple[str, str], int] = {}
        self._samples: dict[str, tuple[list[bool], list[float], list[str]]] = {}

    def record_request(self, version: str, role: str, status: int, latency_s: float) -> None:
        """Count one answered request: its model version, role, HTTP status and latency."""
        latency_s = float(latency_s)
        key = (str(version), str(role))
        # Prometheus buckets are `le` (value <= bound): bisect_left finds the first bound >= x.
        bucket = bisect.bisect_left(LATENCY_BUCKETS, latency_s)
        with self._lock:
            rkey = (key[0], key[1], int(status))
            self._requests[rkey] = self._requests.get(rkey, 0) + 1
            hist = self._latency.get(key)
            if hist is None:
                hist = self._latency[key] = [[0] * _N_BUCKETS, 0.0]
            hist[0][bucket] += 1
            hist[1] += latency_s
            # A client's bad request (4xx) says nothing about the model: no canary sample.
            if not 400 <= int(status) < 500:
                oks, lats, versions = self._samples.setdefault(key[1], ([], [], []))
                if len(oks) < self._max_samples:
                    oks.append(int(status) < 500)
                    lats.append(latency_s)
                    versions.append(str(version))

    def record_predictions(self, version: str, predictions: Sequence[Any]) -> None:
        """Count predicted classes (as strings); pass an empty list for regression."""
        if not predictions:
            return
        with self._lock:
            for p in predictions:
                key = (str(version), _label(p))
                self._predictions[key] = self._predictions.get(key, 0) + 1

    @property
    def empty(self) -> bool:
        """Whether nothing was recorded since the last drain (the flush can be skipped)."""
        return not (self._requests or self._predictions)

    def drain(self) -> dict[str, Any]:
        """Everything recorded since the last drain, as a JSON-able dict, and start afresh.

        Returns:
            `{"requests": [{"version", "role", "code", "count"}], "latency": [{"version", "role",
            "buckets": [count per LATENCY_BUCKETS bound, then +Inf; not cumulative], "sum",
            "count"}], "predictions": [{"version", "class", "count"}], "samples": {role: {"ok":
            [bool], "latency_s": [float]}}}`.
        """
        with self._lock:
            requests, latency = self._requests, self._latency
            predictions, samples = self._predictions, self._samples
            self._clear()
        return {
            "requests": [
                {"version": v, "role": r, "code": c, "count": n}
                for (v, r, c), n in requests.items()
            ],
            "latency": [
                {"version": v, "role": r, "buckets": b, "sum": s, "count": sum(b)}
                for (v, r), (b, s) in latency.items()
            ],
            "predictions": [
                {"version": v, "class": c, "count": n} for (v, c), n in predictions.items()
            ],
            "samples": {
                role: {"ok": oks, "latency_s": lats, "version": vs}
                for role, (oks, lats, vs) in samples.items()
            },
        }


class ServeMetrics:
    """The service's aggregated metrics and their Prometheus page (state side).

    Series (all counters since the state holder started):

    * `ray_ml_serve_requests_total{version, role, code}`
    * `ray_ml_serve_request_errors_total{version, role}`: requests answered with status >= 500
    * `ray_ml_serve_request_latency_seconds{version, role}`: histogram, `LATENCY_BUCKETS`
    * `ray_ml_serve_predictions_total{version, class}`
    * `ray_ml_serve_drift_psi{feature}` and `ray_ml_serve_drift_alert{feature}` (0/1), gauges
      from the latest `set_drift` report; a feature with too few rows has no PSI series.
    * `ray_ml_serve_feedback_labels_total{version}`: feedback labels joined to predictions
    * `ray_ml_serve_feedback_rejected_total{code}`: feedback requests answered with a 4xx
    * `ray_ml_serve_live_quality{version, metric}` and `ray_ml_serve_live_quality_alert{version}`
      (0/1), gauges from the latest `set_quality` status (`LiveQuality.status`).
    * `ray_ml_serve_replicas`, `ray_ml_serve_cost_usd_per_hour`, `ray_ml_serve_cost_usd_total`
      (a counter: dollars since the app started) and `ray_ml_serve_cost_usd_per_1k_predictions`,
      from the latest `set_serving_cost` (`ServingCost.snapshot`).
    * `ray_ml_serve_model_cost_usd{version, part}`: the dollars that made each served version
      (`part` = `sweep`, every trial of its sweep billed, or `winner_training`, the winner's
      full-fidelity retrain), from the latest `set_model_costs`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = {}
        self._latency: dict[tuple[str, str], tuple[list[int], float]] = {}
        self._predictions: dict[tuple[str, str], int] = {}
        self._drift: dict[str, tuple[float | None, bool]] = {}
        self._feedback: dict[str, int] = {}
        self._feedback_rejected: dict[str, int] = {}
        self._quality: dict[str, tuple[dict[str, float], bool]] = {}
        self._cost: dict[str, Any] = {}
        self._model_costs: dict[str, dict[str, float]] = {}
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_ServeCollector(self))

    def merge(self, delta: Mapping[str, Any]) -> None:
        """Add one replica's `MetricsDelta.drain()` result.

        Raises:
            ValueError: The delta is malformed (nothing is added then).
        """
        try:
            requests = [
                ((str(d["version"]), str(d["role"]), str(int(d["code"]))), int(d["count"]))
                for d in delta.get("requests", ())
            ]
            latency = [
                (
                    (str(d["version"]), str(d["role"])),
                    [int(x) for x in d["buckets"]],
                    float(d["sum"]),
                )
                for d in delta.get("latency", ())
            ]
            predictions = [
                ((str(d["version"]), str(d["class"])), int(d["count"]))
                for d in delta.get("predictions", ())
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"ServeMetrics.merge: malformed delta ({type(exc).__name__}: {exc}); pass the "
                "result of MetricsDelta.drain()."
            ) from None
        for key, buckets, _ in latency:
            if len(buckets) != _N_BUCKETS:
                raise ValueError(
                    f"ServeMetrics.merge: latency of {key} has {len(buckets)} buckets, expected "
                    f"{_N_BUCKETS}; replica and state holder run different ray_ml versions."
                )
        with self._lock:
            for rkey, n in requests:
                self._requests[rkey] = self._requests.get(rkey, 0) + n
            for lkey, buckets, total in latency:
                old = self._latency.get(lkey)
                if old is not None:
                    buckets = [a + b for a, b in zip(old[0], buckets, strict=True)]
                    total += old[1]
                self._latency[lkey] = (buckets, total)
            for pkey, n in predictions:
                self._predictions[pkey] = self._predictions.get(pkey, 0) + n

    def set_drift(self, report: Mapping[str, Any]) -> None:
        """Replace the drift gauges with those of a `DriftWindow.report()`."""
        drift = {
            str(name): (f.get("psi"), bool(f.get("drifted")))
            for name, f in report.get("features", {}).items()
        }
        with self._lock:
            self._drift = drift

    def record_feedback(self, by_version: Mapping[str, int]) -> None:
        """Count feedback labels accepted, per version."""
        with self._lock:
            for version, n in by_version.items():
                self._feedback[str(version)] = self._feedback.get(str(version), 0) + int(n)

    def record_feedback_rejected(self, code: int, n: int = 1) -> None:
        """Count feedback requests answered with status `code` (a 4xx)."""
        with self._lock:
            self._feedback_rejected[str(code)] = self._feedback_rejected.get(str(code), 0) + n

    def set_quality(self, status: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the live-quality gauges with those of a `LiveQuality.status()` result."""
        quality = {
            str(version): (
                {
                    name: float(m["value"])
                    for name, m in entry.get("metrics", {}).items()
                    if m.get("value") is not None
                },
                bool(entry.get("alert")),
            )
            for version, entry in status.items()
        }
        with self._lock:
            self._quality = quality

    def set_serving_cost(self, snapshot: Mapping[str, Any]) -> None:
        """Replace the serving-cost gauges with a `ServingCost.snapshot()`."""
        with self._lock:
            self._cost = dict(snapshot)

    def set_model_costs(self, costs: Mapping[str, Mapping[str, float]]) -> None:
        """Replace the made-for dollars: version -> part (`sweep`, `winner_training`) -> USD."""
        with self._lock:
            self._model_costs = {
                str(v): {str(k): float(x) for k, x in parts.items()} for v, parts in costs.items()
            }

    def render(self) -> bytes:
        """The Prometheus text exposition of all series (serve with `CONTENT_TYPE`)."""
        return generate_latest(self._registry)

    def snapshot(self) -> dict[str, Any]:
        """JSON-able totals: `{"requests", "errors", "versions": {version: {"requests",
        "errors", "codes": {code: n}, "roles": {role: {"requests", "errors",
        "mean_latency_s"}}, "predictions": {class: n}}}}`."""
        with self._lock:
            versions: dict[str, dict[str, Any]] = {}

            def version(v: str) -> dict[str, Any]:
                return versions.setdefault(
                    v, {"requests": 0, "errors": 0, "codes": {}, "roles": {}, "predictions": {}}
                )

            for (v, role, code), n in sorted(self._requests.items()):
                entry = version(v)
                err = n if int(code) >= 500 else 0
                entry["requests"] += n
                entry["errors"] += err
                entry["codes"][code] = entry["codes"].get(code, 0) + n
                r = entry["roles"].setdefault(
                    role, {"requests": 0, "errors": 0, "mean_latency_s": None}
                )
                r["requests"] += n
                r["errors"] += err
            for (v, role), (buckets, total) in sorted(self._latency.items()):
                count = sum(buckets)
                r = version(v)["roles"].setdefault(
                    role, {"requests": 0, "errors": 0, "mean_latency_s": None}
                )
                r["mean_latency_s"] = total / count if count else None
            for (v, cls), n in sorted(self._predictions.items()):
                version(v)["predictions"][cls] = n
            feedback = {
                "labels": dict(sorted(self._feedback.items())),
                "rejected": dict(sorted(self._feedback_rejected.items())),
            }
        return {
            "requests": sum(e["requests"] for e in versions.values()),
            "errors": sum(e["errors"] for e in versions.values()),
            "versions": versions,
            "feedback": feedback,
        }

    def _families(self) -> Iterator[Metric]:
        with self._lock:
            requests = sorted(self._requests.items())
            latency = sorted(self._latency.items())
            predictions = sorted(self._predictions.items())
            drift = sorted(self._drift.items())
            feedback = sorted(self._feedback.items())
            rejected = sorted(self._feedback_rejected.items())
            quality = sorted(self._quality.items())
            cost = dict(self._cost)
            made = sorted(self._model_costs.items())
        req = CounterMetricFamily(
            "ray_ml_serve_requests", "Requests answered.", labels=["version", "role", "code"]
        )
        errors: dict[tuple[str, str], int] = {}
        for (v, role, code), n in requests:
            req.add_metric([v, role, code], n)
            errors[(v, role)] = errors.get((v, role), 0) + (n if int(code) >= 500 else 0)
        yield req
        err = CounterMetricFamily(
            "ray_ml_serve_request_errors",
            "Requests answered with a status >= 500.",
            labels=["version", "role"],
        )
        for (v, role), n in sorted(errors.items()):
            err.add_metric([v, role], n)
        yield err
        hist = HistogramMetricFamily(
            "ray_ml_serve_request_latency_seconds",
            "Request latency in seconds, as measured by the replica.",
            labels=["version", "role"],
        )
        bounds = [floatToGoString(b) for b in (*LATENCY_BUCKETS, math.inf)]
        for (v, role), (buckets, total) in latency:
            cumulative = np.cumsum(buckets).tolist()
            hist.add_metric([v, role], list(zip(bounds, cumulative, strict=True)), total)
        yield hist
        pred = CounterMetricFamily(
            "ray_ml_serve_predictions", "Predicted classes.", labels=["version", "class"]
        )
        for (v, cls), n in predictions:
            pred.add_metric([v, cls], n)
        yield pred
        psi = GaugeMetricFamily(
            "ray_ml_serve_drift_psi",
            "Population stability index of a feature over the drift window.",
            labels=["feature"],
        )
        alert = GaugeMetricFamily(
            "ray_ml_serve_drift_alert",
            "1 while a feature is flagged as drifted.",
            labels=["feature"],
        )
        for name, (value, drifted) in drift:
            if value is not None:
                psi.add_metric([name], float(value))
            alert.add_metric([name], 1.0 if drifted else 0.0)
        yield psi
        yield alert
        yield _counter(
            "ray_ml_serve_feedback_labels",
            "Feedback labels joined to logged predictions.",
            "version",
            feedback,
        )
        yield _counter(
            "ray_ml_serve_feedback_rejected",
            "Feedback requests answered with a 4xx.",
            "code",
            rejected,
        )
        live = GaugeMetricFamily(
            "ray_ml_serve_live_quality",
            "A metric of the version's predictions against feedback labels, over its window.",
            labels=["version", "metric"],
        )
        live_alert = GaugeMetricFamily(
            "ray_ml_serve_live_quality_alert",
            "1 while the version's live quality is below its test metrics beyond the tolerance.",
            labels=["version"],
        )
        for v, (values, flagged) in quality:
            for name, value in sorted(values.items()):
                live.add_metric([v, name], value)
            live_alert.add_metric([v], 1.0 if flagged else 0.0)
        yield live
        yield live_alert
        family = GaugeMetricFamily(
            "ray_ml_serve_model_cost_usd",
            "Dollars that made a served version, from its registry lineage: part=sweep (every "
            "trial of its sweep, billed) or winner_training (the winner's full-fidelity retrain).",
            labels=["version", "part"],
        )
        for v, parts in made:
            for part, value in sorted(parts.items()):
                family.add_metric([v, part], value)
        yield family
        if cost:
            for name, doc, key in (
                ("ray_ml_serve_replicas", "Replicas answering now.", "replicas"),
                (
                    "ray_ml_serve_cost_usd_per_hour",
                    "What the live replicas cost per hour at the catalog's prices.",
                    "usd_per_hour",
                ),
                (
                    "ray_ml_serve_cost_usd_per_1k_predictions",
                    "Serving dollars per 1,000 predicted rows since the app started.",
                    "usd_per_1k_predictions",
                ),
            ):
                gauge = GaugeMetricFamily(name, doc)
                if cost.get(key) is not None:
                    gauge.add_metric([], float(cost[key]))
                yield gauge
            spent = CounterMetricFamily(
                "ray_ml_serve_cost_usd", "Serving dollars since the app started."
            )
            spent.add_metric([], float(cost.get("usd_total") or 0.0))
            yield spent


def _counter(name: str, doc: str, label: str, counts: list[tuple[str, int]]) -> Metric:
    """A counter family with one label, a sample per `(label value, count)`."""
    family = CounterMetricFamily(name, doc, labels=[label])
    for value, n in counts:
        family.add_metric([value], n)
    return family


class _ServeCollector(Collector):
    def __init__(self, metrics: ServeMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics._families()
