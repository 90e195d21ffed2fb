"""Hydra launcher `hydra/launcher=ray_jobs`: each `-m` combination becomes a Ray job on a cluster.

    python -m jobs.train -m hydra/launcher=ray_jobs hydra.launcher.address=http://HEAD:8265 \\
        model=mlp,xgboost experiment=demo storage_path=/mnt/runs

All combinations are submitted at once through the Jobs API (`ray_ml.cluster._jobs`, the same
code as `ray-ml submit`: working dir upload, token, env vars), then awaited; each job's summary
(its last JSON log line) is gathered back as the Hydra job's return value. A table of every
combination with its status goes to stderr and `<hydra.sweep.dir>/ray_jobs.json`; failed
combinations are listed there and then make the multirun fail (Hydra raises the first failure),
never silently dropped. A combination that does not set `name` gets `name=<name>-<index>`, so
that parallel jobs never write into the same run folder.
"""

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class RayJobsLauncherConf:  # OmegaConf 2.3 reads Optional[...], not X | None
    _target_: str = "hydra_plugins.ray_ml_launcher.ray_jobs_launcher.RayJobsLauncher"
    address: Optional[str] = None  # noqa: UP045 -- Jobs API, e.g. http://127.0.0.1:8265; None: $RAY_ADDRESS
    token: Optional[str] = None  # noqa: UP045 -- None: $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token
    working_dir: str = "."
    job: Optional[str] = None  # noqa: UP045 -- module in jobs/; None: the running app's (hydra.job.name)
    env_vars: dict = field(default_factory=dict)
    timeout_s: Optional[float] = None  # noqa: UP045 -- per sweep; None waits for every job


ConfigStore.instance().store(
    group="hydra/launcher", name="ray_jobs", node=RayJobsLauncherConf, provider="ray_ml"
)


class JobFailed(RuntimeError):
    """A combination's Ray job did not succeed."""


class RayJobsLauncher(Launcher):
    """Submits every combination as a Ray job and gathers the results (module docstring)."""

    def __init__(
        self,
        address: str | None = None,
        token: str | None = None,
        working_dir: str = ".",
        job: str | None = None,
        env_vars: dict | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self.address = address
        self.token = token
        self.working_dir = working_dir
        self.job = job
        self.env_vars = dict(env_vars or {})
        self.timeout_s = timeout_s
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from ray_ml.cluster import TERMINAL, job_client, job_summary, submit_job

        assert self.config is not None and self.hydra_context is not None
        job = self.job or str(self.config.hydra.job.name)
        base_name = str(self.config.get("name", "run"))
        client = job_client(self.address, self.token)
        submitted = []
        for offset, overrides in enumerate(job_overrides):
            idx = initial_job_idx + offset
            args = list(filter_overrides(overrides))
            if not any(a.split("=", 1)[0].lstrip("+~") == "name" for a in args):
                args.append(f"name={base_name}-{idx}")
            sid = submit_job(
                job,
                args,
                address=self.address,
                token=self.token,
                working_dir=self.working_dir,
                env_vars={str(k): str(v) for k, v in self.env_vars.items()},
            )
            print(f"[ray_jobs] #{idx} {' '.join(args)} -> {sid}", file=sys.stderr, flush=True)
            submitted.append((idx, list(overrides), args, sid))

        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        pending = {sid for *_, sid in submitted}
        while pending and (deadline is None or time.monotonic() < deadline):
            for sid in list(pending):
                status = client.get_job_status(sid)
                if str(getattr(status, "value", status)) in TERMINAL:
                    pending.discard(sid)
            time.sleep(1.0)

        returns: list[JobReturn] = []
        table = []
        for idx, overrides, args, sid in submitted:
            info = client.get_job_info(sid)
            status = str(getattr(info.status, "value", info.status))
            logs = client.get_job_logs(sid)
            summary = job_summary(logs)
            ret = JobReturn(overrides=overrides, task_name=job)
            ret.cfg = self.hydra_context.config_loader.load_sweep_config(
                self.config, list(overrides)
            )
            if status == "SUCCEEDED":
                ret.status = JobStatus.COMPLETED
                ret.return_value = summary
            else:
                tail = " | ".join(logs.strip().splitlines()[-3:])[-600:]
                ret.status = JobStatus.FAILED
                ret.return_value = JobFailed(
                    f"Ray job {sid} ({' '.join(args)}) ended {status}: {info.message}. "
                    f"Last log lines: {tail}. Full logs: ray-ml jobs logs {sid}"
                )
            returns.append(ret)
            table.append(
                {
                    "index": idx,
                    "overrides": args,
                    "submission_id": sid,
                    "status": status,
                    "exit_code": getattr(info, "driver_exit_code", None),
                    "summary": summary,
                }
            )
        width = max((len(" ".join(r["overrides"])) for r in table), default=10)
        print("[ray_jobs] results:", file=sys.stderr)
        for r in table:
            print(
                f"  #{r['index']:<3} {' '.join(r['overrides']):<{width}}  {r['status']:<9} "
                f"{r['submission_id']}",
                file=sys.stderr,
            )
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / "ray_jobs.json").write_text(json.dumps(table, indent=2, default=str))
        print(json.dumps({"jobs": table}, default=str), flush=True)
        return returns
