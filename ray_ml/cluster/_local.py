"""Getting a Ray to run on: an embedded local one, or the cluster we were submitted to.

Every job and test goes through `start_ray`. Without an address it starts a private local Ray
(`address="local"`: it never attaches to somebody else's Ray on the same machine) with explicit
CPU/GPU counts and object-store size; with `cluster.address` or `RAY_ADDRESS` it joins that
cluster (inside `ray job submit`, RAY_ADDRESS is set for us).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ray_ml.console import current_console, progress_enabled

if TYPE_CHECKING:
    from ray_ml.config import ClusterConfig

__all__ = ["RayHandle", "start_ray", "stop_ray"]

log = logging.getLogger(__name__)


@dataclass
class RayHandle:
    """What `start_ray` did: whether we own the Ray (and must shut it down) and its resources."""

    address: str
    owned: bool
    resources: dict[str, float]

    def shutdown(self) -> None:
        stop_ray(self)


def start_ray(
    cfg: ClusterConfig | None = None,
    *,
    env: Callable[[], Mapping[str, str]] | None = None,
    **overrides: Any,
) -> RayHandle:
    """Start or join Ray as `cfg` says; reuse the Ray of this process if one is already up.

    Args:
        cfg: The `cluster` config group (None: an embedded Ray with all local CPUs).
        env: Makes the environment variables every process of a Ray started here inherits
            (settings Ray reads at import, such as Serve's ingress); called only when this
            starts a Ray: a joined cluster keeps its own.
        **overrides: Field overrides (num_cpus=..., object_store_mb=...), for tests and scripts.
    """
    import ray

    current_console().route_loggers()  # Ray set up its own loggers on import
    settings: dict[str, Any] = {
        "address": None,
        "num_cpus": None,
        "num_gpus": 0,
        "object_store_mb": 1024,
        "include_dashboard": False,
        "dashboard_port": None,
        "temp_dir": None,
    }
    if cfg is not None:
        settings.update({k: getattr(cfg, k) for k in settings})
    settings.update(overrides)

    if ray.is_initialized():
        ctx = ray.get_runtime_context()
        _quiet_progress()
        current_console().attach_ray()
        return RayHandle(ctx.gcs_address, owned=False, resources=ray.cluster_resources())

    address = settings["address"] or os.environ.get("RAY_ADDRESS")
    quiet: dict[str, Any] = {"log_to_driver": True, "logging_level": logging.WARNING}
    if address and address != "local":
        ray.init(address=address, **quiet)
        owned = False
    else:
        kwargs: dict[str, Any] = {
            "address": "local",
            "num_cpus": settings["num_cpus"] or os.cpu_count() or 1,
            "num_gpus": settings["num_gpus"],
            "object_store_memory": int(settings["object_store_mb"]) * 1024 * 1024,
            "include_dashboard": settings["include_dashboard"],
        }
        if settings["include_dashboard"]:
            # An isolated port: the default 8265 collides with any other Ray on the machine.
            kwargs["dashboard_port"] = settings["dashboard_port"] or _free_port()
        env_vars: dict[str, str] = {}
        if not progress_enabled() or current_console().quiet:
            # Ray Data's bars inside trials and Train workers would fill the logs.
            env_vars["RAY_DATA_DISABLE_PROGRESS_BARS"] = "1"
        if not progress_enabled():
            env_vars["RAY_ML_PROGRESS"] = "0"  # no progress lines from workers either
        if env_vars:
            kwargs["runtime_env"] = {"env_vars": env_vars}
        if settings["temp_dir"]:
            kwargs["_temp_dir"] = os.path.abspath(settings["temp_dir"])
        with _environ(
            env() if env is not None else {}
        ):  # the raylet it spawns passes them on to every worker
            ray.init(**kwargs, **quiet)
        owned = True
    ctx = ray.get_runtime_context()
    _quiet_progress()
    current_console().attach_ray()
    return RayHandle(ctx.gcs_address, owned=owned, resources=ray.cluster_resources())


@contextlib.contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _quiet_progress() -> None:
    """Progress bars go to stderr; keep stdout for the one JSON summary line."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    # Quiet: no Ray Data bars at all (a dataset carries this setting into the trials and Train
    # workers that run it, whose bars would fill the log); our own bars and stage lines instead.
    ctx.enable_progress_bars = progress_enabled() and not current_console().quiet


def stop_ray(handle: RayHandle | None = None) -> None:
    """Shut down Ray if this process started it; never touches other Rays on the machine."""
    import ray

    if handle is None or handle.owned:
        ray.shutdown()
