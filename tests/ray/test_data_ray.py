"""The data layer on a real (shared, local) Ray: validation, quarantine, merges, splits, fit."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ray_ml.data import (
    Contract,
    check_sources,
    check_table,
    fingerprint,
    fit_preprocessor,
    fit_preprocessor_table,
    infer_contract,
    read_sample,
    source_contract,
    split_dataset,
)
from ray_ml.errors import RejectRateExceeded, SourceError

CONTRACT = Contract.from_dict(
    {
        "name": "people",
        "task": "binary",
        "label": "y",
        "columns": [
            {"name": "id", "type": "int"},
            {"name": "age", "type": "int", "min": 0, "max": 120},
            {"name": "income", "type": "float", "nullable": True, "min": 0},
            {"name": "city", "type": "category", "categories": ["paris", "rome"]},
            {"name": "y", "type": "int", "categories": [0, 1]},
        ],
    }
)

DIRTY_CSV = """id,age,income,city,y
1,30,100.5,paris,0
2,abc,200,rome,1
3,40,,rome,1
4,150,10,paris,0
5,50,-3,berlin,1
6,60,10,paris,0,extra
7,,10,rome,1
8,20,1e3,paris,2
9,33,5,rome,0
"""


def test_dirty_csv_exact_counts_and_quarantine(tmp_path: Path) -> None:
    src = tmp_path / "dirty.csv"
    src.write_text(DIRTY_CSV)
    q = tmp_path / "quarantine"
    res = check_sources([str(src)], CONTRACT, quarantine_dir=str(q), max_reject_rate=1.0)
    r = res.report
    assert (r.rows_in, r.rows_ok, r.rows_rejected) == (9, 3, 6)
    assert r.reasons == {
        "_row:parse": 1,
        "age:type": 1,
        "age:range": 1,
        "age:null": 1,
        "income:range": 1,
        "city:category": 1,
        "y:category": 1,
    }
    bad = pq.read_table(q).to_pylist()
    assert len(bad) == 6
    by_reason = {row["_reject_reason"]: json.loads(row["_raw"]) for row in bad}
    assert by_reason["age:type"]["age"] == "abc"
    assert by_reason["income:range;city:category"]["city"] == "berlin"
    assert by_reason["_row:parse"] == {"_raw_line": "6,60,10,paris,0,extra"}
    good = res.dataset.take_all()
    assert sorted(row["id"] for row in good) == [1, 3, 9]  # a null income is allowed
    # Good rows lose the check's columns but keep their hash; rejected rows the reverse.
    assert res.dataset.schema().names == [*CONTRACT.names, "_row_hash"]
    assert pq.read_table(q).column_names == [*CONTRACT.names, "_reject_reason", "_raw", "_warnings"]


def test_reject_rate_threshold_fails_with_a_clear_message(tmp_path: Path) -> None:
    src = tmp_path / "dirty.csv"
    src.write_text(DIRTY_CSV)
    with pytest.raises(RejectRateExceeded, match=r"6 of 9 rows rejected .*max_reject_rate=10.00%"):
        check_sources([str(src)], CONTRACT, quarantine_dir=str(tmp_path / "q"), max_reject_rate=0.1)
    assert pq.read_table(tmp_path / "q").num_rows == 6  # written before failing: nothing lost


def test_blockwise_check_matches_one_check_of_the_whole_table(tmp_path: Path) -> None:
    """Checked per block, counted and quarantined per block, split by a predicate expression:
    the same rows kept, the same rows quarantined with the same reasons, the same digest and
    the same preprocessing as one `check_table` over the whole table."""
    rng = np.random.default_rng(0)
    n = 3000
    table = pa.table(
        {
            "id": np.arange(n),
            "age": rng.integers(-5, 130, n),  # about 10% outside [0, 120]
            "income": np.where(rng.random(n) < 0.05, -1.0, rng.random(n) * 100),
            "city": rng.choice(["paris", "rome", "oslo"], n, p=[0.49, 0.49, 0.02]),
            "y": rng.integers(0, 2, n),
        }
    )
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=500)
    q = tmp_path / "q"
    for _ in range(2):  # the second run replaces the first run's quarantine, never adds to it
        res = check_sources(
            [str(tmp_path / "d.parquet")], CONTRACT, quarantine_dir=str(q), num_blocks=3
        )
    whole = check_table(pq.read_table(tmp_path / "d.parquet"), CONTRACT)
    is_bad = pc.is_valid(whole.column("_reject_reason"))
    want_bad = whole.filter(is_bad).drop_columns(["_row_hash"])
    want_good = whole.filter(pc.invert(is_bad)).drop_columns(
        ["_reject_reason", "_raw", "_warnings"]
    )

    r = res.report
    assert 0 < want_bad.num_rows < n
    assert (r.rows_in, r.rows_rejected) == (n, want_bad.num_rows)
    reasons: dict[str, int] = {}
    for joined in want_bad.column("_reject_reason").to_pylist():
        for rule in joined.split(";"):
            reasons[rule] = reasons.get(rule, 0) + 1
    assert r.reasons == dict(sorted(reasons.items()))
    hashes = whole.column("_row_hash").to_numpy()
    bad_np = is_bad.to_numpy(zero_copy_only=False)
    ok_sum, bad_sum = (int(hashes[m].sum(dtype="uint64")) for m in (~bad_np, bad_np))
    assert r.digest == f"{n}:{want_bad.num_rows}:{ok_sum:016x}:{bad_sum:016x}"

    # One quarantine file per block (3 blocks of 2 row groups), named by the block's position.
    assert sorted(f.name for f in q.iterdir()) == [f"part-{i:05d}.parquet" for i in range(3)]
    got_bad = pq.read_table(q).sort_by("id")
    assert got_bad.to_pylist() == want_bad.sort_by("id").to_pylist()
    got_good = pa.concat_tables(res.dataset.iter_batches(batch_format="pyarrow")).sort_by("id")
    assert got_good.to_pylist() == want_good.sort_by("id").to_pylist()

    prep = fit_preprocessor(res.dataset, CONTRACT)
    expected = fit_preprocessor_table(want_good.drop_columns(["_row_hash"]), CONTRACT)
    assert prep.fit_rows == expected.fit_rows == want_good.num_rows
    for got, want in zip(prep.numeric, expected.numeric, strict=True):
        assert (got.fill, got.center, got.scale) == pytest.approx(
            (want.fill, want.center, want.scale), rel=1e-9
        )
    assert prep.categorical == expected.categorical


def test_union_of_formats_aligns_columns(tmp_path: Path) -> None:
    pq.write_table(
        pa.table(
            {
                "id": [1, 2],
                "age": [30, 31],
                "income": [1.0, 2.0],
                "city": ["paris", "rome"],
                "y": [0, 1],
            }
        ),
        tmp_path / "a.parquet",
    )
    # no income column at all: it is nullable, so these rows are fine
    (tmp_path / "b.jsonl").write_text('{"id": 3, "age": 40, "city": "rome", "y": 1}\n')
    (tmp_path / "c.csv").write_text("id,age,income,city,y\n4,50,3.5,paris,0\n")
    res = check_sources(
        [str(tmp_path / "a.parquet"), str(tmp_path / "b.jsonl"), str(tmp_path / "*.csv")], CONTRACT
    )
    assert res.report.rows_ok == 4 and res.report.rows_rejected == 0
    rows = sorted(res.dataset.take_all(), key=lambda r: r["id"])
    assert rows[2]["income"] is None and rows[3]["income"] == 3.5


def test_join_on_key_keeps_unmatched_rows_as_rejects(tmp_path: Path) -> None:
    pq.write_table(
        pa.table({"id": [1, 2, 3], "age": [30, 31, 32], "y": [0, 1, 0]}), tmp_path / "left.parquet"
    )
    pq.write_table(
        pa.table({"id": [1, 2, 9], "income": [1.0, 2.0, 3.0], "city": ["paris", "rome", "rome"]}),
        tmp_path / "right.parquet",
    )
    res = check_sources(
        [str(tmp_path / "left.parquet"), str(tmp_path / "right.parquet")],
        CONTRACT,
        merge="join",
        join_key="id",
        quarantine_dir=str(tmp_path / "q"),
        max_reject_rate=1.0,
    )
    assert sorted(r["id"] for r in res.dataset.take_all()) == [1, 2]
    assert res.report.rows_rejected == 2  # id 3 has no city, id 9 has no age/label
    assert res.report.reasons["city:null"] == 1 and res.report.reasons["age:null"] == 1


def test_inferred_contract_over_a_compressed_glob_warns_and_keeps_ids(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "archive").mkdir(parents=True)
    header = "id,age,city,y\n"
    rows = range(1, 21)
    first = "".join(f"{i},{20 + i % 10},{'paris' if i % 2 else 'rome'},{i % 2}\n" for i in rows)
    (data / "a.csv.gz").write_bytes(gzip.compress((header + first).encode()))
    # New ids, an age beyond the sample's, an unseen city, and one truly bad value.
    later = "21,95,rome,1\n22,25,oslo,0\n23,abc,rome,1\n"
    (data / "b.csv.gz").write_bytes(gzip.compress((header + later).encode()))
    # Nested: `data/*.csv.gz` must not read it (it would add a `_row:parse` reject).
    (data / "archive" / "old.csv.gz").write_bytes(gzip.compress(b"not,a\ncsv,file,at,all\n"))
    contract = infer_contract(read_sample(str(data / "a.csv.gz")))
    assert [c.name for c in contract.id_columns] == ["id"]
    q = tmp_path / "q"
    res = check_sources([str(data / "*.csv.gz")], contract, quarantine_dir=str(q))
    r = res.report
    assert (r.rows_in, r.rows_ok, r.rows_rejected) == (23, 22, 1)
    assert r.reasons == {"age:type": 1}
    assert r.warnings == {"age:range": 1, "city:category": 1}
    assert r.to_dict()["warnings"] == r.warnings
    assert sorted(row["id"] for row in res.dataset.take_all()) == list(range(1, 23))
    [bad] = pq.read_table(q).to_pylist()
    assert (bad["id"], bad["_reject_reason"]) == (23, "age:type")


def test_missing_and_corrupt_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file or directory"):
        check_sources([str(tmp_path / "nope.parquet")], CONTRACT)
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(SourceError, match="bad.parquet' is not a readable Parquet file"):
        check_sources([str(tmp_path / "bad.parquet")], CONTRACT)


SYN = "synthetic://classification?rows=20000&features=4&categorical=1&imbalance=0.01&seed=3"


def test_stratified_split_keeps_minority_share_and_ignores_blocking() -> None:
    contract = source_contract(SYN)
    results = []
    for blocks in (1, 4):
        checked = check_sources([SYN], contract, num_blocks=blocks)
        splits = split_dataset(
            checked.dataset, contract, val_fraction=0.15, test_fraction=0.15, seed=7
        )
        results.append((checked, splits))
        overall = sum(splits.plan.counts[1]) / splits.plan.counts.sum()
        for name, ds in (
            ("train", splits.train),
            ("validation", splits.validation),
            ("test", splits.test),
        ):
            y = np.concatenate([b["target"] for b in ds.iter_batches(batch_format="numpy")])
            assert abs(y.mean() - overall) < 0.01, name  # within 1 percentage point
            assert len(y) == splits.plan.summary()[name]["rows"]
    (c1, s1), (c4, s4) = results
    assert c1.report.digest == c4.report.digest  # fingerprint input ignores blocking
    ids = [sorted(r["_row_hash"] for r in s.test.take_all()) for s in (s1, s4)]
    assert ids[0] == ids[1]  # the same rows in the test split on 1 or 4 blocks


def test_kfold_folds_are_disjoint_and_stratified() -> None:
    contract = source_contract(SYN)
    checked = check_sources([SYN], contract)
    splits = split_dataset(
        checked.dataset, contract, val_fraction=0, test_fraction=0.2, kfold=4, seed=1
    )
    seen: set[int] = set()
    for fold in splits.folds:
        hashes = {r["_row_hash"] for r in fold.take_all()}
        assert not hashes & seen
        seen |= hashes
    assert len(seen) + splits.test.count() == 20000
    for entry in splits.plan.summary().values():
        assert abs(entry["class_fraction"]["1"] - 0.01) < 0.01


def test_preprocessing_sees_only_the_train_split() -> None:
    contract = source_contract(SYN)
    checked = check_sources([SYN], contract)
    splits = split_dataset(checked.dataset, contract, val_fraction=0.15, test_fraction=0.15, seed=0)
    prep = fit_preprocessor(splits.train, contract)
    train = pa.concat_tables(splits.train.iter_batches(batch_format="pyarrow")).drop_columns(
        ["_row_hash"]
    )
    expected = fit_preprocessor_table(train, contract)
    for got, want in zip(prep.numeric, expected.numeric, strict=True):
        assert (got.center, got.scale) == pytest.approx((want.center, want.scale), rel=1e-9)
    assert prep.categorical == expected.categorical
    f0 = train.column("f0").to_numpy()
    assert prep.numeric[0].center == pytest.approx(f0.mean(), rel=1e-9)
    assert prep.fit_rows == train.num_rows < 20000
    # and the held-out rows do pull the mean elsewhere: statistics over all rows differ
    everything = pa.concat_tables(checked.dataset.iter_batches(batch_format="pyarrow"))
    assert pc.mean(everything.column("f0")).as_py() != pytest.approx(
        prep.numeric[0].center, rel=1e-12
    )


def _apply_reduce_tasks_since(start_s: float, *, at_least: int) -> int:
    """How many `_apply_reduce` tasks Ray's state API says started at or after `start_s`.

    Task events reach the state API a second or so after the tasks end: wait for `at_least`,
    then until the count holds still.
    """
    import time

    import ray
    from ray.util.state import list_tasks

    address = ray.get_runtime_context().gcs_address  # this session's Ray: there may be two

    def count() -> int:
        tasks = list_tasks(
            address=address,
            filters=[("func_or_class_name", "=", "_apply_reduce")],
            limit=10_000,
            detail=True,
        )
        return sum(1 for t in tasks if (t.start_time_ms or 0) >= start_s * 1000)

    deadline = time.monotonic() + 60
    last, still = count(), 0
    while time.monotonic() < deadline and (still < 4 or last < at_least):
        time.sleep(0.5)
        now = count()
        still = still + 1 if now == last else 0
        last = now
    return last


def test_the_split_and_the_fit_count_the_good_rows_only_in_plain_tasks(tmp_path: Path) -> None:
    # The split's histogram and the fit run as plain tasks over the checked blocks, applying the
    # good-row filter and the split's selection themselves: they must see exactly the rows Ray
    # Data's own lazy datasets give, rejected rows never, and no Ray Data execution in between.
    import time

    rng = np.random.default_rng(0)
    n = 3000
    age = rng.integers(0, 100, n)
    age[rng.random(n) < 0.1] = 500  # out of range: rejected
    table = pa.table(
        {
            "id": np.arange(n),
            "age": age,
            "income": rng.random(n) * 100,
            "city": rng.choice(["paris", "rome"], n),
            "y": (rng.random(n) < 0.3).astype(np.int64),
        }
    )
    for i in range(4):
        pq.write_table(table.slice(i * 750, 750), tmp_path / f"part-{i}.parquet")
    start = time.time()
    checked = check_sources([str(tmp_path)], CONTRACT)
    assert 0 < checked.report.rows_rejected < n
    splits = split_dataset(checked.dataset, CONTRACT, val_fraction=0.2, test_fraction=0.2, seed=0)
    assert splits.plan.counts.sum() == checked.report.rows_ok
    prep = fit_preprocessor(splits.train, CONTRACT)
    train = pa.concat_tables(splits.train.iter_batches(batch_format="pyarrow"))
    assert prep.fit_rows == train.num_rows == splits.plan.summary()["train"]["rows"]
    assert int(pc.max(train.column("age")).as_py()) <= 120
    want = fit_preprocessor_table(train.drop_columns(["_row_hash"]), CONTRACT)
    for got, exp in zip(prep.numeric, want.numeric, strict=True):
        assert (got.center, got.scale) == pytest.approx((exp.center, exp.scale), rel=1e-9)
    assert prep.categorical == want.categorical
    # Ray's own record of what ran: one plain task per checked block for each statistic.
    assert _apply_reduce_tasks_since(start, at_least=2 * 4) == 2 * 4


def test_a_fit_over_rows_that_are_no_view_of_checked_blocks_still_sees_every_row() -> None:
    contract = source_contract(SYN)
    checked = check_sources([SYN], contract, num_blocks=2)
    splits = split_dataset(
        checked.dataset, contract, val_fraction=0, test_fraction=0.2, kfold=3, seed=1
    )
    both = splits.folds[1].union(splits.folds[2])  # a union: Ray Data's pass, not plain tasks
    prep = fit_preprocessor(both, contract)
    rows = pa.concat_tables(both.iter_batches(batch_format="pyarrow")).drop_columns(["_row_hash"])
    want = fit_preprocessor_table(rows, contract)
    assert prep.fit_rows == rows.num_rows
    assert prep.numeric[0].center == pytest.approx(want.numeric[0].center, rel=1e-9)


def test_fingerprint_is_stable_and_changes_with_one_row(tmp_path: Path) -> None:
    table = pa.table(
        {
            "id": list(range(50)),
            "age": [30] * 50,
            "income": [1.0] * 50,
            "city": ["rome"] * 50,
            "y": [0, 1] * 25,
        }
    )
    pq.write_table(table, tmp_path / "a.parquet")
    fp = [
        fingerprint(
            check_sources([str(tmp_path / "a.parquet")], CONTRACT).report.digest, CONTRACT, {}
        )
        for _ in range(2)
    ]
    assert fp[0] == fp[1]
    pq.write_table(table.set_column(1, "age", pa.array([30] * 49 + [31])), tmp_path / "a.parquet")
    assert (
        fingerprint(
            check_sources([str(tmp_path / "a.parquet")], CONTRACT).report.digest, CONTRACT, {}
        )
        != fp[0]
    )


def _stamp(table: pa.Table) -> pa.Table:
    import os
    import time

    start = time.time()
    time.sleep(0.25)
    return pa.table({"start": [start], "end": [time.time()], "pid": [os.getpid()]})


def test_a_one_map_pass_over_read_files_keeps_every_cpu_busy(tmp_path: Path) -> None:
    # Ray 2.60's per-operator reservation held a one-map pass of the data layer to about one task
    # at a time on a 2-CPU node (20 tasks of 0.25 s: 4.6 s, mean concurrency 1.1); read_source's
    # datasets switch it off (2.8 s, mean concurrency 1.9).
    from ray_ml.data._blocks import map_blocks
    from ray_ml.data._sources import read_source

    for i in range(20):
        pq.write_table(pa.table({"x": [float(i)] * 10}), tmp_path / f"part-{i:02d}.parquet")
    spans = map_blocks(read_source(str(tmp_path), ["x"]), _stamp).take_all()
    assert len(spans) == 20
    busy = sum(s["end"] - s["start"] for s in spans)
    span = max(s["end"] for s in spans) - min(s["start"] for s in spans)
    assert busy / span >= 1.5, f"mean tasks running at once {busy / span:.2f}, want about 2"
    assert len({s["pid"] for s in spans}) >= 2
