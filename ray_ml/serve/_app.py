"""The Ray Serve application: one HTTP ingress deployment that predicts, one state deployment.

`ModelServer` (FastAPI through `serve.ingress`, N replicas or autoscaled) does the whole request:
bearer-token auth, limits and validation from the bundle's contract (`RequestValidator`: a 4xx
naming the field for any bad input), the traffic split between the stable model and a canary,
`@serve.batch` over concurrent requests, and the bundle's own `Predictor` (so preprocessing is
training's). Model inference lives in the ingress replica rather than in a second deployment:
each hop through Serve costs milliseconds on small machines, and the bundles served here are
small. Both the stable and the canary model are loaded in every replica.

`ServeState` (one replica) holds what must be shared by all replicas: the routing table (which
registry version is stable, which is the canary and its percent), the canary judge, the drift
window and the aggregated Prometheus metrics. Replicas flush small JSON deltas to it every
`FLUSH_S` seconds (with the predictions they answered, for the feedback join) and get the
routing table back; the state polls the registry aliases every
`serve.poll_s`, so `ray-ml registry promote|rollback` changes what is served without a redeploy
(replicas load the new bundle next to the old one and switch between two requests: no request
is lost). When the canary judge decides, the state moves the registry aliases itself (promote:
`production` -> candidate version; rollback: `candidate` deleted) with the reason in the audit
log and in the replica's log.

Both deployments receive the typed `ServeSpec` and the model loader from `build_app` (see
`ray_ml.serve._server`). The token never leaves the driver: replicas get its SHA-256 and compare
digests in constant time.

The loop after serving: every answer carries a `request_id`; the replica logs the request's rows,
predictions, version and latency to Parquet under `serve.prediction_log` (`PredictionLog`, off the
request path). `POST /v1/feedback` takes ground-truth labels for answered rows
(`{"labels": [{"request_id", "row", "label"}]}`, authenticated like predict); the state joins
them to the predictions (`LiveQuality`: a 4xx naming the label for an unknown request id, a
row out of range, a label of the wrong type, a duplicate or too many labels) and keeps live
quality per version over `serve.feedback_window` labelled rows. A live metric worse than the
bundle's test metric by more than `serve.quality_tolerance` (once `serve.quality_min_labels`
labels are in) raises a quality alert in `/v1/models`, `/metrics` and the log, like drift does.
A request's predictions reach the state with its replica's next flush (every `FLUSH_S`), so the
state waits up to `FEEDBACK_WAIT_S` for a request id it does not know yet before it answers 422:
feedback sent the moment an answer arrives, to any replica, is joined.

The canary judge also compares the canary with the stable version on live feedback, over the
requests answered since the canary started (`LiveQuality.mark`), and rolls back a canary whose
primary metric is worse by more than `serve.canary_max_quality_drop` (`serve.canary_min_labels`
makes it wait for labels). Serving dollars (`ServingCost`: live replicas x one replica's price
from the `cost` catalog) are in `/metrics` and `/v1/models`, and so are the dollars that made
each served version (its sweep and the winner's retrain, from the registry's lineage).
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at runtime.

import asyncio
import hashlib
import hmac
import itertools
import json
import logging
import random
import time
import uuid
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from ray import serve

from ray_ml._json import finite_number
from ray_ml.serve._canary import CanaryJudge
from ray_ml.serve._cost import ServingCost
from ray_ml.serve._drift import DriftBuffer, DriftWindow
from ray_ml.serve._loader import ModelLoader, Slot
from ray_ml.serve._metrics import CONTENT_TYPE, MetricsDelta, ServeMetrics
from ray_ml.serve._predlog import PredictionLog
from ray_ml.serve._quality import LiveQuality, row_predictions
from ray_ml.serve._routing import ServeSpec, resolve_routing, same_routes
from ray_ml.serve._validate import RequestError

__all__ = ["ModelServer", "ServeState"]

logger = logging.getLogger("ray.serve")
FLUSH_S = 0.5  # replica -> state flush period
FEEDBACK_WAIT_S = 3 * FLUSH_S  # how long feedback waits for its requests' predictions to arrive
MAX_UNFLUSHED = 100_000  # answered requests a replica keeps for the state while flushes fail


# -- the shared state -----------------------------------------------------------------------------
@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000)
class ServeState:
    """Routing table, canary judge, drift window and metrics shared by every replica."""

    async def __init__(  # type: ignore[misc]
        self, spec: ServeSpec, routing: dict[str, Any], loader: ModelLoader
    ) -> None:
        self.spec = spec
        self.routing = routing
        self._loader = loader
        self.metrics = ServeMetrics()
        self.decisions: list[dict[str, Any]] = []
        self.alerts: list[dict[str, Any]] = []
        s = spec.config
        self.judge = CanaryJudge(
            s.canary_min_requests,
            s.canary_max_error_rate,
            s.canary_max_latency_ratio,
            min_labels=s.canary_min_labels,
            max_quality_drop=s.canary_max_quality_drop,
        )
        self._canary_mark = 0  # LiveQuality.mark() when the canary started: its window
        self.serving = ServingCost(spec.usd_per_replica_hour, live_s=4 * FLUSH_S)
        self._reference: dict[str, Any] = {}
        self._deciding = asyncio.Lock()
        self.drift = self._new_drift_window()
        self.quality: LiveQuality | None = None  # made on the first served predictions
        self._baselines: dict[str, dict[str, Any]] = {}  # version -> its bundle's test metrics
        self._alerting: set[str] = set()  # versions whose live quality is alerting now
        self._made: dict[str, dict[str, float]] = {}  # version -> the dollars that made it
        self.quality_alerts: list[dict[str, Any]] = []
        self._poller = asyncio.get_running_loop().create_task(self._poll_registry())

    def _new_drift_window(self) -> DriftWindow:
        self._reference = self._loader.reference(self.spec, self.routing["stable"]["ref"])
        s = self.spec.config
        return DriftWindow(self._reference, s.drift_window, s.drift_psi_threshold)

    async def _poll_registry(self) -> None:
        if self.spec.bundle is not None:
            return
        while True:
            await asyncio.sleep(self.spec.config.poll_s)
            try:
                now = await asyncio.to_thread(resolve_routing, self.spec)
            except Exception as exc:  # a registry hiccup must not stop serving
                logger.warning("ray_ml serve: cannot read the registry (%s); keeping routes", exc)
                continue
            if not same_routes(now, self.routing):
                self._set_routing(now, "registry aliases changed")

    def _set_routing(self, new: dict[str, Any], why: str) -> None:
        old = self.routing
        new = {**new, "revision": old["revision"] + 1}
        self.routing = new
        logger.info(
            "ray_ml serve: routing revision %d (%s): stable %s, canary %s",
            new["revision"],
            why,
            new["stable"]["version"],
            (new["canary"] or {}).get("version"),
        )
        if new["canary"] != old["canary"]:
            self.judge.reset()
            self._canary_mark = self.quality.mark() if self.quality is not None else 0
        if new["stable"] != old["stable"]:
            self.judge.reset()
            self.drift = self._new_drift_window()

    async def flush(self, delta: dict[str, Any]) -> dict[str, Any]:
        """Merge one replica's delta; judge the canary; return the routing table."""
        self.serving.observe(str(delta.get("replica")), int(delta.get("rows") or 0))
        self.metrics.merge(delta["metrics"])
        # 2xx/5xx outcomes per role (4xx say nothing), of the versions routed now only.
        self.judge.record_delta(
            delta["metrics"],
            {
                "stable": self.routing["stable"]["version"],
                "canary": (self.routing["canary"] or {}).get("version"),
            },
        )
        self._remember(delta.get("served") or {})
        for code, n in (delta.get("feedback_rejected") or {}).items():
            self.metrics.record_feedback_rejected(int(code), int(n))
        drift = delta["drift"]
        # Counts binned against another reference (the stable version just changed) are dropped.
        if (
            drift
            and drift.get("rows")
            and drift.get("reference") == self.routing["stable"]["version"]
        ):
            self.drift.add(drift["counts"])
            full = self.drift.report()
            for feature in self.drift.alerts(full):
                report = full["features"][feature]
                alert = {"time": time.time(), "feature": feature, "psi": report["psi"]}
                self.alerts.append(alert)
                logger.warning(
                    "ray_ml serve DRIFT ALERT: feature %r PSI %.3f > %.3f over the last %d rows",
                    feature,
                    report["psi"],
                    self.spec.config.drift_psi_threshold,
                    report["rows"],
                )
        if self.routing["canary"] is not None and not self._deciding.locked():
            # Live quality (sklearn over both windows) only once the judge would look at it.
            quality = self._canary_quality() if self.judge.needs_quality else None
            decision = self.judge.decide(quality)
            if decision is not None:
                async with self._deciding:  # concurrent flushes see the same final decision
                    await asyncio.to_thread(self._apply, decision)
        return self.routing

    def _canary_quality(self) -> dict[str, Any] | None:
        """The canary against the stable version on live feedback since the canary started."""
        canary = self.routing["canary"]
        if self.quality is None or canary is None:
            return None
        s = self.spec.config
        return self.quality.compare(
            canary["version"],
            self.routing["stable"]["version"],
            min_labels=max(1, s.canary_min_labels or s.quality_min_labels),
            since=self._canary_mark,
        )

    def _remember(self, served: dict[str, Any]) -> None:
        """Keep the predictions a replica answered, for the join with feedback."""
        for version, meta in (served.get("meta") or {}).items():
            self._baselines[version] = dict(meta.get("baseline") or {})
            if self.quality is None:
                s = self.spec.config
                self.quality = LiveQuality(
                    meta["task"],
                    meta["classes"],
                    window_rows=s.feedback_window,
                    max_labels_per_call=s.max_feedback_labels,
                )
                self._canary_mark = 0  # a canary that started before: its window is all
        if self.quality is None:
            return
        for request_id, version, predictions in served.get("requests") or ():
            try:
                self.quality.remember(request_id, version, predictions)
            except ValueError as exc:  # a prediction the task cannot score: not joinable
                logger.warning(
                    "ray_ml serve: request %s not kept for feedback: %s", request_id, exc
                )

    async def feedback(self, labels: Any) -> dict[str, Any]:
        """Join feedback labels to served predictions: `{"accepted", "by_version"}`, or
        `{"status", "error"}` (a 4xx and its body) for bad feedback, which is counted."""
        deadline = time.monotonic() + FEEDBACK_WAIT_S
        while True:
            err: RequestError | None = None
            if self.quality is None:
                err = RequestError(
                    422,
                    "unknown_request_id",
                    "no prediction has been answered yet, so no label can be joined; send "
                    "labels for the `request_id`s of answered /v1/predict calls.",
                    "labels",
                )
            else:
                try:
                    result = self.quality.add_feedback(labels)
                    break
                except RequestError as exc:
                    err = exc
            if err.code == "unknown_request_id" and time.monotonic() < deadline:
                await asyncio.sleep(0.1)  # a replica's next flush may bring the request
                continue
            self.metrics.record_feedback_rejected(err.status)
            return {"status": err.status, "error": err.to_json()}
        self.metrics.record_feedback(result.by_version)
        self._check_quality()
        return result.to_json()

    def quality_status(self) -> dict[str, Any]:
        """Each version's live quality against its own bundle's test metrics."""
        if self.quality is None:
            return {}
        s = self.spec.config
        return {
            version: self.quality.status(
                self._baselines.get(version, {}),
                s.quality_tolerance,
                s.quality_min_labels,
                versions=[version],
            )[version]
            for version in self.quality.versions
        }

    def _check_quality(self) -> None:
        for version, entry in self.quality_status().items():
            if entry["alert"] and version not in self._alerting:
                metrics = {m: entry["metrics"][m] for m in entry["alerts"]}
                self.quality_alerts.append(
                    {"time": time.time(), "version": version, "metrics": metrics}
                )
                logger.warning(
                    "ray_ml serve QUALITY ALERT: version %s %s over its last %d labelled rows",
                    version,
                    ", ".join(
                        f"{m} {v['value']:.4g} vs test {v['baseline']:.4g}"
                        for m, v in metrics.items()
                    ),
                    entry["n_labels"],
                )
            if entry["alert"]:
                self._alerting.add(version)
            else:
                self._alerting.discard(version)

    def _apply(self, decision: Any) -> None:
        canary = self.routing["canary"]
        reg = self.spec.registry()
        reason = f"canary judge: {decision.reason}"
        if decision.action == "promote":
            reg.promote(
                self.spec.model,
                int(canary["ref"]),
                to=self.spec.alias or "production",
                reason=reason,
            )
        else:
            reg.delete_alias(self.spec.model, "candidate", reason=reason)
        self.decisions.append(
            {
                "time": time.time(),
                "action": decision.action,
                "version": canary["version"],
                "reason": decision.reason,
                "stats": self.judge.stats(),
                "quality": self._canary_quality(),
            }
        )
        logger.warning(
            "ray_ml serve: canary version %s %s: %s",
            canary["version"],
            "promoted" if decision.action == "promote" else "rolled back",
            decision.reason,
        )
        self._set_routing(resolve_routing(self.spec), f"canary {decision.action}")

    def _model_costs(self) -> dict[str, dict[str, float]]:
        """Routed version -> the dollars that made it (`sweep`, `winner_training`), read once per
        version from its registry record's lineage. A version registered by hand, or served
        from a bundle folder, has none and is left out."""
        if self.spec.bundle is not None:
            return {}
        canary = self.routing["canary"]
        out: dict[str, dict[str, float]] = {}
        for route in (self.routing["stable"], *([canary] if canary else [])):
            version = route["version"]
            if version not in self._made:
                try:
                    record = self.spec.registry().get(self.spec.model, int(route["ref"]))
                except Exception as exc:  # a registry hiccup: try again on the next call
                    logger.warning("ray_ml serve: cannot read v%s's record (%s)", version, exc)
                    continue
                self._made[version] = model_cost(record.lineage)
            if self._made[version]:
                out[version] = self._made[version]
        return out

    async def get_routing(self) -> dict[str, Any]:
        return self.routing

    async def models(self) -> dict[str, Any]:
        stable, canary = self.routing["stable"], self.routing["canary"]
        split = {stable["version"]: 100.0 - (canary["percent"] if canary else 0.0)}
        if canary:
            split[canary["version"]] = canary["percent"]
        return {
            "model": self.spec.model,
            "served_by": (
                {"bundle": self.spec.bundle}
                if self.spec.bundle
                else {"version": self.spec.version}
                if self.spec.version
                else {"alias": self.spec.alias}
            ),
            "stable": stable["version"],
            "canary": canary["version"] if canary else None,
            "traffic_percent": split,
            "routing_revision": self.routing["revision"],
            "canary_stats": self.judge.stats() if canary else None,
            "canary_quality": self._canary_quality(),
            "canary_decisions": self.decisions,
            "requests": self.metrics.snapshot(),
            "live_quality": self.quality_status(),
            "quality_alerts": self.quality_alerts[-100:],
            "serving_cost": self.serving.snapshot(),
            "model_cost_usd": self._model_costs(),
        }

    async def drift_report(self) -> dict[str, Any]:
        return {
            **self.drift.report(),
            "reference_version": self.routing["stable"]["version"],
            "alerts": self.alerts[-100:],
        }

    async def metrics_text(self) -> bytes:
        self.metrics.set_drift(self.drift.report())
        self.metrics.set_quality(self.quality_status())
        self.metrics.set_serving_cost(self.serving.snapshot())
        self.metrics.set_model_costs(self._model_costs())
        return self.metrics.render()


def model_cost(lineage: Any) -> dict[str, float]:
    """`{"sweep": usd, "winner_training": usd}` from a registry record's lineage (`cost_usd`, as
    `run_sweep` registers it); parts that are missing or not finite numbers are left out."""
    cost = lineage.get("cost_usd") if isinstance(lineage, dict) else None
    if not isinstance(cost, dict):
        return {}
    parts = {k: finite_number(cost.get(k)) for k in ("sweep", "winner_training")}
    return {k: v for k, v in parts.items() if v is not None}


def _check_finite(result: dict[str, Any]) -> None:
    """A model must never answer NaN: that is a model fault (5xx), not a prediction."""
    values = result["scores"] if result["scores"] is not None else result["predictions"]
    if values and not np.isfinite(np.asarray(values, dtype=np.float64)).all():
        raise FloatingPointError("the model produced non-finite scores")


# -- the ingress ----------------------------------------------------------------------------------
app = FastAPI(title="ray_ml model server", docs_url=None, redoc_url=None, openapi_url=None)


@app.exception_handler(RequestError)
async def _request_error(_: Request, exc: RequestError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(exc.to_json(), status_code=exc.status, headers=headers)


class _Item(NamedTuple):
    """One request's rows on their way to the model, with the batch limits (`_batch_size`)."""

    slot: Slot
    table: pa.Table
    max_requests: int  # serve.max_batch_size
    max_rows: int  # serve.max_batch_rows


def _batch_size(items: list[_Item]) -> int:
    """Serve's measure of a batch, in requests: its requests, or its rows counted in units of
    `max_rows / max_requests` rows, whichever is more.

    A batch is sent once it reaches `max_requests` (so once its rows are within one unit of
    `max_rows`), and a request that would take it past `max_rows` waits for the next one.
    """
    rows = sum(int(item.table.num_rows) for item in items)
    first = items[0]
    return max(len(items), -(-rows * first.max_requests // first.max_rows))


def _predict_items(items: list[_Item]) -> list[dict[str, Any] | Exception]:
    """One model call per version over `items`; results split back per request."""
    out: list[dict[str, Any] | Exception] = [RuntimeError("not run")] * len(items)
    by_version: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        by_version.setdefault(item.slot.version, []).append(i)
    for idx in by_version.values():
        slot = items[idx[0]].slot
        tables = [items[i].table for i in idx]
        try:
            result = slot.predictor.predict(
                tables[0] if len(tables) == 1 else pa.concat_tables(tables)
            )
            _check_finite(result)
        except Exception as exc:
            for i in idx:
                out[i] = exc
            continue
        start = 0
        for i, t in zip(idx, tables, strict=True):
            end = start + t.num_rows
            out[i] = {
                "predictions": result["predictions"][start:end],
                "scores": None if result["scores"] is None else result["scores"][start:end],
            }
            start = end
    return out


@serve.deployment
@serve.ingress(app)
class ModelServer:
    """HTTP ingress: auth, validation, canary split, batching, prediction, monitoring."""

    async def __init__(  # type: ignore[misc]
        self, spec: ServeSpec, routing: dict[str, Any], state: Any, loader: ModelLoader
    ) -> None:
        self.spec = spec
        self.state = state
        self._loader = loader
        self._digest = bytes.fromhex(spec.token_sha256) if spec.token_sha256 is not None else None
        self._slots: dict[str, Slot] = {}
        self.routing = routing
        await self._load_routes(routing)
        batcher: Any = self._infer  # serve.batch's wrapper carries the setters
        batcher.set_max_batch_size(spec.config.max_batch_size)
        batcher.set_batch_wait_timeout_s(spec.config.batch_wait_timeout_s)
        self._delta = MetricsDelta()
        self._at_model = 0  # requests between validation and their predictions (`_model_call`)
        self._drift = DriftBuffer()  # the rows answered since the last flush, for drift
        self._served: list[tuple[str, str, list[dict[str, Any]]]] = []  # for the feedback join
        self._feedback_rejected: dict[int, int] = {}  # 4xx answered here (auth, body)
        self._replica = uuid.uuid4().hex  # who flushes (the state counts live replicas)
        # Request ids: this replica's random half, then a counter. Unique across replicas and
        # restarts as uuid4s are, without a system call per request (`os.urandom` releases the
        # GIL, and taking it back waits on the replica's other threads).
        self._request_ids = (f"{self._replica[:16]}{i:016x}" for i in itertools.count())
        self._rows = 0  # rows answered since the last flush
        c = spec.config
        self._log = (
            PredictionLog(c.prediction_log, sample_fraction=c.prediction_log_sample, flush_s=2.0)
            if c.prediction_log is not None
            else None
        )
        self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    def __del__(self) -> None:  # Serve calls it when the replica stops: write what is buffered
        log = getattr(self, "_log", None)
        if log is not None:
            log.close()

    # -- routes -----------------------------------------------------------------------------------
    async def _load_routes(self, routing: dict[str, Any]) -> None:
        """Load every version `routing` names that is not loaded yet (off the event loop)."""
        wanted = [routing["stable"], *([routing["canary"]] if routing["canary"] else [])]
        for route in wanted:
            if route["version"] not in self._slots:
                slot = await asyncio.to_thread(self._loader.load, self.spec, route)
                self._slots[route["version"]] = slot
        keep = {r["version"] for r in wanted}
        for version in list(self._slots):
            if version not in keep:
                del self._slots[version]
        self.routing = routing

    def _pick(self) -> tuple[str, Slot]:
        routing = self.routing
        canary = routing["canary"]
        if canary is not None and random.random() * 100.0 < canary["percent"]:
            return "canary", self._slots[canary["version"]]
        return "stable", self._slots[routing["stable"]["version"]]

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            await self._flush()

    async def _flush(self) -> None:
        served, self._served = self._served, []
        rejected, self._feedback_rejected = self._feedback_rejected, {}
        meta = {
            version: {
                "task": str(slot.contract.task),
                "classes": list(slot.contract.classes),
                "baseline": slot.baseline,
            }
            for version, slot in self._slots.items()
            if slot.contract is not None
        }
        rows, self._rows = self._rows, 0
        delta = {
            "replica": self._replica,
            "rows": rows,
            "metrics": self._delta.drain(),
            "drift": self._drift.take(),
            "served": {"meta": meta, "requests": served},
            "feedback_rejected": rejected,
        }
        try:
            routing = await self.state.flush.remote(delta)
            if routing["revision"] != self.routing["revision"]:
                await self._load_routes(routing)
        except Exception as exc:  # the state replica restarting: keep serving
            logger.warning("ray_ml serve: flush to the state deployment failed: %s", exc)
            self._served = (served + self._served)[-MAX_UNFLUSHED:]  # joinable after the restart
            self._rows += rows

    def _auth(self, request: Request) -> None:
        if self._digest is None:
            return
        header = request.headers.get("authorization")
        if not header:
            raise RequestError(
                401,
                "unauthorized",
                "missing `Authorization: Bearer <token>` header",
                "authorization",
            )
        scheme, _, token = header.partition(" ")
        presented = hashlib.sha256(token.strip().encode()).digest()
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented, self._digest):
            raise RequestError(403, "forbidden", "the bearer token is not valid", "authorization")

    # -- model calls ------------------------------------------------------------------------------
    @serve.batch(
        max_batch_size=32, batch_wait_timeout_s=0.002, batch_size_fn=_batch_size
    )  # sizes set from the spec in __init__
    async def _infer(self, items: list[_Item]) -> list[dict[str, Any] | Exception]:
        """One model call per version over all batched requests; results split back per request."""
        return _predict_items(items)

    async def _model_call(self, item: _Item) -> dict[str, Any] | Exception:
        """The request's predictions: batched with the requests at the model, alone if none is.

        A request with no company would only wait out `batch_wait_timeout_s` for nobody: one
        turn of the event loop lets every request that is ready reach this point first, and a
        request still alone then is predicted at once.
        """
        if item.table.num_rows > item.max_rows:  # more than one batch holds: a call of its own
            return (await asyncio.to_thread(_predict_items, [item]))[0]
        self._at_model += 1
        try:
            await asyncio.sleep(0)
            if self._at_model == 1:
                return _predict_items([item])[0]
            return await self._infer(item)
        finally:
            self._at_model -= 1

    @app.post("/v1/predict")
    async def predict(self, request: Request) -> Response:
        t0 = time.perf_counter()
        self._auth(request)
        role, slot = self._pick()
        try:
            slot.validator.check_headers(
                request.headers.get("content-type"), request.headers.get("content-length")
            )
            body = await slot.validator.read_body(request.stream())
            table = slot.validator.parse(body)
        except RequestError as exc:
            self._delta.record_request(slot.version, role, exc.status, time.perf_counter() - t0)
            raise
        item = _Item(slot, table, self.spec.config.max_batch_size, self.spec.config.max_batch_rows)
        result = await self._model_call(item)
        if isinstance(result, Exception):
            logger.error(
                "ray_ml serve: model version %s failed on a batch: %s: %s",
                slot.version,
                type(result).__name__,
                str(result)[:200],
            )
            self._delta.record_request(slot.version, role, 500, time.perf_counter() - t0)
            return JSONResponse(
                {
                    "error": "model_error",
                    "field": None,
                    "message": f"model version {slot.version} failed to predict; see the server log",
                    "model_version": slot.version,
                },
                status_code=500,
            )
        latency_s = time.perf_counter() - t0
        self._delta.record_request(slot.version, role, 200, latency_s)
        self._rows += table.num_rows
        request_id = next(self._request_ids)
        per_row = row_predictions(result)
        if slot.contract is not None:
            self._served.append((request_id, slot.version, per_row))
            del self._served[:-MAX_UNFLUSHED]
        if self._log is not None:
            self._log.record(request_id, slot.version, table, per_row, latency_s * 1000.0)
        self._delta.record_predictions(
            slot.version, [] if result["scores"] is None else result["predictions"]
        )
        stable = self.routing["stable"]["version"]
        self._drift.add(table, stable, self._slots[stable].reference)
        return JSONResponse(
            {
                "predictions": result["predictions"],
                "scores": result["scores"],
                "model_version": slot.version,
                "request_id": request_id,
            }
        )

    @app.post("/v1/feedback")
    async def feedback(self, request: Request) -> Response:
        try:
            self._auth(request)
            body = await self._feedback_body(request)
        except RequestError as exc:
            self._feedback_rejected[exc.status] = self._feedback_rejected.get(exc.status, 0) + 1
            raise
        await self._flush()  # the predictions this replica answered reach the state first
        result = await self.state.feedback.remote(body["labels"])
        if "error" in result:
            return JSONResponse(result["error"], status_code=result["status"])
        return JSONResponse(result)

    async def _feedback_body(self, request: Request) -> dict[str, Any]:
        """The JSON body of a feedback request, `{"labels": [...]}`, within the body limit."""
        limit = self.spec.config.max_body_bytes
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(
                    413,
                    "body_too_large",
                    f"the body is over serve.max_body_bytes={limit} bytes; send the labels in "
                    "several requests.",
                )
            chunks.append(chunk)
        try:
            body = json.loads(b"".join(chunks))
        except (ValueError, UnicodeDecodeError) as exc:
            raise RequestError(
                400, "bad_json", f"the body is not valid JSON ({type(exc).__name__}).", None
            ) from None
        if not isinstance(body, dict) or "labels" not in body or set(body) != {"labels"}:
            raise RequestError(
                422,
                "invalid_feedback",
                'the body must be {"labels": [{"request_id": ..., "row": i, "label": ...}]}, '
                "with no other keys.",
                "labels",
            )
        return body

    @app.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        return {"status": "ok", "model_version": self.routing["stable"]["version"]}

    @app.get("/v1/models")
    async def models(self, request: Request) -> dict[str, Any]:
        self._auth(request)
        info = await self.state.models.remote()
        info["schema"] = self._slots[self.routing["stable"]["version"]].validator.schema_json()
        return dict(info)

    @app.get("/v1/drift")
    async def drift(self, request: Request) -> dict[str, Any]:
        self._auth(request)
        return dict(await self.state.drift_report.remote())

    @app.get("/metrics")
    async def metrics(self, request: Request) -> Response:
        self._auth(request)
        text = await self.state.metrics_text.remote()
        return Response(text, media_type=CONTENT_TYPE)
