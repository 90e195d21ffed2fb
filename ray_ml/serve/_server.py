"""Building, deploying and running the serving app from a run config.

- `build_app(cfg, loader=...)`: the typed builder: `serve.*` config -> a Serve `Application`
  (state + ingress deployments with replicas/autoscaling, CPUs/GPUs, batching and limits), both
  given the `ServeSpec` and the model loader (`BundleLoader` unless one is injected).
- `deploy(cfg)`: start Serve's HTTP proxy on `serve.host:serve.port`, run the app, wait until it
  answers, return what is served and the URL.
- `run_serve_job(cfg)`: `python -m jobs.serve` / `ray-ml serve`: embedded (or joined) Ray,
  `deploy`, one JSON line with the `url`, then serve until SIGINT/SIGTERM and shut down cleanly.
- `serve_config(cfg)` and `app_builder(args)`: a config file for `serve deploy` / `serve run`
  (Ray's own CLI) whose application is built by `app_builder` from the same overrides.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from ray_ml.errors import ConfigError, RayMLError
from ray_ml.serve._app import ModelServer, ServeState
from ray_ml.serve._loader import BundleLoader, ModelLoader
from ray_ml.serve._routing import resolve_routing, serve_spec

if TYPE_CHECKING:
    from ray.serve import Application

    from ray_ml.config import RunConfig, ServeConfig

__all__ = [
    "app_builder",
    "build_app",
    "deploy",
    "run_serve_job",
    "serve_config",
    "serve_token",
]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_token(scfg: ServeConfig) -> str | None:
    """The bearer token from `$<serve.token_env>`; None turns auth off (loopback only).

    Raises:
        ConfigError: The variable is set but empty, or unset while `serve.host` is not loopback.
    """
    token = os.environ.get(scfg.token_env)
    if token is not None and not token.strip():
        raise ConfigError(
            f"${scfg.token_env} is set but empty. Put a long random token in it "
            "(e.g. `export RAY_ML_SERVE_TOKEN=$(openssl rand -hex 32)`) or unset it."
        )
    if token is None and not _is_loopback(scfg.host):
        raise ConfigError(
            f"serve.host={scfg.host!r} exposes the model beyond this machine, but "
            f"${scfg.token_env} is not set: anyone could call it. Set the token, or keep "
            "`serve.host=127.0.0.1`."
        )
    return token.strip() if token else None


def build_app(
    cfg: RunConfig, *, token: str | None = None, loader: ModelLoader | None = None
) -> tuple[Application, dict[str, Any]]:
    """The Serve application for `cfg.serve`, and the routing it starts with.

    Args:
        cfg: The run config.
        token: The bearer token; None reads it with `serve_token`.
        loader: How the deployments load model versions (pickled to them); default
            `BundleLoader()`, the registry's (or `serve.bundle`'s) bundles.

    Raises:
        ConfigError: Bad token settings or request limits.
        RegistryError / BundleError: Nothing servable where the config points.
    """
    s = cfg.serve
    loader = loader if loader is not None else BundleLoader()
    spec = serve_spec(cfg, token if token is not None else serve_token(s))
    routing = resolve_routing(spec)
    loader.load(spec, routing["stable"])  # fail here, not in a replica
    options: dict[str, Any] = {
        "ray_actor_options": {
            "num_cpus": s.num_cpus_per_replica,
            "num_gpus": s.num_gpus_per_replica,
        },
        "max_ongoing_requests": max(s.max_ongoing_requests, s.max_batch_size),
        "health_check_period_s": 2,
        # Serve's own line per request costs the replica time on every call; /metrics already
        # counts each request by version, role and status.
        "logging_config": {"enable_access_log": s.access_log},
    }
    if s.autoscaling:
        options["autoscaling_config"] = {
            "min_replicas": s.min_replicas,
            "initial_replicas": max(s.min_replicas, 1),
            "max_replicas": s.max_replicas,
            "target_ongoing_requests": s.target_ongoing_requests,
        }
    else:
        options["num_replicas"] = s.num_replicas
    state_dep: Any = ServeState  # serve.deployment turns the classes into Deployments
    server_dep: Any = ModelServer
    state = state_dep.bind(spec, routing, loader)
    return server_dep.options(**options).bind(spec, routing, state, loader), routing


def _url(cfg: RunConfig) -> str:
    host = cfg.serve.host
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{cfg.serve.port}"


def _wait_ready(url: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(0.25)
    raise RayMLError(
        f"the serving app did not answer {url}/healthz within {timeout_s:.0f} s: {last}"
    )


def deploy(cfg: RunConfig, *, token: str | None = None) -> dict[str, Any]:
    """Run the app on the connected Ray (starting Serve's proxy per `serve.host/port`).

    Redeploying the same `serve.app_name` updates it in place (Serve's rolling update).

    Returns:
        `{"url", "app", "model", "stable", "canary"}`.
    """
    from ray import serve

    s = cfg.serve
    application, routing = build_app(cfg, token=token)
    serve.start(http_options={"host": s.host, "port": s.port})
    serve.run(application, name=s.app_name, route_prefix="/")
    url = _url(cfg)
    _wait_ready(url)
    return {
        "url": url,
        "app": s.app_name,
        "model": s.model or cfg.name,
        "stable": routing["stable"]["version"],
        "canary": (routing["canary"] or {}).get("version"),
    }


def run_serve_job(cfg: RunConfig) -> dict[str, Any]:
    """Deploy, print `{"url": ...}` when ready, serve until SIGINT/SIGTERM, shut down cleanly."""
    from ray import serve

    from ray_ml.cluster import start_ray, stop_ray
    from ray_ml.serve._ingress import ingress_env

    token = serve_token(cfg.serve)  # config errors before Ray starts
    env: dict[str, str] = {}

    def ingress() -> dict[str, str]:
        env.update(ingress_env(cfg.serve.ingress))
        return env

    handle = start_ray(cfg.cluster, env=ingress)
    # a joined cluster serves through whatever its own environment says
    served_by = ("haproxy" if env else "proxy") if handle.owned else "cluster"
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        info = {**deploy(cfg, token=token), "ingress": served_by}
        print(json.dumps({"event": "ready", **info}), flush=True)
        print(
            f"serving {info['model']} version {info['stable']} at {info['url']}/v1/predict; "
            "Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        t0 = time.monotonic()
        stop.wait()
        serve.delete(cfg.serve.app_name)
        serve.shutdown()
        return {"job": "serve", **info, "served_s": round(time.monotonic() - t0, 1)}
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        stop_ray(handle)


def serve_config(cfg: RunConfig, overrides: list[str]) -> dict[str, Any]:
    """A Serve config file (`serve deploy FILE`) whose app `app_builder` builds from `overrides`.

    The token is read on the cluster, from the same environment variable.
    """
    s = cfg.serve
    return {
        "proxy_location": "HeadOnly",
        "http_options": {"host": s.host, "port": s.port},
        "applications": [
            {
                "name": s.app_name,
                "route_prefix": "/",
                "import_path": "ray_ml.serve:app_builder",
                "args": {"overrides": list(overrides)},
            }
        ],
    }


def app_builder(args: dict[str, Any]) -> Application:
    """Serve's application builder for config files: `args = {"overrides": [...]}`."""
    from ray_ml.config import load_config

    overrides = args.get("overrides", [])
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError(
            "the serve config's `args.overrides` must be a list of `key=value` strings, "
            f"got {overrides!r}."
        )
    application, _ = build_app(load_config("serve", overrides))
    return application
