"""Id columns and soft expectations: what `data infer` writes, and how the check treats it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ray_ml.data import ColumnType, Contract, check_table, fit_preprocessor_table, infer_contract
from ray_ml.data._contract import ColumnRole
from ray_ml.data._validate import _block_stats
from ray_ml.errors import ContractError

pytestmark = pytest.mark.unit


def _source(rows: int, seed: int = 0) -> pa.Table:
    """One source, in file order: later rows bring new ids, older people and a new city."""
    rng = np.random.default_rng(seed)
    late = np.arange(rows) >= 2000
    age = np.where(late, rng.integers(18, 100, rows), rng.integers(18, 80, rows))
    city = np.where(
        late & (rng.random(rows) < 0.01), "lima", rng.choice(["paris", "rome", "oslo"], rows)
    )
    return pa.table(
        {
            "id": np.arange(1, rows + 1),
            "age": age,
            "income": np.round(rng.lognormal(3.0, 0.5, rows), 2),
            "city": city,
            "y": rng.integers(0, 2, rows),
        }
    )


def _warnings(checked: pa.Table) -> dict[str, int]:
    """The per-block warning counts `check_sources` sums into `ValidationReport.warnings`."""
    warnings: dict[str, int] = _block_stats(checked)["warnings"]
    return warnings


def _reasons(checked: pa.Table) -> dict[str, int]:
    reasons: dict[str, int] = _block_stats(checked)["reasons"]
    return reasons


def _outside(full: pa.Table, contract: Contract) -> dict[str, int]:
    """Rows outside each inferred expectation, counted with numpy (independent of the check)."""
    counts: dict[str, int] = {}
    for name in ("age", "income"):
        e = contract.column(name).expect
        assert e is not None and e.min is not None and e.max is not None
        x = full.column(name).to_numpy()
        counts[f"{name}:range"] = int(((x < e.min) | (x > e.max)).sum())
    seen = contract.column("city").known_categories
    assert seen is not None
    counts["city:category"] = int((~np.isin(full.column("city").to_numpy(), seen)).sum())
    return {k: v for k, v in counts.items() if v}


# -- id detection ---------------------------------------------------------------------------------
def test_id_columns_are_detected_by_name_or_by_values() -> None:
    n = 120  # enough rows for values alone to say id; unique strings beyond 50 categories
    rng = np.random.default_rng(0)
    table = pa.table(
        {
            "id": rng.permutation(np.arange(1000, 1000 + n)),  # by name, in any order
            "user_uuid": [f"u-{i:08x}" for i in rng.permutation(n)],  # by name
            "row": np.arange(n),  # by values: a sequence in file order
            "sku": [f"SKU-{i:05d}" for i in rng.permutation(n)],  # by values: key-like strings
            # distinct, but spread thin and unordered: a measurement
            "amount_cents": rng.choice(np.arange(100, 10**6), n, replace=False),
            "comment": [f"note number {i}" for i in range(n)],  # distinct, but free text
            "customer_id": rng.integers(0, 10, n),  # repeats: a foreign key, not this row's key
            "score": rng.normal(size=n),  # floats are measurements
            "city": rng.choice(["a", "b"], n),
            "target": rng.integers(0, 2, n),
        }
    )
    contract = infer_contract(table)
    assert [c.name for c in contract.id_columns] == ["id", "user_uuid", "row", "sku"]
    for spec in contract.id_columns:
        assert spec.role is ColumnRole.ID and not spec.nullable
        assert spec.type in (ColumnType.INT, ColumnType.STRING)
        assert (spec.min, spec.max, spec.categories, spec.expect) == (None, None, None, None)
    assert [c.name for c in contract.feature_columns] == [
        "amount_cents",
        "comment",
        "customer_id",
        "score",
        "city",
    ]
    # A name says id even in a tiny sample; values alone need enough rows to mean anything.
    small = infer_contract(pa.table({"id": [1, 50, 100], "n": [3, 5, 9], "y": [0, 1, 1]}))
    assert [c.name for c in small.id_columns] == ["id"]


def test_id_columns_are_no_feature_but_stay_in_checked_rows_and_predictions() -> None:
    sample = _source(200)
    contract = infer_contract(sample)
    prep = fit_preprocessor_table(sample, contract)
    assert "id" not in prep.input_columns and "id" not in prep.feature_names
    assert prep.transform(sample.drop_columns(["id"])).shape == (200, prep.num_features)
    # Batch prediction checks and keeps every column but the label: the ids too.
    assert [c.name for c in contract.inference_columns] == ["id", "age", "income", "city"]
    # A rejected row keeps its id, typed and in its raw values (the quarantine's columns).
    raw = sample.slice(0, 3).set_column(1, "age", pa.array(["30", "old", "40"]))
    checked = check_table(raw, contract)
    bad = checked.filter(pc.is_valid(checked.column("_reject_reason"))).to_pylist()
    assert [(r["id"], r["_reject_reason"]) for r in bad] == [(2, "age:type")]
    assert json.loads(bad[0]["_raw"])["id"] == 2


# -- expectations ---------------------------------------------------------------------------------
def test_inferred_contract_warns_on_the_full_source_instead_of_rejecting() -> None:
    full = _source(10_000)
    contract = infer_contract(full.slice(0, 2000))
    checked = check_table(full, contract)
    assert _reasons(checked) == {}  # no `id:range`, no `age:range`: nothing rejected
    expected = _outside(full, contract)
    assert expected["age:range"] > 0 and expected["city:category"] > 0
    assert _warnings(checked) == expected
    # Rows carry their warnings while checked, and are kept, in order (the good rows handed on
    # lose `_warnings`: tests/ray/test_data_ray.py, on the Ray Dataset `check_sources` returns).
    age = contract.column("age").expect
    assert age is not None and age.max is not None
    older = int(np.flatnonzero(full.column("age").to_numpy() > age.max)[0])
    assert "age:range" in checked.column("_warnings")[older].as_py().split(";")
    assert checked.column("_reject_reason").null_count == full.num_rows
    assert checked.column("id").to_pylist() == list(range(1, 10_001))


def test_hand_written_rules_still_reject() -> None:
    full = _source(10_000)
    inferred = infer_contract(full.slice(0, 2000))
    age, income = inferred.column("age").expect, inferred.column("income").expect
    assert age is not None and income is not None
    hand = Contract.from_dict(
        {
            "name": "people",
            "task": "binary",
            "label": "y",
            "columns": [
                {"name": "id", "type": "int", "min": 1, "max": 2000},
                {"name": "age", "type": "int", "min": age.min, "max": age.max},
                {"name": "income", "type": "float", "min": income.min, "max": income.max},
                {"name": "city", "type": "category", "categories": ["oslo", "paris", "rome"]},
                {"name": "y", "type": "int", "categories": [0, 1]},
            ],
        }
    )
    checked = check_table(full, hand)
    assert _warnings(checked) == {}
    assert _reasons(checked) == {"id:range": 8000, **_outside(full, inferred)}


def test_strict_expectation_rejects() -> None:
    full = _source(10_000)
    raw: dict[str, Any] = infer_contract(full.slice(0, 2000)).to_dict()
    for col in raw["columns"]:
        if col["name"] == "age":
            col["expect"]["strict"] = True
    contract = Contract.from_dict(raw)
    checked = check_table(full, contract)
    outside = _outside(full, contract)
    assert _reasons(checked) == {"age:range": outside.pop("age:range")}
    assert _warnings(checked) == outside  # the other expectations still only warn


def test_ids_and_expectations_round_trip_through_yaml(tmp_path: Path) -> None:
    contract = infer_contract(_source(500))
    text = contract.to_yaml()
    assert "role: id" in text and "expect:" in text and "strict" not in text
    contract.save(tmp_path / "c.yaml")
    assert Contract.load(tmp_path / "c.yaml") == contract


_Y = {"name": "y", "type": "int", "categories": [0, 1]}


@pytest.mark.parametrize(
    ("column", "needle"),
    [
        (
            {"name": "a", "type": "float", "expect": {"mni": 0}},
            "columns[0] (`a`): unknown key(s) ['mni'] under expect",
        ),
        (
            {"name": "a", "type": "float", "expect": {"min": 0, "strict": "yes"}},
            "columns[0] (`a`): expect.strict must be true or false, but got expect.strict='yes'",
        ),
        (
            {"name": "a", "type": "float", "expect": {"min": 5, "max": 1}},
            "column `a`: expect.min must be <= expect.max, but got expect.min=5.0",
        ),
        (
            {"name": "a", "type": "float", "expect": {"min": "low"}},
            "columns[0] (`a`): expect.min='low' is not a number",
        ),
        (
            {"name": "c", "type": "category", "expect": {"min": 0, "categories": ["x"]}},
            "column `c`: expect.min/expect.max only apply to float or int columns",
        ),
        ({"name": "a", "type": "float", "expect": {}}, "column `a`: `expect:` sets none of"),
        ({"name": "a", "type": "float", "expect": [1, 2]}, "expect must be a mapping"),
        (
            {"name": "c", "type": "category", "categories": ["x"], "expect": {"categories": ["x"]}},
            "column `c`: categories are set both as a rule and under expect:",
        ),
        ({"name": "k", "type": "int", "role": "key"}, "columns[0] (`k`): role='key' is not one of"),
        (
            {"name": "k", "type": "float", "role": "id"},
            "column `k`: role=id needs type int or string (a key), but got type=float",
        ),
        (
            {"name": "k", "type": "int", "role": "id", "expect": {"max": 9}},
            "column `k`: an id column is never range- or category-checked, but it sets ['expect']",
        ),
    ],
)
def test_bad_role_or_expect_names_the_column_and_key(column: dict, needle: str) -> None:
    raw = {"name": "t", "task": "binary", "label": "y", "columns": [column, _Y]}
    with pytest.raises(ContractError) as err:
        Contract.from_dict(raw)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    ("label", "needle"),
    [
        ({"name": "y", "type": "int", "role": "id"}, "the label column `y` cannot have role: id"),
        (
            {"name": "y", "type": "int", "expect": {"categories": [0, 1]}},
            "Classes are a rule, not an expectation: move them out of `expect:`",
        ),
    ],
)
def test_label_cannot_be_an_id_or_have_expected_classes(label: dict, needle: str) -> None:
    raw = {"name": "t", "task": "binary", "label": "y", "columns": [label]}
    with pytest.raises(ContractError) as err:
        Contract.from_dict(raw)
    assert needle in str(err.value)
