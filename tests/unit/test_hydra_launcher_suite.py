"""Hydra's own `LauncherTestSuite` against `hydra/launcher=ray_jobs`, without a Ray head.

A stand-in for the Ray Jobs API (`SubprocessJobs`) runs each submitted entrypoint as a local shell
process, as a head's job supervisor does, so the launcher's whole path runs: the pickled task and
its entrypoint (`mode=task`), or `python -m jobs.<job>` in a stand-in working dir (`mode=module`),
polling, the JobReturn, the `.hydra/` files. tests/e2e/test_hydra_launcher_suite.py runs the
same suite, and Hydra's `IntegrationTestSuite`, on a real local head.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.launcher import Launcher
from hydra.test_utils.launcher_common_tests import LauncherTestSuite
from hydra.test_utils.test_utils import TSweepRunner, verify_dir_outputs
from omegaconf import OmegaConf

import ray_ml.cluster
import ray_ml.cluster._jobs
from hydra_plugins.ray_ml_launcher.ray_jobs_launcher import JobFailed, RayJobsLauncher
from tests._hydra_suite import hydra_as_in_a_fresh_process

pytestmark = pytest.mark.unit


class SubprocessJobs:
    """Stands in for Ray's `JobSubmissionClient`: each entrypoint runs as a local shell process,
    in the runtime env's `working_dir` (uploaded by a real head) and with its `env_vars`."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.submitted: list[dict[str, Any]] = []
        self._ids = itertools.count()

    def client(self, address: str | None = None, token: str | None = None) -> SubprocessJobs:
        return self

    def submit_job(
        self, *, entrypoint: str, runtime_env: dict[str, Any] | None = None, **_: Any
    ) -> str:
        runtime_env = runtime_env or {}
        sid = f"raysubmit_standin{next(self._ids)}"
        env = {**os.environ, **runtime_env.get("env_vars", {})}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        with (self.logs / f"{sid}.log").open("wb") as log:
            self.procs[sid] = subprocess.Popen(
                entrypoint,
                shell=True,  # as Ray's job supervisor runs an entrypoint
                cwd=runtime_env.get("working_dir"),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.submitted.append({"entrypoint": entrypoint, "runtime_env": runtime_env})
        return sid

    def get_job_status(self, sid: str) -> str:
        code = self.procs[sid].poll()
        return "RUNNING" if code is None else "SUCCEEDED" if code == 0 else "FAILED"

    def get_job_info(self, sid: str) -> SimpleNamespace:
        code = self.procs[sid].poll()
        message = "running" if code is None else f"the entrypoint exited with code {code}"
        return SimpleNamespace(
            status=self.get_job_status(sid), message=message, driver_exit_code=code
        )

    def get_job_logs(self, sid: str) -> str:
        return (self.logs / f"{sid}.log").read_text(errors="replace")

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


@pytest.fixture(autouse=True)
def jobs_api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[SubprocessJobs]:
    jobs = SubprocessJobs(tmp_path / "stand-in-head")
    # `submit_job` builds its own client through `_jobs.job_client`; the launcher uses the
    # package's: both are the one function, so both names are replaced.
    monkeypatch.setattr(ray_ml.cluster, "job_client", jobs.client)
    monkeypatch.setattr(ray_ml.cluster._jobs, "job_client", jobs.client)
    with hydra_as_in_a_fresh_process():
        yield jobs
    jobs.close()


def _name(cls: type) -> str:
    # Hydra's plugin discovery imports hydra_plugins.* itself: compare classes by name, since
    # the test module's import and Hydra's may be two module objects.
    return f"{cls.__module__}.{cls.__qualname__}"


def test_the_launcher_is_discovered_by_hydra() -> None:
    assert _name(RayJobsLauncher) in {_name(c) for c in Plugins.instance().discover(Launcher)}


@pytest.mark.parametrize(
    ("launcher_name", "overrides"), [("ray_jobs", ["hydra.launcher.mode=task"])]
)
class TestRayJobsLauncherTaskMode(LauncherTestSuite):
    """Hydra's launcher test suite, unchanged: its tasks are Python functions (mode=task)."""


def test_task_mode_brings_the_tasks_own_exception_back(
    hydra_sweep_runner: TSweepRunner, tmp_path: Path
) -> None:
    def task(cfg: Any) -> Any:
        raise KeyError(f"no key like {cfg.foo}")

    sweep = hydra_sweep_runner(
        calling_file=None,
        calling_module="hydra.test_utils.a_module",
        task_function=task,
        config_path="configs",
        config_name="compose.yaml",
        overrides=["hydra/launcher=ray_jobs", "hydra.launcher.mode=task", "+a=1"],
        temp_dir=tmp_path,
    )
    with pytest.raises(KeyError, match="no key like 10"), sweep:
        pass


def test_task_mode_names_the_ray_job_when_it_dies_without_a_result(
    hydra_sweep_runner: TSweepRunner, tmp_path: Path
) -> None:
    def task(cfg: Any) -> Any:
        os._exit(7)  # as an out-of-memory kill would: no JobReturn comes back

    sweep = hydra_sweep_runner(
        calling_file=None,
        calling_module="hydra.test_utils.a_module",
        task_function=task,
        config_path="configs",
        config_name="compose.yaml",
        overrides=["hydra/launcher=ray_jobs", "hydra.launcher.mode=task"],
        temp_dir=tmp_path,
    )
    dies = r"raysubmit_standin0 .*ended FAILED.*left no result"
    with pytest.raises(Exception, match=dies) as info, sweep:
        pass
    assert type(info.value).__name__ == JobFailed.__name__


@pytest.fixture
def module_app(tmp_path: Path) -> Path:
    """A stand-in ray_ml working dir: a Hydra config with `name`, and jobs/echo.py, which
    prints its overrides as its JSON summary and fails for x=3."""
    app = tmp_path / "app"
    (app / "jobs").mkdir(parents=True)
    (app / "app.py").write_text("")
    (app / "config.yaml").write_text("name: demo\nx: 0\n")
    (app / "jobs" / "echo.py").write_text(
        "import json, sys\n"
        "print('echo starting')\n"
        "print(json.dumps({'job': 'echo', 'args': sys.argv[1:]}))\n"
        "sys.exit(2 if 'x=3' in sys.argv else 0)\n"
    )
    return app


def _module_sweep(hydra_sweep_runner: TSweepRunner, app: Path, sweep_dir: Path, xs: str) -> Any:
    return hydra_sweep_runner(
        calling_file=str(app / "app.py"),
        calling_module=None,
        task_function=None,
        config_path=".",
        config_name="config",
        overrides=[
            "hydra/launcher=ray_jobs",
            f"hydra.launcher.working_dir={app}",
            "hydra.launcher.job=echo",
            "+hydra.launcher.env_vars.ECHO=1",
            f"x={xs}",
        ],
        temp_dir=sweep_dir,
    )


def test_module_mode_records_each_job_as_hydras_basic_launcher_would(
    hydra_sweep_runner: TSweepRunner, module_app: Path, tmp_path: Path, jobs_api: SubprocessJobs
) -> None:
    with _module_sweep(hydra_sweep_runner, module_app, tmp_path / "sweep", "1,2") as sweep:
        assert sweep.returns is not None
        rets = sweep.returns[0]
        assert [r.status for r in rets] == [JobStatus.COMPLETED, JobStatus.COMPLETED]
        for i, ret in enumerate(rets):
            args = [f"x={i + 1}", f"name=demo-{i}"]  # the launcher names each run
            assert ret.return_value == {"job": "echo", "args": args}
            assert ret.overrides == args
            assert ret.cfg == {"name": f"demo-{i}", "x": i + 1}  # no `hydra` node
            assert ret.hydra_cfg.hydra.job.num == i and ret.hydra_cfg.hydra.job.name == "app"
            assert ret.working_dir == str(tmp_path / "sweep" / str(i))
            verify_dir_outputs(ret, ret.overrides)
            assert "echo starting" in Path(ret.working_dir, "app.log").read_text()
            hydra_yaml = OmegaConf.load(Path(ret.working_dir, ".hydra", "hydra.yaml"))
            assert hydra_yaml.hydra.runtime.output_dir == ret.working_dir
        table = json.loads((tmp_path / "sweep" / "ray_jobs.json").read_text())
        assert [row["status"] for row in table] == ["SUCCEEDED", "SUCCEEDED"]
    submitted = jobs_api.submitted[0]
    assert submitted["entrypoint"] == "python -m jobs.echo x=1 name=demo-0"
    assert submitted["runtime_env"]["working_dir"] == str(module_app)
    assert submitted["runtime_env"]["env_vars"]["ECHO"] == "1"


def test_module_mode_lists_a_failed_job_and_fails_the_multirun(
    hydra_sweep_runner: TSweepRunner, module_app: Path, tmp_path: Path
) -> None:
    sweep = _module_sweep(hydra_sweep_runner, module_app, tmp_path / "sweep", "2,3")
    failed = r"\(x=3 name=demo-1\) ended FAILED.*echo starting"
    with pytest.raises(Exception, match=failed) as info, sweep:
        pass
    assert type(info.value).__name__ == JobFailed.__name__
    table = json.loads((tmp_path / "sweep" / "ray_jobs.json").read_text())
    assert [(row["status"], row["exit_code"]) for row in table] == [
        ("SUCCEEDED", 0),
        ("FAILED", 2),
    ]
    assert table[0]["summary"] == {"job": "echo", "args": ["x=2", "name=demo-0"]}
    assert (tmp_path / "sweep" / "1" / ".hydra" / "config.yaml").is_file()
