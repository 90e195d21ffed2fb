"""Hydra launcher `hydra/launcher=ray_jobs`: each `-m` combination becomes a Ray job on a cluster.

    python -m jobs.train -m hydra/launcher=ray_jobs hydra.launcher.address=http://HEAD:8265 \\
        model=mlp,xgboost experiment=demo storage_path=/mnt/runs

All combinations are submitted at once through the Jobs API, then awaited. What a job runs:

- `mode=module` (the default), for the ray_ml jobs: `python -m jobs.<job> <overrides>` through
  `ray_ml.cluster.submit_job`, the same code as `ray-ml submit` (working dir upload, token, env
  vars). The job's summary (its last JSON log line) is the Hydra job's return value. A
  combination that does not set `name` gets `name=<name>-<index>`, so that parallel jobs never
  write into the same run folder.
- `mode=task`, for any Hydra app (Hydra's own launcher test suite runs this way): the app's task
  function itself, pickled, run by Hydra's `run_job` in the job (`_run_task.py`); its return
  value or exception comes back. Nothing is uploaded: the head must see this machine's files at
  the same paths and be able to run this Python, e.g. a local head (`ray start --head`) or a
  cluster on a shared file system.

Either way a job gets what Hydra's basic launcher gives it: an output dir
`<hydra.sweep.dir>/<hydra.sweep.subdir>` holding `.hydra/` (config.yaml, hydra.yaml,
overrides.yaml) and `<hydra.job.name>.log` (in module mode, the Ray job's logs), and a
`JobReturn` with the task config without the `hydra` node, `hydra_cfg`, `working_dir` (the
output dir in module mode; as `run_job` sets it in task mode), the status and the return value.
A table of every combination with its status goes to stderr and
`<hydra.sweep.dir>/ray_jobs.json`; failed combinations are listed there and then make the
multirun fail (Hydra raises the first failure), never silently dropped.
"""

import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

from hydra_plugins.ray_ml_launcher._job_record import job_record, write_job_files
from hydra_plugins.ray_ml_launcher._run_task import return_path


class LaunchMode(StrEnum):
    """What each Ray job runs (see the module docstring)."""

    module = "module"  # python -m jobs.<job> <overrides>: the ray_ml jobs, code uploaded
    task = "task"  # the app's task function, pickled: any Hydra app; shares this file system


@dataclass
class RayJobsLauncherConf:  # OmegaConf 2.3 reads Optional[...], not X | None
    _target_: str = "hydra_plugins.ray_ml_launcher.ray_jobs_launcher.RayJobsLauncher"
    mode: LaunchMode = LaunchMode.module
    address: Optional[str] = None  # noqa: UP045 -- Jobs API, e.g. http://127.0.0.1:8265; None: $RAY_ADDRESS
    token: Optional[str] = None  # noqa: UP045 -- None: $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token
    working_dir: str = "."  # module mode: uploaded, must hold jobs/<job>.py
    job: Optional[str] = None  # noqa: UP045 -- module mode: module in jobs/; None: hydra.job.name
    env_vars: dict = field(default_factory=dict)
    timeout_s: Optional[float] = None  # noqa: UP045 -- per sweep; None waits for every job


ConfigStore.instance().store(
    group="hydra/launcher", name="ray_jobs", node=RayJobsLauncherConf, provider="ray_ml"
)


class JobFailed(RuntimeError):
    """A combination's Ray job did not succeed."""


@dataclass
class _Submitted:
    idx: int
    record: JobReturn  # as Hydra's run_job fills it; completed once the Ray job ends
    args: list[str]  # the job's overrides as submitted, for the table
    sid: str = ""
    spec: Path | None = None  # task mode: the pickled job


class RayJobsLauncher(Launcher):
    """Submits every combination as a Ray job and gathers the results (module docstring)."""

    def __init__(
        self,
        mode: LaunchMode | str = LaunchMode.module,
        address: str | None = None,
        token: str | None = None,
        working_dir: str = ".",
        job: str | None = None,
        env_vars: dict | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self.mode = LaunchMode(mode)
        self.address = address
        self.token = token
        self.working_dir = working_dir
        self.job = job
        self.env_vars = {str(k): str(v) for k, v in (env_vars or {}).items()}
        self.timeout_s = timeout_s
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from ray_ml.cluster import job_client

        assert self.config is not None and self.hydra_context is not None
        setup_globals()  # the `now` and `hydra` resolvers of the sweep and output dirs
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        client = job_client(self.address, self.token)
        submitted = []
        for offset, overrides in enumerate(job_overrides):
            idx = initial_job_idx + offset
            sweep_config = self.hydra_context.config_loader.load_sweep_config(
                self.config, list(overrides)
            )
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = idx
                sweep_config.hydra.job.num = idx
            job = _Submitted(idx, job_record(sweep_config), list(filter_overrides(overrides)))
            if self.mode is LaunchMode.task:
                self._submit_task(client, job, sweep_config, sweep_dir)
            else:
                self._submit_module(job)
            write_job_files(job.record)
            print(
                f"[ray_jobs] #{idx} {' '.join(job.args)} -> {job.sid}", file=sys.stderr, flush=True
            )
            submitted.append(job)
        self._wait(client, [job.sid for job in submitted])
        table = [self._gather(client, job) for job in submitted]
        _report(table, sweep_dir)
        return [job.record for job in submitted]

    def _submit_module(self, job: _Submitted) -> None:
        from ray_ml.cluster import submit_job

        assert self.config is not None and job.record.cfg is not None
        if "name" in self.config and not any(
            a.split("=", 1)[0].lstrip("+~") == "name" for a in job.args
        ):
            name = f"{self.config.name}-{job.idx}"
            job.args.append(f"name={name}")
            job.record.cfg.name = name  # the record says what the job ran with
            job.record.overrides = [*(job.record.overrides or []), f"name={name}"]
        job.sid = submit_job(
            self.job or str(self.config.hydra.job.name),
            job.args,
            address=self.address,
            token=self.token,
            working_dir=self.working_dir,
            env_vars=self.env_vars,
        )

    def _submit_task(
        self, client: Any, job: _Submitted, sweep_config: DictConfig, sweep_dir: Path
    ) -> None:
        import cloudpickle

        job.spec = (sweep_dir / ".ray_jobs" / f"job-{job.idx}.pkl").resolve()
        job.spec.parent.mkdir(parents=True, exist_ok=True)
        job.spec.write_bytes(
            cloudpickle.dumps(
                {
                    "task_function": self.task_function,
                    "config": sweep_config,
                    "hydra_context": self.hydra_context,
                    "singletons": Singleton.get_state(),  # resolvers, version base, ...
                }
            )
        )
        # The job runs where this process runs: relative paths and imports mean the same there.
        entrypoint = f"cd {shlex.quote(os.getcwd())} && " + shlex.join(
            [sys.executable, "-m", "hydra_plugins.ray_ml_launcher._run_task", str(job.spec)]
        )
        runtime_env = {"env_vars": self.env_vars}
        job.sid = str(client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env))

    def _wait(self, client: Any, sids: list[str]) -> None:
        from ray_ml.cluster import TERMINAL

        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        pending = set(sids)
        while pending and (deadline is None or time.monotonic() < deadline):
            for sid in list(pending):
                status = client.get_job_status(sid)
                if str(getattr(status, "value", status)) in TERMINAL:
                    pending.discard(sid)
            if pending:
                time.sleep(0.5)

    def _gather(self, client: Any, job: _Submitted) -> dict[str, Any]:
        """Fill `job.record` from the finished Ray job; its row of the results table."""
        from ray_ml.cluster import TERMINAL, job_summary

        info = client.get_job_info(job.sid)
        status = str(getattr(info.status, "value", info.status))
        logs = client.get_job_logs(job.sid)
        summary = None
        if job.spec is None:  # module mode: the Ray job's logs are the Hydra job's log
            assert job.record.working_dir is not None
            log_file = Path(job.record.working_dir, f"{job.record.task_name}.log")
            log_file.write_text(logs, encoding="utf-8")
            summary = job_summary(logs)
        elif return_path(job.spec).is_file():  # task mode: run_job's own JobReturn
            import cloudpickle

            job.record = cloudpickle.loads(return_path(job.spec).read_bytes())
        if job.spec is None and status == "SUCCEEDED":
            job.record.status = JobStatus.COMPLETED
            job.record.return_value = summary
        elif job.record.status is JobStatus.UNKNOWN:  # no result came back
            why = [f"Ray job {job.sid} ({' '.join(job.args)}) ended {status}: {info.message}."]
            if status not in TERMINAL:
                why.append(
                    f"It was still running after hydra.launcher.timeout_s={self.timeout_s}, and "
                    "keeps running on the cluster. Fix: raise the timeout, or stop the job."
                )
            elif job.spec is not None:
                why.append(
                    f"It left no result at {return_path(job.spec)}: its process died (see the "
                    "logs), or the head does not see this machine's files, which mode=task "
                    "needs (a local head, or a shared mount at the same paths)."
                )
            tail = " | ".join(logs.strip().splitlines()[-3:])[-600:]
            why.append(f"Last log lines: {tail}. Full logs: ray-ml jobs logs {job.sid}")
            job.record.status = JobStatus.FAILED
            job.record.return_value = JobFailed(" ".join(why))
        return {
            "index": job.idx,
            "overrides": job.args,
            "submission_id": job.sid,
            "status": status,
            "exit_code": getattr(info, "driver_exit_code", None),
            "summary": summary,
        }


def _report(table: list[dict[str, Any]], sweep_dir: Path) -> None:
    width = max((len(" ".join(r["overrides"])) for r in table), default=10)
    print("[ray_jobs] results:", file=sys.stderr)
    for r in table:
        print(
            f"  #{r['index']:<3} {' '.join(r['overrides']):<{width}}  {r['status']:<9} "
            f"{r['submission_id']}",
            file=sys.stderr,
        )
    (sweep_dir / "ray_jobs.json").write_text(json.dumps(table, indent=2, default=str))
    print(json.dumps({"jobs": table}, default=str), flush=True)
