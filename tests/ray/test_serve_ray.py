"""The serving app over real HTTP on the shared Ray: parity, auth, the bad-input matrix, metrics,
drift, promote/rollback under load, canary rollback and promotion, and a replica SIGKILL.

One app is deployed for the module (Serve takes about 10 s to come up here); the tests run in
file order because the later ones move registry aliases.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from ray_ml.config import load_config
from ray_ml.registry import Registry
from ray_ml.train import Predictor
from tests._bundles import make_bundle, rows
from tests._ray_head import free_port, until

TOKEN = "test-token-6f1d0c9a2b"
MODEL = "bc"
BASELINE = {"accuracy": 0.9, "f1": 0.9, "roc_auc": 0.95}  # v1's test metrics (the bundle's)
TOLERANCE, MIN_LABELS, MAX_LABELS = 0.05, 30, 100
MADE = {"sweep": 0.0123, "winner_training": 0.00045, "pricing": "on_demand"}  # v1's dollars


class App:
    def __init__(self, url: str, registry: Registry, bundles: dict[str, Path], root: Path) -> None:
        self.url = url
        self.root = root
        self.registry = registry
        self.bundles = bundles
        self.http = requests.Session()
        self.auth = {"Authorization": f"Bearer {TOKEN}"}

    def predict(self, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        h = {"Content-Type": "application/json", **self.auth, **(headers or {})}
        return self.http.post(f"{self.url}/v1/predict", data=data, headers=h, timeout=30)

    def feedback(self, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        h = {"Content-Type": "application/json", **self.auth, **(headers or {})}
        return self.http.post(f"{self.url}/v1/feedback", data=data, headers=h, timeout=30)

    def get(self, path: str) -> requests.Response:
        return self.http.get(f"{self.url}{path}", headers=self.auth, timeout=30)


def _replica_pids() -> set[int]:
    from ray.util.state import list_actors

    return {
        a.pid
        for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
        if "ModelServer" in a.class_name
    }


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    from ray import serve

    from ray_ml.serve import deploy

    root = tmp_path_factory.mktemp("serve")
    bundles = {
        "good": make_bundle(root / "b1", seed=0, metrics={"test": BASELINE}),
        "good2": make_bundle(root / "b2", seed=1, epochs=40),
        "broken": make_bundle(root / "b3", broken=True),
    }
    registry = Registry(root / "registry")
    # v1 as `run_sweep` registers a winner: with the dollars that made it in its lineage.
    registry.register(
        bundles["good"], MODEL, aliases=["production"], reason="test", lineage={"cost_usd": MADE}
    )
    registry.register(bundles["good2"], MODEL, reason="test")
    registry.register(bundles["broken"], MODEL, reason="test")
    cfg = load_config(
        "serve",
        [
            f"name={MODEL}",
            f"storage_path={root}",
            f"serve.registry_root={root / 'registry'}",
            f"serve.port={free_port()}",
            "serve.num_replicas=2",
            "serve.num_cpus_per_replica=0.5",
            "serve.poll_s=0.3",
            "serve.drift_window=200",
            "serve.canary_percent=50",
            "serve.canary_min_requests=20",
            "serve.canary_max_latency_ratio=50",  # latency on a loaded 2-core box is noise
            "serve.max_rows_per_request=300",
            "serve.max_body_bytes=400000",
            f"serve.quality_tolerance={TOLERANCE}",
            f"serve.quality_min_labels={MIN_LABELS}",
            f"serve.max_feedback_labels={MAX_LABELS}",
        ],
    )
    info = deploy(cfg, token=TOKEN)
    assert info["stable"] == "1" and info["canary"] is None
    yield App(info["url"], registry, bundles, root)
    serve.delete(cfg.serve.app_name)
    serve.shutdown()


def test_predictions_over_http_equal_the_offline_predictor(app: App) -> None:
    batch = rows(60)
    resp = app.predict({"rows": batch})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    offline = Predictor(app.bundles["good"]).predict(batch)
    assert body["model_version"] == "1"
    assert body["predictions"] == offline["predictions"]
    np.testing.assert_allclose(body["scores"], offline["scores"], rtol=1e-6, atol=1e-7)


def test_auth(app: App) -> None:
    body = json.dumps({"rows": rows(1)})
    url = f"{app.url}/v1/predict"
    ct = {"Content-Type": "application/json"}
    missing = requests.post(url, data=body, headers=ct, timeout=30)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    wrong = requests.post(
        url, data=body, headers={**ct, "Authorization": "Bearer nope"}, timeout=30
    )
    assert wrong.status_code == 403
    assert wrong.json()["error"] == "forbidden"
    basic = requests.post(
        url, data=body, headers={**ct, "Authorization": f"Basic {TOKEN}"}, timeout=30
    )
    assert basic.status_code == 403
    assert app.predict(body).status_code == 200
    assert requests.get(f"{app.url}/v1/models", timeout=30).status_code == 401
    assert requests.get(f"{app.url}/metrics", timeout=30).status_code == 401
    health = requests.get(f"{app.url}/healthz", timeout=30)
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_the_token_never_reaches_the_logs(app: App) -> None:
    import ray

    app.predict({"rows": rows(1)})
    requests.post(
        f"{app.url}/v1/predict", headers={"Authorization": f"Bearer {TOKEN}x"}, timeout=30
    )
    time.sleep(1.0)
    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    leaked = [p for p in logs.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert leaked == []


def _bad_inputs() -> list[tuple[str, dict[str, Any], int, str]]:
    """(name, request, expected status, a word the message or field must contain)."""
    one = rows(1)[0]
    col = "mean radius"
    return [
        (
            "content_type",
            {"data": json.dumps({"rows": [one]}), "headers": {"Content-Type": "text/plain"}},
            415,
            "json",
        ),
        ("invalid_json", {"data": '{"rows": [', "headers": {}}, 400, "json"),
        ("not_an_object", {"data": "[1, 2]", "headers": {}}, 422, "rows"),
        ("no_rows_key", {"data": json.dumps({"rws": [one]}), "headers": {}}, 422, "rws"),
        ("rows_not_a_list", {"data": json.dumps({"rows": one}), "headers": {}}, 422, "rows"),
        ("empty_rows", {"data": json.dumps({"rows": []}), "headers": {}}, 422, "rows"),
        (
            "row_not_an_object",
            {"data": json.dumps({"rows": [[1, 2]]}), "headers": {}},
            422,
            "rows[0]",
        ),
        (
            "missing_column",
            {
                "data": json.dumps({"rows": [{k: v for k, v in one.items() if k != col}]}),
                "headers": {},
            },
            422,
            col,
        ),
        (
            "unknown_column",
            {"data": json.dumps({"rows": [{**one, "colour": 1}]}), "headers": {}},
            422,
            "colour",
        ),
        (
            "wrong_type",
            {"data": json.dumps({"rows": [{**one, col: "big"}]}), "headers": {}},
            422,
            col,
        ),
        (
            "bool_for_float",
            {"data": json.dumps({"rows": [{**one, col: True}]}), "headers": {}},
            422,
            col,
        ),
        (
            "null_value",
            {"data": json.dumps({"rows": [{**one, col: None}]}), "headers": {}},
            422,
            col,
        ),
        (
            "out_of_range",
            {"data": json.dumps({"rows": [{**one, col: 1e9}]}), "headers": {}},
            422,
            col,
        ),
        (
            "nan",
            {"data": json.dumps({"rows": [{**one, col: float("nan")}]}), "headers": {}},
            422,
            col,
        ),
        (
            "infinity",
            {"data": json.dumps({"rows": [{**one, col: float("inf")}]}), "headers": {}},
            422,
            col,
        ),
        ("too_many_rows", {"data": json.dumps({"rows": [one] * 301}), "headers": {}}, 413, "rows"),
        (
            "body_too_large",
            {"data": json.dumps({"rows": [one], "pad": "x" * 450_000}), "headers": {}},
            413,
            "body",
        ),
        (
            "too_deep",
            {"data": json.dumps({"rows": [{**one, col: [[[[[[[[[[1]]]]]]]]]]}]}), "headers": {}},
            400,
            "deep",
        ),
        (
            "huge_integer",
            {"data": '{"rows": [{"mean radius": ' + "9" * 5000 + "}]}", "headers": {}},
            400,
            "json",
        ),
        (
            "not_utf8",
            {"data": b'{"rows": [{"mean radius": "\xff\xfe"}]}', "headers": {}},
            400,
            "json",
        ),
    ]


def test_bad_input_matrix_is_4xx_with_a_message_and_no_replica_dies(app: App) -> None:
    pids = _replica_pids()
    assert len(pids) == 2
    failures = []
    for name, req, status, word in _bad_inputs():
        resp = app.predict(req["data"], req["headers"])
        got = (
            resp.json()
            if resp.headers.get("content-type", "").startswith("application/json")
            else {}
        )
        text = json.dumps(got).lower()
        if resp.status_code != status or not got.get("message") or word.lower() not in text:
            failures.append((name, resp.status_code, resp.text[:300]))
        assert len(resp.content) < 2000, f"{name}: the answer must not echo the payload"
    assert failures == []
    # Wrong route and method are 4xx too.
    assert app.get("/v1/nothing").status_code == 404
    assert app.get("/v1/predict").status_code == 405
    # Still serving, on the same replica processes.
    assert app.predict({"rows": rows(2)}).status_code == 200
    assert _replica_pids() == pids


def test_models_and_metrics(app: App) -> None:
    models = app.get("/v1/models").json()
    assert models["stable"] == "1" and models["canary"] is None
    assert models["traffic_percent"] == {"1": 100.0}
    assert "mean radius" in json.dumps(models["schema"])

    def count(samples: dict[str, float], code: str) -> float:
        return sum(
            v
            for k, v in samples.items()
            if k.startswith("ray_ml_serve_requests_total") and f'"code": "{code}"' in k
        )

    def counted() -> dict[str, float]:
        from prometheus_client.parser import text_string_to_metric_families

        out: dict[str, float] = {}
        for fam in text_string_to_metric_families(app.get("/metrics").text):
            for s in fam.samples:
                out[s.name + json.dumps(s.labels, sort_keys=True)] = s.value
        # Replicas flush every 0.5 s: wait until the earlier tests' requests are all in.
        return out if count(out, "200") >= 4 and count(out, "422") >= 10 else {}

    samples = until(counted, timeout_s=15)
    assert any(k.startswith("ray_ml_serve_predictions_total") for k in samples)
    assert any(k.startswith("ray_ml_serve_request_latency_seconds_bucket") for k in samples)
    # What the served version cost to make, from its registry record; v2 (registered by hand,
    # not served) has no series.
    name = "ray_ml_serve_model_cost_usd"
    made = [(json.loads(k[len(name) :]), v) for k, v in samples.items() if k.startswith(name + "{")]
    assert sorted((labels["version"], labels["part"], v) for labels, v in made) == [
        ("1", "sweep", 0.0123),
        ("1", "winner_training", 0.00045),
    ]
    assert models["model_cost_usd"] == {"1": {"sweep": 0.0123, "winner_training": 0.00045}}


def _samples(app: App) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(app.get("/metrics").text):
        for s in fam.samples:
            out[s.name + json.dumps(s.labels, sort_keys=True)] = s.value
    return out


def test_feedback_gives_live_quality_equal_to_sklearns_and_alerts_when_it_drops(app: App) -> None:
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    from ray_ml.serve import read_predictions

    batch = rows(80, offset=300)
    answers = []
    for i in range(0, 80, 20):
        resp = app.predict({"rows": batch[i : i + 20]})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        answers.append(body)
    ids = [a["request_id"] for a in answers]
    assert len(set(ids)) == 4 and {a["model_version"] for a in answers} == {"1"}

    # True labels for the first 40 rows, sent at once (to either replica): all joined.
    truth = [r["target"] for r in batch]
    first = [{"request_id": ids[i // 20], "row": i % 20, "label": truth[i]} for i in range(40)]
    resp = app.feedback({"labels": first})
    assert resp.status_code == 200, resp.text
    assert resp.json()["accepted"] == 40 and resp.json()["by_version"] == {"1": 40}

    pred = [p for a in answers for p in a["predictions"]]
    prob = [s[1] for a in answers for s in a["scores"]]

    def expected(n: int, labels: list[int]) -> dict[str, float]:
        return {
            "accuracy": accuracy_score(labels[:n], pred[:n]),
            "f1": f1_score(labels[:n], pred[:n]),
            "roc_auc": roc_auc_score(labels[:n], prob[:n]),
        }

    live = app.get("/v1/models").json()["live_quality"]["1"]
    assert live["n_labels"] == 40
    want = expected(40, truth)
    for name, value in want.items():
        assert live["metrics"][name]["value"] == pytest.approx(value)
    # the documented rule, on sklearn's numbers: worse than the test metric by > the tolerance
    assert live["alert"] == any(BASELINE[m] - v > TOLERANCE for m, v in want.items())

    # Then the world shifts: the next 40 rows' labels are the opposite of the truth.
    flipped = truth[:40] + [1 - t for t in truth[40:]]
    second = [
        {"request_id": ids[i // 20], "row": i % 20, "label": flipped[i]} for i in range(40, 80)
    ]
    assert app.feedback({"labels": second}).status_code == 200
    models = app.get("/v1/models").json()
    live = models["live_quality"]["1"]
    want = expected(80, flipped)
    assert live["n_labels"] == 80
    assert live["metrics"]["accuracy"]["value"] == pytest.approx(want["accuracy"])
    assert want["accuracy"] < BASELINE["accuracy"] - TOLERANCE  # the shift is real
    assert live["alert"] is True and "accuracy" in live["alerts"]
    assert any(a["version"] == "1" and "accuracy" in a["metrics"] for a in models["quality_alerts"])
    samples = _samples(app)
    assert samples['ray_ml_serve_live_quality_alert{"version": "1"}'] == 1.0
    assert samples[
        'ray_ml_serve_live_quality{"metric": "accuracy", "version": "1"}'
    ] == pytest.approx(want["accuracy"])
    assert samples['ray_ml_serve_feedback_labels_total{"version": "1"}'] >= 80

    # Every answered row is in the prediction log (Parquet under the run's storage).
    log_root = app.root / MODEL / "serve"  # serve.prediction_log: ${storage_path}/${name}/serve

    def logged() -> Any:
        table = read_predictions(str(log_root))
        mine = [r for r in table.to_pylist() if r["request_id"] in ids]
        return mine if len(mine) == 80 else None

    mine = until(logged, timeout_s=20)
    by_request = {
        rid: sorted((r for r in mine if r["request_id"] == rid), key=lambda r: r["row"])
        for rid in ids
    }
    for answer in answers:
        logged_rows = by_request[answer["request_id"]]
        assert [json.loads(r["prediction_json"])["prediction"] for r in logged_rows] == answer[
            "predictions"
        ]
        assert {r["version"] for r in logged_rows} == {"1"}
        assert all(r["latency_ms"] > 0 for r in logged_rows)
    assert json.loads(by_request[ids[0]][3]["row_json"])["mean radius"] == pytest.approx(
        batch[3]["mean radius"]
    )


def test_bad_feedback_is_4xx_naming_the_problem_and_counted_never_5xx(app: App) -> None:
    answer = app.predict({"rows": rows(5)}).json()
    rid = answer["request_id"]
    cases = [
        (
            {"labels": [{"request_id": "f" * 32, "row": 0, "label": 1}]},
            None,
            422,
            "unknown_request_id",
        ),
        ({"labels": [{"request_id": rid, "row": 5, "label": 1}]}, None, 422, "row_out_of_range"),
        ({"labels": [{"request_id": rid, "row": 0, "label": "maybe"}]}, None, 422, "bad_label"),
        ({"labels": [{"request_id": rid, "row": 0, "label": 1.5}]}, None, 422, "bad_label"),
        (
            {"labels": [{"request_id": rid, "row": 0, "label": 1}] * 2},
            None,
            409,
            "duplicate_feedback",
        ),
        (
            {"labels": [{"request_id": rid, "row": 0, "label": 1}] * (MAX_LABELS + 1)},
            None,
            413,
            "too_many_labels",
        ),
        ({"labels": []}, None, 422, "invalid_feedback"),
        ({"rows": []}, None, 422, "invalid_feedback"),
        ("{not json", None, 400, "bad_json"),
        (
            {"labels": [{"request_id": rid, "row": 0, "label": 1}]},
            {"Authorization": ""},
            401,
            "unauthorized",
        ),
        (
            {"labels": [{"request_id": rid, "row": 0, "label": 1}]},
            {"Authorization": "Bearer x"},
            403,
            "forbidden",
        ),
    ]
    for body, headers, status, code in cases:
        resp = app.feedback(body, headers)
        assert resp.status_code == status, (body if not isinstance(body, dict) else code, resp.text)
        assert resp.json()["error"] == code and resp.json()["message"]
    # none of those took a label: the row can still be labelled once, and only once
    ok = app.feedback({"labels": [{"request_id": rid, "row": 0, "label": 1}]})
    assert ok.status_code == 200 and ok.json()["accepted"] == 1
    again = app.feedback({"labels": [{"request_id": rid, "row": 0, "label": 1}]})
    assert again.status_code == 409

    def rejected() -> dict[str, float] | None:
        got = {
            code: sum(
                v
                for k, v in _samples(app).items()
                if k.startswith("ray_ml_serve_feedback_rejected_total") and f'"code": "{code}"' in k
            )
            for code in ("400", "401", "403", "409", "413", "422")
        }
        want = {"400": 1, "401": 1, "403": 1, "409": 2, "413": 1, "422": 6}
        return got if all(got[c] >= n for c, n in want.items()) else None

    until(rejected, timeout_s=15)


def test_drift_is_flagged_for_a_shifted_input_and_not_for_an_unshifted_one(app: App) -> None:
    data = rows()
    rng = np.random.default_rng(0)
    sample = [data[i] for i in rng.choice(len(data), 250, replace=False)]
    assert app.predict({"rows": sample}).status_code == 200

    def settled(want_rows: int = 200) -> dict[str, Any] | None:
        report = app.get("/v1/drift").json()
        return report if report["window_rows"] >= want_rows else None

    calm = until(settled)
    assert calm["drifted"] == [], calm
    assert calm["max_psi"] < 0.2

    col = "mean radius"
    values = sorted(r[col] for r in data)
    high = values[int(0.9 * len(values))]
    shifted = [{**r, col: max(r[col], high)} for r in sample]  # the top decile, in range
    assert app.predict({"rows": shifted}).status_code == 200

    def drifted() -> dict[str, Any] | None:
        report = app.get("/v1/drift").json()
        return report if col in report["drifted"] else None

    report = until(drifted, timeout_s=15)
    assert report["features"][col]["psi"] > 0.2
    assert any(a["feature"] == col for a in report["alerts"])
    # Back to normal traffic: the window slides and the flag clears.
    assert app.predict({"rows": sample}).status_code == 200
    until(lambda: col not in app.get("/v1/drift").json()["drifted"], timeout_s=15)


class SteadyClient:
    """Threads sending one-row requests back to back; every answer is recorded."""

    def __init__(self, app: App, threads: int = 2, retry: bool = False) -> None:
        self.app = app
        self.retry = retry
        self.results: list[tuple[float, int, str | None, bool]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        self.body = json.dumps({"rows": rows(1)})

    def _once(self, session: requests.Session) -> tuple[int, str | None]:
        try:
            r = session.post(
                f"{self.app.url}/v1/predict",
                data=self.body,
                headers={"Content-Type": "application/json", **self.app.auth},
                timeout=30,
            )
            return r.status_code, (r.json().get("model_version") if r.status_code == 200 else None)
        except requests.RequestException:
            return 0, None

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            status, version = self._once(session)
            retried = False
            if status != 200 and self.retry:
                retried = True
                status, version = self._once(requests.Session())
            with self._lock:
                self.results.append((time.monotonic(), status, version, retried))

    def __enter__(self) -> SteadyClient:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def versions(self) -> list[str | None]:
        with self._lock:
            return [v for _, _, v, _ in self.results]

    def statuses(self) -> list[int]:
        with self._lock:
            return [s for _, s, _, _ in self.results]


def test_promote_then_rollback_under_steady_load_loses_no_request(app: App) -> None:
    with SteadyClient(app) as client:
        until(lambda: len(client.results) >= 10)
        app.registry.promote(MODEL, 2, reason="test promote")
        until(lambda: "2" in client.versions()[-5:], timeout_s=30)
        app.registry.rollback(MODEL, reason="test rollback")
        until(lambda: client.versions()[-5:] == ["1"] * 5, timeout_s=30)
    statuses = client.statuses()
    assert statuses and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    versions = client.versions()
    first2, last2 = versions.index("2"), len(versions) - 1 - versions[::-1].index("2")
    assert set(versions[:first2]) == {"1"} and set(versions[last2 + 1 :]) == {"1"}


def test_a_canary_that_errors_is_rolled_back_automatically(app: App) -> None:
    app.registry.set_alias(MODEL, "candidate", 3, reason="test: broken candidate")
    until(lambda: app.get("/v1/models").json()["canary"] == "3", timeout_s=15)
    with SteadyClient(app) as client:
        decided = until(lambda: app.get("/v1/models").json()["canary_decisions"], timeout_s=60)
        until(lambda: client.versions()[-5:] == ["1"] * 5, timeout_s=30)
    assert decided[-1]["action"] == "rollback" and decided[-1]["version"] == "3"
    assert "error rate" in decided[-1]["reason"]
    statuses = client.statuses()
    assert 500 in statuses  # the canary's own failures, which triggered the rollback
    # Judged on the first 10 canary requests; replicas switch at their next flush (0.5 s later).
    assert statuses.count(500) <= 60
    assert "candidate" not in app.registry.aliases(MODEL)
    assert app.registry.aliases(MODEL)["production"] == 1
    audit = app.registry.audit(MODEL, "candidate")[-1]
    assert audit.action == "delete_alias" and "canary judge" in audit.reason


def test_a_healthy_canary_is_promoted(app: App) -> None:
    app.registry.set_alias(MODEL, "candidate", 2, reason="test: good candidate")
    until(lambda: app.get("/v1/models").json()["canary"] == "2", timeout_s=15)
    with SteadyClient(app) as client:
        until(lambda: app.registry.aliases(MODEL)["production"] == 2, timeout_s=60)
        until(lambda: client.versions()[-5:] == ["2"] * 5, timeout_s=30)
    assert set(client.statuses()) == {200}
    models = app.get("/v1/models").json()
    assert models["stable"] == "2" and models["canary"] is None
    assert models["canary_decisions"][-1]["action"] == "promote"


def test_sigkill_of_one_of_two_replicas_under_load(app: App) -> None:
    from ray import serve

    pids = sorted(_replica_pids())
    assert len(pids) == 2
    with SteadyClient(app, threads=4, retry=True) as client:
        until(lambda: len(client.results) >= 20)
        os.kill(pids[0], signal.SIGKILL)
        time.sleep(3.0)
        n_after_kill = len(client.results)
        until(lambda: len(client.results) >= n_after_kill + 20)

    def two_running() -> bool:
        status = serve.status().applications["ray-ml"].deployments["ModelServer"]
        return status.replica_states.get("RUNNING", 0) == 2

    until(two_running, timeout_s=90)
    statuses = client.statuses()
    first_try_failures = sum(1 for _, _, _, retried in client.results if retried)
    assert set(statuses) == {200}, "with one retry no request fails"
    # Without the retry, only the requests in flight on the killed replica (at most one per
    # client thread) fail.
    assert first_try_failures <= 4, first_try_failures
    assert len(_replica_pids() - {pids[0]}) == 2
