from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from ray_ml.data import Contract, Preprocessor, fit_preprocessor_table
from ray_ml.data._preprocess import _block_stats, _finish
from ray_ml.data._split import _BINS, plan_split

pytestmark = pytest.mark.unit

CONTRACT = Contract.from_dict(
    {
        "name": "t",
        "task": "multiclass",
        "label": "y",
        "columns": [
            {"name": "a", "type": "float", "nullable": True},
            {"name": "n", "type": "int"},
            {"name": "c", "type": "category", "categories": ["x", "z", "w"], "nullable": True},
            {"name": "y", "type": "category", "categories": ["lo", "mid", "hi"]},
        ],
    }
)


def table(a: list, n: list, c: list, y: list) -> pa.Table:
    return pa.table({"a": pa.array(a, pa.float64()), "n": pa.array(n, pa.int64()), "c": c, "y": y})


def test_fit_transform_standard_onehot_and_json_round_trip(tmp_path) -> None:
    t = table([1.0, 3.0, None], [1, 2, 3], ["x", "z", None], ["lo", "hi", "mid"])
    prep = fit_preprocessor_table(t, CONTRACT)
    assert prep.feature_names == ["a", "n", "c=x", "c=z", "c=w"]
    x = prep.transform(t)
    # mean of a = 2 (null ignored), imputed with the mean -> 0 after centering
    np.testing.assert_allclose(x[:, 0], [-1.0, 1.0, 0.0])
    np.testing.assert_allclose(x[:, 1], (np.array([1, 2, 3]) - 2) / np.std([1, 2, 3]), rtol=1e-6)
    np.testing.assert_array_equal(x[:, 2:], [[1, 0, 0], [0, 1, 0], [0, 0, 0]])
    assert prep.labels(t).tolist() == [0, 2, 1]
    prep.save(tmp_path / "p.json")
    again = Preprocessor.load(tmp_path / "p.json")
    np.testing.assert_array_equal(again.transform(t), x)
    # unknown category and raw dict rows (as serving sees them)
    rows = [{"a": 5.0, "n": 2, "c": "never-seen", "y": "lo"}]
    assert again.transform(rows)[0, 2:].tolist() == [0, 0, 0]


def test_merged_block_stats_equal_one_pass() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(5, 3, 1000)
    t = table(a.tolist(), list(range(1000)), ["x"] * 1000, ["lo"] * 1000)
    whole = fit_preprocessor_table(t, CONTRACT)
    import json

    parts = [
        json.loads(_block_stats(t.slice(i, 137), CONTRACT).column("stats")[0].as_py())
        for i in range(0, 1000, 137)
    ]
    merged = _finish(parts, CONTRACT, "mean", "standard", "onehot", 50)
    assert merged.numeric[0].center == pytest.approx(whole.numeric[0].center, rel=1e-12)
    assert merged.numeric[0].scale == pytest.approx(whole.numeric[0].scale, rel=1e-12)
    assert merged.numeric[0].scale == pytest.approx(np.std(a), rel=1e-9)


def test_minmax_ordinal_zero_impute() -> None:
    t = table([0.0, 10.0, None], [1, 1, 1], ["w", "x", "z"], ["lo", "lo", "lo"])
    prep = fit_preprocessor_table(t, CONTRACT, impute="zero", scale="minmax", encode="ordinal")
    x = prep.transform(t)
    np.testing.assert_allclose(x[:, 0], [0.0, 1.0, 0.0])
    assert x[:, 1].tolist() == [0.0, 0.0, 0.0]  # constant column: scale 1, not a division by 0
    assert x[:, 2].tolist() == [2.0, 0.0, 1.0]  # contract order x, z, w


def test_split_plan_hits_class_quotas_exactly_on_a_histogram() -> None:
    rng = np.random.default_rng(1)
    hist = np.stack(
        [
            np.bincount(rng.integers(0, _BINS, 9900), minlength=_BINS),
            np.bincount(rng.integers(0, _BINS, 100), minlength=_BINS),
        ]
    )
    plan = plan_split(hist, [0.7, 0.15, 0.15], ["train", "validation", "test"], [0, 1], 0, "y")
    assert plan.counts.sum() == 10_000
    minority = plan.counts[1]
    assert abs(minority[1] - 15) <= 1 and abs(minority[2] - 15) <= 1
    for part in plan.summary().values():
        assert abs(part["class_fraction"]["1"] - 0.01) < 0.01
