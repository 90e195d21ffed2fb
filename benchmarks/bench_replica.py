"""The serving replica's own bookkeeping per request, the way it was against the way it is, side
by side in one process on the same requests (one raw 30-column row each, validated by the
bundle's contract, as `bench_serve` sends them).

- Drift: before, each request's one-row table was binned against the reference on its own
  (`drift_counts`) and added to the flush's counts (`merge_counts`); now the replica keeps the
  tables and bins them at once, at the flush or every 4,096 rows (`DriftBuffer`, the replica's
  own: one `concat_tables`, one `drift_counts`). Both give the same counts (checked on every
  repeat).
- Request ids: before, `uuid.uuid4().hex` per request (a system call, which releases the GIL, and
  taking it back waits on the replica's other threads: not visible in one thread's time here);
  now the replica's random half and a counter.

A replica does this on its event loop, so every microsecond per request is taken from requests.
In `py-spy --gil` samples of the replica at 32 concurrent requests, before this change, drift
counting was 13% of the time it held the GIL, the largest of ray_ml's own costs.

    python -m benchmarks.bench_replica
Results go to benchmarks/results/bench_replica.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa

from benchmarks._common import environment

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[1]


def _per_request(tables: list[pa.Table], reference: dict[str, Any]) -> dict[str, Any]:
    from ray_ml.serve._drift import drift_counts, merge_counts

    counts: dict[str, Any] = {}
    for table in tables:
        counts = merge_counts(counts, drift_counts(table, reference))
    return counts


def _per_flush(tables: list[pa.Table], reference: dict[str, Any]) -> dict[str, Any]:
    from ray_ml.serve._drift import DriftBuffer

    buffer = DriftBuffer()
    for table in tables:
        buffer.add(table, "stable", reference)
    return dict(buffer.take()["counts"])


def _best_us(fn: Any, repeats: int, per: int) -> tuple[float, Any]:
    """The fastest of `repeats` calls of `fn`, in microseconds per item of `per`."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best / per * 1e6, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--requests", type=int, default=300, help="requests per flush (600/s over 0.5 s)"
    )
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from ray_ml.config import load_config
    from ray_ml.data import reference_stats
    from ray_ml.data._sources import bundled_contract, read_sample
    from ray_ml.serve import RequestValidator, serve_spec
    from tests._bundles import DATASET

    data = read_sample(f"sklearn://{DATASET}")
    contract = bundled_contract(DATASET)
    reference = reference_stats(data, contract)
    limits = serve_spec(load_config("serve", ["serve.bundle=/unused"]), None).limits
    validator = RequestValidator(contract, limits)
    raw = data.drop_columns([contract.label]).to_pylist()
    tables = [
        validator.parse(json.dumps({"rows": [raw[i % len(raw)]]}).encode())
        for i in range(args.requests)
    ]

    drift: dict[str, Any] = {}
    for name, fn in (("per_request", _per_request), ("per_flush", _per_flush)):
        us, counts = _best_us(lambda f=fn: f(tables, reference), args.repeats, args.requests)
        drift[name] = {"us_per_request": us, "counts": counts}
    if drift["per_request"].pop("counts") != drift["per_flush"].pop("counts"):
        raise SystemExit("the two ways of counting drift disagree")
    counter = itertools.count()
    prefix = uuid.uuid4().hex[:16]
    n_ids = 100_000
    ids = {
        "uuid4": _best_us(lambda: [uuid.uuid4().hex for _ in range(n_ids)], 5, n_ids)[0],
        "prefix_counter": _best_us(
            lambda: [f"{prefix}{next(counter):016x}" for _ in range(n_ids)], 5, n_ids
        )[0],
    }
    out = {
        "benchmark": "bench_replica",
        "command": "python -m benchmarks.bench_replica " + " ".join(sys.argv[1:]),
        "workload": f"{args.requests} one-row requests of {DATASET} ({len(raw[0])} features) "
        "per flush; fastest of the repeats",
        "drift_us_per_request": drift,
        "drift_speedup": drift["per_request"]["us_per_request"]
        / drift["per_flush"]["us_per_request"],
        "request_id_us": ids,
        **environment(("pyarrow", "numpy")),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_replica.json").write_text(json.dumps(out, indent=2) + "\n")
    print(
        json.dumps({k: out[k] for k in ("drift_us_per_request", "drift_speedup", "request_id_us")})
    )


if __name__ == "__main__":
    main()
