"""Pieces shared by the PyTorch and XGBoost per-worker loops.

`LoopSpec` is everything a worker needs, typed (the run's own `ModelConfig` and `TrainConfig`):
a dataclass pickles to Ray workers and into Tune trials as it is. Built once on the driver by
`loop_spec`, and given to Ray Train as `train_loop_config={"spec": spec}`.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ray_ml.config import ModelConfig, TrainConfig
from ray_ml.data import ROW_HASH_COLUMN, Preprocessor

__all__ = ["LATENCY_ROWS", "LoopSpec", "latency_ms_per_1k", "maybe_chaos_kill", "validation_part"]

# Inference latency is measured on a fixed batch of this many validation rows, after training
# (each checkpointed report), and reported as `latency_ms`: milliseconds per 1,000 rows.
LATENCY_ROWS = 1000
_LATENCY_REPEATS = 5


@dataclass
class LoopSpec:
    """What a training worker needs to know; see `ray_ml.config` for the meaning of each knob."""

    task: str
    classes: list[Any]
    preprocessor: dict[str, Any]
    model: ModelConfig
    train: TrainConfig
    seed: int
    train_rows: int
    cpus_per_worker: float  # `scaling.cpus_per_worker`: XGBoost's thread count
    class_weights: list[float] | None = None
    use_gpu: bool = False
    chaos_dir: str | None = None  # where the one-shot fault-injection marker lives

    def preprocessing(self) -> Preprocessor:
        return Preprocessor.from_dict(self.preprocessor)


def latency_ms_per_1k(
    predict: Callable[[], Any], rows: int = LATENCY_ROWS, repeats: int = _LATENCY_REPEATS
) -> float:
    """Median wall ms of `predict()` per 1,000 rows, over `repeats` runs after one warm-up call.

    `predict` runs the model on `rows` rows (the training loops use `LATENCY_ROWS`).
    """
    predict()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict()
        times.append((time.perf_counter() - t0) * 1000.0)
    return float(statistics.median(times)) * 1000.0 / rows


def validation_part(table: pa.Table, rank: int, world: int) -> pa.Table:
    """This worker's share of the validation set: rows whose content hash is rank mod world.

    Every worker reads the whole (unsplit) validation dataset and keeps its part, so the parts
    are disjoint and cover every row: metrics gathered from all workers are over the full set,
    with no row dropped to even out shards.
    """
    if world == 1:
        return table
    h = table.column(ROW_HASH_COLUMN).to_numpy()
    return table.filter(pa.array((h % np.uint64(world)) == rank))


def maybe_chaos_kill(spec: LoopSpec, epoch: int, rank: int, settle_s: float | None = None) -> None:
    """Fault injection for recovery tests: SIGKILL this worker once, after `epoch`'s checkpoint.

    Enabled by `train.chaos_kill_at_epoch`; a marker file makes it fire once per run, so the
    restarted worker group carries on. The kill is real: the process dies without cleanup.
    """
    at = spec.train.chaos_kill_at_epoch
    if at < 0 or epoch != at or rank != 0 or not spec.chaos_dir:
        return
    marker = Path(spec.chaos_dir) / f"chaos_fired_epoch_{at}"
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"pid": os.getpid(), "epoch": epoch}))
    # Ray Train's controller collects reports on its health-check poll (2 s by default); wait a
    # few polls so the drill kills after this epoch's checkpoint is committed, as in a real
    # mid-epoch crash, instead of racing the report.
    # A Tune trial training in its own process has handed its report to Tune already
    # (`settle_s` small).
    if settle_s is None:
        settle_s = 3 * float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2.0"))
    time.sleep(settle_s)
    os.kill(os.getpid(), signal.SIGKILL)
