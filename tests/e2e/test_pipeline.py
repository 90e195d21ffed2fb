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
from tests.e2e.test_cli_data import REPO, last_json

pytestmark = pytest.mark.e2e


def _run_with_bars(*args: str) -> subprocess.CompletedProcess[str]:
    """A job as a person starts it: progress on (not a terminal here, so plain lines)."""
    env = {**os.environ, "RAY_ML_PROGRESS": "1"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(args, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)


def test_pipeline_runs_end_to_end_on_tiny_settings(tmp_path: Path) -> None:
    # `make demo`'s command, on debug=tiny.
    res = _run_with_bars(
        sys.executable,
        "-m",
        "jobs.pipeline",
        "experiment=demo",
        "debug=tiny",
        f"storage_path={tmp_path}",
        f"serve.port={free_port()}",
    )
    assert res.returncode == 0, res.stderr[-4000:]
    # A console a person can read: few lines, no control codes, the JSON summary last and alone
    # on stdout; Ray's, Tune's and Train's own output in the log files.
    lines = res.stdout.splitlines() + res.stderr.splitlines()
    assert len(lines) <= 150, "\n".join(lines)
    assert "\x1b" not in res.stdout + res.stderr and "\r" not in res.stdout + res.stderr
    assert len(res.stdout.strip().splitlines()) == 1, res.stdout[:3000]
    logs = tmp_path / "demo" / "logs"
    assert f"[logs] Ray's own output goes to {logs}/" in res.stderr
    driver_log = (logs / "driver.log").read_text()
    assert "Configuration for experiment" in driver_log  # Tune's own box
    assert "Starting execution of Dataset" in driver_log  # Ray Data's driver logs
    assert "pid=" in (logs / "workers.log").read_text()  # workers' stdout/stderr
    for noise in ("TrainingReport", "Configuration for experiment", "Dataset validation"):
        assert noise not in res.stdout + res.stderr
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


def test_ray_ml_run_on_a_users_csv_infers_a_contract_serves_and_counts_bad_rows(
    tmp_path: Path,
) -> None:
    # An id column, a categorical, nulls and a few bad rows, as a user's export has them.
    rng = __import__("random").Random(0)
    rows = ["customer_id,age,plan,monthly_spend,churned"]
    bad = 0
    for i in range(400):
        age, plan = str(rng.randint(18, 80)), rng.choice(["basic", "pro", "team"])
        spend = f"{rng.uniform(5, 150):.2f}" if i % 40 != 3 else ""  # nulls
        churned = str(int(float(spend or 0) > 80) if rng.random() > 0.1 else rng.randint(0, 1))
        if i in (50, 150, 250):
            age, bad = "unknown", bad + 1  # not a number
        if i == 300:
            churned, bad = "maybe", bad + 1  # not a class
        rows.append(f"U{7000 + i},{age},{plan},{spend},{churned}")
    csv = tmp_path / "customers.csv"
    csv.write_text("\n".join(rows) + "\n")
    storage = tmp_path / "runs"
    res = _run_with_bars(
        sys.executable,
        "-m",
        "ray_ml.cli",
        "run",
        str(csv),
        "--label",
        "churned",
        "debug=tiny",
        f"storage_path={storage}",
        f"serve.port={free_port()}",
    )
    assert res.returncode == 0, res.stderr[-4000:]
    summary = last_json(res.stdout)
    assert summary["name"] == "customers"
    assert summary["smoke"]["status"] == 200 and summary["smoke"]["rows"] == 5
    assert summary["data"]["rows_in"] == 400 and summary["data"]["rows_rejected"] == bad
    assert summary["data"]["reasons"] == {"age:type": 3, "churned:type": 1}
    contract = (storage / "customers" / "data" / "contract.yaml").read_text()
    assert "role: id" in contract and "type: category" in contract
    assert "contract inferred from 400 rows: label 'churned' (binary)" in res.stderr
