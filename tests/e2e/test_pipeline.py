"""The README's main job, `python -m jobs.pipeline`, end to end on tiny settings, and its resume
after the whole process tree is killed mid-sweep."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from ray_ml.registry import Registry
from tests._ray_head import free_port
from tests.e2e.test_cli_data import REPO, last_json, run

pytestmark = pytest.mark.e2e


def test_pipeline_runs_end_to_end_on_tiny_settings(tmp_path: Path) -> None:
    res = run(
        sys.executable,
        "-m",
        "jobs.pipeline",
        "experiment=demo",
        "debug=tiny",
        f"storage_path={tmp_path}",
        f"serve.port={free_port()}",
    )
    assert res.returncode == 0, res.stderr[-4000:]
    summary = last_json(res.stdout)
    for key in ("best", "cost_usd", "trials", "pruned", "bundle", "endpoint"):
        assert key in summary, key
    assert summary["trials"] == 2 and summary["cost_usd"] > 0
    assert summary["best"]["val_loss"] > 0
    assert summary["endpoint"].endswith("/v1/predict")
    assert summary["smoke"]["status"] == 200 and summary["smoke"]["rows"] == 5
    assert Path(summary["bundle"], "manifest.json").is_file()
    assert Path(summary["report"]).is_file()
    aliases = Registry(tmp_path / "registry").aliases("demo")
    assert aliases["production"] == aliases["candidate"] == summary["registered"]["version"]
    for stage in ("stage 1/6 data", "stage 2/6 sweep", "stage 4/6 serve", "stage 6/6 report"):
        assert stage in res.stderr  # progress as it goes
    assert "[sweep]" in res.stderr and "spent" in res.stderr


def _kill_tree(proc: subprocess.Popen[str], temp_dir: str) -> None:
    """SIGKILL the job and its embedded Ray at once, as a crash or an OOM kill would."""
    victims = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    victims += [
        p
        for p in psutil.process_iter(["cmdline"])
        if any(temp_dir in part for part in (p.info["cmdline"] or [])) and p not in victims
    ]
    for p in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGKILL)
    psutil.wait_procs(victims, timeout=30)


@pytest.mark.slow
def test_pipeline_killed_mid_sweep_resumes_without_rerunning_finished_trials(
    tmp_path: Path,
) -> None:
    temp_dir = tempfile.mkdtemp(prefix="rmp", dir="/tmp")
    args = [
        sys.executable,
        "-m",
        "jobs.pipeline",
        "experiment=demo",
        "debug=tiny",
        f"storage_path={tmp_path}",
        f"serve.port={free_port()}",
        f"cluster.temp_dir={temp_dir}",
        "tune.num_samples=4",
        "tune.max_t=6",  # one-worker trials are quick: long enough to be killed mid-sweep
        "train.epochs=6",
        "train.batch_size=8",
        "tune.max_concurrent_trials=1",
    ]
    env = {**os.environ, "RAY_ML_PROGRESS": "0"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    state = tmp_path / "demo-sweep" / "sweep_state.json"
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            facts = json.loads(state.read_text())["facts"] if state.exists() else {}
            if any(f["ended"] for f in facts.values()):
                break
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.5)
        facts = json.loads(state.read_text())["facts"]
        finished = {tid for tid, f in facts.items() if f["ended"]}
        assert finished, "no trial finished before the deadline"
        time.sleep(1.5)  # Tune saves its experiment state every second here
    finally:
        _kill_tree(proc, temp_dir)
    results_before = {
        p.parent.name: len(p.read_text().splitlines())
        for p in (tmp_path / "tune" / "demo-sweep").glob("*/result.json")
    }

    res = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    summary = last_json(res.stdout)
    assert summary["resumed"] is True and summary["trials"] == 4
    assert "resuming the interrupted sweep" in res.stderr
    pipeline_state = json.loads((tmp_path / "demo" / "pipeline" / "state.json").read_text())
    assert pipeline_state["status"] == "done" and pipeline_state["stages"]["sweep"]["resumed"]
    # Trials that had finished were restored, not trained again: no new reports.
    results_after = {
        p.parent.name: len(p.read_text().splitlines())
        for p in (tmp_path / "tune" / "demo-sweep").glob("*/result.json")
    }
    for trial_dir, lines in results_before.items():
        if any(tid in trial_dir for tid in finished):
            assert results_after[trial_dir] == lines, trial_dir
