"""A sweep whose driver is SIGKILLed resumes with tune.resume=true without rerunning finished trials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
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
        "train.epochs=6",
        "tune.max_t=6",
        "train.batch_size=8",
    ]
    env = {**os.environ, "RAY_ML_PROGRESS": "0"}
    env.pop("RAY_ADDRESS", None)
    state = tmp_path / "demo-sweep" / "sweep_state.json"
    driver = _start(args, env)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            facts = json.loads(state.read_text())["facts"] if state.exists() else {}
            if sum(1 for f in facts.values() if f["ended"]) >= 2:
                break
            assert driver.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.5)
        else:
            pytest.fail("no two trials finished in time")
        time.sleep(1.5)  # Tune saves its experiment state every second (TUNE_GLOBAL_CHECKPOINT_S)
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started, no cleanup
        driver.wait(30)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    finished = {tid for tid, f in json.loads(state.read_text())["facts"].items() if f["ended"]}
    lines_before = _result_lines(tmp_path)

    res = run(*args, "tune.resume=true")
    assert res.returncode == 0, res.stderr[-3000:]
    summary = last_json(res.stdout)
    assert summary["trials"] == 4
    lines_after = _result_lines(tmp_path)
    for trial_id in finished:
        # a finished trial is not trained again: Tune wrote no new result for it
        assert lines_after[trial_id] == lines_before[trial_id]
    assert summary["cost_usd"] > 0


def _result_lines(storage: Path) -> dict[str, int]:
    """Trial id -> results Tune wrote for it (its own result files)."""
    out = {}
    for path in (storage / "tune").glob("*/*/result.json"):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if rows:
            out[rows[0]["trial_id"]] = len(rows)
    return out


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        args,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _kill_when(driver: subprocess.Popen, state: Path, ended: int) -> dict:
    """SIGKILL the driver's whole process tree once `ended` trials have ended; the state then."""
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if state.exists():
                books = json.loads(state.read_text())
                # Trials here last about a second, so a save rarely catches one mid-training;
                # with two running at a time, one is almost always under way at the kill.
                if sum(1 for f in books["facts"].values() if f["ended"]) >= ended:
                    time.sleep(1.5)  # the books save at least every second
                    seen = json.loads(state.read_text())
                    os.killpg(driver.pid, signal.SIGKILL)  # no cleanup, Ray included
                    driver.wait(30)
                    return seen
            assert driver.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.2)
        pytest.fail(f"{ended} trials did not end in time")
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    return {}


def _billed(state: dict) -> float:
    return sum(c["billed_usd"] for c in state["costs"])


@pytest.mark.slow
def test_a_budgeted_sweep_killed_twice_keeps_its_books(tmp_path: Path) -> None:
    from ray_ml.config import load_config
    from ray_ml.cost import PriceCatalog
    from ray_ml.tune._books import _SAVE_EVERY_S

    overrides = [
        "experiment=demo",
        "debug=tiny",
        f"storage_path={tmp_path}",
        "cost=aws_illustrative",
        "tune.scheduler=fifo",
        "tune.num_samples=40",  # the budget, not the trials, must end the sweep
        "tune.max_concurrent_trials=2",
        "train.epochs=6",
        "tune.max_t=6",
        "train.batch_size=8",
    ]
    rate = PriceCatalog.from_config(load_config("tune", overrides).cost).price_of({"CPU": 1.0})
    budget = rate * 20 / 3600  # 20 CPU-seconds: about 18 trials here (16 cost 17 s), under 40
    args = [sys.executable, "-m", "jobs.tune", *overrides, f"tune.budget_usd={budget}"]
    env = {**os.environ, "RAY_ML_PROGRESS": "0"}
    env.pop("RAY_ADDRESS", None)
    state = tmp_path / "demo-sweep" / "sweep_state.json"

    first = _kill_when(_start(args, env), state, ended=2)
    second = _kill_when(
        _start([*args, "tune.resume=true"], env),
        state,
        ended=len([f for f in first["facts"].values() if f["ended"]]) + 2,
    )
    assert _billed(second) > _billed(first)  # the resumed driver carried the books on
    res = run(*args, "tune.resume=true")
    assert res.returncode == 0, res.stderr[-3000:]
    summary = last_json(res.stdout)
    assert summary["resumes"] == 2
    final = json.loads(state.read_text())
    # every dollar before each crash is still there, and the total is the trials' held time
    assert summary["cost_usd"] >= _billed(second) - 5e-7  # the summary rounds to 1e-6 dollars
    board = {r["trial_id"]: r for r in pq.read_table(summary["leaderboard"]).to_pylist()}
    assert summary["cost_usd"] == pytest.approx(
        sum(r["wall_s"] for r in board.values()) * rate / 3600, rel=0.02
    )
    # Statuses against what the trials themselves wrote: the checkpoint each record offers (a
    # winner is served from it) holds the trial's own progress.json. A killed driver loses the
    # rows and the state Tune had not yet synced or saved, so the resumed Tune may start a trial
    # again from an older checkpoint; the record must still say how far the trial really got.
    per_trial: dict[str, list[dict]] = {}
    for path in sorted((tmp_path / "tune").glob("*/*/result.json")):
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)  # grouped by the trial id it carries: with reused
                per_trial.setdefault(row["trial_id"], []).append(row)  # actors a row can
    assert per_trial  # land in another trial's file
    for trial_id, rows in per_trial.items():
        record = board[trial_id]
        ckpt = record["checkpoint"]
        progress = json.loads((Path(ckpt) / "progress.json").read_text()) if ckpt else {}
        if record["status"] == "completed":
            assert progress.get("epoch") == 5 or progress.get("stopped_early"), (record, progress)
        else:  # stopped by the budget, or lost with a crashed driver before Tune saved it
            assert record["status"] in ("budget_stopped", "failed"), (record, progress)
            assert progress.get("epoch", -1) < 5 and not progress.get("stopped_early"), record
        # The books bill a trial at least the time Tune saw it train, less what a killed driver
        # had not saved yet: the books save at most once a second (`_SAVE_EVERY_S`), so up to a
        # second of a running trial's spend per crash is lost with the driver (seen here: a
        # trial started and reported twice in the 0.4 s before a kill). Known gap, see #11's note.
        unsaved = 2 * _SAVE_EVERY_S  # two crashes
        assert record["wall_s"] >= max(r["time_total_s"] for r in rows) * 0.99 - unsaved
    interval = max(
        (f["report_usd"][-1] - f["report_usd"][0]) / max(len(f["report_usd"]) - 1, 1)
        for f in final["facts"].values()
        if f["report_usd"]
    )
    assert summary["cost_usd"] <= budget + interval
    # a trial whose completing report the books had saved before a crash stays completed
    for books in (first, second):
        for trial_id, facts in books["facts"].items():
            if facts["training_done"]:
                assert board[trial_id]["status"] == "completed", (board[trial_id], facts)
    assert "budget_usd" in summary["stop_reason"]


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
