"""Jobs on a real Ray head (`ray start --head`, token auth, isolated ports): `ray job submit`,
`ray-ml submit` / `ray-ml jobs`, outputs in the configured storage path, 401 without the token."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests._ray_head import VENV_BIN, Head, ray_head, worker_node
from tests.e2e.test_cli_data import REPO, last_json

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def job_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where jobs without an absolute storage_path write (`RAY_ML_JOB_HOME`, ~/ray_ml if unset)."""
    return tmp_path_factory.mktemp("job_home")


@pytest.fixture(scope="module")
def head(job_home: Path) -> Iterator[Head]:
    with ray_head(env_extra={"RAY_ML_JOB_HOME": str(job_home)}) as h:
        yield h


def test_jobs_api_refuses_requests_without_the_token(head: Head) -> None:
    anonymous = requests.post(f"{head.url}/api/jobs/", json={"entrypoint": "echo hi"}, timeout=10)
    assert anonymous.status_code == 401
    wrong = requests.get(
        f"{head.url}/api/jobs/", headers={"Authorization": "Bearer nope"}, timeout=10
    )
    assert wrong.status_code in (401, 403)
    env = {k: v for k, v in head.env.items() if k != "RAY_AUTH_TOKEN"}
    env["RAY_AUTH_TOKEN_PATH"] = "/nonexistent"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "ray_ml.cli",
            "jobs",
            "list",
            "--address",
            head.url,
            "--token",
            "not-the-token",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert res.returncode != 0
    assert "refused" in res.stderr and "--token" in res.stderr


def test_ray_job_submit_runs_a_job_whose_outputs_land_in_storage(
    head: Head, tmp_path: Path
) -> None:
    res = head.run(
        f"{VENV_BIN}/ray",
        "job",
        "submit",
        "--address",
        head.url,
        "--working-dir",
        ".",
        "--",
        "python",
        "-m",
        "jobs.data",
        "experiment=demo",
        "debug=tiny",
        f"storage_path={tmp_path}",
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = last_json("\n".join(ln for ln in res.stdout.splitlines() if ln.startswith("{")))
    assert summary["job"] == "data" and summary["rows_ok"] == 569
    assert (tmp_path / "demo" / "data" / "summary.json").is_file()
    assert (tmp_path / "demo" / "data" / "preprocessor.json").is_file()


@pytest.mark.slow  # over a minute here: the slow step runs it (default run < ~20 min)
def test_ray_ml_submit_waits_streams_and_returns_the_summary(head: Head, tmp_path: Path) -> None:
    res = head.run(
        sys.executable,
        "-m",
        "ray_ml.cli",
        "submit",
        "train",
        "experiment=demo",
        "debug=tiny",
        f"storage_path={tmp_path}",
        "--address",
        head.url,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = last_json(res.stdout)
    assert out["status"] == "SUCCEEDED" and out["exit_code"] == 0
    assert out["summary"]["job"] == "train"
    bundle = Path(out["summary"]["bundle"])
    assert bundle.is_relative_to(tmp_path) and (bundle / "manifest.json").is_file()
    assert "submitted raysubmit_" in res.stderr


def test_the_plainest_ray_job_submit_works_and_says_where_its_outputs_are(
    head: Head, job_home: Path
) -> None:
    # No storage_path: on a single-node head the outputs go to an absolute default there.
    res = head.run(
        f"{VENV_BIN}/ray",
        "job",
        "submit",
        "--address",
        head.url,
        "--working-dir",
        ".",
        "--",
        "python",
        "-m",
        "jobs.train",
        "data=breast_cancer",
        "model=xgboost",
        "debug=tiny",
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    where = job_home / "runs" / "debug"
    assert f"[storage] outputs under {where}" in res.stdout + res.stderr
    summary = last_json("\n".join(ln for ln in res.stdout.splitlines() if ln.startswith("{")))
    assert summary["job"] == "train" and summary["storage_path"] == str(where)
    bundle = Path(summary["bundle"])
    assert bundle.is_relative_to(where) and (bundle / "manifest.json").is_file()


def test_no_wait_then_jobs_logs_and_status(head: Head, tmp_path: Path) -> None:
    sub = head.run(
        sys.executable,
        "-m",
        "ray_ml.cli",
        "submit",
        "data",
        "experiment=demo",
        "debug=tiny",
        f"storage_path={tmp_path}",
        "--address",
        head.url,
        "--no-wait",
    )
    assert sub.returncode == 0, sub.stderr[-2000:]
    sid = last_json(sub.stdout)["submission_id"]
    logs = head.run(
        sys.executable, "-m", "ray_ml.cli", "jobs", "logs", sid, "--follow", "--address", head.url
    )
    assert logs.returncode == 0 and last_json(logs.stdout)["status"] == "SUCCEEDED"
    status = head.run(
        sys.executable, "-m", "ray_ml.cli", "jobs", "status", sid, "--address", head.url
    )
    assert last_json(status.stdout)["summary"]["job"] == "data"
    listed = head.run(sys.executable, "-m", "ray_ml.cli", "jobs", "list", "--address", head.url)
    assert sid in {j["submission_id"] for j in last_json(listed.stdout)["jobs"]}


def test_hydra_ray_jobs_launcher_submits_each_combination_and_reports_failures(
    head: Head, tmp_path: Path
) -> None:
    res = head.run(
        sys.executable,
        "-m",
        "jobs.data",
        "-m",
        "hydra/launcher=ray_jobs",
        f"hydra.launcher.address={head.url}",
        "experiment=demo",
        "debug=tiny",
        f"storage_path={tmp_path}",
        "data.max_reject_rate=0.05,2",
    )
    jobs = next(
        json.loads(line)["jobs"] for line in res.stdout.splitlines() if line.startswith('{"jobs"')
    )
    assert [j["status"] for j in jobs] == ["SUCCEEDED", "FAILED"], jobs
    ok, bad = jobs
    assert ok["summary"]["job"] == "data" and ok["summary"]["name"] == "demo-0"
    assert (tmp_path / "demo-0" / "data" / "summary.json").is_file()
    assert bad["exit_code"] == 2 and bad["summary"] is None
    # The failure is reported, and fails the multirun.
    assert res.returncode != 0
    assert "FAILED" in res.stderr and "data.max_reject_rate" in res.stderr


def test_state_api_calls_name_their_ray_when_two_run_on_the_machine(
    head: Head, ray_session: None
) -> None:
    # Two Rays on this machine: the head above and the session's own. A State API call that
    # looks for "the" Ray fails ("Found multiple active Ray instances"); the sweep's reaper
    # then silently reaped nothing. With the driver's own address it answers.
    from ray_ml.tune._sweep import _state_api_address, _sweep_placement_groups

    assert _sweep_placement_groups(_state_api_address()) is not None


def test_on_two_nodes_a_relative_storage_path_fails_fast_and_a_shared_one_works(
    head: Head, tmp_path: Path
) -> None:
    # Last in the module: the head has a second node from here on, until the test ends.
    with worker_node(head):
        submit = [f"{VENV_BIN}/ray", "job", "submit", "--address", head.url, "--working-dir", "."]
        job = ["--", "python", "-m", "jobs.data", "experiment=demo", "debug=tiny"]
        bad = head.run(*submit, *job)
        assert bad.returncode != 0
        said = bad.stdout + bad.stderr
        assert "is relative, and this Ray job runs on a 2-node cluster" in said
        assert "storage_path=" in said  # the fix
        good = head.run(*submit, *job, f"storage_path={tmp_path}")
        assert good.returncode == 0, good.stdout[-3000:] + good.stderr[-3000:]
        # every node saw the marker the driver wrote there, and the marker is gone
        assert f"[storage] outputs under {tmp_path}" in good.stdout + good.stderr
        assert not list(tmp_path.glob(".ray_ml_shared_*"))
        assert (tmp_path / "demo" / "data" / "summary.json").is_file()
