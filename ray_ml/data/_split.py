"""Seeded, stratified train/validation/test splits and k-fold, independent of blocking.

Each row gets a pseudo-random position `u` from its content hash and the seed, so the same row
lands in the same part whatever the number of blocks or workers (and duplicate rows never
straddle train and test). Exact per-class proportions come from one cheap pass that builds, per
class, a histogram of `u` over 1024 bins; the cut points between parts are chosen per class on
that histogram. A part is therefore off its target by at most the rows of one bin of one class:
about n_class / 1024 rows, i.e. exact for small classes and negligible for large ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ray_ml.data._blocks import derive, reduce_rows
from ray_ml.data._checks import ROW_HASH_COLUMN, splitmix64
from ray_ml.data._contract import Contract
from ray_ml.errors import ConfigError

if TYPE_CHECKING:
    import ray.data

__all__ = ["PART_COLUMN", "SplitPlan", "Splits", "plan_split", "split_dataset"]

PART_COLUMN = "_part"
_BITS = 10
_BINS = 1 << _BITS


def _strata_and_bins(
    table: pa.Table, label: str, classes: list[Any], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    hashes = table.column(ROW_HASH_COLUMN).to_numpy()
    mixed = splitmix64(hashes ^ splitmix64(np.full(1, seed, np.uint64))[0])
    bins = (mixed >> np.uint64(64 - _BITS)).astype(np.int64)
    if classes:
        idx = pc.index_in(
            table.column(label), value_set=pa.array(classes, table.schema.field(label).type)
        )
        strata = idx.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    else:
        strata = np.zeros(table.num_rows, np.int64)
    return strata, bins


def _histogram(table: pa.Table, label: str, classes: list[Any], seed: int) -> pa.Table:
    strata, bins = _strata_and_bins(table, label, classes, seed)
    n_strata = max(len(classes), 1)
    counts = np.bincount(strata * _BINS + bins, minlength=n_strata * _BINS)
    return pa.table({"counts": [counts.astype(np.int64)]})


@dataclass
class SplitPlan:
    """Cut points per stratum (class) and the exact row counts they produce.

    Attributes:
        part_names: Names of the parts in order (train/validation/test or fold_i/test).
        boundaries: (strata, parts-1) bin indices; a row in bin b of stratum s goes to part
            `searchsorted(boundaries[s], b, side="right")`.
        counts: (strata, parts) rows per stratum and part.
        classes: Class values of the strata (empty: one stratum).
    """

    part_names: list[str]
    boundaries: np.ndarray
    counts: np.ndarray
    classes: list[Any]
    seed: int
    label: str

    def summary(self) -> dict[str, Any]:
        total = self.counts.sum()
        out: dict[str, Any] = {}
        for p, name in enumerate(self.part_names):
            n = int(self.counts[:, p].sum())
            entry: dict[str, Any] = {"rows": n, "fraction": round(n / total, 6) if total else 0.0}
            if self.classes:
                entry["class_fraction"] = {
                    str(c): round(int(self.counts[s, p]) / n, 6) if n else 0.0
                    for s, c in enumerate(self.classes)
                }
            out[name] = entry
        return out

    def assign(self, table: pa.Table) -> pa.Table:
        strata, bins = _strata_and_bins(table, self.label, self.classes, self.seed)
        part = np.empty(table.num_rows, np.int8)
        for s in range(self.boundaries.shape[0]):
            sel = strata == s
            part[sel] = np.searchsorted(self.boundaries[s], bins[sel], side="right")
        return table.append_column(PART_COLUMN, pa.array(part, pa.int8()))


def plan_split(
    histogram: np.ndarray,
    fractions: list[float],
    part_names: list[str],
    classes: list[Any],
    seed: int,
    label: str,
) -> SplitPlan:
    """Choose per-stratum cut points on a (strata, bins) histogram."""
    cum_frac = np.cumsum(fractions)[:-1]
    n_strata = histogram.shape[0]
    boundaries = np.zeros((n_strata, len(fractions) - 1), np.int64)
    counts = np.zeros((n_strata, len(fractions)), np.int64)
    for s in range(n_strata):
        cum = np.concatenate([[0], np.cumsum(histogram[s])])  # rows in bins [0, b)
        total = cum[-1]
        for p, f in enumerate(cum_frac):
            boundaries[s, p] = int(np.argmin(np.abs(cum - round(f * total))))
        edges = np.concatenate([[0], boundaries[s], [_BINS]])
        counts[s] = cum[edges[1:]] - cum[edges[:-1]]
    return SplitPlan(part_names, boundaries, counts, classes, seed, label)


@dataclass
class Splits:
    """Datasets per part.

    Lazy views of the checked rows: each row's part is computed in the task that reads it.
    """

    train: ray.data.Dataset
    validation: ray.data.Dataset
    test: ray.data.Dataset
    plan: SplitPlan
    folds: list[ray.data.Dataset] = field(default_factory=list)


def _assign_select(table: pa.Table, plan: SplitPlan, parts: list[int]) -> pa.Table:
    """The rows of `table` that `plan` puts in one of `parts`."""
    part = plan.assign(table).column(PART_COLUMN)
    return table.filter(pc.is_in(part, value_set=pa.array(parts, pa.int8())))


def split_dataset(
    ds: ray.data.Dataset,
    contract: Contract,
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int = 0,
    stratify: bool = True,
    kfold: int = 0,
) -> Splits:
    """Split checked rows (with `_row_hash`) into train/validation/test, or k folds + test.

    With `kfold >= 2`, `folds` holds k disjoint parts of the non-test rows, each stratified;
    `train`/`validation` are then folds 1..k-1 and fold 0 (the first round of the k).
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(
            "data.val_fraction and data.test_fraction must be in [0, 1) with a sum below 1, but got "
            f"val_fraction={val_fraction}, test_fraction={test_fraction}."
        )
    if kfold == 1 or kfold < 0:
        raise ConfigError(f"data.kfold must be 0 (off) or >= 2, but got kfold={kfold}.")
    classes = contract.classes if (stratify and contract.task.is_classification) else []
    if kfold:
        rest = 1.0 - test_fraction
        fractions = [rest / kfold] * kfold + [test_fraction]
        names = [f"fold_{i}" for i in range(kfold)] + ["test"]
    else:
        fractions = [1.0 - val_fraction - test_fraction, val_fraction, test_fraction]
        names = ["train", "validation", "test"]
    hist_rows = reduce_rows(ds, _histogram, contract.label, classes, seed)
    n_strata = max(len(classes), 1)
    hist = np.zeros(n_strata * _BINS, np.int64)
    for row in hist_rows:
        hist += np.asarray(row["counts"], np.int64)
    plan = plan_split(
        hist.reshape(n_strata, _BINS), fractions, names, classes, seed, contract.label
    )

    # Lazy: a row's part is a pure function of its hash and label, so each consumer computes it
    # in the task that reads the row. Materializing the assigned rows here would be one more
    # full copy of the data in the object store, spilled once the data outgrows it, for
    # consumers that stream it (the preprocessing fit) or materialize their own part anyway
    # (training).
    def part(ids: list[int]) -> ray.data.Dataset:
        return derive(ds, _assign_select, plan, ids)

    if kfold:
        folds = [part([i]) for i in range(kfold)]
        return Splits(
            train=part(list(range(1, kfold))),
            validation=folds[0],
            test=part([kfold]),
            plan=plan,
            folds=folds,
        )
    return Splits(train=part([0]), validation=part([1]), test=part([2]), plan=plan)
