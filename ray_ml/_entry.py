"""What every `jobs/*.py` main shares: typed config once, one call, one JSON summary line.

Errors a user can fix (`RayMLError`: config, data, contract, files) end the job with a one-line
message on stderr naming the problem and the fix, and a non-zero exit code; never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from ray_ml.config import RunConfig, to_run_config
from ray_ml.errors import RayMLError

__all__ = ["run_job"]


def run_job(cfg: DictConfig, work: Callable[[RunConfig], dict[str, Any]]) -> None:
    """Validate `cfg`, run `work`, print its summary as the last stdout line (exit code on errors)."""
    try:
        summary = work(to_run_config(cfg))
    except RayMLError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)
    sys.stdout.flush()
    print(json.dumps(summary, default=str), flush=True)
