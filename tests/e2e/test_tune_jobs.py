"""A sweep whose driver is SIGKILLed resumes with tune.resume=true without rerunning finished trials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.e2e.test_cli_data import last_json, run

pytestmark = pytest.mark.e2e


@pytest.mark.slow
def test_killed_sweep_driver_resumes_without_rerunning_finished_trials(tmp_path: Path) -> None:
    args = [
        sys.executable,
        "-m",
        "jobs.tune",
        "experiment=demo",
        "debug=tiny",
        f"storage_path={tmp_path}",
        "tune.num_samples=4",
        "tune.max_concurrent_trials=1",
    ]
    env = {**os.environ, "RAY_ML_PROGRESS": "0"}
    env.pop("RAY_ADDRESS", None)
    state = tmp_path / "demo-sweep" / "sweep_state.json"
    driver = subprocess.Popen(
        args,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if state.exists() and len(json.loads(state.read_text())["records"]) >= 2:
                break
            assert driver.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.5)
        else:
            pytest.fail("no two trials finished in time")
        time.sleep(3)  # Tune saves its experiment state every second (TUNE_GLOBAL_CHECKPOINT_S)
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started, no cleanup
        driver.wait(30)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    finished = json.loads(state.read_text())["records"]
    trial_runs = {p.name for p in (tmp_path / "ray_train").iterdir()}

    res = run(*args, "tune.resume=true")
    assert res.returncode == 0, res.stderr[-3000:]
    summary = last_json(res.stdout)
    assert summary["trials"] == 4
    for trial_id in finished:
        # a finished trial keeps its one Train run: nothing under its name was started again
        runs = [
            name
            for name in (p.name for p in (tmp_path / "ray_train").iterdir())
            if name.startswith(f"trial_{trial_id}-")
        ]
        assert len(runs) == 1 and runs[0] in trial_runs
        checkpoints = [
            p for p in (tmp_path / "ray_train" / runs[0]).glob("checkpoint_*") if p.is_dir()
        ]
        assert len(checkpoints) == 1  # debug=tiny: one epoch, one checkpoint, not two
    assert summary["cost_usd"] > 0


def test_hydra_multirun_with_the_ray_tune_sweeper_is_one_sweep(tmp_path: Path) -> None:
    res = run(
        sys.executable,
        "-m",
        "jobs.train",
        "-m",
        "hydra/sweeper=ray_tune",
        "experiment=demo",
        "debug=tiny",
        f"storage_path={tmp_path}",
        "tune.num_samples=2",
        "train.lr=tag(log,interval(1e-3,1e-1))",
        "model.hidden_sizes=choice([16],[32,16])",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    summary = last_json(res.stdout)
    assert summary["job"] == "tune" and summary["trials"] == 2
    assert set(summary["best"]["config"]) == {"train.lr", "model.hidden_sizes"}
    assert 1e-3 <= summary["best"]["config"]["train.lr"] <= 1e-1
