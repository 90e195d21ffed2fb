"""Distributed contract validation over Ray Data, with quarantine and a reject-rate gate.

One Ray Data pass reads every source and maps `check_table` over its blocks, fused into one task
per read unit, and materializes the checked blocks in the object store (not on the driver). Then
one plain task per checked block counts it, digests it and writes its rejected rows to the
quarantine Parquet directory (`reduce_blocks`: no second Ray Data execution). The good rows are
a lazy predicate-expression filter over the checked blocks, fused by Ray into whatever consumes
them, and a `derive`d view of those blocks, so that statistics over them (the split, the
preprocessing fit) run as plain tasks too. The driver only ever holds per-block statistics, so
its memory does not grow with the data.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ray_ml.data._blocks import derive, map_blocks, reduce_blocks
from ray_ml.data._checks import (
    REASON_COLUMN,
    ROW_HASH_COLUMN,
    WARNINGS_COLUMN,
    check_table,
    checked_schema,
)
from ray_ml.data._contract import Contract
from ray_ml.data._sources import read_source
from ray_ml.errors import ConfigError, RejectRateExceeded

if TYPE_CHECKING:
    import ray.data

__all__ = ["CheckedData", "ValidationReport", "check_sources"]

_MASK64 = (1 << 64) - 1


@dataclass
class ValidationReport:
    """What the check saw.

    `reasons` counts each `column:rule` once per row rejected for it; `warnings` counts each
    broken soft expectation (a column's `expect:` in the contract) once per row, kept or not.
    """

    sources: list[str]
    rows_in: int
    rows_ok: int
    rows_rejected: int
    reasons: dict[str, int]
    max_reject_rate: float
    quarantine: str | None
    digest: str = field(repr=False)  # content digest of ok and rejected rows (fingerprint input)
    warnings: dict[str, int] = field(default_factory=dict)

    @property
    def reject_rate(self) -> float:
        return self.rows_rejected / self.rows_in if self.rows_in else 0.0

    @property
    def passed(self) -> bool:
        return self.reject_rate <= self.max_reject_rate

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("digest")
        out["reject_rate"] = round(self.reject_rate, 6)
        out["passed"] = self.passed
        return out

    def failure_message(self) -> str:
        top = ", ".join(
            f"{k}={v}" for k, v in sorted(self.reasons.items(), key=lambda kv: -kv[1])[:5]
        )
        where = f" Rejected rows with their reasons: {self.quarantine}." if self.quarantine else ""
        return (
            f"data check failed: {self.rows_rejected} of {self.rows_in} rows rejected "
            f"({self.reject_rate:.2%}), above data.max_reject_rate={self.max_reject_rate:.2%}. "
            f"Top reasons: {top}.{where} Fix the data or the contract, or raise "
            "data.max_reject_rate (--max-reject-rate) if these rows are expected."
        )

    def warning_message(self) -> str | None:
        """One line on the broken expectations, or None when there are none."""
        if not self.warnings:
            return None
        top = ", ".join(
            f"{k}={v}" for k, v in sorted(self.warnings.items(), key=lambda kv: -kv[1])[:5]
        )
        return (
            f"rows outside the contract's expectations (kept, not rejected): {top}. Widen the "
            "`expect:` bounds or categories if the data is right, or set `strict: true` in a "
            "column's `expect:` to reject such rows."
        )


@dataclass
class CheckedData:
    """The good rows (contract columns + `_row_hash`), lazily over materialized blocks."""

    dataset: ray.data.Dataset
    report: ValidationReport
    contract: Contract


def _rule_counts(joined: pa.ChunkedArray) -> Counter[str]:
    """`column:rule` -> rows, from a column of `;`-joined rule names (null: none)."""
    counts: Counter[str] = Counter()
    # Few distinct combinations even when most rows carry one: split each combination once.
    vc = pc.value_counts(pc.drop_null(joined))
    for combo, n in zip(
        vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True
    ):
        for rule in combo.split(";"):
            counts[rule] += n
    return counts


def _block_stats(table: pa.Table) -> dict[str, Any]:
    """Rows, rejects, digest halves and rule counts of one checked block (summed by the driver)."""
    reason = table.column(REASON_COLUMN)
    bad = pc.is_valid(reason)
    hashes = table.column(ROW_HASH_COLUMN).to_numpy()
    bad_np = bad.to_numpy(zero_copy_only=False)
    # uint64 sums wrap: exactly what an order-independent digest wants.
    return {
        "rows": table.num_rows,
        "rejected": int(bad_np.sum()),
        "hash_ok": int(hashes[~bad_np].sum(dtype="uint64")),
        "hash_bad": int(hashes[bad_np].sum(dtype="uint64")),
        "reasons": dict(_rule_counts(reason)),
        "warnings": dict(_rule_counts(table.column(WARNINGS_COLUMN))),
    }


def _only_rejected(table: pa.Table) -> pa.Table:
    return table.filter(pc.is_valid(table.column(REASON_COLUMN))).drop_columns([ROW_HASH_COLUMN])


def _settle_block(
    table: pa.Table, index: int, quarantine: tuple[pafs.FileSystem, str] | None
) -> dict[str, Any]:
    """`_block_stats` of one checked block, after writing its rejected rows to the quarantine.

    One file per block that has rejected rows, named after the block's position: a retried task
    rewrites its own file, so no row is quarantined twice.
    """
    if table.num_rows == 0:  # a join or union can leave empty blocks without any columns
        return {
            "rows": 0,
            "rejected": 0,
            "hash_ok": 0,
            "hash_bad": 0,
            "reasons": {},
            "warnings": {},
        }
    stats = _block_stats(table)
    if quarantine is not None and stats["rejected"]:
        fs, path = quarantine
        pq.write_table(_only_rejected(table), f"{path}/part-{index:05d}.parquet", filesystem=fs)
    return stats


def _ok_rows(checked: ray.data.Dataset, keep: list[str]) -> ray.data.Dataset:
    """The rows with no reject reason, columns `keep`: lazy, evaluated by each consumer.

    A predicate expression and a projection, not a Python `map_batches`: Ray evaluates the
    predicate with Arrow compute on whole blocks and fuses both into the task of the consumer's
    next map, and its optimizer can see what they do, which it cannot in a Python function. Each
    consumer still pays for one filter per block (a copy of its good rows, even when it has no
    rejected row), as it did with the `map_batches` filter this replaces.
    """
    from ray.data.expressions import col

    return checked.filter(expr=col(REASON_COLUMN).is_null()).select_columns(keep)


def _good_rows(table: pa.Table, keep: list[str]) -> pa.Table:
    """`_ok_rows` of one block, in Python: the same rows, for `reduce_rows`' plain tasks."""
    return table.filter(pc.is_null(table.column(REASON_COLUMN))).select(keep)


def _rejected_rows(checked: ray.data.Dataset) -> ray.data.Dataset:
    from ray.data.expressions import col

    return checked.filter(expr=col(REASON_COLUMN).is_not_null())


def _pad(table: pa.Table, schema: pa.Schema) -> pa.Table:
    cols = [
        table.column(f.name) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(cols, schema=schema)


def _recheck(table: pa.Table, contract: Contract) -> pa.Table:
    """Full check after a join; rows already rejected on one side keep their reasons."""
    return check_table(
        table.drop_columns([c for c in table.column_names if c.startswith("_")]), contract
    )


def _prepare_quarantine(uri: str) -> tuple[pafs.FileSystem, str]:
    fs, path = (
        pafs.FileSystem.from_uri(uri)
        if "://" in uri
        else (pafs.LocalFileSystem(), str(Path(uri).resolve()))
    )
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        raise ConfigError(f"quarantine path {uri!r} is a file; give a directory.")
    if info.type == pafs.FileType.Directory:
        # A previous run's parts would mix with this run's: the quarantine holds one run.
        for f in fs.get_file_info(pafs.FileSelector(path)):
            if f.is_file and f.path.endswith(".parquet"):
                fs.delete_file(f.path)
    else:
        fs.create_dir(path, recursive=True)
    return fs, path


def check_sources(
    sources: list[str],
    contract: Contract,
    *,
    merge: str = "union",
    join_key: str | None = None,
    quarantine_dir: str | None = None,
    max_reject_rate: float = 1.0,
    num_blocks: int | None = None,
    raise_on_failure: bool = True,
) -> CheckedData:
    """Read, merge and check sources against a contract on the current Ray cluster.

    Args:
        sources: Source strings (see `ray_ml.data.read_source`).
        contract: The contract every row must meet.
        merge: `union` (rows of all sources, columns aligned, missing ones null) or `join`
            (full outer join on `join_key`: a row with no partner is kept, and rejected for its
            missing values, never silently dropped).
        join_key: Key column for `merge="join"`.
        quarantine_dir: Directory (local or URI) for the rejected rows as Parquet, with
            `_reject_reason` and `_raw`. Previous Parquet files in it are replaced.
        max_reject_rate: Fail when more than this fraction of rows is rejected.
        num_blocks: Read parallelism override.
        raise_on_failure: Raise `RejectRateExceeded` (after writing the quarantine) when the
            threshold is exceeded; otherwise return and let the caller look at `report.passed`.
    """
    if not sources:
        raise ConfigError("data.sources is empty: give at least one source.")
    names = contract.names
    if merge == "union" or len(sources) == 1:
        parts = [
            map_blocks(read_source(s, names, num_blocks), check_table, contract) for s in sources
        ]
        checked = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    elif merge == "join":
        if join_key is None or join_key not in names:
            raise ConfigError(
                f"data.merge=join needs data.join_key naming a contract column, but got "
                f"join_key={join_key!r}. Contract columns: {names}."
            )
        full = checked_schema(contract)
        rejected, ok = [], []
        seen: set[str] = set()
        for s in sources:
            raw = read_source(s, names, num_blocks)
            present = [c for c in raw.schema().names if c in names]
            specs = contract.subset(present)
            side = map_blocks(raw, check_table, contract, specs).materialize()
            rejected.append(map_blocks(_rejected_rows(side), _pad, full))
            # A column already brought by an earlier source is taken from there (no _x/_y pairs).
            keep = [c.name for c in specs if c.name == join_key or c.name not in seen]
            seen.update(keep)
            ok.append(_ok_rows(side, keep))
        joined = ok[0]
        for other in ok[1:]:
            joined = joined.join(
                other,
                join_type="full_outer",
                on=(join_key,),
                num_partitions=max(1, num_blocks or 2),
            )
        checked = map_blocks(joined, _recheck, contract).union(*rejected)
    else:
        raise ConfigError(f"data.merge must be union or join, but got merge={merge!r}.")

    checked = checked.materialize()
    # The quarantine is emptied before any task writes to it: it holds this run's rows only.
    target = _prepare_quarantine(quarantine_dir) if quarantine_dir else None
    stats = reduce_blocks(checked, _settle_block, target)
    rows_in = sum(r["rows"] for r in stats)
    rows_bad = sum(r["rejected"] for r in stats)
    reasons: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    for r in stats:
        reasons.update(r["reasons"])
        warnings.update(r["warnings"])
    hash_ok = sum(r["hash_ok"] for r in stats) & _MASK64
    hash_bad = sum(r["hash_bad"] for r in stats) & _MASK64

    quarantine = quarantine_dir or None
    report = ValidationReport(
        sources=list(sources),
        rows_in=rows_in,
        rows_ok=rows_in - rows_bad,
        rows_rejected=rows_bad,
        reasons=dict(sorted(reasons.items())),
        max_reject_rate=max_reject_rate,
        quarantine=quarantine,
        digest=f"{rows_in}:{rows_bad}:{hash_ok:016x}:{hash_bad:016x}",
        warnings=dict(sorted(warnings.items())),
    )
    if raise_on_failure and not report.passed:
        raise RejectRateExceeded(report.failure_message())
    keep = [*names, ROW_HASH_COLUMN]
    good = derive(checked, _good_rows, keep, lazy=_ok_rows(checked, keep))
    return CheckedData(dataset=good, report=report, contract=contract)
