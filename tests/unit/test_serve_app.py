"""The Serve app's classes tested directly, without Ray: the builder with an injected loader,
the typed spec that replicas receive, and one request path through `ModelServer` and
`ServeState` in one event loop (no HTTP, no replicas; tests/ray/test_serve_ray.py has those)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import pickle
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request

from ray_ml.config import ServeConfig, load_config
from ray_ml.data import ColumnSpec, ColumnType, Contract, Task
from ray_ml.serve import (
    BundleLoader,
    RequestError,
    RequestValidator,
    ServeSpec,
    Slot,
    build_app,
    serve_spec,
)
from ray_ml.serve._app import ModelServer, ServeState

pytestmark = pytest.mark.unit

TOKEN = "unit-token"
CONTRACT = Contract(
    name="toy",
    task=Task.REGRESSION,
    label="y",
    columns=(ColumnSpec("x", ColumnType.FLOAT), ColumnSpec("y", ColumnType.FLOAT)),
)
REFERENCE = {
    "x": {"kind": "numeric", "bin_edges": [0.0, 1.0, 2.0], "bin_fractions": [0.5, 0.5], "count": 9}
}


class _Doubler:
    def predict(self, table: Any) -> dict[str, Any]:
        return {"predictions": [2 * x for x in table.column("x").to_pylist()], "scores": None}


class FakeLoader:
    """A model loader serving `_Doubler` under the toy contract; counts its loads."""

    def __init__(self) -> None:
        self.loaded: list[str] = []

    def load(self, spec: ServeSpec, route: Mapping[str, Any]) -> Slot:
        self.loaded.append(route["version"])
        validator = RequestValidator(CONTRACT, spec.limits)
        return Slot(route["version"], _Doubler(), validator, REFERENCE)

    def reference(self, spec: ServeSpec, ref: Any) -> dict[str, Any]:
        return REFERENCE


def _cfg(*overrides: str) -> Any:
    # no prediction log unless a test asks for one (where it points it at its tmp_path)
    return load_config(
        "serve", ["serve.bundle=/tmp/models/toy", "serve.prediction_log=null", *overrides]
    )


def test_replicas_get_the_typed_config_plus_derived_fields() -> None:
    spec = serve_spec(_cfg("serve.max_body_bytes=2048", "serve.num_gpus_per_replica=1"), TOKEN)
    assert isinstance(spec.config, ServeConfig)
    assert spec.config.max_body_bytes == spec.limits.max_body_bytes == 2048
    assert (spec.bundle, spec.registry_root, spec.alias, spec.version) == (
        "/tmp/models/toy",
        None,
        None,
        None,
    )
    assert spec.device == "cuda"
    assert TOKEN not in repr(spec.to_dict())
    # Dataclasses pickle: this is how the spec and the loader reach the replicas.
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert pickle.loads(pickle.dumps(BundleLoader())) == BundleLoader()
    pinned = serve_spec(load_config("serve", ["name=m", "serve.version=3"]), None)
    assert (pinned.model, pinned.version, pinned.alias, pinned.token_sha256) == (
        "m",
        "3",
        None,
        None,
    )


def test_build_app_loads_the_stable_version_with_the_injected_loader() -> None:
    loader = FakeLoader()
    app, routing = build_app(_cfg(), token=TOKEN, loader=loader)
    assert routing["stable"] == {"version": "bundle:toy", "ref": "/tmp/models/toy"}
    assert routing["canary"] is None
    assert loader.loaded == ["bundle:toy"]  # once in the driver: a bad bundle fails here
    assert type(app).__name__ == "Application"
    # Serve's per-request access log is off unless asked for (it costs every request time).
    assert app._bound_deployment.logging_config["enable_access_log"] is False
    on, _ = build_app(_cfg("serve.access_log=true"), token=TOKEN, loader=FakeLoader())
    assert on._bound_deployment.logging_config["enable_access_log"] is True


def _request(body: bytes, token: str | None = TOKEN, *, chunked: bool = False) -> Request:
    headers = [(b"content-type", b"application/json")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    if not chunked:
        headers.append((b"content-length", str(len(body)).encode()))
    step = 100
    messages = [
        {"type": "http.request", "body": body[i : i + step], "more_body": i + step < len(body)}
        for i in range(0, max(len(body), 1), step)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    scope = {"type": "http", "method": "POST", "path": "/v1/predict", "headers": headers}
    return Request({**scope, "query_string": b""}, receive)


class _Remote:
    def __init__(self, method: Any) -> None:
        self._method = method

    async def remote(self, *args: Any) -> Any:
        return await self._method(*args)


class _StateHandle:
    """What `ModelServer` calls on its state deployment, bound to an in-process ServeState."""

    def __init__(self, state: Any) -> None:
        for name in ("flush", "models", "drift_report", "metrics_text", "feedback"):
            setattr(self, name, _Remote(getattr(state, name)))


@pytest.fixture(autouse=True)
def _fresh_batch_queue(monkeypatch: pytest.MonkeyPatch) -> Any:
    """serve.batch keeps one queue per decorated method, made on first use and bound to that
    event loop (a replica has one loop for life); each test here runs its own loop."""
    import ray.serve.batching

    # serve.batch asks the replica context for max_ongoing_requests, only to log a warning.
    monkeypatch.setattr(
        ray.serve.batching._BatchQueue,
        "_warn_if_max_batch_size_exceeds_max_ongoing_requests",
        lambda self: None,
        raising=False,
    )
    yield
    _plain(ModelServer)._infer.set_max_batch_size.__self__._queue = None


@contextlib.asynccontextmanager
async def _running(
    spec: ServeSpec, routing: dict[str, Any], loader: Any
) -> AsyncIterator[tuple[Any, Any]]:
    """`ServeState` and `ModelServer` constructed in this event loop, their loops stopped after."""
    state_cls, server_cls = _plain(ServeState), _plain(ModelServer)
    state = state_cls.__new__(state_cls)
    await state_cls.__init__(state, spec, routing, loader)
    server = server_cls.__new__(server_cls)
    await server_cls.__init__(server, spec, routing, _StateHandle(state), loader)
    try:
        yield state, server
    finally:
        server._flusher.cancel()
        state._poller.cancel()


def _plain(deployment: Any) -> Any:
    """The class a Serve deployment wraps (`serve.ingress` subclasses it under the same name)."""
    return [c for c in deployment.func_or_class.__mro__ if c.__module__ == "ray_ml.serve._app"][-1]


def test_one_request_path_through_both_classes(tmp_path: Path) -> None:
    from ray_ml.serve import read_predictions

    loader = FakeLoader()
    cfg = _cfg("serve.max_body_bytes=2048", f"serve.prediction_log={tmp_path / 'log'}")
    spec = serve_spec(cfg, TOKEN)
    _, routing = build_app(cfg, token=TOKEN, loader=loader)

    async def scenario() -> dict[str, Any]:
        async with _running(spec, routing, loader) as (state, server):
            out: dict[str, Any] = {}
            ok = await server.predict(
                _request(json.dumps({"rows": [{"x": 0.5}, {"x": 1.5}]}).encode())
            )
            out["ok"] = (ok.status_code, json.loads(ok.body))
            big = json.dumps({"rows": [{"x": 0.5}], "pad": "x" * 3000}).encode()
            out["413"] = []
            for chunked in (False, True):  # declared too long, and streamed past the limit
                with pytest.raises(RequestError) as info:
                    await server.predict(_request(big, chunked=chunked))
                out["413"].append(info.value)
            with pytest.raises(RequestError) as info:
                await server.predict(_request(b"{}", token="wrong"))
            out["403"] = info.value
            out["health"] = await server.healthz()
            await asyncio.sleep(0.8)  # one replica -> state flush (FLUSH_S = 0.5)
            out["models"] = await state.models()
            out["drift"] = await state.drift_report()
            out["metrics"] = (await state.metrics_text()).decode()
            server._log.flush()
        return out

    out = asyncio.run(scenario())
    status, body = out["ok"]
    request_id = body.pop("request_id")
    assert status == 200 and len(request_id) == 32 and int(request_id, 16) >= 0
    assert body == {"predictions": [1.0, 3.0], "scores": None, "model_version": "bundle:toy"}
    logged = read_predictions(str(tmp_path / "log")).to_pylist()
    assert [(r["request_id"], r["row"], r["version"]) for r in logged] == [
        (request_id, 0, "bundle:toy"),
        (request_id, 1, "bundle:toy"),
    ]
    assert [json.loads(r["row_json"])["x"] for r in logged] == [0.5, 1.5]
    assert [json.loads(r["prediction_json"])["prediction"] for r in logged] == [1.0, 3.0]
    declared, streamed = out["413"]
    assert (
        (declared.status, declared.code)
        == (streamed.status, streamed.code)
        == (413, "body_too_large")
    )
    for err in (declared, streamed):  # one message, whichever check caught it
        assert "over the limit of 2048 bytes. Split the rows over several requests" in err.message
    assert (out["403"].status, out["403"].code) == (403, "forbidden")
    assert out["health"] == {"status": "ok", "model_version": "bundle:toy"}
    requests = out["models"]["requests"]["versions"]["bundle:toy"]
    assert requests["codes"] == {"200": 1, "413": 2}  # the 403 is refused before any model
    assert out["drift"]["window_rows"] == 2 and out["drift"]["reference_version"] == "bundle:toy"
    assert (
        'ray_ml_serve_requests_total{code="200",role="stable",version="bundle:toy"} 1.0'
        in out["metrics"]
    )
    assert loader.loaded == ["bundle:toy", "bundle:toy"]  # the builder's check, then the replica


class _JudgedLoader(FakeLoader):
    """FakeLoader whose versions carry their contract and test metrics: feedback is joined."""

    def load(self, spec: ServeSpec, route: Mapping[str, Any]) -> Slot:
        slot = super().load(spec, route)
        slot.contract, slot.baseline = CONTRACT, {"mae": 0.1, "rmse": 0.1, "r2": 0.9}
        return slot


def test_feedback_sent_before_the_flush_is_joined_and_scored_like_sklearn() -> None:
    from sklearn.metrics import mean_absolute_error, root_mean_squared_error

    loader = _JudgedLoader()
    cfg = _cfg("serve.quality_min_labels=3", "serve.quality_tolerance=0.05")
    spec = serve_spec(cfg, TOKEN)
    _, routing = build_app(cfg, token=TOKEN, loader=loader)
    truth = [1.0, 2.0, 4.0]

    async def scenario() -> dict[str, Any]:
        async with _running(spec, routing, loader) as (state, server):
            ok = await server.predict(
                _request(json.dumps({"rows": [{"x": 0.5}, {"x": 1.5}, {"x": 2.0}]}).encode())
            )
            rid = json.loads(ok.body)["request_id"]
            labels = [{"request_id": rid, "row": i, "label": y} for i, y in enumerate(truth)]
            # straight to the state, before any replica flush: it waits for the predictions
            joined = await state.feedback(labels)
            other = await server.predict(_request(json.dumps({"rows": [{"x": 0.1}]}).encode()))
            rid = json.loads(other.body)["request_id"]
            bad = await server.feedback(
                _request(
                    json.dumps({"labels": [{"request_id": rid, "row": 0, "label": "a"}]}).encode()
                )
            )
            return {
                "joined": joined,
                "bad": (bad.status_code, json.loads(bad.body)),
                "models": await state.models(),
                "metrics": (await state.metrics_text()).decode(),
            }

    out = asyncio.run(scenario())
    assert out["joined"]["accepted"] == 3
    predicted = [1.0, 3.0, 4.0]  # the doubler's answers
    live = out["models"]["live_quality"]["bundle:toy"]
    assert live["metrics"]["mae"]["value"] == pytest.approx(mean_absolute_error(truth, predicted))
    assert live["metrics"]["rmse"]["value"] == pytest.approx(
        root_mean_squared_error(truth, predicted)
    )
    assert live["alert"] is True and set(live["alerts"]) == {"mae", "rmse"}  # 0.33 / 0.58 vs 0.1
    assert out["models"]["quality_alerts"][0]["version"] == "bundle:toy"
    assert out["bad"][0] == 422 and out["bad"][1]["error"] == "bad_label"
    assert 'ray_ml_serve_live_quality_alert{version="bundle:toy"} 1.0' in out["metrics"]
    assert 'ray_ml_serve_feedback_rejected_total{code="422"} 1.0' in out["metrics"]


class _Recorder(_Doubler):
    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, table: Any) -> dict[str, Any]:
        self.calls.append(table.num_rows)
        return super().predict(table)


def test_batches_are_sized_by_rows() -> None:
    recorder = _Recorder()

    class Loader(FakeLoader):
        def load(self, spec: ServeSpec, route: Mapping[str, Any]) -> Slot:
            slot = super().load(spec, route)
            return Slot(slot.version, recorder, slot.validator, slot.reference)

    loader = Loader()
    cfg = _cfg("serve.max_batch_size=8", "serve.max_batch_rows=4", "serve.batch_wait_timeout_s=0.2")
    spec = serve_spec(cfg, TOKEN)
    _, routing = build_app(cfg, token=TOKEN, loader=loader)

    def body(n: int, start: float) -> bytes:
        return json.dumps({"rows": [{"x": start + i} for i in range(n)]}).encode()

    async def scenario() -> list[Any]:
        async with _running(spec, routing, loader) as (state, server):
            # five 2-row requests at once, then one of 6 rows (more than a batch holds)
            small = [server.predict(_request(body(2, 10.0 * k))) for k in range(5)]
            return list(await asyncio.gather(*small, server.predict(_request(body(6, 100.0)))))

    responses = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [200] * 6
    for k, r in enumerate(responses[:5]):  # each request gets its own rows back, in order
        assert json.loads(r.body)["predictions"] == [20.0 * k, 20.0 * k + 2.0]
    assert json.loads(responses[5].body)["predictions"] == [2.0 * (100 + i) for i in range(6)]
    assert sorted(recorder.calls) == [2, 4, 4, 6]  # 4 rows at most per batch; 6 alone


def test_a_request_alone_does_not_wait_for_a_batch() -> None:
    import time

    loader = FakeLoader()
    cfg = _cfg("serve.batch_wait_timeout_s=2.0")  # a batch waits up to 2 s for company
    spec = serve_spec(cfg, TOKEN)
    _, routing = build_app(cfg, token=TOKEN, loader=loader)
    one = json.dumps({"rows": [{"x": 0.5}]}).encode()

    async def scenario() -> tuple[float, float, list[Any]]:
        async with _running(spec, routing, loader) as (state, server):
            t0 = time.perf_counter()
            await server.predict(_request(one))
            alone = time.perf_counter() - t0
            t0 = time.perf_counter()  # two at once: batched together, so they wait it out
            both = await asyncio.gather(
                server.predict(_request(one)), server.predict(_request(one))
            )
            return alone, time.perf_counter() - t0, list(both)

    alone, together, both = asyncio.run(scenario())
    assert alone < 1.0 <= together  # alone: no 2 s wait; in company: the batch waits to fill
    assert [r.status_code for r in both] == [200, 200]


def test_gpu_replicas_are_priced_on_a_gpu_node_type_and_never_block_serving() -> None:
    import dataclasses

    from ray_ml.config import NodeTypeConfig
    from ray_ml.serve._routing import replica_price

    cfg = _cfg("serve.num_gpus_per_replica=1", "serve.num_cpus_per_replica=1")
    assert replica_price(cfg) > replica_price(_cfg("serve.num_cpus_per_replica=1"))
    cpu_only = dataclasses.replace(
        cfg,
        cost=dataclasses.replace(
            cfg.cost,
            node_types=[
                NodeTypeConfig(
                    name="c",
                    cpus=4,
                    memory_gb=16,
                    on_demand_usd_per_hour=0.2,
                    spot_usd_per_hour=0.1,
                    prices_read_on="2026-12-01",
                )
            ],
            default_node_type="c",
        ),
    )
    assert replica_price(cpu_only) == pytest.approx(0.05)  # the CPU; no GPU price exists


@pytest.mark.parametrize("bin_rows", [4096, 7])
def test_drift_of_concurrent_requests_is_counted_at_the_flush_like_numpy(bin_rows: int) -> None:
    """Rows are binned for drift once per flush (or every `bin_rows` rows, so that a stalled
    flush holds few), not per request: the state's PSI over 60 concurrent one-row requests is
    the one numpy gives on their values, and every request gets its own id, distinct from
    another replica's."""
    import math

    import numpy as np

    loader = FakeLoader()
    cfg = _cfg()
    spec = serve_spec(cfg, TOKEN)
    _, routing = build_app(cfg, token=TOKEN, loader=loader)
    xs = [(-0.5 + 2.0 * i / 59) for i in range(60)]  # 3 in 4 below 1.0, some below the edges

    async def scenario() -> tuple[dict[str, Any], list[str], str, int]:
        async with _running(spec, routing, loader) as (state, server):
            server._drift.bin_rows = bin_rows
            answers = await asyncio.gather(
                *(server.predict(_request(json.dumps({"rows": [{"x": x}]}).encode())) for x in xs)
            )
            held = len(server._drift.tables)  # rows kept unbinned before the flush
            await server._flush()
            report = await state.drift_report()
            other = _plain(ModelServer).__new__(_plain(ModelServer))
            await _plain(ModelServer).__init__(other, spec, routing, _StateHandle(state), loader)
            other._flusher.cancel()
            answer = await other.predict(_request(json.dumps({"rows": [{"x": 0.5}]}).encode()))
        ids = [json.loads(a.body)["request_id"] for a in answers]
        return report, ids, json.loads(answer.body)["request_id"], held

    report, ids, other_id, held = asyncio.run(scenario())
    assert held == 60 % bin_rows
    # numpy's histogram at the reference's edges, values outside them in the end bins
    live = np.histogram(np.clip(xs, 0.0, 2.0), bins=[0.0, 1.0, 2.0])[0] / len(xs)
    ref = np.array([0.5, 0.5])
    live, ref = np.maximum(live, 1e-4), np.maximum(ref, 1e-4)
    want = float(((live - ref) * np.log(live / ref)).sum())
    x = report["features"]["x"]
    assert report["window_rows"] == 60 and x["rows"] == 60
    assert want > 0.1 and math.isclose(x["psi"], want, rel_tol=1e-9)
    assert len(set(ids)) == 60 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert other_id not in ids and other_id[:16] != ids[0][:16]


class _Length:
    def predict(self, table: Any) -> dict[str, Any]:
        return {
            "predictions": [float(len(x)) for x in table.column("x").to_pylist()],
            "scores": None,
        }


class _TextCanaryLoader(FakeLoader):
    """FakeLoader whose version `v2` types `x` as a string: its rows cannot be binned against
    the stable version's numeric reference."""

    def load(self, spec: ServeSpec, route: Mapping[str, Any]) -> Slot:
        if route["version"] != "v2":
            return super().load(spec, route)
        text = Contract(
            name="toy-text",
            task=Task.REGRESSION,
            label="y",
            columns=(ColumnSpec("x", ColumnType.STRING), ColumnSpec("y", ColumnType.FLOAT)),
        )
        return Slot("v2", _Length(), RequestValidator(text, spec.limits), REFERENCE)


def test_a_canary_whose_rows_drift_cannot_bin_still_answers_200(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A canary's contract may type a feature differently from the stable reference. Its
    requests are answered (before, binning them in the request gave a 500 after the
    prediction), its rows are left out of drift and logged, and the stable rows are counted."""
    loader = _TextCanaryLoader()
    cfg = _cfg()
    spec = serve_spec(cfg, TOKEN)
    _, routing = build_app(cfg, token=TOKEN, loader=loader)

    async def scenario() -> tuple[list[Any], dict[str, Any]]:
        async with _running(spec, routing, loader) as (state, server):
            await server._load_routes(
                dict(routing, canary={"version": "v2", "ref": "v2", "percent": 100.0})
            )
            answers = [
                await server.predict(_request(json.dumps({"rows": [{"x": "abc"}]}).encode()))
            ]
            server.routing["canary"]["percent"] = 0.0  # the stable version from here on
            for x in (0.5, 1.5, 1.7):
                answers.append(
                    await server.predict(_request(json.dumps({"rows": [{"x": x}]}).encode()))
                )
            await server._flush()
            return answers, dict(await state.drift_report())

    with caplog.at_level("WARNING", logger="ray.serve"):
        answers, report = asyncio.run(scenario())
    bodies = [json.loads(a.body) for a in answers]
    assert [a.status_code for a in answers] == [200] * 4
    assert [(b["model_version"], b["predictions"]) for b in bodies] == [
        ("v2", [3.0]),
        ("bundle:toy", [1.0]),
        ("bundle:toy", [3.0]),
        ("bundle:toy", [3.4]),
    ]
    assert report["window_rows"] == 3 and report["features"]["x"]["rows"] == 3
    assert "1 requests left out of drift: ValueError" in caplog.text
