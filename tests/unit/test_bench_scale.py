"""benchmarks/bench_scale.py without Ray: the chunked writer, the targets, billing, phase timers."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from benchmarks import bench_scale as bs
from benchmarks.bench_data import BAD_FRACTION, contract_for
from ray_ml.config import CostConfig, NodeTypeConfig, load_config
from ray_ml.cost import PriceCatalog
from ray_ml.data import REASON_COLUMN, check_table

pytestmark = pytest.mark.unit


def test_writer_writes_every_row_in_parts_with_the_configured_bad_fraction(tmp_path: Path) -> None:
    rows = 300_000  # two files: enough to see the parts, small enough for a unit test
    facts = bs.write_dataset(rows, tmp_path / "d")
    files = sorted((tmp_path / "d").glob("*.parquet"))
    assert facts["rows"] == rows
    assert facts["columns"] == 20
    assert facts["files"] == len(files) >= 2
    assert max(pq.read_metadata(f).num_rows for f in files) < rows  # never all in one part
    assert facts["uncompressed_bytes"] > 0 and facts["bad_fraction"] == BAD_FRACTION

    table = pa.concat_tables([pq.read_table(f) for f in files])
    checked = check_table(table, contract_for(rows))
    rejected = checked.filter(pc.is_valid(checked.column(REASON_COLUMN))).num_rows
    injected = table.filter(pc.equal(table.column("f0"), 1e6)).num_rows
    # The check rejects exactly the injected rows, at the configured rate (a null f0 stays null).
    assert rejected == injected
    assert rejected / rows == pytest.approx(BAD_FRACTION, rel=0.3)


def _size(
    rows: int, rates: tuple[float, float, float], driver_mb: float, store_ok: bool = True
) -> dict[str, Any]:
    return {
        "status": "ok",
        "stages": {
            stage: {
                "rows": rows,
                "rows_per_s": rate,
                "seconds": rows / rate,
                "epoch_s": rows / rate,
            }
            for stage, rate in zip(bs.STAGES, rates, strict=True)
        },
        "usd": rows * 1e-9,
        "memory": {
            "driver_peak_rss_mb": driver_mb,
            "workers_peak_rss_mb": 1000.0,
            "worker_max_rss_mb": 400.0,
        },
        "object_store": {
            "configured_mb": 1024,
            "ray_store_mb": 1024.0,
            "capacity_matches_config": store_ok,
            "dataset_over_store": 3.1,
            "at_end": {"spilled_mb": 9000.0},
        },
    }


THREE_SIZES = {
    "1000000": _size(1_000_000, (100.0, 200.0, 300.0), 300.0),
    "5000000": _size(5_000_000, (95.0, 190.0, 250.0), 310.0),
    "20000000": _size(20_000_000, (90.0, 150.0, 280.0), 330.0),
}


def test_targets_from_three_sizes() -> None:
    targets = bs.compute_targets(THREE_SIZES)

    rows = targets["rows_per_s_within_20pct"]
    assert rows["sizes"] == [1_000_000, 5_000_000, 20_000_000]
    assert rows["per_stage"]["check"]["value"] == pytest.approx(0.9)
    assert rows["per_stage"]["check"]["met"] is True
    assert rows["per_stage"]["preprocess"]["value"] == pytest.approx(0.75)
    assert rows["per_stage"]["preprocess"]["met"] is False
    assert rows["per_stage"]["train"]["value"] == pytest.approx(250 / 300)
    assert rows["value"] == pytest.approx(0.75)  # the worst stage
    assert rows["met"] is False

    driver = targets["driver_peak_memory_growth"]
    assert driver["sizes"] == [1_000_000, 20_000_000]
    assert driver["value"] == pytest.approx(1.1)
    assert driver["met"] is True

    done = targets["completed_20m_with_configured_store"]
    assert done["status"] == "ok" and done["met"] is True
    assert done["spilled_mb"] == 9000.0 and done["dataset_over_store"] == 3.1


def test_growth_is_the_largest_size_over_the_smallest() -> None:
    g = bs.growth(THREE_SIZES)
    assert g is not None
    assert (g["from_rows"], g["to_rows"], g["rows_ratio"]) == (1_000_000, 20_000_000, 20.0)
    assert g["rows_per_s_ratio"]["check"] == pytest.approx(0.9)
    assert g["seconds_ratio"]["check"] == pytest.approx(20 * 100 / 90)
    assert g["driver_peak_rss_ratio"] == pytest.approx(1.1)
    assert g["usd_ratio"] == pytest.approx(20.0)


def test_linear_fit_splits_a_fixed_cost_from_the_rate_per_row() -> None:
    # seconds = 3 + rows / 250k for every stage: the fit gives the 3 s and the 250k rows/s back
    sizes = {}
    for rows in (1_000_000, 5_000_000, 20_000_000):
        size = _size(rows, (1.0, 1.0, 1.0), 300.0)
        for entry in size["stages"].values():
            entry["seconds"] = entry["epoch_s"] = 3.0 + rows / 250_000
        sizes[str(rows)] = size
    fit = bs.linear_fit(sizes)
    assert fit is not None
    for stage in bs.STAGES:
        assert fit[stage]["fixed_s"] == pytest.approx(3.0)
        assert fit[stage]["marginal_rows_per_s"] == pytest.approx(250_000)
    assert bs.linear_fit({"1000000": sizes["1000000"]}) is None


def test_targets_say_what_was_not_run_and_a_failed_or_resized_20m_misses() -> None:
    small: dict[str, dict[str, Any]] = {
        "200000": _size(200_000, (1.0, 1.0, 1.0), 100.0),
        "1000000": {"status": "not run"},
        "20000000": {"status": "not run"},
    }
    targets = bs.compute_targets(small)
    for name in ("rows_per_s_within_20pct", "driver_peak_memory_growth"):
        assert targets[name]["value"] is None and targets[name]["met"] is None
        assert "why" in targets[name]
    assert targets["completed_20m_with_configured_store"]["status"] == "not run"
    assert targets["completed_20m_with_configured_store"]["met"] is None
    assert bs.growth(small) is None

    failed = {**small, "20000000": {"status": "failed", "error": "killed"}}
    assert bs.compute_targets(failed)["completed_20m_with_configured_store"]["met"] is False
    resized = {**small, "20000000": _size(20_000_000, (1.0, 1.0, 1.0), 100.0, store_ok=False)}
    assert bs.compute_targets(resized)["completed_20m_with_configured_store"]["met"] is False


def test_bill_charges_the_held_cpus_over_each_stage_at_the_catalog_price() -> None:
    node = NodeTypeConfig(
        name="cpu4",
        cpus=4,
        memory_gb=16.0,
        on_demand_usd_per_hour=0.40,  # $0.10 per CPU-hour
        spot_usd_per_hour=0.16,
        prices_read_on="2026-11-26",
    )
    catalog = PriceCatalog.from_config(CostConfig(node_types=[node], default_node_type="cpu4"))
    usd = bs.bill(catalog, {"check": (10.0, 1810.0), "train": (1810.0, 5410.0)}, cpus=2.0)
    assert usd["check"] == pytest.approx(0.10)  # 2 CPUs x 0.5 h
    assert usd["train"] == pytest.approx(0.20)  # 2 CPUs x 1 h


def test_timed_calls_time_the_named_functions_in_place_and_put_them_back() -> None:
    module: Any = types.ModuleType("phases")
    module.f = lambda x: x + 1
    module.g = lambda x: x * 2
    original_f, original_g = module.f, module.g
    sampler: Any = types.SimpleNamespace(stage="before")
    seen: list[tuple[str, str]] = []

    def after(name: str) -> None:
        seen.append((name, sampler.stage))

    with bs.timed_calls(module, {"f": "check"}, sampler, after) as spans:
        assert module.f(1) == 2
        assert module.f is not original_f
        assert module.g(3) == 6 and module.g is original_g  # not named: untouched
    assert module.f is original_f
    assert seen == [("f", "check")]  # the stage is set before the call, `after` runs after it
    assert list(spans) == ["f"] and spans["f"][0] <= spans["f"][1]


def test_each_size_composes_a_valid_train_config(tmp_path: Path) -> None:
    run = bs.SizeRun(
        rows=1_000_000,
        data=tmp_path / "data",
        warmup=tmp_path / "warmup",
        work=tmp_path / "run",
        object_store_mb=1024,
        batch_size=4096,
        hidden_sizes=(32,),
        cpu_cache_mb=0,
    )
    cfg = load_config("train", run.overrides(tmp_path / "contract.yaml"))
    assert cfg.data.sources == [str(tmp_path / "data")]
    assert cfg.data.contract == str(tmp_path / "contract.yaml")
    assert cfg.storage_path == str(tmp_path / "run" / "runs")
    assert (cfg.scaling.num_workers, cfg.train.epochs, cfg.train.batch_size) == (2, 2, 4096)
    assert cfg.model.hidden_sizes == [32] and cfg.train.cpu_cache_mb == 0
    assert cfg.cluster.object_store_mb == 1024
    assert (cfg.data.val_fraction, cfg.data.test_fraction) == (bs.VAL_FRACTION, bs.TEST_FRACTION)
