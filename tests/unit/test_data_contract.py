from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from ray_ml.data import ColumnType, Contract, Task, infer_contract, source_contract
from ray_ml.data._sources import BUNDLED_DATASETS, SyntheticSpec, _bundled_table
from ray_ml.errors import ContractError

pytestmark = pytest.mark.unit

GOOD = {
    "name": "t",
    "task": "binary",
    "label": "y",
    "columns": [
        {"name": "a", "type": "float", "min": "1e-3", "max": 10},
        {"name": "c", "type": "category", "categories": ["x", "z"]},
        {"name": "y", "type": "int", "categories": [0, 1]},
    ],
}


def test_contract_round_trips_through_yaml(tmp_path: Path) -> None:
    contract = Contract.from_dict(GOOD)
    assert contract.column("a").min == pytest.approx(1e-3)  # PyYAML's string '1e-3' is a float
    contract.save(tmp_path / "c.yaml")
    assert Contract.load(tmp_path / "c.yaml") == contract


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"tsk": "binary"}, "unknown key(s) ['tsk']"),
        ({"task": "clustering"}, "task='clustering'"),
        ({"label": "nope"}, "label='nope' is not a column"),
        (
            {
                "columns": [
                    {"name": "a", "type": "flaot"},
                    {"name": "y", "type": "int", "categories": [0, 1]},
                ]
            },
            "type='flaot'",
        ),
        (
            {
                "columns": [
                    {"name": "a", "type": "float", "mni": 0},
                    {"name": "y", "type": "int", "categories": [0, 1]},
                ]
            },
            "unknown key(s) ['mni']",
        ),
        (
            {
                "columns": [
                    {"name": "a", "type": "float", "min": 5, "max": 1},
                    {"name": "y", "type": "int", "categories": [0, 1]},
                ]
            },
            "min must be <= max",
        ),
        (
            {"columns": [{"name": "y", "type": "int", "categories": [0, 1, 2]}]},
            "exactly 2 label categories",
        ),
        (
            {
                "columns": [
                    {"name": "c", "type": "category"},
                    {"name": "y", "type": "int", "categories": [0, 1]},
                ]
            },
            "needs `categories:`",
        ),
    ],
)
def test_bad_contract_names_the_problem(patch: dict, needle: str) -> None:
    with pytest.raises(ContractError) as err:
        Contract.from_dict({**GOOD, **patch})
    assert needle in str(err.value)


def test_missing_contract_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="ray-ml data infer"):
        Contract.load(tmp_path / "missing.yaml")


def test_infer_contract_from_clean_sample() -> None:
    table = pa.table(
        {
            "age": pa.array([20, 35, None, 60], pa.int64()),
            "income": [0.2, 2.5, 3.0, 4.0],
            "city": ["a", "b", "a", "c"],
            "label": ["yes", "no", "no", "yes"],
        }
    )
    contract = infer_contract(table)
    assert contract.label == "label" and contract.task is Task.BINARY
    age = contract.column("age")
    assert age.type is ColumnType.INT and age.nullable
    # What a sample shows is expected, not a rule: the full data may reach beyond it.
    assert age.min is None and age.max is None
    assert age.expect is not None and age.expect.min <= 20 and age.expect.max >= 60
    income = contract.column("income").expect
    assert income is not None and income.min == 0.0  # non-negative data keeps a 0 lower bound
    city = contract.column("city")
    assert city.categories is None and city.known_categories == ("a", "b", "c")
    assert contract.classes == ["no", "yes"]  # the label's classes stay a rule


@pytest.mark.parametrize("name", BUNDLED_DATASETS)
def test_every_bundled_dataset_meets_its_shipped_contract(name: str) -> None:
    from ray_ml.data import check_table

    contract = source_contract(f"sklearn://{name}")
    checked = check_table(_bundled_table(name), contract)
    assert checked.column("_reject_reason").null_count == checked.num_rows


def test_synthetic_spec_parses_and_rejects_typos() -> None:
    spec = SyntheticSpec.from_uri("synthetic://regression?rows=1000&features=3&drift=0.5")
    assert (spec.task, spec.rows, spec.features, spec.drift) == ("regression", 1000, 3, 0.5)
    with pytest.raises(Exception, match="unknown synthetic parameter 'featurs'"):
        SyntheticSpec.from_uri("synthetic://classification?featurs=3")
    with pytest.raises(Exception, match="imbalance"):
        SyntheticSpec.from_uri("synthetic://classification?imbalance=1.5")


@pytest.mark.parametrize(
    ("uri", "fs_type", "path"),
    [
        (
            "s3://my-bucket/data/part.parquet?region=us-east-1",
            "S3FileSystem",
            "my-bucket/data/part.parquet",
        ),
        ("gs://my-bucket/data/x.parquet", "GcsFileSystem", "my-bucket/data/x.parquet"),
    ],
)
def test_object_store_uris_reach_pyarrow_filesystems(uri: str, fs_type: str, path: str) -> None:
    from ray_ml.data._sources import _filesystem_for

    fs, resolved = _filesystem_for(uri)
    assert type(fs).__name__ == fs_type and resolved == path


def test_unsupported_uri_is_named() -> None:
    from ray_ml.data._sources import _filesystem_for
    from ray_ml.errors import SourceError

    with pytest.raises(SourceError, match="pyarrow cannot open this URI"):
        _filesystem_for("nosuchscheme://bucket/key")
