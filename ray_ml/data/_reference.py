"""Reference statistics of the training data, and the one binning rule drift checks count with.

`reference_stats` summarises the training split per column (stored in every model bundle);
serving's drift monitor (`ray_ml.serve`) counts live requests into the same bins with
`bin_counts` and casts categories with `category_strings`, so training and serving cannot bin a
value differently. Nothing here imports Ray or torch.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ray_ml.data._contract import Contract
from ray_ml.errors import ContractError

__all__ = [
    "bin_counts",
    "bin_fractions",
    "bin_of",
    "category_strings",
    "inner_edges",
    "reference_stats",
]

# Bin edges per numeric column: min, the nine deciles, max.
_QUANTILES = np.linspace(0.0, 1.0, 11)


def reference_stats(
    table: pa.Table, contract: Contract, *, max_categories: int = 100
) -> dict[str, Any]:
    """Per-column statistics of the training data, the baseline for drift checks in serving.

    A column is numeric when its contract type is float or int without `categories`; others
    (category, string, bool, int with categories) are categorical. Numeric columns get count,
    null_fraction, mean, std (population), min, max, `bin_edges` (11 quantiles: min, the nine
    deciles, max) and `bin_fractions` (the share of rows in each of the 10 bins, as
    `bin_fractions` assigns them: use the same function on live data). Categorical columns get
    count, null_fraction, `frequencies` (value -> share of non-null rows; every contract
    category appears, unseen ones as 0) and `other_fraction` (share outside the
    `max_categories` most frequent values, for free-text columns). NaN counts as null.

    Args:
        table: The training split (or a large sample of it) as an Arrow table.
        contract: Its data contract.
        max_categories: Most values kept per categorical column.

    Returns:
        `{"version": 1, "rows": n, "columns": {feature: stats}, "label": stats | None}`.

    Raises:
        ContractError: A feature column of the contract is missing from `table`.
    """
    missing = [c.name for c in contract.feature_columns if c.name not in table.column_names]
    if missing:
        raise ContractError(
            f"reference_stats: the table is missing feature column(s) {missing} of contract "
            f"`{contract.name}`. Pass the checked training split."
        )
    columns = {
        spec.name: _column_stats(
            table.column(spec.name),
            # known_categories: an inferred contract lists them under `expect:`.
            spec.type.is_numeric and spec.known_categories is None,
            spec.known_categories,
            max_categories,
        )
        for spec in contract.feature_columns
    }
    label = None
    if contract.label in table.column_names:
        spec = contract.column(contract.label)
        label = _column_stats(
            table.column(contract.label),
            contract.task.value == "regression",
            spec.categories,
            max_categories,
        )
    return {"version": 1, "rows": table.num_rows, "columns": columns, "label": label}


# -- the binning rule -----------------------------------------------------------------------------
def inner_edges(edges: Sequence[float]) -> np.ndarray:
    """The edges bins are split at: all of `bin_edges` but the first and the last.

    Values below the first or above the last edge so fall into the end bins.
    """
    return np.asarray(edges, dtype=np.float64)[1:-1]


def bin_counts(values: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """Count of `values` in each of the `len(inner) + 1` bins split at `inner` (`inner_edges`).

    A value equal to an inner edge goes to the bin above it. NaN values must be removed first.
    """
    return np.bincount(np.searchsorted(inner, values, side="right"), minlength=len(inner) + 1)


def bin_of(value: float, inner: Sequence[float]) -> int:
    """The bin `bin_counts` puts one value in, in plain Python (quicker for a few values)."""
    return bisect.bisect_right(inner, value)  # bisect_right is searchsorted(side="right")


def bin_fractions(values: np.ndarray, edges: Sequence[float]) -> list[float]:
    """Share of `values` in each bin of `edges` (as stored in `reference_stats`).

    Bins are split at the inner edges only (`bin_counts`). NaN values must be removed first.
    With no values, every share is 0.
    """
    x = np.asarray(values, dtype=np.float64)
    counts = bin_counts(x, inner_edges(edges))
    return [float(c) / x.size if x.size else 0.0 for c in counts]


def category_strings(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """A categorical column as the strings its categories are counted by.

    Bools become "true"/"false" and ints their decimal form, as Arrow casts them.
    """
    return col if pa.types.is_string(col.type) else pc.cast(col, pa.string())


def _column_stats(
    col: pa.ChunkedArray, numeric: bool, categories: tuple[Any, ...] | None, max_categories: int
) -> dict[str, Any]:
    n = len(col)
    if numeric:
        x = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
        x = x[~np.isnan(x)]
        stats: dict[str, Any] = {
            "kind": "numeric",
            "count": int(x.size),
            "null_fraction": (n - x.size) / n if n else 0.0,
        }
        if x.size == 0:
            return stats | dict.fromkeys(
                ("mean", "std", "min", "max", "bin_edges", "bin_fractions")
            )
        edges = np.quantile(x, _QUANTILES).tolist()
        return stats | {
            "mean": float(x.mean()),
            "std": float(x.std()),
            "min": float(x.min()),
            "max": float(x.max()),
            "bin_edges": edges,
            "bin_fractions": bin_fractions(x, edges),
        }
    valid = category_strings(col).drop_null()
    m = len(valid)
    vc = pc.value_counts(valid)
    counts = dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True))
    kept = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_categories]
    freqs = {str(v): c / m for v, c in kept} if m else {}
    for cat in categories or ():
        freqs.setdefault(str(cat), 0.0)
    other = (m - sum(c for _, c in kept)) / m if m else 0.0
    return {
        "kind": "categorical",
        "count": m,
        "null_fraction": (n - m) / n if n else 0.0,
        "frequencies": dict(sorted(freqs.items())),
        "other_fraction": other,
    }
