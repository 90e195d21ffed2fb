"""The loop after serving, end to end with real parts: a real Ray head, the pipeline serving v1
over HTTP, `python -m jobs.monitor` as a process, the registry and storage on disk.

v1 learns `y = x1 > 0`. Then the world changes to `y = x1 < 0`: live traffic with feedback
labels makes v1's accuracy collapse (a quality alert), and a partition of the new world lands.
The monitor checks it (its bad rows quarantined), retrains on it, and is SIGKILLed in the middle
of that retrain: restarted (as `ray-ml monitor`), it resumes the same retrain and registers one version for the one
trigger. v2 goes to canary, is better on live feedback and is promoted. Then a partition of the
old world lands: its retrain (v3) is worse on live feedback and is rolled back. Every decision
is in the ledger and the registry's audit log with its reason; no request fails throughout.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from ray_ml.registry import Registry
from tests._ray_head import free_port, ray_head, until
from tests.e2e.test_cli_data import REPO, last_json

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CONTRACT = """\
version: 1
name: loop
task: binary
label: y
columns:
- {name: x1, type: float, nullable: false, min: -10.0, max: 10.0}
- {name: x2, type: float, nullable: false}
- {name: y, type: int, nullable: false, categories: [0, 1]}
"""


def _truth(x1: float, world: str) -> int:
    return int(x1 > 0) if world == "old" else int(x1 < 0)


def _rows(n: int, world: str, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x1, x2 = rng.uniform(-3, 3), rng.uniform(-3, 3)
        out.append({"x1": round(x1, 4), "x2": round(x2, 4), "y": _truth(x1, world)})
    return out


def _write_csv(path: Path, rows: list[dict[str, Any]], bad: int = 0) -> None:
    lines = ["x1,x2,y"] + [f"{r['x1']},{r['x2']},{r['y']}" for r in rows]
    for i in range(bad):  # rows the contract rejects: x1 out of range
        lines.append(f"{99 + i},0.5,1")
    path.write_text("\n".join(lines) + "\n")


class _Traffic(threading.Thread):
    """A client: predicts rows of `world`, then sends their true labels as feedback."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.world = "old"
        self.stop = threading.Event()
        self.statuses: list[int] = []
        self.feedback: list[int] = []
        self.versions: list[str] = []

    def run(self) -> None:
        seed = 1000
        while not self.stop.is_set():
            seed += 1
            world = self.world
            rows = _rows(8, world, seed)
            try:
                r = requests.post(
                    f"{self.url}/v1/predict",
                    json={"rows": [{"x1": x["x1"], "x2": x["x2"]} for x in rows]},
                    timeout=30,
                )
            except requests.RequestException:
                self.statuses.append(-1)
                continue
            self.statuses.append(r.status_code)
            if r.status_code != 200:
                continue
            answer = r.json()
            self.versions.append(answer["model_version"])
            labels = [
                {"request_id": answer["request_id"], "row": i, "label": x["y"]}
                for i, x in enumerate(rows)
            ]
            f = requests.post(f"{self.url}/v1/feedback", json={"labels": labels}, timeout=30)
            self.feedback.append(f.status_code)
            time.sleep(0.05)


def _ledger(storage: Path) -> dict[str, Any]:
    path = storage / "loop" / "monitor" / "ledger.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _kill(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the monitor and everything it started, as an OOM kill would."""
    victims = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    for p in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGKILL)
    psutil.wait_procs(victims, timeout=30)


def test_the_loop_retrains_resumes_after_a_kill_promotes_better_and_rolls_back_worse(
    tmp_path: Path,
) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    _write_csv(landing / "part-000.csv", _rows(600, "old", 0))
    contract = tmp_path / "contract.yaml"
    contract.write_text(CONTRACT)
    storage = tmp_path / "runs"
    port = free_port()
    with ray_head(num_cpus=2) as head:
        common = [
            "name=loop",
            "debug=tiny",
            f"storage_path={storage}",
            f"data.sources=[{landing}]",
            f"data.contract={contract}",
            "model=xgboost",
            "model.num_boost_round=10",
            f"serve.port={port}",
            "serve.ingress=proxy",
            "serve.canary_percent=50",
            "serve.canary_min_requests=20",
            "serve.canary_min_labels=40",
            "serve.quality_min_labels=40",
            "serve.quality_tolerance=0.2",
            "serve.poll_s=0.5",
            f"cluster.address=127.0.0.1:{head.ports['gcs']}",
        ]
        res = head.run(sys.executable, "-m", "jobs.pipeline", *common, timeout=600)
        assert res.returncode == 0, res.stderr[-4000:]
        url = f"http://127.0.0.1:{port}"
        registry = Registry(storage / "registry")
        assert registry.aliases("loop")["production"] == 1

        monitor_args = [
            sys.executable,
            "-m",
            "jobs.monitor",
            *common,
            "monitor.poll_s=1",
            "monitor.triggers=[quality,new_data]",
            "monitor.new_data_rows=300",
            "monitor.train_partitions=1",
            "monitor.retrain_num_samples=4",
            "monitor.retrain_budget_usd=0.5",
            "monitor.monthly_budget_usd=5",
        ]

        logs = tmp_path / "monitor-logs"
        logs.mkdir()

        def start_monitor(cli: bool = False) -> subprocess.Popen[str]:
            """`python -m jobs.monitor`, or the same through the console script's verb."""
            n = len(list(logs.iterdir())) // 2
            args = monitor_args
            if cli:
                args = [sys.executable, "-m", "ray_ml.cli", "monitor", *monitor_args[3:]]
            return subprocess.Popen(
                args,
                cwd=REPO,
                env=head.env,
                stdout=(logs / f"out{n}.txt").open("w"),
                stderr=(logs / f"err{n}.txt").open("w"),
                text=True,
            )

        def log_tail() -> str:
            return "\n".join(p.read_text()[-3000:] for p in sorted(logs.glob("err*.txt")))

        traffic = _Traffic(url)
        traffic.start()
        monitor = start_monitor()
        try:
            until(lambda: _ledger(storage).get("ticks", 0) >= 1, timeout_s=180)
            assert [p.get("baseline") for p in _ledger(storage)["partitions"].values()] == [True]

            # The world changes: a landed partition (with 5 rows the contract rejects), traffic.
            _write_csv(landing / "part-001.csv", _rows(600, "new", 1), bad=5)
            until(lambda: len(_ledger(storage)["partitions"]) == 2, timeout_s=120)
            traffic.world = "new"

            # Kill the monitor in the middle of its retrain: once a trial has ended.
            def mid_retrain() -> bool:
                retrains = _ledger(storage).get("retrains") or []
                if not retrains:
                    return False
                state = storage / f"{retrains[0]['run']}-sweep" / "sweep_state.json"
                facts = json.loads(state.read_text())["facts"] if state.exists() else {}
                return any(f["ended"] for f in facts.values())

            until(mid_retrain, timeout_s=300, every_s=0.2)
            assert monitor.poll() is None, log_tail()
            time.sleep(1.5)  # Tune saves its experiment state every second
            _kill(monitor)
            assert _ledger(storage)["triggers"][0]["status"] == "retraining"
            monitor = start_monitor(cli=True)  # `ray-ml monitor ...` resumes it

            def first_decided() -> Any:
                triggers = _ledger(storage).get("triggers") or []
                done = [t for t in triggers if t["status"] in ("promoted", "rolled_back")]
                assert monitor.poll() is None, log_tail()
                return done[0] if done else None

            first = until(first_decided, timeout_s=480, every_s=1)
            assert first["status"] == "promoted", (first, log_tail())
            assert registry.aliases("loop")["production"] == 2

            # A partition of the old world lands: its model is worse on what is served now.
            _write_csv(landing / "part-002.csv", _rows(600, "old", 2))

            def second_decided() -> Any:
                triggers = _ledger(storage).get("triggers") or []
                done = [t for t in triggers if t["status"] in ("promoted", "rolled_back")]
                assert monitor.poll() is None, log_tail()
                return done[1] if len(done) > 1 else None

            second = until(second_decided, timeout_s=480, every_s=1)
            models = requests.get(f"{url}/v1/models", timeout=30).json()
            metrics_text = requests.get(f"{url}/metrics", timeout=30).text
        finally:
            traffic.stop.set()
            traffic.join(timeout=60)
            if monitor.poll() is None:
                monitor.send_signal(signal.SIGTERM)  # stops after the tick in progress
                try:
                    monitor.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    _kill(monitor)
            out = sorted(logs.glob("out*.txt"))[-1].read_text()
            err = log_tail()

        # The monitor as a Ray job too: one tick through the Jobs API, nothing new to act on.
        job = head.run(
            sys.executable,
            "-m",
            "ray_ml.cli",
            "submit",
            "monitor",
            *common,
            "monitor.max_ticks=1",
            "--address",
            head.url,
        )
        assert job.returncode == 0, job.stderr[-3000:]
        job_out = last_json(job.stdout)
        assert job_out["status"] == "SUCCEEDED", job_out
        assert job_out["summary"]["job"] == "monitor" and job_out["summary"]["retrains"] == 2

    assert second["status"] == "rolled_back", second
    ledger = _ledger(storage)
    # One retrain per acting trigger, the killed one resumed rather than run twice.
    retrains = ledger["retrains"]
    assert [r["trigger"] for r in retrains] == [first["id"], second["id"]]
    assert retrains[0]["resumes"] == 1 and retrains[1]["resumes"] == 0
    assert [r["version"] for r in retrains] == [2, 3]
    assert [v.version for v in registry.list_versions("loop")] == [1, 2, 3]
    # Lineage: the trigger and the partition each candidate was trained on.
    for r in retrains:
        lineage = registry.show("loop", r["version"])["lineage"]
        assert lineage["monitor"]["trigger"]["id"] == r["trigger"]
        assert lineage["monitor"]["partitions"] == r["partitions"]
    assert retrains[0]["partitions"][0].endswith("part-001.csv")
    assert retrains[1]["partitions"][0].endswith("part-002.csv")
    # Dollars: each retrain within its budget, the month's books their sum.
    for r in retrains:
        assert 0 < r["cost_usd"] <= r["budget_usd"] * 1.02 + 0.01
    month = next(iter(ledger["spend"]))
    assert ledger["spend"][month] == pytest.approx(sum(r["cost_usd"] for r in retrains), abs=1e-6)
    # The landed partition's bad rows were quarantined and counted.
    part1 = next(p for u, p in ledger["partitions"].items() if u.endswith("part-001.csv"))
    assert (part1["rows_in"], part1["rows_ok"], part1["rows_rejected"]) == (605, 600, 5)
    assert part1["reasons"] == {"x1:range": 5} or sum(part1["reasons"].values()) == 5
    # The reasons, in the registry's audit log, from the app's canary judge on live feedback.
    audit = [e for e in registry.audit("loop") if e.reason.startswith("canary judge")]
    assert [
        (e.action, e.to_version if e.action == "promote" else e.from_version) for e in audit
    ] == [
        ("promote", 2),
        ("delete_alias", 3),
    ]
    assert "accuracy" in audit[0].reason and "accuracy" in audit[1].reason
    assert "worse" in audit[1].reason
    assert retrains[0]["canary"]["action"] == "promote"
    assert retrains[1]["canary"]["action"] == "rollback"
    # v1's live accuracy collapsed on the new world: a quality alert, and the monitor saw it.
    assert any(a["version"] == "1" for a in models["quality_alerts"]), models["quality_alerts"]
    assert models["stable"] == "2" and models["canary"] is None
    assert models["serving_cost"]["usd_total"] > 0 and models["serving_cost"]["replicas"] >= 1
    assert "ray_ml_serve_cost_usd_per_hour" in metrics_text
    # No request failed during the switches; every feedback was accepted.
    assert traffic.statuses and set(traffic.statuses) == {200}, sorted(set(traffic.statuses))
    assert set(traffic.feedback) == {200}, sorted(set(traffic.feedback))
    assert {"1", "2", "3"} <= set(traffic.versions)
    summary = last_json(out)
    assert summary["job"] == "monitor" and summary["retrains"] == 2, err[-3000:]
    history = (storage / "loop" / "monitor" / "history.jsonl").read_text().splitlines()
    assert len(history) >= 3
    assert (storage / "loop" / "report" / "index.html").is_file()
