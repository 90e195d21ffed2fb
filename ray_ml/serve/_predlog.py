"""The prediction log: every served request's rows and predictions, as Parquet partitions.

`PredictionLog.record` runs on the request path and only appends to a bounded in-memory buffer
under a lock: no I/O, no JSON encoding, nothing that can raise because storage is slow or down.
A daemon thread writes the buffer every `flush_s` seconds, or as soon as `max_rows` rows wait,
to one file per UTC day::

    <root>/predictions/date=YYYY-MM-DD/part-<uuid>.parquet

under any `pyarrow.fs` URI (a local path, `file://`, `s3://`, `gs://`, ...). A failed write is
counted, logged and retried at the next flush; while storage stays down the buffer stops at
`max_buffer_rows` by dropping its oldest requests, and the dropped rows are counted. One row of
the log is one request row (`PREDICTION_SCHEMA`): the row's values and the prediction as JSON
text (any task's output fits; no pickle), the row's index in its request, the model version, the
request's latency and id and the time it was recorded. `read_predictions` reads every partition
back, for the monitor and for retraining.

Nothing here imports Ray or torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ray_ml._json import jsonable
from ray_ml.errors import ConfigError

__all__ = ["PREDICTION_SCHEMA", "PredictionLog", "read_predictions"]

logger = logging.getLogger("ray.serve")  # the logger Serve replicas write to their log files

#: Columns of every prediction log file. `read_predictions` adds the partition's `date`.
PREDICTION_SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string()),
        pa.field("row", pa.int64()),  # index of the row within its request
        pa.field("version", pa.string()),
        pa.field("ts", pa.timestamp("us", tz="UTC")),
        pa.field("latency_ms", pa.float64()),
        pa.field("row_json", pa.string()),
        pa.field("prediction_json", pa.string()),
    ]
)
_PARTITION = pa.schema([pa.field("date", pa.string())])
_SUBDIR = "predictions"
_LOG_EVERY_S = 60.0  # repeated write failures (storage down) are logged at most this often


@dataclass
class _Pending:
    """One recorded request, kept as given until the flusher encodes it (off the request path)."""

    request_id: str
    version: str
    rows: pa.Table | Sequence[Mapping[str, Any]]
    predictions: Sequence[Any]
    keep: list[int] | None  # the sampled row indices; None: every row
    latency_ms: float
    ts: float  # seconds since the epoch

    @property
    def n(self) -> int:
        return len(self.predictions) if self.keep is None else len(self.keep)


def _open(uri: str, filesystem: pafs.FileSystem | None) -> tuple[pafs.FileSystem, str]:
    """The filesystem and root path of `uri`, opened the way the registry opens its root."""
    text = os.fspath(uri)
    if filesystem is not None:
        return filesystem, text.rstrip("/") or text
    if "://" in text:
        try:
            fs, path = pafs.FileSystem.from_uri(text)
        except (pa.ArrowException, ValueError, OSError) as exc:
            raise ConfigError(
                f"prediction log uri={text!r}: pyarrow cannot open this URI ({exc}). Use a local "
                "path or a URI with a scheme pyarrow supports (file://, s3://, gs://, hdfs://)."
            ) from None
        return fs, path.rstrip("/") or path
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(text))


def _sampled(request_id: str, n: int, fraction: float, seed: int) -> list[int] | None:
    """The row indices of one request that the log keeps (None: all of them).

    The generator is seeded from `seed` and the request id, so the choice is the same on every
    replica and in every rerun, and independent of what other requests arrived before.
    """
    if fraction >= 1.0:
        return None
    digest = hashlib.blake2b(f"{seed}:{request_id}".encode(), digest_size=8).digest()
    rng = random.Random(int.from_bytes(digest, "big"))
    return [i for i in range(n) if rng.random() < fraction]


def _dumps(value: Any) -> str:
    try:  # plain JSON values (what Arrow's to_pylist and the predictions hold): the fast path
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):
        # jsonable: numpy scalars to numbers, NaN/inf to null (strict JSON), unknown types to str.
        return json.dumps(jsonable(value), allow_nan=False, separators=(",", ":"))


def _row_dicts(entries: Sequence[_Pending]) -> list[list[Any]]:
    """Each entry's kept rows as dicts. Arrow rows are converted in one table: a request's
    one-row table costs ~60 us alone in `to_pylist`, ~18 us a row in a big one."""
    out: list[list[Any]] = [[] for _ in entries]
    tables: list[tuple[int, pa.Table]] = []
    for k, e in enumerate(entries):
        if isinstance(e.rows, pa.Table):
            table = e.rows
            if e.keep is not None:
                table = table.take(pa.array(e.keep, type=pa.int64()))
            tables.append((k, table))
        else:
            idx = range(len(e.predictions)) if e.keep is None else e.keep
            out[k] = [e.rows[i] for i in idx]
    if not tables:
        return out
    try:  # one schema (one contract served): one table
        groups = [tables]
        combined = [pa.concat_tables([t for _, t in tables])]
    except pa.ArrowInvalid:  # versions with different contracts: one table per schema
        by_schema: dict[str, list[tuple[int, pa.Table]]] = {}
        for k, t in tables:
            by_schema.setdefault(str(t.schema), []).append((k, t))
        groups = list(by_schema.values())
        combined = [pa.concat_tables([t for _, t in g]) for g in groups]
    for parts, table in zip(groups, combined, strict=True):
        rows = table.to_pylist()
        start = 0
        for k, t in parts:
            out[k] = rows[start : start + t.num_rows]
            start += t.num_rows
    return out


def _encode(entries: Sequence[_Pending]) -> pa.Table:
    """The log rows of `entries`, JSON-encoded (runs on the flusher, never on the request path)."""
    cols: dict[str, list[Any]] = {name: [] for name in PREDICTION_SCHEMA.names}
    for e, rows in zip(entries, _row_dicts(entries), strict=True):
        idx = range(len(e.predictions)) if e.keep is None else e.keep
        ts = datetime.fromtimestamp(e.ts, tz=UTC)
        for i, row in zip(idx, rows, strict=True):
            cols["request_id"].append(e.request_id)
            cols["row"].append(i)
            cols["version"].append(e.version)
            cols["ts"].append(ts)
            cols["latency_ms"].append(e.latency_ms)
            cols["row_json"].append(_dumps(row))
            cols["prediction_json"].append(_dumps(e.predictions[i]))
    return pa.table(cols, schema=PREDICTION_SCHEMA)


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d")


class PredictionLog:
    """Buffers served predictions in memory and writes them to Parquet off the request path.

    `record` appends one request to the buffer under a lock and returns at once; it never does
    I/O and never raises because of storage. A daemon thread (unless `background=False`) writes
    the buffer every `flush_s` seconds, or as soon as `max_rows` rows wait; `flush()` writes it
    now and `close()` stops the thread and writes what is left. Each write puts one file per
    UTC day under `<root>/predictions/date=YYYY-MM-DD/` (see the module docstring).

    A failed write (storage slow or down) is counted in `write_failures`, logged (at most once a
    minute while it keeps failing) and retried at the next flush with the same rows. While the
    rows cannot be written the buffer grows up to `max_buffer_rows`; past that the oldest
    requests are dropped whole and their rows counted in `dropped_rows`, as are rows still
    unwritten when `close()` gives up and rows recorded after `close()`.

    Sampling keeps each row of a request with probability `sample_fraction`, drawn from a
    generator seeded by `seed` and the request id: the same request id always keeps the same
    rows, on every replica. The log keeps references to `rows` and `predictions` until they are
    written: the caller must not modify them after `record`.

    Args:
        uri: Root of the log: a local path or any `pyarrow.fs` URI (`file://`, `s3://`, ...).
            Nothing is created until the first write.
        sample_fraction: Share of each request's rows to keep, in (0, 1]; 1 keeps every row.
        seed: Seed of the sampling (with the request id).
        flush_s: Seconds between background writes.
        max_rows: Buffered rows that trigger a background write before `flush_s` is up.
        max_buffer_rows: Most rows held in memory; beyond it the oldest requests are dropped.
        background: Start the flusher thread. False: nothing is written until `flush()`.
        filesystem: A `pyarrow.fs.FileSystem` to write on; `uri` is then a path on it.

    Raises:
        ConfigError: A bad argument, or a URI pyarrow cannot open.
    """

    def __init__(
        self,
        uri: str,
        *,
        sample_fraction: float = 1.0,
        seed: int = 0,
        flush_s: float = 5.0,
        max_rows: int = 10_000,
        max_buffer_rows: int = 100_000,
        background: bool = True,
        filesystem: pafs.FileSystem | None = None,
    ) -> None:
        if not 0.0 < sample_fraction <= 1.0:
            raise ConfigError(
                f"sample_fraction must be in (0, 1], but got sample_fraction={sample_fraction!r}."
                " Fix: 1.0 logs every row, 0.1 about one row in ten."
            )
        if not flush_s > 0:
            raise ConfigError(f"flush_s must be positive, but got flush_s={flush_s!r}.")
        if type(max_buffer_rows) is not int or max_buffer_rows < 1:
            raise ConfigError(
                f"max_buffer_rows must be a positive integer, but got "
                f"max_buffer_rows={max_buffer_rows!r}."
            )
        if type(max_rows) is not int or not 1 <= max_rows <= max_buffer_rows:
            raise ConfigError(
                f"max_rows must be an integer in [1, max_buffer_rows={max_buffer_rows}], but got "
                f"max_rows={max_rows!r}. Fix: raise max_buffer_rows or lower max_rows."
            )
        self.uri = os.fspath(uri)
        self._fs, self._root = _open(self.uri, filesystem)
        self.sample_fraction = float(sample_fraction)
        self.seed = int(seed)
        self.flush_s = float(flush_s)
        self.max_rows = max_rows
        self.max_buffer_rows = max_buffer_rows
        self._lock = threading.Lock()  # guards the buffer and the counters
        self._write_lock = threading.Lock()  # one writer at a time (the thread or flush())
        self._buffer: deque[_Pending] = deque()
        self._buffered = 0
        self._closed = False
        self._last_failure_log = -float("inf")
        self.recorded_rows = 0
        self.written_rows = 0
        self.written_files = 0
        self.dropped_rows = 0
        self.write_failures = 0
        self.last_error: str | None = None
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(
                target=self._run, name="ray_ml-prediction-log", daemon=True
            )
            self._thread.start()

    # -- the request path -------------------------------------------------------------------------
    def record(
        self,
        request_id: str,
        version: str,
        rows: pa.Table | Sequence[Mapping[str, Any]],
        predictions: Sequence[Any],
        latency_ms: float,
        *,
        ts: float | None = None,
    ) -> int:
        """Buffer one request's (sampled) rows and predictions; no I/O, returns at once.

        Args:
            request_id: The request's id (also the sampling seed, with `seed`).
            version: The model version that answered.
            rows: The request's rows: the validated Arrow table or a list of row dicts.
            predictions: One JSON-able prediction per row, in row order (e.g. the per-row
                dicts of `row_predictions`).
            latency_ms: The request's latency in milliseconds.
            ts: When it was answered, in seconds since the epoch (default: now).

        Returns:
            The number of rows buffered (0 when sampling kept none or the log is closed).

        Raises:
            ValueError: `rows` and `predictions` differ in length (a bug of the caller, not a
                storage problem).
        """
        n = rows.num_rows if isinstance(rows, pa.Table) else len(rows)
        if n != len(predictions):
            raise ValueError(
                f"PredictionLog.record: request {request_id!r} has {n} rows but "
                f"{len(predictions)} predictions; pass one prediction per row."
            )
        keep = _sampled(request_id, n, self.sample_fraction, self.seed)
        entry = _Pending(
            str(request_id),
            str(version),
            rows,
            predictions,
            keep,
            float(latency_ms),
            time.time() if ts is None else float(ts),
        )
        if entry.n == 0:
            return 0
        with self._lock:
            if self._closed:
                self.dropped_rows += entry.n
                return 0
            self.recorded_rows += entry.n
            self._buffer.append(entry)
            self._buffered += entry.n
            self._trim()
            full = self._buffered >= self.max_rows
        if full:
            self._wake.set()
        return entry.n

    def _trim(self) -> None:
        """Drop the oldest requests while the buffer holds more than `max_buffer_rows` rows."""
        while self._buffered > self.max_buffer_rows and self._buffer:
            old = self._buffer.popleft()
            self._buffered -= old.n
            self.dropped_rows += old.n

    # -- writing ----------------------------------------------------------------------------------
    @property
    def pending_rows(self) -> int:
        """Rows buffered and not yet written."""
        with self._lock:
            return self._buffered

    def stats(self) -> dict[str, Any]:
        """The counters, JSON-able: recorded, written, pending and dropped rows, files written,
        write failures and the last write error (None before any)."""
        with self._lock:
            return {
                "recorded_rows": self.recorded_rows,
                "written_rows": self.written_rows,
                "written_files": self.written_files,
                "pending_rows": self._buffered,
                "dropped_rows": self.dropped_rows,
                "write_failures": self.write_failures,
                "last_error": self.last_error,
            }

    def flush(self) -> int:
        """Write every buffered row now (synchronously), one file per UTC day.

        Never raises for a storage problem: a failed write is counted and logged, and its rows
        stay buffered for the next flush.

        Returns:
            The number of rows written.
        """
        with self._write_lock:
            with self._lock:
                batch = list(self._buffer)
                self._buffer.clear()
                self._buffered = 0
            if not batch:
                return 0
            by_day: dict[str, list[_Pending]] = {}
            for e in batch:
                by_day.setdefault(_day(e.ts), []).append(e)
            written = 0
            done: set[str] = set()
            error: Exception | None = None
            for day, entries in sorted(by_day.items()):
                try:
                    table = _encode(entries)
                except Exception:  # a value JSON cannot hold: a bug, and retrying cannot help
                    logger.exception("ray_ml serve: prediction log cannot encode %s rows", day)
                    with self._lock:
                        self.dropped_rows += sum(e.n for e in entries)
                    done.add(day)
                    continue
                try:
                    written += self._write(day, table)
                except Exception as exc:  # any storage error; never into the caller
                    error = exc
                    break  # storage is failing: keep the later days for the next flush too
                done.add(day)
            if error is not None:
                unwritten = [e for e in batch if _day(e.ts) not in done]
                with self._lock:
                    # Back in front of what arrived meanwhile, in their order, then the cap.
                    self._buffer.extendleft(reversed(unwritten))
                    self._buffered += sum(e.n for e in unwritten)
                    self._trim()
                self._failed(error)
            return written

    def _write(self, day: str, table: pa.Table) -> int:
        folder = f"{self._root}/{_SUBDIR}/date={day}"
        name = f"part-{uuid.uuid4().hex}.parquet"
        self._fs.create_dir(folder, recursive=True)
        if isinstance(self._fs, pafs.LocalFileSystem):
            # A reader must never see half a file: write a hidden name (datasets skip names
            # starting with '.') and rename, which is atomic on one disk. Object stores show an
            # object only once its upload completes, so they are written in place.
            tmp = f"{folder}/.{name}.tmp"
            pq.write_table(table, tmp, filesystem=self._fs)
            self._fs.move(tmp, f"{folder}/{name}")
        else:
            pq.write_table(table, f"{folder}/{name}", filesystem=self._fs)
        with self._lock:
            self.written_rows += table.num_rows
            self.written_files += 1
        return int(table.num_rows)

    def _failed(self, exc: Exception) -> None:
        now = time.monotonic()
        with self._lock:
            self.write_failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:500]
            failures, pending, dropped = self.write_failures, self._buffered, self.dropped_rows
            loud = now - self._last_failure_log >= _LOG_EVERY_S
            if loud:
                self._last_failure_log = now
        if loud:
            logger.warning(
                "ray_ml serve: prediction log cannot write to %s (%s: %s): %d failed writes so "
                "far, %d rows wait for the next flush (at most %d are kept), %d rows dropped",
                self.uri,
                type(exc).__name__,
                str(exc)[:200],
                failures,
                pending,
                self.max_buffer_rows,
                dropped,
            )

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_s)
            self._wake.clear()
            if self._closed:
                return
            try:
                self.flush()
            except Exception:  # a bug in encoding must not kill the thread silently
                logger.exception("ray_ml serve: prediction log flush failed")

    def close(self) -> None:
        """Stop the flusher and write what is left (synchronously). Idempotent.

        Rows that still cannot be written are counted in `dropped_rows` and discarded; rows
        recorded after `close()` are counted there too.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()
        with self._lock:
            self.dropped_rows += self._buffered
            self._buffer.clear()
            self._buffered = 0

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_predictions(uri: str, *, filesystem: pafs.FileSystem | None = None) -> pa.Table:
    """Every row a `PredictionLog` wrote under `uri`, sorted by time, request id and row.

    Args:
        uri: The log's root, as given to `PredictionLog`.
        filesystem: As for `PredictionLog`.

    Returns:
        A table with the `PREDICTION_SCHEMA` columns plus `date` (the partition, "YYYY-MM-DD");
        empty (with those columns) when nothing was written yet. Decode `row_json` and
        `prediction_json` with `json.loads`.

    Raises:
        ConfigError: A URI pyarrow cannot open.
        OSError: The storage cannot be read.
    """
    fs, root = _open(uri, filesystem)
    base = f"{root}/{_SUBDIR}"
    schema = pa.schema([*PREDICTION_SCHEMA, *_PARTITION])
    if fs.get_file_info(base).type == pafs.FileType.NotFound:
        return schema.empty_table()
    dataset = pads.dataset(
        base,
        filesystem=fs,
        format="parquet",
        schema=schema,
        partitioning=pads.partitioning(_PARTITION, flavor="hive"),
    )
    table = dataset.to_table()
    return table.sort_by([("ts", "ascending"), ("request_id", "ascending"), ("row", "ascending")])
