"""`python -m jobs.serve` as users run it: ready line with the URL, predictions with the token,
a clean shutdown on SIGTERM; and `ray-ml serve --emit-config` for Ray's `serve deploy`."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests._bundles import make_bundle, rows
from tests._ray_head import free_port
from tests.e2e.test_cli_data import REPO, last_json, ray_ml

pytestmark = pytest.mark.e2e


def _read_ready(proc: subprocess.Popen[str], timeout_s: float) -> dict:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sel.select(timeout=1.0):
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("{") and '"ready"' in line:
                return json.loads(line)
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(
        f"no ready line; stderr tail: {proc.stderr.read()[-3000:] if proc.stderr else ''}"
    )


def _listener(port: int) -> str:
    """The name of the process listening on `port` (the kernel's view, not ours)."""
    import psutil

    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return psutil.Process(conn.pid).name()
    return ""


def test_serve_job_serves_until_sigterm(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    port = free_port()
    env = {**os.environ, "RAY_ML_PROGRESS": "0", "RAY_ML_SERVE_TOKEN": "s3cret-token"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jobs.serve",
            f"serve.bundle={bundle}",
            f"serve.port={port}",
            f"storage_path={tmp_path}",
            "cluster.num_cpus=2",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = _read_ready(proc, timeout_s=180)
        assert ready["url"] == f"http://127.0.0.1:{port}"
        assert ready["stable"] == "bundle:bundle"
        # the default ingress: HAProxy itself listens on serve.port (no Python proxy in the path)
        assert ready["ingress"] == "haproxy"
        assert _listener(port) == "haproxy"
        resp = requests.post(
            f"{ready['url']}/v1/predict",
            json={"rows": rows(3)},
            headers={"Authorization": "Bearer s3cret-token"},
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        assert len(resp.json()["predictions"]) == 3
        assert (
            requests.post(
                f"{ready['url']}/v1/predict", json={"rows": rows(1)}, timeout=30
            ).status_code
            == 401
        )
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    summary = last_json(out)
    assert summary["job"] == "serve" and summary["served_s"] >= 0
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)


def test_exposing_the_service_without_a_token_is_refused(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    env_token = os.environ.pop("RAY_ML_SERVE_TOKEN", None)
    try:
        res = ray_ml("serve", "--bundle", str(bundle), "serve.host=0.0.0.0")
    finally:
        if env_token is not None:
            os.environ["RAY_ML_SERVE_TOKEN"] = env_token
    assert res.returncode == 2
    assert "RAY_ML_SERVE_TOKEN" in res.stderr and "serve.host" in res.stderr


def test_emit_config_is_a_valid_serve_deploy_file(tmp_path: Path) -> None:
    from ray.serve.schema import ServeDeploySchema

    from ray_ml.serve import app_builder

    bundle = make_bundle(tmp_path / "bundle")
    out = tmp_path / "serve.yaml"
    res = ray_ml("serve", "--bundle", str(bundle), "--emit-config", str(out), "serve.port=8123")
    assert res.returncode == 0, res.stderr
    raw = yaml.safe_load(out.read_text())
    schema = (
        ServeDeploySchema.model_validate(raw)
        if hasattr(ServeDeploySchema, "model_validate")
        else ServeDeploySchema.parse_obj(raw)
    )
    app = schema.applications[0]
    assert app.import_path == "ray_ml.serve:app_builder"
    assert raw["http_options"] == {"host": "127.0.0.1", "port": 8123}
    built = app_builder(app.args)
    assert type(built).__name__ == "Application"
