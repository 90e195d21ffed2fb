"""Serving: the Ray Serve app vs a plain FastAPI/uvicorn app doing the same predict, and
batched vs unbatched Serve, side by side in one run, with one model and one client.

Model: an MLP 30-256-256-2 on the bundled breast cancer data (a real bundle, trained in-process in
a second). Requests: one raw row each, with the bearer token. Client: Python threads, one
keep-alive `requests.Session` each.

- concurrency 1: `--requests` sequential requests after a warm-up: p50 / p99 latency;
- concurrency 32: `--seconds` of 32 threads back to back: throughput, p50 / p99, errors.

Servers, one at a time on the same 2 cores: plain uvicorn (1 process, no batching), the Serve app
with 1 replica and `@serve.batch` (max 32, 10 ms wait), and the same app with batching off
(max batch 1). Targets: added p50 at concurrency 1 <= 5 ms; Serve throughput >= 0.4x plain;
batched >= 2x unbatched at concurrency 32.

    python -m benchmarks.bench_serve
Results go to benchmarks/results/bench_serve.json.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests

from benchmarks._common import environment

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def _post(session: requests.Session, url: str, body: str) -> tuple[int, float]:
    t0 = time.perf_counter()
    try:
        r = session.post(
            f"{url}/v1/predict",
            data=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        status = r.status_code
    except requests.RequestException:
        status = 0
    return status, time.perf_counter() - t0


def _stats(latencies: list[float], statuses: list[int], wall_s: float) -> dict[str, Any]:
    lat = np.asarray(latencies) * 1000.0
    return {
        "requests": len(statuses),
        "errors": sum(1 for s in statuses if s != 200),
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "throughput_rps": len(statuses) / wall_s,
    }


def sequential(url: str, body: str, n: int, warmup: int = 30) -> dict[str, Any]:
    session = requests.Session()
    for _ in range(warmup):
        _post(session, url, body)
    statuses, lat = [], []
    t0 = time.perf_counter()
    for _ in range(n):
        s, dt = _post(session, url, body)
        statuses.append(s)
        lat.append(dt)
    return _stats(lat, statuses, time.perf_counter() - t0)


def concurrent(url: str, body: str, threads: int, seconds: float) -> dict[str, Any]:
    statuses: list[int] = []
    lat: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker() -> None:
        session = requests.Session()
        mine_s, mine_l = [], []
        while not stop.is_set():
            s, dt = _post(session, url, body)
            mine_s.append(s)
            mine_l.append(dt)
        with lock:
            statuses.extend(mine_s)
            lat.extend(mine_l)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    time.sleep(min(2.0, seconds / 4))  # warm-up, not counted
    with lock:
        statuses.clear()
        lat.clear()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    return _stats(lat, statuses, time.perf_counter() - t0)


def _measure(url: str, body: str, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "c1": sequential(url, body, args.requests),
        f"c{args.concurrency}": concurrent(url, body, args.concurrency, args.seconds),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=300, help="sequential requests (c=1)")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=15.0, help="seconds per concurrent phase")
    ap.add_argument(
        "--batch-wait-ms", type=float, default=None, help="serve.batch_wait_timeout_s, in ms"
    )
    args = ap.parse_args()
    os.environ.setdefault("RAY_ML_PROGRESS", "0")
    sys.path.insert(0, str(REPO))
    from tests._bundles import make_bundle, rows

    tmp = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    bundle = make_bundle(tmp / "bundle", hidden=(256, 256))
    body = json.dumps({"rows": rows(1)})
    results: dict[str, Any] = {}

    # 1. plain uvicorn, in its own process
    port = _free_port()
    env = {**os.environ, "BENCH_BUNDLE": str(bundle), "BENCH_TOKEN": TOKEN}
    plain = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "benchmarks._plain_serve:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=REPO,
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(url)
        results["plain_uvicorn"] = _measure(url, body, args)
    finally:
        plain.terminate()
        plain.wait(timeout=30)

    # 2. and 3. the Serve app, batched then unbatched, on an embedded Ray
    from ray import serve

    from ray_ml.cluster import start_ray, stop_ray
    from ray_ml.config import load_config
    from ray_ml.serve import deploy

    handle = start_ray(num_cpus=2, object_store_mb=300)
    try:
        port = _free_port()
        for name, batch in (("serve_batched", 32), ("serve_unbatched", 1)):
            cfg = load_config(
                "serve",
                [
                    f"storage_path={tmp}",
                    f"serve.bundle={bundle}",
                    f"serve.port={port}",
                    "serve.num_replicas=1",
                    "serve.num_cpus_per_replica=1",
                    f"serve.max_batch_size={batch}",
                    *(
                        [f"serve.batch_wait_timeout_s={args.batch_wait_ms / 1000}"]
                        if args.batch_wait_ms is not None
                        else []
                    ),
                ],
            )
            info = deploy(cfg, token=TOKEN)
            results[name] = _measure(info["url"], body, args)
            serve.delete(cfg.serve.app_name)
        serve.shutdown()
    finally:
        stop_ray(handle)

    c = f"c{args.concurrency}"
    plain_r, batched, unbatched = (
        results["plain_uvicorn"],
        results["serve_batched"],
        results["serve_unbatched"],
    )
    ratios = {
        "added_p50_ms_c1": batched["c1"]["p50_ms"] - plain_r["c1"]["p50_ms"],
        "added_p50_ms_c1_unbatched": unbatched["c1"]["p50_ms"] - plain_r["c1"]["p50_ms"],
        f"serve_over_plain_throughput_{c}": batched[c]["throughput_rps"]
        / plain_r[c]["throughput_rps"],
        f"batched_over_unbatched_throughput_{c}": batched[c]["throughput_rps"]
        / unbatched[c]["throughput_rps"],
    }
    out = {
        "benchmark": "bench_serve",
        "command": "python -m benchmarks.bench_serve " + " ".join(sys.argv[1:]),
        "model": "MLP 30-256-256-2, breast cancer bundle; one raw row per request",
        "targets": {
            "added_p50_ms_c1": "<= 5",
            f"serve_over_plain_throughput_{c}": ">= 0.4",
            f"batched_over_unbatched_throughput_{c}": ">= 2",
        },
        "batch_wait_timeout_s": cfg.serve.batch_wait_timeout_s,
        "ratios": ratios,
        "results": results,
        **environment(("ray", "fastapi", "uvicorn", "torch", "requests")),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_serve.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({"ratios": ratios}))


if __name__ == "__main__":
    main()
