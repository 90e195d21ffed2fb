"""`python -m jobs.train` and `ray-ml predict` as users run them, on real bundled data.

These are also the real-data quality bars: default configs must reach them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.e2e.test_cli_data import last_json, run

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("overrides", "metric", "bar"),
    [
        # Each takes one to two minutes: the slow step runs them (default run < 20 min).
        pytest.param(["data=breast_cancer", "model=mlp"], "roc_auc", 0.98, marks=pytest.mark.slow),
        pytest.param(
            ["data=breast_cancer", "model=xgboost"], "roc_auc", 0.98, marks=pytest.mark.slow
        ),
        pytest.param(["data=digits", "model=mlp"], "accuracy", 0.95, marks=pytest.mark.slow),
    ],
    ids=["breast_cancer-mlp", "breast_cancer-xgboost", "digits-mlp"],
)
def test_default_configs_reach_the_quality_bar(
    tmp_path: Path, overrides: list[str], metric: str, bar: float
) -> None:
    res = run(
        sys.executable,
        "-m",
        "jobs.train",
        *overrides,
        f"storage_path={tmp_path}",
        "cluster.num_cpus=2",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    summary = last_json(res.stdout)
    assert summary["metrics"]["test"][metric] >= bar, summary["metrics"]["test"]
    assert {"validation", "test"} <= set(summary["metrics"]) and summary["wall_s"] > 0
    assert len(summary["fingerprint"]) == 32 and Path(summary["bundle"], "manifest.json").is_file()
    if "data=breast_cancer" in overrides and "model=xgboost" in overrides:
        # batch inference with the same bundle over the raw source
        pred = run(
            sys.executable,
            "-m",
            "ray_ml.cli",
            "predict",
            summary["bundle"],
            "sklearn://breast_cancer",
            "--out",
            str(tmp_path / "pred"),
            "--num-cpus",
            "2",
        )
        assert pred.returncode == 0, pred.stderr[-2000:]
        out = last_json(pred.stdout)
        assert out["rows_predicted"] == 569 and out["rows_rejected"] == 0
        table = pq.read_table(tmp_path / "pred" / "predictions")
        assert table.num_rows == 569 and "prediction" in table.column_names
        assert "mean radius" in table.column_names  # the source's own column names
