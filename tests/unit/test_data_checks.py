from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from ray_ml.data import Contract, check_table, row_hashes
from ray_ml.data._sources import SyntheticSpec, _read_csv_tolerant, _read_json_tolerant
from ray_ml.data._validate import _settle_block

pytestmark = pytest.mark.unit

CONTRACT = Contract.from_dict(
    {
        "name": "t",
        "task": "binary",
        "label": "y",
        "columns": [
            {"name": "a", "type": "float", "min": 0, "max": 10},
            {"name": "b", "type": "int", "nullable": True},
            {"name": "c", "type": "category", "categories": ["x", "z"]},
            {"name": "flag", "type": "bool", "nullable": True},
            {"name": "y", "type": "int", "categories": [0, 1]},
        ],
    }
)


def reasons_of(table: pa.Table) -> dict[str, str | None]:
    """raw 'a' value -> reason, for readable assertions."""
    raw = [json.loads(r)["a"] if r else None for r in table.column("_raw").to_pylist()]
    a = table.column("a").to_pylist()
    return {
        str(r if r is not None else x): reason
        for r, x, reason in zip(raw, a, table.column("_reject_reason").to_pylist(), strict=True)
    }


def test_each_rule_is_named_in_the_reason() -> None:
    raw = pa.table(
        {
            "a": ["1.5", "abc", "", "20", "inf", "3", "4"],
            "b": ["1", "2.5", None, "x", "4", "5", "6"],
            "c": ["x", "q", "z", "x", "x", None, "z"],
            "flag": ["true", "no", "1", None, "maybe", "0", "F"],
            "y": ["0", "1", "1", "2", "0", "1", "1"],
        }
    )
    out = check_table(raw, CONTRACT)
    got = reasons_of(out)
    assert got["1.5"] is None and got["4.0"] is None
    assert got["abc"] == "a:type;b:type;c:category"
    assert got[""] == "a:null"  # empty cell in a non-nullable column
    assert got["20"] == "a:range;b:type;y:category"
    assert got["inf"] == "a:non_finite;flag:type"
    assert got["3"] == "c:null"
    # typed output for good rows
    good = out.filter(pa.compute.is_null(out.column("_reject_reason")))
    assert good.schema.field("flag").type == pa.bool_() and good.column("flag").to_pylist() == [
        True,
        False,
    ]
    assert good.column("b").to_pylist() == [1, 6]


def test_typed_input_nan_is_missing_and_extra_columns_are_not_carried() -> None:
    raw = pa.table({"a": [1.0, float("nan")], "c": ["x", "x"], "y": [0, 1], "extra": [1, 2]})
    out = check_table(raw, CONTRACT)
    assert "extra" not in out.column_names
    assert out.column("_reject_reason").to_pylist() == [None, "a:null"]


def test_missing_column_is_reported_per_row() -> None:
    out = check_table(pa.table({"a": [1.0], "c": ["x"]}), CONTRACT)
    assert out.column("_reject_reason").to_pylist() == ["y:missing"]


def test_row_hash_is_content_based_and_layout_independent() -> None:
    table = SyntheticSpec(rows=1000, features=3, categorical=1).chunk(0)
    whole = row_hashes(table)
    pieces = np.concatenate([row_hashes(table.slice(0, 300)), row_hashes(table.slice(300))])
    np.testing.assert_array_equal(whole, pieces)
    changed = table.set_column(0, "f0", pa.array([9.0] + table.column("f0").to_pylist()[1:]))
    diff = row_hashes(changed) != whole
    assert diff[0] and not diff[1:].any()


def test_csv_reader_keeps_bad_lines_and_bad_encoding() -> None:
    data = b"a,c,y\n1,x,0\n1,2,3,4\n2,\xff\xfe,1\n"
    table = _read_csv_tolerant(data, "f.csv", ["a", "c", "y"])
    out = check_table(
        table,
        CONTRACT.__class__.from_dict(
            {
                **CONTRACT.to_dict(),
                "columns": [
                    c
                    for c in CONTRACT.to_dict()["columns"]
                    if c["name"] != "b" and c["name"] != "flag"
                ],
            }
        ),
    )
    reasons = sorted(r for r in out.column("_reject_reason").to_pylist() if r)
    assert reasons == ["_row:parse", "c:encoding"]


def test_json_reader_falls_back_line_by_line() -> None:
    data = b'{"a": 1, "c": "x", "y": 0}\n{"a": "abc", "c": "x", "y": 1}\nnot json\n'
    table = _read_json_tolerant(data, "f.jsonl", ["a", "c", "y"])
    out = check_table(
        table,
        Contract.from_dict(
            {
                **CONTRACT.to_dict(),
                "columns": [
                    c for c in CONTRACT.to_dict()["columns"] if c["name"] in ("a", "c", "y")
                ],
            }
        ),
    )
    assert sorted(r for r in out.column("_reject_reason").to_pylist() if r) == [
        "_row:parse",
        "a:type",
    ]
    assert out.num_rows == 3


def test_a_blocks_rejects_are_quarantined_once_under_its_index(tmp_path: Path) -> None:
    """What `check_sources` runs per checked block: counts, digest, and its quarantine file."""
    raw = pa.table(
        {
            "a": ["1.5", "abc", "20", "4", "2"],
            "c": ["x", "x", "x", "q", "z"],
            "y": ["0", "1", "1", "0", "1"],
        }
    )
    checked = check_table(raw, CONTRACT)
    target = (pafs.LocalFileSystem(), str(tmp_path))
    for _ in range(2):  # a retried task rewrites its own file: no row quarantined twice
        stats = _settle_block(checked, 7, target)
    assert [f.name for f in tmp_path.iterdir()] == ["part-00007.parquet"]
    bad = pq.read_table(tmp_path / "part-00007.parquet")
    assert bad.column_names == [*CONTRACT.names, "_reject_reason", "_raw", "_warnings"]
    assert bad.column("_reject_reason").to_pylist() == ["a:type", "a:range", "c:category"]
    assert [json.loads(r)["a"] for r in bad.column("_raw").to_pylist()] == ["abc", "20", "4"]
    assert (stats["rows"], stats["rejected"]) == (5, 3)
    assert stats["reasons"] == {"a:type": 1, "a:range": 1, "c:category": 1}
    assert stats["warnings"] == {}
    hashes = checked.column("_row_hash").to_numpy()
    is_bad = pc.is_valid(checked.column("_reject_reason")).to_numpy(zero_copy_only=False)
    assert stats["hash_bad"] == int(hashes[is_bad].sum(dtype="uint64"))
    assert stats["hash_ok"] == int(hashes[~is_bad].sum(dtype="uint64"))
    # No file for a block without rejects, nor without a quarantine directory.
    good = checked.filter(pc.is_null(checked.column("_reject_reason")))
    assert _settle_block(good, 8, target)["rejected"] == 0
    assert _settle_block(checked, 9, None) == stats
    assert [f.name for f in tmp_path.iterdir()] == ["part-00007.parquet"]
