"""What every `jobs/*.py` main shares: typed config once, one call, one JSON summary line.

Errors a user can fix (`RayMLError`: config, data, contract, files) end the job with a one-line
message on stderr naming the problem and the fix, and a non-zero exit code; never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from ray_ml.config import RunConfig, to_run_config
from ray_ml.console import configure_console, current_console
from ray_ml.errors import ConfigError, RayMLError

__all__ = ["run_job", "run_log_dir", "with_console"]


def ray_job_home() -> str:
    """Where a Ray job with a relative `storage_path` writes on a single-node cluster.

    `~/ray_ml` on the head (like Ray's own `~/ray_results`), or `$RAY_ML_JOB_HOME`.
    """
    return os.environ.get("RAY_ML_JOB_HOME") or os.path.join(os.path.expanduser("~"), "ray_ml")


def _in_ray_job() -> bool:
    return "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ  # set by Ray for job drivers only


def _storage_for_ray_job(cfg: DictConfig) -> str | None:
    """Inside `ray job submit`: where outputs go, set on `cfg` before it is validated.

    The job's working dir is a temporary copy, so a relative `storage_path` would be lost with
    it. On a single-node cluster it goes under `ray_job_home()` on the head instead; on a multi-node cluster every node must see the same files, so a
    relative path, or an absolute one the other nodes do not see, fails here, before any work.

    Returns:
        The storage path outputs go to, or None outside a Ray job or for a URI.
    """
    path = str(cfg.get("storage_path") or "runs")
    if not _in_ray_job() or "://" in path:
        return None
    import ray

    from ray_ml.cluster import start_ray

    start_ray()  # joins the job's cluster (RAY_ADDRESS); later stages reuse the connection
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if not os.path.isabs(path):
        if len(nodes) > 1:
            raise ConfigError(
                f"storage_path={path!r} is relative, and this Ray job runs on a {len(nodes)}-node "
                "cluster: it would resolve inside the job's temporary working directory, which "
                "the other nodes do not see. Fix: pass storage the nodes share, e.g. "
                "`storage_path=s3://bucket/runs` or `storage_path=/mnt/shared/runs`."
            )
        path = os.path.join(ray_job_home(), path)
        cfg.storage_path = path  # interpolations such as ${storage_path}/registry follow
    if len(nodes) > 1:
        _check_shared(path, nodes)
    return path


def _check_shared(path: str, nodes: list[dict[str, Any]]) -> None:
    """Fail unless every node sees a marker file this driver writes under `path`."""
    import uuid

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    os.makedirs(path, exist_ok=True)
    marker = os.path.join(path, f".ray_ml_shared_{uuid.uuid4().hex}")
    with open(marker, "w") as f:
        f.write("ray_ml: storage check\n")

    @ray.remote(num_cpus=0)
    def sees(p: str) -> bool:
        return os.path.exists(p)

    try:
        here = ray.get_runtime_context().get_node_id()
        others = [n for n in nodes if n["NodeID"] != here]
        refs = [
            sees.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote(marker)
            for n in others
        ]
        seen = ray.get(refs, timeout=120)
    finally:
        os.remove(marker)
    blind = [
        n.get("NodeManagerAddress", n["NodeID"])
        for n, ok in zip(others, seen, strict=True)
        if not ok
    ]
    if blind:
        raise ConfigError(
            f"storage_path={path!r} is not shared: nodes {blind} do not see files this job "
            "writes there, so checkpoints and results written on them would be lost. Fix: pass "
            "storage every node mounts, e.g. `storage_path=s3://bucket/runs` or an NFS path."
        )


def run_log_dir(run: RunConfig) -> str:
    """Where a job's Ray, Tune and Train output goes: `<storage_path>/<name>/logs`."""
    return os.path.join(run.storage_path, run.name, "logs")


def with_console(run: RunConfig, work: Callable[[RunConfig], dict[str, Any]]) -> dict[str, Any]:
    """`work(run)` with the job's quiet console (`ray_ml.console`); its bars end before it returns."""
    console = configure_console(run_log_dir(run), verbose=run.verbose)
    try:
        return work(run)
    finally:
        console.close()


def run_job(cfg: DictConfig, work: Callable[[RunConfig], dict[str, Any]]) -> None:
    """Validate `cfg`, run `work`, print its summary as the last stdout line (exit code on errors)."""
    try:
        job_storage = _storage_for_ray_job(cfg)
        run = to_run_config(cfg)

        def announced(r: RunConfig) -> dict[str, Any]:
            if job_storage is None:
                return work(r)
            current_console().say("storage", f"outputs under {os.path.abspath(job_storage)}")
            return {**work(r), "storage_path": r.storage_path}

        summary = with_console(run, announced)
    except RayMLError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)
    sys.stdout.flush()
    print(json.dumps(summary, default=str), flush=True)
