"""The real CLI and job entry points, as subprocesses (each starts its own embedded Ray)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.e2e

DIRTY = """id,age,city,y
1,30,paris,0
2,abc,rome,1
3,40,rome,1
4,150,paris,0
5,50,berlin,1
6,60,paris,0,extra
7,33,rome,0
"""


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAY_ML_PROGRESS": "0"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def ray_ml(*args: str) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "ray_ml.cli", *args)


def test_infer_then_check_a_dirty_csv(tmp_path: Path) -> None:
    clean = tmp_path / "clean.csv"
    clean.write_text("id,age,city,y\n1,30,paris,0\n50,35,rome,1\n100,70,rome,1\n")
    inferred = ray_ml("data", "infer", str(clean), "--label", "y")
    assert inferred.returncode == 0, inferred.stderr
    contract = tmp_path / "contract.yaml"
    contract.write_text(inferred.stdout)
    # what a sample shows is an expectation (warned about), not a rule (rejected)
    assert "expect:\n    categories:\n    - paris\n    - rome" in inferred.stdout

    dirty = tmp_path / "dirty.csv"
    dirty.write_text(DIRTY)
    q = tmp_path / "q"
    res = ray_ml(
        "data",
        "check",
        str(dirty),
        "--contract",
        str(contract),
        "--quarantine",
        str(q),
        "--max-reject-rate",
        "0.9",
        "--num-cpus",
        "1",
    )
    assert res.returncode == 0, res.stderr
    summary = last_json(res.stdout)
    assert (summary["rows_in"], summary["rows_ok"], summary["rows_rejected"]) == (7, 5, 2)
    assert summary["reasons"] == {"_row:parse": 1, "age:type": 1}
    assert summary["warnings"] == {"age:range": 1, "city:category": 1}
    assert len(summary["fingerprint"]) == 32
    assert pq.read_table(q).num_rows == 2

    strict = ray_ml(
        "data",
        "check",
        str(dirty),
        "--contract",
        str(contract),
        "--max-reject-rate",
        "0.1",
        "--num-cpus",
        "1",
    )
    assert strict.returncode == 2
    assert "2 of 7 rows rejected" in strict.stderr and "Traceback" not in strict.stderr
    assert last_json(strict.stdout)["passed"] is False


def test_bad_inputs_get_one_line_errors(tmp_path: Path) -> None:
    missing = ray_ml(
        "data", "check", str(tmp_path / "nope.csv"), "--contract", str(tmp_path / "c.yaml")
    )
    assert (
        missing.returncode != 0
        and "does not exist" in missing.stderr
        and "Traceback" not in missing.stderr
    )
    (tmp_path / "c.yaml").write_text(
        "task: binary\nlabel: y\ncolumns:\n- {name: y, type: int, categories: [0, 1], nulable: true}\n"
    )
    typo = ray_ml("data", "check", "sklearn://iris", "--contract", str(tmp_path / "c.yaml"))
    assert typo.returncode != 0 and "unknown key(s) ['nulable']" in typo.stderr


def test_data_job_on_the_bundled_dataset(tmp_path: Path) -> None:
    res = run(
        sys.executable,
        "-m",
        "jobs.data",
        "experiment=demo",
        "debug=tiny",
        f"storage_path={tmp_path}",
    )
    assert res.returncode == 0, res.stderr[-2000:]
    summary = last_json(res.stdout)
    assert summary["rows_in"] == 569 and summary["rows_rejected"] == 0 and summary["passed"]
    assert (
        summary["splits"]["train"]["rows"]
        + summary["splits"]["validation"]["rows"]
        + summary["splits"]["test"]["rows"]
        == 569
    )
    assert (tmp_path / "demo" / "data" / "preprocessor.json").is_file()


def test_config_typo_fails_at_start_up_naming_the_key(tmp_path: Path) -> None:
    res = run(
        sys.executable, "-m", "jobs.data", "data.max_reject_rat=0.1", f"storage_path={tmp_path}"
    )
    assert res.returncode != 0 and "max_reject_rat" in res.stderr
    res = run(
        sys.executable, "-m", "jobs.data", "data.max_reject_rate=2", f"storage_path={tmp_path}"
    )
    assert res.returncode == 2 and "max_reject_rate" in res.stderr and "2" in res.stderr
    assert "Traceback" not in res.stderr
