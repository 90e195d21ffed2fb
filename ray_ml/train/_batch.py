"""Batch inference: raw rows from any source -> the bundle's contract check -> predictions.

Rows are checked against the bundle's own contract (feature columns only: inference data has no
label); rows that fail are written with their reasons next to the predictions, never dropped
silently. Predictions come from `Predictor` in a Ray Data actor pool (one model copy per actor).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ray_ml.data import (
    RAW_COLUMN,
    REASON_COLUMN,
    ROW_HASH_COLUMN,
    WARNINGS_COLUMN,
    check_table,
    map_blocks,
    read_source,
)
from ray_ml.train._bundle import load_bundle
from ray_ml.train._predictor import Predictor

__all__ = ["batch_predict"]


def _good(table: pa.Table) -> pa.Table:
    ok = table.filter(pc.is_null(table.column(REASON_COLUMN)))
    return ok.drop_columns([REASON_COLUMN, RAW_COLUMN, WARNINGS_COLUMN, ROW_HASH_COLUMN])


def _bad(table: pa.Table) -> pa.Table:
    return table.filter(pc.is_valid(table.column(REASON_COLUMN))).drop_columns([ROW_HASH_COLUMN])


def batch_predict(
    bundle_dir: str | Path, sources: list[str], out: str | Path, *, concurrency: int = 1
) -> dict[str, Any]:
    """Predict every valid row of `sources` with the bundle; write Parquet under `out`.

    Writes `out/predictions/` (the input id and feature columns plus `prediction` and, for
    classification, `scores`) and `out/rejected/` (rows that broke the contract, with
    `_reject_reason`). Returns counts and paths.
    """
    import ray.data

    t0 = time.perf_counter()
    bundle = load_bundle(bundle_dir)
    contract = bundle.contract
    # The id columns too (role: id): checked, and kept next to each prediction.
    columns = contract.inference_columns
    names = [c.name for c in columns]
    parts = [map_blocks(read_source(s, names), check_table, contract, columns) for s in sources]
    checked = (parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]).materialize()
    out = Path(out).resolve()
    good = map_blocks(checked, _good)
    rows_in = checked.count()
    rejected = map_blocks(checked, _bad).materialize()
    n_bad = rejected.count()
    if n_bad:
        rejected.write_parquet(str(out / "rejected"))
    predictions = good.map_batches(
        Predictor,
        fn_constructor_args=(str(bundle_dir),),
        fn_constructor_kwargs={"keep_columns": names},
        batch_format="pyarrow",
        batch_size=4096,
        compute=ray.data.ActorPoolStrategy(size=concurrency),
    )
    predictions.write_parquet(str(out / "predictions"))
    return {
        "bundle": str(bundle_dir),
        "rows_in": rows_in,
        "rows_predicted": rows_in - n_bad,
        "rows_rejected": n_bad,
        "predictions": str(out / "predictions"),
        "rejected": str(out / "rejected") if n_bad else None,
        "wall_s": round(time.perf_counter() - t0, 3),
    }
