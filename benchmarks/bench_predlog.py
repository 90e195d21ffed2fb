"""The prediction log's flush: ray_ml's encoding against the per-request one it replaced, in one
run, on the same buffered requests (one 30-column row each, as `bench_serve` sends).

The flush runs on a thread of the serving replica, so every microsecond it spends per row is
taken from requests (the GIL). Baseline: each request's one-row Arrow table converted on its
own (`to_pylist`) and JSON-encoded through `jsonable`, as before this change. Ours:
`PredictionLog.flush` (one Arrow table per flush, plain values straight to `json.dumps`).

    python -m benchmarks.bench_predlog
Results go to benchmarks/results/bench_predlog.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from benchmarks._common import environment
from ray_ml._json import jsonable
from ray_ml.serve import PREDICTION_SCHEMA, PredictionLog, row_predictions

RESULTS = Path(__file__).parent / "results"


def _baseline_encode(entries: list[tuple[str, str, pa.Table, list[Any], float, float]]) -> pa.Table:
    """The encoding before this change: one `to_pylist` and one `jsonable` pass per request."""
    cols: dict[str, list[Any]] = {name: [] for name in PREDICTION_SCHEMA.names}
    for rid, version, table, preds, latency_ms, ts in entries:
        stamp = datetime.fromtimestamp(ts, tz=UTC)
        for i, row in enumerate(table.to_pylist()):
            cols["request_id"].append(rid)
            cols["row"].append(i)
            cols["version"].append(version)
            cols["ts"].append(stamp)
            cols["latency_ms"].append(latency_ms)
            cols["row_json"].append(
                json.dumps(jsonable(row), allow_nan=False, separators=(",", ":"))
            )
            cols["prediction_json"].append(
                json.dumps(jsonable(preds[i]), allow_nan=False, separators=(",", ":"))
            )
    return pa.table(cols, schema=PREDICTION_SCHEMA)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=10_000, help="buffered requests per flush")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    row = pa.table({f"f{i}": [float(i) + 0.5] for i in range(30)})
    preds = row_predictions({"predictions": [1], "scores": [[0.2, 0.8]]})
    ours_s, base_s = [], []
    for _ in range(args.repeats):
        log = PredictionLog(
            tempfile.mkdtemp(prefix="bench_predlog_"),
            background=False,
            max_buffer_rows=args.requests,
        )
        entries = []
        for _ in range(args.requests):
            rid = uuid.uuid4().hex
            log.record(rid, "1", row, preds, 1.0)
            entries.append((rid, "1", row, preds, 1.0, time.time()))
        t0 = time.perf_counter()
        written = log.flush()
        ours_s.append(time.perf_counter() - t0)
        assert written == args.requests
        t0 = time.perf_counter()
        _baseline_encode(entries)
        base_s.append(time.perf_counter() - t0)  # encoding only: the write is not counted
    ours_us = min(ours_s) / args.requests * 1e6
    base_us = min(base_s) / args.requests * 1e6
    out = {
        "benchmark": "bench_predlog",
        "command": "python -m benchmarks.bench_predlog",
        "requests_per_flush": args.requests,
        "repeats": args.repeats,
        "note": "best of the repeats; ours includes the Parquet write, the baseline does not",
        "ours_us_per_row": ours_us,
        "baseline_us_per_row": base_us,
        "ratio_baseline_over_ours": base_us / ours_us,
        **environment(("pyarrow",)),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_predlog.json").write_text(json.dumps(out, indent=2) + "\n")
    print(
        json.dumps(
            {
                k: out[k]
                for k in ("ours_us_per_row", "baseline_us_per_row", "ratio_baseline_over_ours")
            }
        )
    )


if __name__ == "__main__":
    main()
