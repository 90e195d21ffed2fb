"""The Tier B table builder (benchmarks/tune/build_tables.py) on tiny data, without Ray.

Two configs per table, a few steps each: the file must load through `tables.load_parquet`,
keep the column order and metadata of the format, and carry a cumulative cost that grows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from benchmarks.tune import build_tables as bt
from benchmarks.tune.tables import RESERVED_COLUMNS, load_parquet

pytestmark = pytest.mark.unit

META_KEYS = {
    "mode",
    "metric",
    "task",
    "fidelity",
    "builder",
    "versions",
    "machine",
    "build_date",
    "cost_s",
    "infer_ms",
}


def tiny_multiclass() -> bt.Split:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)  # 3 classes
    return bt.Split(x[:90], y[:90], x[90:120], y[90:120], x[120:], y[120:], "tiny")


def check_file(path: Path, space: tuple[bt.Dim, ...], steps: int, metric: str) -> None:
    assert path.suffix == ".parquet"
    pf = pq.ParquetFile(path)
    assert pf.metadata.row_group(0).column(0).compression == "ZSTD"
    assert pf.schema_arrow.names == [d.name for d in space] + list(RESERVED_COLUMNS)
    meta = {k.decode(): v.decode() for k, v in pf.schema_arrow.metadata.items()}
    assert set(meta) >= META_KEYS
    assert meta["mode"] == "min" and meta["metric"] == metric
    assert meta["builder"] == "test-command"
    assert {"xgboost", "torch", "scikit-learn", "numpy"} <= set(json.loads(meta["versions"]))
    assert json.loads(meta["machine"])["cpus"] >= 1

    table = load_parquet(path)
    assert table.n_configs == 2 and table.mode == "min" and table.metric == metric
    assert table.n_steps.tolist() == [steps, steps]
    assert np.all(table.cost_s > 0)
    assert np.all(np.diff(table.cost_s, axis=1) > 0)  # cumulative: every step adds training
    assert np.all(np.isfinite(table.val)) and np.all(np.isfinite(table.test))
    assert np.all(table.infer_ms > 0)


def test_xgb_table(tmp_path: Path) -> None:
    path = bt.build_xgb_table(
        tmp_path,
        n_configs=2,
        seed=0,
        data=bt.synth_split(n_samples=400),
        rounds=6,
        every=2,
        command="test-command",
    )
    assert path.name == "xgb_hist_synth60k_n2.parquet"  # a reduced build never overwrites
    check_file(path, bt.XGB_SPACE, steps=3, metric="log_loss")


def test_mlp_table(tmp_path: Path) -> None:
    path = bt.build_mlp_table(
        tmp_path, n_configs=2, seed=3, data=tiny_multiclass(), epochs=3, command="test-command"
    )
    assert path.name == "mlp_digits_n2_s3.parquet"
    check_file(path, bt.MLP_SPACE, steps=3, metric="cross_entropy")


def test_design_is_deterministic_distinct_and_prefix_stable() -> None:
    full = bt.sample_configs(bt.XGB_SPACE, 40, seed=1)
    assert full == bt.sample_configs(bt.XGB_SPACE, 40, seed=1)
    assert bt.sample_configs(bt.XGB_SPACE, 10, seed=1) == full[:10]  # reduced = a subset
    assert len({tuple(c.values()) for c in full}) == 40
    for d in bt.XGB_SPACE:
        assert {c[d.name] for c in full} <= set(d.levels)
    assert bt.sample_configs(bt.XGB_SPACE, 10, seed=2) != full[:10]
