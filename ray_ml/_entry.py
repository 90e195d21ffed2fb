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
from ray_ml.errors import ConfigError, RayMLError

__all__ = ["run_job"]


def _check_storage_in_ray_job(run: RunConfig) -> None:
    """Inside `ray job submit` the working dir is a temporary copy: outputs must go elsewhere."""
    if "RAY_JOB_CONFIG_JSON_ENV_VAR" not in os.environ:  # set by Ray for job drivers only
        return
    if os.path.isabs(run.storage_path):
        return
    raise ConfigError(
        f"storage_path={run.storage_path!r} is relative, and this is a Ray job: it would resolve "
        f"inside the job's temporary working directory ({os.getcwd()}) and be lost with it. "
        "Pass an absolute path on storage the job's nodes share, e.g. `storage_path=/mnt/runs`."
    )


def run_job(cfg: DictConfig, work: Callable[[RunConfig], dict[str, Any]]) -> None:
    """Validate `cfg`, run `work`, print its summary as the last stdout line (exit code on errors)."""
    try:
        run = to_run_config(cfg)
        _check_storage_in_ray_job(run)
        summary = work(run)
    except RayMLError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)
    sys.stdout.flush()
    print(json.dumps(summary, default=str), flush=True)
