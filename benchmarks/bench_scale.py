"""Scale: the data stage and 2-worker training epochs at 1M, 5M and 20M rows, and a 200-trial sweep.

Per size N (rows x 20 columns: 18 numeric, 1 categorical, the label), in a fresh subprocess so
that its peak memory is its own, on one embedded local Ray whose object store keeps its
configured size (`--object-store-mb`, default 1 GiB; 20M rows are over 3 GB in Arrow, several
times the store, so the blocks stream and spill instead of sitting in memory or on the driver):

0. warm-up (not measured): `prepare_data` and the transform pass on a separate 1M-row dataset,
   in files of the measured data's size (worker start-up, imports, and the workers' heaps grown to
   what a 250k-row file needs: on this VM memory is slow the first time it is touched, and with a
   20k-row warm-up the first 1M-row check took 3.6 s where the next took 1.0 s);
1. `check`: the contract check with quarantine, `check_sources` as `prepare_data` calls it.
   Rows/s = rows read / its seconds; bad rows (bench_data's 0.1% with f0 out of range) are
   counted and their quarantine files read back;
2. `preprocess`: the seeded split and the preprocessing fit on the train split (`split_dataset`
   and `fit_preprocessor`, as `prepare_data` calls them), then one transform pass over the train
   split (`Preprocessor.transform` in Ray Data tasks). Rows/s = checked rows / the three together;
3. `train`: `fit_trainer`, the project's Ray Train path (what `run_training` calls): it
   materializes the splits in the object store, then a TorchTrainer with 2 DDP workers (gloo)
   trains two epochs of a small MLP (`--hidden-sizes 32`, batch `--batch-size 4096` per worker),
   each worker streaming its share of the train split from Ray Data and preprocessing per batch,
   then validating on the 5% validation split. Rows/s = train rows / the second epoch's in-loop
   seconds (rank 0's `epoch_s`, validation pass included). The first epoch is reported next to
   it (`first_epoch_s`): it pays once per run for what fresh worker processes do the first time
   (at 1M rows 5.0 s, where the second took 1.2 s, in the committed run), a fixed cost, not a per-row one.
   The stage's wall seconds (materializing the splits, the Train controller and worker
   start-up, both epochs) are reported too and are what the stage is billed for. `--cpu-cache-mb` defaults to 0 so every size streams: with the project's
   default (512) the loop caches a shard in memory when it fits (`_fits_cpu_cache`: 22 features,
   true here up to about 12M rows), which would time a different path at 1M and 5M than at 20M.

Each stage's phases are timed inside the real `prepare_data` call (call-through timers on the
functions it calls, `timed_calls`), so the data stage runs as every job runs it.

Memory: the driver's peak is `ru_maxrss` of the subprocess; a thread samples every 0.2 s the
driver's RSS and, among its descendants (Ray's processes), the Ray worker processes (title
`ray::...`): their summed RSS, the largest one, and their summed private memory (RSS less shared
pages: the object store's mappings and shared libraries, which each process's RSS counts). The object
store: its size as Ray reports it (the `object_store_memory` resource) against the configured one,
and spilled / restored bytes from Ray's own store statistics (as `Dataset.materialize` reads them).

Dollars: each stage's wall seconds x the CPUs the embedded Ray holds, at the cost catalog's price
(`cost=aws_illustrative`), metered by the project's `CostMeter`.

The sweep: `bench_tune trials` (a real `run_sweep` of one-worker trials that train in their own
process on the bundled breast-cancer data, next to the same loop in a plain Tune trainable) at
`--trials` (200) and `--trials-small` (20) trials, each in its own subprocess: wall seconds,
dollars, trials by status, the median per-trial fixed overhead, and the growth of per-trial time
(the plain Tune baseline roughly doubles the sweeps' time; `--skip-sweep` leaves them out).

Targets (`targets` in the JSON): from the smallest to the largest size, every stage's rows/s
within 20% (min/max over the sizes >= 0.8) and the driver's peak memory within 1.2x; and 20M rows
complete with the object store at its configured size.

    python -m benchmarks.bench_scale            # the issue's run (meant for < 30 min on 2 cores)
    python -m benchmarks.bench_scale --sizes 200000 1000000 --skip-sweep     # quick look
Writes benchmarks/results/bench_scale.json; one JSON summary line on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

from benchmarks._common import environment
from benchmarks.bench_data import BAD_FRACTION, _count_transformed, contract_for, make_dataset

if TYPE_CHECKING:
    from ray_ml.cost import PriceCatalog

RESULTS = Path(__file__).parent / "results" / "bench_scale.json"
REPO = Path(__file__).resolve().parents[1]
ISSUE_SIZES = (1_000_000, 5_000_000, 20_000_000)
LARGEST = 20_000_000  # the size that must complete with the store at its configured size
TRAIN_EPOCHS = 2  # the second one is timed; see the module docstring
WARMUP_ROWS = 1_000_000  # four files of the measured data's file size
STAGES = ("check", "preprocess", "train")
ROWS_PER_S_FLOOR = 0.8  # "within 20%": the slowest size's rows/s over the fastest's
DRIVER_GROWTH_CEILING = 1.2
VAL_FRACTION = 0.05  # small held-out parts: the epoch is mostly training
TEST_FRACTION = 0.05
MIB = 2**20
RESULT_MARK = "RESULT "  # the child's one result line on stdout
# The functions `prepare_data` calls, timed in place, and the stage each belongs to.
PREPARE_PHASES = {
    "check_sources": "check",
    "split_dataset": "preprocess",
    "fit_preprocessor": "preprocess",
}
_PEAK_KEYS = (
    "driver_rss_mb",
    "workers_rss_mb",
    "workers_private_mb",
    "worker_max_rss_mb",
    "ray_system_rss_mb",
)


# -- pure pieces (unit-tested without Ray) ------------------------------------------------------------
def write_dataset(rows: int, out: Path) -> dict[str, Any]:
    """Write `rows` synthetic rows x 20 columns as Parquet files under `out`, a file at a time.

    The writer is bench_data's `make_dataset`: the project's seeded generator (`SyntheticSpec`)
    chunk by chunk, about 250k rows a file, never the whole dataset in memory, with
    `BAD_FRACTION` of the rows given an out-of-range f0 so that the check quarantines them.

    Returns:
        `rows`, `columns`, `files`, `parquet_bytes` (on disk), `uncompressed_bytes` (the row
        groups' sizes in memory), `bad_fraction` and `write_s`.
    """
    t0 = time.perf_counter()
    make_dataset(rows, out)
    files = sorted(out.glob("*.parquet"))
    metas = [pq.read_metadata(f) for f in files]
    return {
        "rows": sum(m.num_rows for m in metas),
        "columns": metas[0].num_columns if metas else 0,
        "files": len(files),
        "parquet_bytes": sum(f.stat().st_size for f in files),
        "uncompressed_bytes": sum(
            m.row_group(i).total_byte_size for m in metas for i in range(m.num_row_groups)
        ),
        "bad_fraction": BAD_FRACTION,
        "write_s": time.perf_counter() - t0,
    }


def bill(
    catalog: PriceCatalog, spans: Mapping[str, tuple[float, float]], cpus: float
) -> dict[str, float]:
    """Dollars per stage: `cpus` held over each stage's (start, end) seconds, by `CostMeter`.

    Args:
        catalog: The run's price catalog (`PriceCatalog.from_config(cfg.cost)`).
        spans: Stage name -> (start, end) on one clock.
        cpus: CPUs held during every stage (the embedded Ray's).
    """
    from ray_ml.cost import CostMeter, TrialStatus

    meter = CostMeter(catalog)
    usd = {}
    for stage, (start, end) in spans.items():
        meter.start(stage, {"CPU": cpus}, t=start)
        usd[stage] = meter.finish(stage, TrialStatus.completed, t=end).billed_usd
    return usd


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _completed(sizes: Mapping[str, Mapping[str, Any]]) -> list[tuple[int, Mapping[str, Any]]]:
    done = [(int(n), r) for n, r in sizes.items() if r.get("status") == "ok"]
    return sorted(done, key=lambda item: item[0])


def growth(sizes: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """Largest completed size over the smallest: rows, seconds, rows/s, dollars and memory.

    Returns:
        The ratios, or None with fewer than two completed sizes.
    """
    done = _completed(sizes)
    if len(done) < 2:
        return None
    (n0, small), (n1, big) = done[0], done[-1]

    def per_stage(key: str) -> dict[str, float | None]:
        return {s: _ratio(big["stages"][s][key], small["stages"][s][key]) for s in STAGES}

    def memory(key: str) -> float | None:
        return _ratio(big["memory"][key], small["memory"][key])

    return {
        "from_rows": n0,
        "to_rows": n1,
        "rows_ratio": n1 / n0,
        "seconds_ratio": per_stage("seconds"),
        "rows_per_s_ratio": per_stage("rows_per_s"),
        "usd_ratio": _ratio(big["usd"], small["usd"]),
        "driver_peak_rss_ratio": memory("driver_peak_rss_mb"),
        "workers_peak_rss_ratio": memory("workers_peak_rss_mb"),
        "worker_max_rss_ratio": memory("worker_max_rss_mb"),
        "linear_fit": linear_fit(sizes),
    }


def linear_fit(sizes: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """Per stage, least squares of seconds = fixed_s + rows / marginal_rows_per_s over the
    completed sizes (for train, the in-loop epoch seconds): what a stage costs whatever the data,
    and how fast it goes per extra row. None with fewer than two completed sizes.
    """
    import numpy as np

    done = _completed(sizes)
    if len(done) < 2:
        return None
    out: dict[str, Any] = {}
    for stage in STAGES:
        rows = np.array([float(r["stages"][stage]["rows"]) for _, r in done])
        key = "epoch_s" if stage == "train" else "seconds"
        secs = np.array([float(r["stages"][stage][key]) for _, r in done])
        slope, fixed = np.polyfit(rows, secs, 1)
        out[stage] = {
            "fixed_s": float(fixed),
            "marginal_rows_per_s": float(1.0 / slope) if slope > 0 else None,
        }
    return out


def compute_targets(sizes: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The issue's three targets from the per-size results (`status` "ok", "failed", "not run").

    - `rows_per_s_within_20pct`: per stage, the min over max of rows/s across the completed
      sizes (>= 0.8); its value is the worst stage's. Needs two completed sizes.
    - `driver_peak_memory_growth`: the largest completed size's driver peak RSS over the
      smallest's (<= 1.2).
    - `completed_20m_with_configured_store`: the 20M size ran to the end and Ray's object store
      had the configured size.

    A target that cannot be judged from what ran has `value` and `met` None, and says why.
    """
    done = _completed(sizes)
    ran = [n for n, _ in done]
    per_stage: dict[str, Any] = {}
    for stage in STAGES:
        rates = {str(n): r["stages"][stage]["rows_per_s"] for n, r in done}
        value = min(rates.values()) / max(rates.values()) if len(rates) >= 2 else None
        per_stage[stage] = {
            "rows_per_s": rates,
            "value": value,
            "met": None if value is None else value >= ROWS_PER_S_FLOOR,
        }
    values = [v["value"] for v in per_stage.values()]
    judged = all(v is not None for v in values)
    rows_target: dict[str, Any] = {
        "value": min(values) if judged else None,
        "target": f">= {ROWS_PER_S_FLOOR} (min/max rows/s over the sizes, every stage)",
        "sizes": ran,
        "per_stage": per_stage,
        "met": all(v["met"] for v in per_stage.values()) if judged else None,
    }
    if not judged:
        rows_target["why"] = "needs two completed sizes"

    driver: dict[str, Any] = {
        "value": None,
        "target": f"<= {DRIVER_GROWTH_CEILING} (largest size / smallest)",
        "sizes": [ran[0], ran[-1]] if len(ran) >= 2 else ran,
        "met": None,
    }
    if len(done) >= 2:
        ratio = _ratio(
            done[-1][1]["memory"]["driver_peak_rss_mb"], done[0][1]["memory"]["driver_peak_rss_mb"]
        )
        driver.update(value=ratio, met=None if ratio is None else ratio <= DRIVER_GROWTH_CEILING)
    else:
        driver["why"] = "needs two completed sizes"

    largest = sizes.get(str(LARGEST), {"status": "not run"})
    status = largest.get("status", "not run")
    store = largest.get("object_store", {})
    completed: dict[str, Any] = {
        "rows": LARGEST,
        "status": status,
        "target": "completes, with Ray's object store at the configured size",
        "configured_mb": store.get("configured_mb"),
        "ray_store_mb": store.get("ray_store_mb"),
        "dataset_over_store": store.get("dataset_over_store"),
        "spilled_mb": (store.get("at_end") or {}).get("spilled_mb"),
        "met": None,
    }
    if status == "ok":
        completed["met"] = bool(store.get("capacity_matches_config"))
    elif status == "failed":
        completed["met"] = False
    return {
        "rows_per_s_within_20pct": rows_target,
        "driver_peak_memory_growth": driver,
        "completed_20m_with_configured_store": completed,
    }


def sweep_growth(small: Mapping[str, Any], big: Mapping[str, Any]) -> dict[str, Any]:
    """The big sweep over the small one: per-trial wall time, fixed overhead, driver memory."""
    return {
        "trials": [small["trials"], big["trials"]],
        "per_trial_wall_ratio": _ratio(big["per_trial_wall_s"], small["per_trial_wall_s"]),
        "median_fixed_overhead_ratio": _ratio(
            big["median_fixed_overhead_s"], small["median_fixed_overhead_s"]
        ),
        "driver_peak_rss_ratio": _ratio(big["driver_peak_rss_mb"], small["driver_peak_rss_mb"]),
    }


@dataclasses.dataclass(frozen=True)
class SizeRun:
    """What one size's subprocess measures, and with which knobs (see `--help`)."""

    rows: int
    data: Path
    warmup: Path
    work: Path
    object_store_mb: int
    batch_size: int
    hidden_sizes: tuple[int, ...]
    cpu_cache_mb: int

    def argv(self) -> list[str]:
        """The child's command-line arguments that rebuild this run."""
        return [
            "--child",
            "size",
            "--rows",
            str(self.rows),
            "--data",
            str(self.data),
            "--warmup",
            str(self.warmup),
            "--work",
            str(self.work),
            "--object-store-mb",
            str(self.object_store_mb),
            "--batch-size",
            str(self.batch_size),
            "--cpu-cache-mb",
            str(self.cpu_cache_mb),
            "--hidden-sizes",
            *(str(h) for h in self.hidden_sizes),
        ]

    def overrides(self, contract: Path) -> list[str]:
        """Hydra overrides of the `train` config for this size."""
        hidden = ",".join(str(h) for h in self.hidden_sizes)
        return [
            f"name=scale-{self.rows}",
            f"storage_path='{self.work / 'runs'}'",
            f"data.sources=['{self.data}']",
            f"data.contract='{contract}'",
            f"data.val_fraction={VAL_FRACTION}",
            f"data.test_fraction={TEST_FRACTION}",
            "model=mlp",
            f"model.hidden_sizes=[{hidden}]",
            "model.dropout=0.0",
            f"train.epochs={TRAIN_EPOCHS}",
            f"train.batch_size={self.batch_size}",
            "train.lr_schedule=none",
            "train.early_stopping_patience=0",
            f"train.cpu_cache_mb={self.cpu_cache_mb}",
            "train.resume=false",
            "scaling=cpu",
            "scaling.num_workers=2",
            "cost=aws_illustrative",
            f"cluster.object_store_mb={self.object_store_mb}",
        ]


# -- measuring inside a child ----------------------------------------------------------------------
class MemorySampler:
    """Peak memory of this driver and of the Ray processes under it, per stage, from a thread.

    Every `every_s` seconds: the driver's RSS and, over its descendant processes, the Ray worker
    processes (title `ray::...`, or `default_worker.py` before Ray sets the title; task, actor
    and spill/restore workers, not Ray's two agents): their summed RSS, the largest, and their
    summed private memory (RSS less shared pages: object-store mappings and shared libraries,
    which RSS counts once per process); and the summed RSS of Ray's other processes (raylet with
    the object store, GCS, agents). Set `stage` to file the samples that follow under a stage;
    `peaks` maps stage -> the maxima, in MiB.
    """

    def __init__(self, every_s: float = 0.2) -> None:
        import psutil  # type: ignore[import-untyped]  # a dev dependency without stubs
        from ray._private.ray_constants import AGENT_PROCESS_LIST

        self._agents = tuple(AGENT_PROCESS_LIST)  # "ray::DashboardAgent", "ray::RuntimeEnvAgent"
        self.stage = "startup"
        self.peaks: dict[str, dict[str, float]] = {}
        self._every_s = every_s
        self._me = psutil.Process()
        self._gone = psutil.Error
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._halt.wait(self._every_s):
            self.sample()

    def sample(self) -> None:
        """Take one sample now."""
        workers = private = largest = system = 0
        try:
            procs = self._me.children(recursive=True)
            driver = self._me.memory_info().rss
        except self._gone:
            return
        for proc in procs:
            try:
                mem = proc.memory_info()
                title = " ".join(proc.cmdline())
            except self._gone:
                continue  # it exited between the listing and the read
            if not title.startswith(self._agents) and (
                title.startswith("ray::") or "default_worker.py" in title
            ):
                workers += mem.rss
                private += mem.rss - getattr(mem, "shared", 0)
                largest = max(largest, mem.rss)
            else:
                system += mem.rss
        values = dict(zip(_PEAK_KEYS, (driver, workers, private, largest, system), strict=True))
        peak = self.peaks.setdefault(self.stage, dict.fromkeys(_PEAK_KEYS, 0.0))
        for key, value in values.items():
            peak[key] = max(peak[key], value / MIB)

    def overall(self, stages: tuple[str, ...] = STAGES) -> dict[str, float]:
        """The maxima over `stages` (the measured ones by default), in MiB."""
        seen = [self.peaks[s] for s in stages if s in self.peaks]
        return {
            "workers_peak_rss_mb": max((p["workers_rss_mb"] for p in seen), default=0.0),
            "workers_peak_private_mb": max((p["workers_private_mb"] for p in seen), default=0.0),
            "worker_max_rss_mb": max((p["worker_max_rss_mb"] for p in seen), default=0.0),
            "ray_system_peak_rss_mb": max((p["ray_system_rss_mb"] for p in seen), default=0.0),
        }


def object_store_stats(address: str) -> dict[str, Any]:
    """Cluster-wide object-store counters in MiB, read the way Ray Data reads its spill stats.

    `ray._private.internal_api.get_memory_info_reply` (what `Dataset.materialize` calls for its
    "Spilled to disk" figures): cumulative spilled and restored MiB and objects, MiB in use, MiB
    of fallback allocations (objects created on disk when the store was full) and the store's
    `object_store_bytes_avail` (the denominator of `ray memory`'s "% full"). A private API: on
    any failure, `{"error": ...}` instead.
    """
    try:
        from ray._private.internal_api import get_memory_info_reply, get_state_from_address

        stats = get_memory_info_reply(get_state_from_address(address)).store_stats
    except Exception as exc:  # a private API may change: report why, keep the benchmark going
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {
        "spilled_mb": stats.spilled_bytes_total / MIB,
        "spilled_objects": int(stats.spilled_objects_total),
        "restored_mb": stats.restored_bytes_total / MIB,
        "used_mb": stats.object_store_bytes_used / MIB,
        "fallback_mb": stats.object_store_bytes_fallback / MIB,
        "store_bytes_avail_mb": stats.object_store_bytes_avail / MIB,
    }


@contextlib.contextmanager
def timed_calls(
    module: ModuleType,
    stages: Mapping[str, str],
    sampler: MemorySampler,
    after: Callable[[str], None],
) -> Iterator[dict[str, tuple[float, float]]]:
    """Time, in place, the calls to `module`'s functions named in `stages` while open.

    Each function `module.NAME` runs as before, but also records its (start, end)
    `time.monotonic()` span, files memory samples under its stage (`stages[NAME]`) and calls
    `after(NAME)` when it returns; the originals are put back on exit. This times the phases of a
    real `prepare_data` call (check, split, fit) without writing `prepare_data` again.

    Yields:
        NAME -> (start, end) of its last call, filled as the calls return.
    """
    spans: dict[str, tuple[float, float]] = {}
    originals = {name: getattr(module, name) for name in stages}

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            sampler.stage = stages[name]
            start = time.monotonic()
            try:
                return fn(*args, **kwargs)
            finally:
                spans[name] = (start, time.monotonic())
                after(name)

        return call

    for name, fn in originals.items():
        setattr(module, name, timed(name, fn))
    try:
        yield spans
    finally:
        for name, fn in originals.items():
            setattr(module, name, fn)


def _parquet_rows(directory: Path) -> int:
    return sum(pq.read_metadata(f).num_rows for f in directory.rglob("*.parquet"))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _spilled_per_stage(snaps: Mapping[str, Mapping[str, Any]]) -> dict[str, float | None]:
    """MiB spilled during each stage, from cumulative snapshots taken at stage ends."""
    out: dict[str, float | None] = {}
    order = ("warmup", "check", "preprocess", "train")
    for before, stage in zip(order, order[1:], strict=False):
        a, b = snaps.get(before, {}), snaps.get(stage, {})
        out[stage] = (
            b["spilled_mb"] - a["spilled_mb"] if "spilled_mb" in a and "spilled_mb" in b else None
        )
    return out


def _snapshot_after(snaps: dict[str, dict[str, Any]], address: str, phase: str) -> None:
    if PREPARE_PHASES[phase] == "check":  # the other phases end inside the preprocess stage
        snaps["check"] = object_store_stats(address)


def measure_size(run: SizeRun) -> dict[str, Any]:
    """One size in this (fresh) process: the warm-up, then the three measured stages.

    See the module docstring for what each stage calls and measures.
    """
    from ray_ml.cluster import start_ray, stop_ray
    from ray_ml.config import load_config
    from ray_ml.console import configure_console
    from ray_ml.cost import PriceCatalog
    from ray_ml.data import map_blocks, prepare_data
    from ray_ml.train import fit_trainer

    # The loop's own rule for caching a shard in memory, read here, not re-derived.
    from ray_ml.train._torch import _fits_cpu_cache

    run.work.mkdir(parents=True, exist_ok=True)
    contract_path = run.work / "contract.yaml"
    contract_for(run.rows).save(contract_path)
    cfg = load_config("train", run.overrides(contract_path))
    console = configure_console(run.work / "logs")  # Ray's own output to files, not the terminal

    def say(msg: str) -> None:
        console.say("scale", f"[{run.rows} rows] {msg}")

    snaps: dict[str, dict[str, Any]] = {}
    with MemorySampler() as mem:
        t0 = time.monotonic()
        handle = start_ray(cfg.cluster)
        try:
            startup_s = time.monotonic() - t0
            mem.stage = "warmup"
            t0 = time.monotonic()
            warm = dataclasses.replace(cfg.data, sources=[str(run.warmup)])
            warmed = prepare_data(warm, cfg.seed, run.work / "warmup-run")
            # The workers import the transform path once here, not inside the measured pass.
            map_blocks(warmed.splits.train, _count_transformed, warmed.preprocessor).take_all()
            warmup_s = time.monotonic() - t0
            snaps["warmup"] = object_store_stats(handle.address)
            say(f"Ray up in {startup_s:.1f}s, warm-up {warmup_s:.1f}s; data stage")

            module = sys.modules[prepare_data.__module__]
            after = functools.partial(_snapshot_after, snaps, handle.address)
            run_dir = Path(cfg.storage_path).resolve() / cfg.name / "data"
            with timed_calls(module, PREPARE_PHASES, mem, after) as spans:
                prepared = prepare_data(cfg.data, cfg.seed, run_dir)
            missing = sorted(set(PREPARE_PHASES) - set(spans))
            if missing:
                raise RuntimeError(
                    f"prepare_data no longer calls {missing} through {module.__name__}, so its "
                    "phases were not timed. Fix: set PREPARE_PHASES in benchmarks/bench_scale.py "
                    "to the functions prepare_data calls now."
                )
            mem.stage = "preprocess"
            transform_start = time.monotonic()
            # Preprocessing applied to every train row, in Ray Data tasks; only counts come back,
            # a row per block, summed here: `Dataset.sum` would add an aggregation to the pass
            # (with it and a 20k-row warm-up this pass took 4.1 s at 1M rows; 0.35 s now).
            transformed: Any = sum(
                row["n"]
                for row in map_blocks(
                    prepared.splits.train, _count_transformed, prepared.preprocessor
                ).take_all()
            )
            transform_end = time.monotonic()
            snaps["preprocess"] = object_store_stats(handle.address)
            say(
                f"data stage done; training {TRAIN_EPOCHS} epochs ({cfg.scaling.num_workers} workers)"
            )

            mem.stage = "train"
            train_start = time.monotonic()
            result, spec, _ = fit_trainer(
                cfg, prepared, prepared.splits.train, prepared.splits.validation, cfg.name
            )
            train_end = time.monotonic()
            snaps["train"] = object_store_stats(handle.address)
            store_bytes = float(handle.resources.get("object_store_memory", 0.0))
            cpus = float(handle.resources.get("CPU", 0.0))
        finally:
            stop_ray(handle)
    console.close()

    metrics = result.metrics or {}
    if "epoch_s" not in metrics:
        raise RuntimeError(
            f"the training run reported no epoch_s (got {sorted(metrics)}): the torch loop's "
            "report changed. Fix: read the epoch's seconds from what it reports now."
        )
    epoch_s = float(metrics["epoch_s"])  # the last epoch's
    epochs_s = _epochs_s(result)
    report = prepared.report
    check = spans["check_sources"]
    split, fit = spans["split_dataset"], spans["fit_preprocessor"]
    stage_spans = {
        "check": check,
        "preprocess": (split[0], transform_end),
        "train": (train_start, train_end),
    }
    usd = bill(PriceCatalog.from_config(cfg.cost), stage_spans, cpus)
    seconds = {s: end - start for s, (start, end) in stage_spans.items()}
    stages: dict[str, dict[str, Any]] = {
        "check": {
            "rows": report.rows_in,
            "rows_rejected": report.rows_rejected,
            "reject_rate": report.reject_rate,
            "quarantined_rows": _parquet_rows(Path(report.quarantine)) if report.quarantine else 0,
        },
        "preprocess": {
            "rows": report.rows_ok,
            "split_s": split[1] - split[0],
            "fit_s": fit[1] - fit[0],
            "transform_s": transform_end - transform_start,
            "train_rows": spec.train_rows,
            "transformed_rows": int(transformed or 0),
            "features": prepared.preprocessor.num_features,
        },
        "train": {
            "rows": spec.train_rows,
            "epoch_s": epoch_s,
            "first_epoch_s": epochs_s[0],
            "epochs_s": epochs_s,
            "setup_s": seconds["train"] - sum(epochs_s),
            "rows_per_s_fit_wall": spec.train_rows / seconds["train"],
            "workers": cfg.scaling.num_workers,
            "batch_size": cfg.train.batch_size,
            "hidden_sizes": list(cfg.model.hidden_sizes),
            "cpu_cache_mb": cfg.train.cpu_cache_mb,
            "shard_cached": _fits_cpu_cache(
                spec, cfg.scaling.num_workers, prepared.preprocessor.num_features
            ),
            "train_loss": metrics.get("train_loss"),
            "val_loss": metrics.get("val_loss"),
            "val_rows": metrics.get("val_rows"),
        },
    }
    for stage, entry in stages.items():
        # Train: rows over the in-loop epoch; the data stages: rows over their wall seconds.
        per_s = epoch_s if stage == "train" else seconds[stage]
        entry.update(seconds=seconds[stage], rows_per_s=entry["rows"] / per_s, usd=usd[stage])
    configured = run.object_store_mb * MIB
    return {
        "status": "ok",
        "rows": run.rows,
        "startup_s": startup_s,
        "warmup_s": warmup_s,
        "stages": stages,
        "usd": sum(usd.values()),
        "cpus": cpus,
        "memory": {
            "driver_peak_rss_mb": _peak_rss_mb(),
            **mem.overall(),
            "per_stage": mem.peaks,
        },
        "object_store": {
            "configured_mb": run.object_store_mb,
            "ray_store_mb": store_bytes / MIB,
            "capacity_matches_config": abs(store_bytes - configured) <= 0.01 * configured,
            "spilled_mb_per_stage": _spilled_per_stage(snaps),
            "at_end": snaps["train"],
        },
    }


def _epochs_s(result: Any) -> list[float]:
    """Each epoch's in-loop seconds, from the history the torch loop saves with its checkpoint."""
    from ray_ml.train._torch import load_torch_checkpoint

    if result.checkpoint is None:
        raise RuntimeError("the training run saved no checkpoint, so its epochs were not timed.")
    _, progress = load_torch_checkpoint(result.checkpoint.path)
    epochs = [float(h["epoch_s"]) for h in progress["history"]]
    if len(epochs) != TRAIN_EPOCHS:
        raise RuntimeError(
            f"the training run recorded {len(epochs)} epochs, not {TRAIN_EPOCHS}: early "
            "stopping or a resume changed it. Fix: train.early_stopping_patience=0, "
            "train.resume=false."
        )
    return epochs


def measure_sweep(trials: int, epochs: int, work: Path) -> dict[str, Any]:
    """`bench_tune trials` with `trials` trials in this (fresh) process, with its memory."""
    from benchmarks.bench_tune import trials as tune_trials
    from ray_ml.console import configure_console

    console = configure_console(work / f"logs-sweep-{trials}")
    with MemorySampler() as mem:
        mem.stage = "sweep"
        out = tune_trials(trials, epochs)
    console.close()
    ours = out["ray_ml"]
    return {
        "trials": ours["trials"],
        "epochs": epochs,
        "wall_s": ours["sweep_wall_s"],
        "usd": ours["cost_usd"],
        "statuses": ours["statuses"],
        "per_trial_wall_s": ours["sweep_wall_s"] / max(ours["trials"], 1),
        "median_fixed_overhead_s": ours["median_fixed_overhead_s"],
        "median_held_s": ours["median_held_s"],
        "driver_peak_rss_mb": _peak_rss_mb(),
        **mem.overall(("sweep",)),
        "plain_tune": out["plain_tune"],
        "usd_ratio_vs_plain_tune": out["dollars_ratio"],
    }


# -- the parent ------------------------------------------------------------------------------------
def _say(msg: str) -> None:
    print(f"[scale] {msg}", file=sys.stderr, flush=True)


def _run_child(argv: list[str]) -> tuple[dict[str, Any] | None, str]:
    """Run this module as `--child ...`: (its result, or None and the tail of its stderr).

    The child's stderr is echoed live; its stdout is read for the one result line.
    """
    cmd = [sys.executable, "-m", "benchmarks.bench_scale", *argv]
    env = {**os.environ, "RAY_ML_PROGRESS": "0"}
    tail: deque[str] = deque(maxlen=60)
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO
    ) as proc:
        if proc.stdout is None or proc.stderr is None:
            raise RuntimeError("subprocess.Popen gave no pipes for the child's output")
        err = proc.stderr

        def echo() -> None:
            for line in err:
                sys.stderr.write(line)
                tail.append(line)

        echoer = threading.Thread(target=echo, daemon=True)
        echoer.start()
        out = proc.stdout.read()
        proc.wait()
        echoer.join()
    line = next((ln for ln in out.splitlines() if ln.startswith(RESULT_MARK)), None)
    if proc.returncode != 0 or line is None:
        return None, f"exit code {proc.returncode}; stderr ends:\n" + "".join(tail)[-4000:]
    result: dict[str, Any] = json.loads(line[len(RESULT_MARK) :])
    return result, ""


def _last_line(text: str) -> str:
    return next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "no output")


def _run_sizes(args: argparse.Namespace, work: Path) -> dict[str, dict[str, Any]]:
    sizes: dict[str, dict[str, Any]] = {
        str(n): {"status": "not run", "why": "not in --sizes"}
        for n in ISSUE_SIZES
        if n not in args.sizes
    }
    warmup = work / "warmup"
    write_dataset(WARMUP_ROWS, warmup)
    for rows in args.sizes:
        data = work / f"data-{rows}"
        _say(f"[{rows} rows] writing the dataset")
        facts = write_dataset(rows, data)
        _say(
            f"[{rows} rows] {facts['files']} files, {facts['uncompressed_bytes'] / 2**30:.2f} GiB "
            f"in memory, written in {facts['write_s']:.0f}s; measuring"
        )
        run = SizeRun(
            rows=rows,
            data=data,
            warmup=warmup,
            work=work / f"run-{rows}",
            object_store_mb=args.object_store_mb,
            batch_size=args.batch_size,
            hidden_sizes=tuple(args.hidden_sizes),
            cpu_cache_mb=args.cpu_cache_mb,
        )
        result, error = _run_child(run.argv())
        shutil.rmtree(data, ignore_errors=True)
        if result is None:
            logs = run.work / "logs"
            _say(f"[{rows} rows] FAILED: {_last_line(error)} (Ray's logs: {logs})")
            sizes[str(rows)] = {"status": "failed", "error": error, "logs": str(logs)}
            sizes[str(rows)]["dataset"] = facts
            continue
        shutil.rmtree(run.work, ignore_errors=True)
        result["dataset"] = facts
        result["object_store"]["dataset_over_store"] = facts["uncompressed_bytes"] / (
            args.object_store_mb * MIB
        )
        sizes[str(rows)] = result
        st = result["stages"]
        _say(
            f"[{rows} rows] check {st['check']['rows_per_s']:,.0f} rows/s, preprocess "
            f"{st['preprocess']['rows_per_s']:,.0f} rows/s, train {st['train']['rows_per_s']:,.0f} "
            f"rows/s; driver peak {result['memory']['driver_peak_rss_mb']:.0f} MiB"
        )
    return dict(sorted(sizes.items(), key=lambda kv: int(kv[0])))


def _run_sweeps(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    if args.skip_sweep:
        return {"status": "skipped", "why": "--skip-sweep"}
    runs: dict[str, Any] = {}
    status = "ok"
    for n in (args.trials_small, args.trials):
        _say(f"[sweep] {n} trials")
        argv = ["--child", "sweep", "--trials", str(n), "--sweep-epochs", str(args.sweep_epochs)]
        result, error = _run_child([*argv, "--work", str(work)])
        if result is None:
            logs = work / f"logs-sweep-{n}"
            _say(f"[sweep] {n} trials FAILED: {_last_line(error)} (Ray's logs: {logs})")
            runs[str(n)] = {"status": "failed", "error": error, "logs": str(logs)}
            status = "failed"
            continue
        runs[str(n)] = {"status": "ok", **result}
        _say(
            f"[sweep] {n} trials in {result['wall_s']:.0f}s, ${result['usd']:.6f}, "
            f"{result['per_trial_wall_s']:.2f}s per trial"
        )
    out: dict[str, Any] = {"status": status, "runs": runs}
    small, big = runs.get(str(args.trials_small), {}), runs.get(str(args.trials), {})
    if small.get("status") == "ok" and big.get("status") == "ok":
        out["growth"] = sweep_growth(small, big)
    return out


def _check_args(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    bad = [n for n in args.sizes if n < 1000]
    if bad:
        ap.error(
            f"--sizes must be row counts >= 1000, but got {bad}. Fix: pass e.g. "
            "--sizes 200000 1000000."
        )
    if args.object_store_mb < 100:
        ap.error(
            f"--object-store-mb must be >= 100 (Ray's floor is 75), but got "
            f"{args.object_store_mb}. Fix: pass e.g. --object-store-mb 1024."
        )
    if args.batch_size < 1 or any(h < 1 for h in args.hidden_sizes):
        ap.error(
            f"--batch-size and --hidden-sizes must be positive, but got {args.batch_size} and "
            f"{args.hidden_sizes}. Fix: pass e.g. --batch-size 4096 --hidden-sizes 32."
        )
    if not 1 <= args.trials_small < args.trials:
        ap.error(
            f"--trials-small must be in [1, --trials), but got --trials-small "
            f"{args.trials_small} with --trials {args.trials}. Fix: e.g. --trials 200 "
            "--trials-small 20."
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=list(ISSUE_SIZES), help="rows per size")
    ap.add_argument("--object-store-mb", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=4096, help="rows per batch per worker")
    ap.add_argument("--hidden-sizes", type=int, nargs="+", default=[32], help="the MLP's widths")
    ap.add_argument(
        "--cpu-cache-mb",
        type=int,
        default=0,
        help="train.cpu_cache_mb; 0 streams every size (the project's default is 512)",
    )
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--trials-small", type=int, default=20, help="the sweep to compare with")
    ap.add_argument("--sweep-epochs", type=int, default=2, help="epochs per sweep trial")
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--work-dir", type=Path, default=None, help="where the temporary data goes")
    ap.add_argument(
        "--keep-work", action="store_true", help="keep the work folder (logs); kept on failure"
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    # One size's or one sweep's subprocess (run by the parent).
    ap.add_argument("--child", choices=["size", "sweep"], help=argparse.SUPPRESS)
    ap.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--warmup", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "size":
        run = SizeRun(
            rows=args.rows,
            data=args.data,
            warmup=args.warmup,
            work=args.work,
            object_store_mb=args.object_store_mb,
            batch_size=args.batch_size,
            hidden_sizes=tuple(args.hidden_sizes),
            cpu_cache_mb=args.cpu_cache_mb,
        )
        print(RESULT_MARK + json.dumps(measure_size(run), default=str), flush=True)
        return
    if args.child == "sweep":
        result = measure_sweep(args.trials, args.sweep_epochs, args.work)
        print(RESULT_MARK + json.dumps(result, default=str), flush=True)
        return
    _check_args(ap, args)
    args.sizes = sorted(set(args.sizes))

    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
    # Absolute: the children run in the repository root.
    work = Path(tempfile.mkdtemp(prefix="bench_scale_", dir=args.work_dir)).resolve()
    t0 = time.perf_counter()
    keep = True  # kept when something fails, for its logs
    try:
        sizes = _run_sizes(args, work)
        sweep = _run_sweeps(args, work)
        keep = args.keep_work or sweep["status"] == "failed"
        keep = keep or any(r["status"] == "failed" for r in sizes.values())
    finally:
        if keep:
            _say(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    env = environment(("ray", "torch", "pyarrow", "numpy", "pandas", "optuna", "psutil"))
    env["machine"]["memory_gib"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    targets = compute_targets(sizes)
    summary = {
        "benchmark": "bench_scale",
        "command": "python -m benchmarks.bench_scale " + " ".join(sys.argv[1:]),
        **env,
        "workload": {
            "columns": 20,
            "bad_fraction": BAD_FRACTION,
            "val_fraction": VAL_FRACTION,
            "test_fraction": TEST_FRACTION,
            "object_store_mb": args.object_store_mb,
            "batch_size": args.batch_size,
            "hidden_sizes": args.hidden_sizes,
            "cpu_cache_mb": args.cpu_cache_mb,
            "stages": {
                "check": "prepare_data's check_sources with quarantine; rows read / wall s",
                "preprocess": "its split_dataset + fit_preprocessor (train split), then a "
                "transform pass over the train split; checked rows / wall s",
                "train": f"fit_trainer: 2 TorchTrainer workers, {TRAIN_EPOCHS} epochs streaming "
                "their shards; train rows / the last epoch's in-loop s (the first epoch's and "
                "the wall s, billed, apart)",
            },
        },
        "sizes": sizes,
        "growth": growth(sizes),
        "sweep": sweep,
        "targets": targets,
        "wall_s": time.perf_counter() - t0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(
        json.dumps(
            {
                "out": str(args.out),
                "sizes": {n: r["status"] for n, r in sizes.items()},
                "sweep": sweep["status"],
                "targets": {
                    k: {"value": v.get("value"), "met": v["met"]} for k, v in targets.items()
                },
            },
            default=str,
        )
    )
    failed = [n for n, r in sizes.items() if r["status"] == "failed"]
    if failed or sweep["status"] == "failed":
        sys.exit(1)


if __name__ == "__main__":
    main()
