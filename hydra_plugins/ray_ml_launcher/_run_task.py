"""One Hydra job inside a Ray job: `python -m hydra_plugins.ray_ml_launcher._run_task SPEC`.

The ray_jobs launcher in `mode=task` pickles (cloudpickle) the app's task function, the job's
sweep config, the HydraContext and Hydra's singleton state (registered resolvers, the version
base, the config store) into SPEC, and submits this module, run in the launching process's
working directory. It runs the job with Hydra's own `run_job`, as Hydra's basic launcher does
(output dir, `.hydra/` files, job logging, callbacks), and pickles the `JobReturn` to
`return_path(SPEC)` for the launcher to read back. The exit code is 1 when the task raised, so
the Ray job shows FAILED too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cloudpickle
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobStatus, run_job, setup_globals

__all__ = ["main", "return_path"]


def return_path(spec: Path) -> Path:
    """Where the job's pickled `JobReturn` lands, next to its spec."""
    return spec.with_suffix(".return.pkl")


def main(spec: Path) -> int:
    job = cloudpickle.loads(spec.read_bytes())
    setup_globals()
    Singleton.set_state(job["singletons"])
    HydraConfig.instance().set_config(job["config"])
    ret = run_job(
        hydra_context=job["hydra_context"],
        task_function=job["task_function"],
        config=job["config"],
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    try:
        data = cloudpickle.dumps(ret)
    except Exception as exc:  # e.g. a return value holding a lock or a socket
        what = "error" if ret.status is JobStatus.FAILED else "return value"
        ret.return_value = RuntimeError(
            f"the job's {what} {ret._return_value!r} cannot be pickled back to the launcher: "
            f"{exc}. Fix: return plain data (numbers, strings, dicts, dataclasses)."
        )
        ret.status = JobStatus.FAILED
        data = cloudpickle.dumps(ret)
    return_path(spec).write_bytes(data)
    return 1 if ret.status is JobStatus.FAILED else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
