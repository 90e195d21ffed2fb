"""Feature drift of live requests against a bundle's reference statistics (PSI, chi-square).

Replicas count each request batch into the reference's bins (`drift_counts`, accumulated with
`merge_counts` between flushes); the state deployment keeps one sliding `DriftWindow` per stable
model version and reports PSI and a chi-square p-value per feature. Counts are plain JSON-able
dicts, so they travel through Ray without pickling any class of this module.

Features are binned by the rule the reference was made with (`ray_ml.data.bin_counts` for
numbers, `ray_ml.data.category_strings` for categories), imported from `ray_ml.data`, which
imports no torch. Nothing here imports Ray or torch.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy import special as scipy_special

from ray_ml.data import bin_counts, bin_of, category_strings, inner_edges

__all__ = ["PSI_EPSILON", "DriftBuffer", "DriftWindow", "drift_counts", "merge_counts"]

logger = logging.getLogger("ray.serve")

#: Floor on both bin shares in PSI (and on the expected shares of the chi-square test): an empty
#: bin would otherwise make ln(live / ref) infinite. 1e-4 is the usual choice; it caps the term of
#: one bin that is empty on one side at about 0.1 * ln(0.1 / 1e-4) ~= 0.69.
PSI_EPSILON = 1e-4

# Up to this many rows, Python loops over `to_pylist()` beat the fixed cost of Arrow compute
# calls (about 8 us per feature against about 1 us); a unit test checks both paths agree.
_SMALL_TABLE_ROWS = 16


@dataclass(frozen=True)
class _Binning:
    """How one feature is counted: numeric bins from `bin_edges`, or categories plus "other"."""

    name: str
    numeric: bool
    inner: np.ndarray | None  # inner bin edges (numeric); None when the reference was all null
    value_set: pa.Array | None  # sorted category strings (categorical)
    n_bins: int
    expected: np.ndarray | None  # reference share per bin; None when there is no distribution
    inner_list: list[float] = field(default_factory=list)  # `inner` for the small-table path
    index: dict[str, int] = field(default_factory=dict)  # category -> bin (small-table path)

    def count(self, col: pa.ChunkedArray) -> dict[str, Any]:
        t = col.type
        if len(col) <= _SMALL_TABLE_ROWS:
            if self.numeric and (
                pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_null(t)
            ):
                return self._count_numeric_small(col.to_pylist())
            if not self.numeric and (
                pa.types.is_string(t)
                or pa.types.is_large_string(t)
                or pa.types.is_integer(t)
                or pa.types.is_boolean(t)
            ):
                return self._count_categorical_small(col.to_pylist())
        return self._count_numeric(col) if self.numeric else self._count_categorical(col)

    def _count_numeric(self, col: pa.ChunkedArray) -> dict[str, Any]:
        try:
            x = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ValueError(
                f"drift_counts: numeric feature `{self.name}` has type {col.type}, which "
                f"does not convert to float ({exc}). Check requests against the contract first."
            ) from None
        missing = np.isnan(x)  # Arrow nulls arrive as NaN; NaN counts as null, as in training
        nulls = int(missing.sum())
        if self.inner is None:
            return {"counts": [], "nulls": nulls}
        valid = x[~missing] if nulls else x
        return {"counts": bin_counts(valid, self.inner).tolist(), "nulls": nulls}

    def _count_numeric_small(self, values: list[Any]) -> dict[str, Any]:
        counts = [0] * self.n_bins
        nulls = 0
        for v in values:
            if v is None or v != v:  # null or NaN
                nulls += 1
            elif self.n_bins:
                counts[bin_of(float(v), self.inner_list)] += 1
        return {"counts": counts, "nulls": nulls}

    def _count_categorical(self, col: pa.ChunkedArray) -> dict[str, Any]:
        assert self.value_set is not None
        col = category_strings(col)
        nulls = col.null_count
        idx = pc.index_in(col, value_set=self.value_set)  # null for null and for unseen values
        found = idx.drop_null().to_numpy(zero_copy_only=False)
        counts = np.bincount(found, minlength=self.n_bins - 1).tolist()
        counts.append(len(col) - nulls - int(found.size))  # the "other" bucket
        return {"counts": counts, "nulls": nulls}

    def _count_categorical_small(self, values: list[Any]) -> dict[str, Any]:
        counts = [0] * self.n_bins
        other = self.n_bins - 1
        nulls = 0
        for v in values:
            if v is None:
                nulls += 1
                continue
            if isinstance(v, bool):  # as `category_strings` casts it (ints: str() is the same)
                v = "true" if v else "false"
            counts[self.index.get(v if isinstance(v, str) else str(v), other)] += 1
        return {"counts": counts, "nulls": nulls}


def _feature_stats(reference: Mapping[str, Any]) -> Mapping[str, Any]:
    """Accept the whole `reference_stats(...)` result or just its `columns` mapping."""
    columns = reference.get("columns")
    if isinstance(columns, Mapping) and "kind" not in columns:
        return columns
    return reference


def _compile(reference: Mapping[str, Any]) -> list[_Binning]:
    out: list[_Binning] = []
    for name, st in _feature_stats(reference).items():
        kind = st.get("kind") if isinstance(st, Mapping) else None
        if kind == "numeric":
            edges = st.get("bin_edges")
            if edges is None:
                out.append(_Binning(str(name), True, None, None, 0, None))
                continue
            n_bins = len(edges) - 1
            fractions = st.get("bin_fractions")
            expected = None
            if fractions is not None and len(fractions) == n_bins and st.get("count", 1) > 0:
                expected = np.asarray(fractions, dtype=np.float64)
            inner = inner_edges(edges)
            out.append(
                _Binning(str(name), True, inner, None, n_bins, expected, inner_list=inner.tolist())
            )
        elif kind == "categorical":
            freqs = st.get("frequencies") or {}
            cats = sorted(str(k) for k in freqs)
            shares = [float(freqs[k]) for k in sorted(freqs, key=str)]
            shares.append(float(st.get("other_fraction") or 0.0))
            exp = np.asarray(shares, dtype=np.float64)
            expected = exp if st.get("count", 1) > 0 and exp.sum() > 0 else None
            value_set = pa.array(cats, type=pa.string())
            index = {c: i for i, c in enumerate(cats)}
            out.append(
                _Binning(str(name), False, None, value_set, len(cats) + 1, expected, index=index)
            )
        else:
            raise ValueError(
                f"reference feature `{name}` has kind={kind!r}; expected 'numeric' or "
                "'categorical'. Pass the `reference_stats` of the model's bundle."
            )
    return out


# Compiling a reference (edges to arrays, categories to an Arrow value set) costs more than
# counting one row, so `drift_counts` keeps the last few compiled references. The entry holds the
# reference itself, so its id cannot be reused while cached; a reference must not be mutated.
_COMPILED: dict[int, tuple[Mapping[str, Any], list[_Binning]]] = {}
_COMPILED_MAX = 16


def _compiled(reference: Mapping[str, Any]) -> list[_Binning]:
    hit = _COMPILED.get(id(reference))
    if hit is not None and hit[0] is reference:
        return hit[1]
    binnings = _compile(reference)
    if len(_COMPILED) >= _COMPILED_MAX:
        _COMPILED.clear()
    _COMPILED[id(reference)] = (reference, binnings)
    return binnings


def drift_counts(table: pa.Table, reference: Mapping[str, Any]) -> dict[str, Any]:
    """Count one request batch into the reference's bins (replica side).

    Numeric features are binned exactly as `ray_ml.data.bin_fractions` bins the training data
    (split at the inner edges; values outside the edges fall into the end bins); NaN and null
    count as null. Categorical features are cast to strings as `reference_stats` does (bools
    "true"/"false", ints in decimal) and counted in the order of `sorted(frequencies)`, plus one
    final "other" bucket for values the reference does not list. Feature columns missing from
    `table` are skipped; extra columns are ignored.

    The compiled binning of a reference is cached per reference object, so a replica should pass
    the same (unmodified) dict on every call.

    Args:
        table: The request rows (already checked against the contract).
        reference: The bundle's `reference_stats` (the whole result or its `columns` mapping).

    Returns:
        `{"rows": n, "features": {name: {"counts": [int, ...], "nulls": int}}}`, JSON-able.
        A numeric feature whose reference was all null has `counts == []`.

    Raises:
        ValueError: A numeric feature column cannot be converted to float, or the reference is
            not a `reference_stats` result.
    """
    names = set(table.column_names)
    features = {
        b.name: b.count(table.column(b.name)) for b in _compiled(reference) if b.name in names
    }
    return {"rows": table.num_rows, "features": features}


def merge_counts(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Add two `drift_counts` results (e.g. to accumulate requests before a flush).

    Either may be `{}` (nothing counted yet). Neither input is modified.

    Raises:
        ValueError: A feature has a different number of bins in `a` and `b` (counted against
            different references).
    """
    features: dict[str, dict[str, Any]] = {
        name: {"counts": list(v["counts"]), "nulls": int(v["nulls"])}
        for name, v in a.get("features", {}).items()
    }
    for name, v in b.get("features", {}).items():
        mine = features.get(name)
        if mine is None:
            features[name] = {"counts": list(v["counts"]), "nulls": int(v["nulls"])}
            continue
        if len(mine["counts"]) != len(v["counts"]):
            raise ValueError(
                f"merge_counts: feature `{name}` has {len(mine['counts'])} bins on one side and "
                f"{len(v['counts'])} on the other; counts of different references cannot be added."
            )
        mine["counts"] = [x + y for x, y in zip(mine["counts"], v["counts"], strict=True)]
        mine["nulls"] += int(v["nulls"])
    return {"rows": int(a.get("rows", 0)) + int(b.get("rows", 0)), "features": features}


class DriftBuffer:
    """A replica's answered rows, binned for drift in bulk (replica side, feeding `DriftWindow`).

    `add` keeps a request's validated table; the tables are binned all at once by `take` (at the
    replica's flush) or as soon as `bin_rows` rows wait, so a stalled flush holds few. One
    `drift_counts` over many rows costs about what one request's did: counted per request, on
    one-row tables, it was the replica's largest own cost per request (see
    `python -m benchmarks.bench_replica`). Rows are grouped by schema (a canary's contract may
    type a column differently). Drift never fails a request nor stops the flush: a group the
    reference cannot bin is left out of the counts, and logged.

    Rows answered under another stable version than the kept ones (another reference) replace
    them: counts against different references cannot be added.

    Args:
        bin_rows: Most rows kept unbinned.
    """

    def __init__(self, bin_rows: int = 4096) -> None:
        self.bin_rows = bin_rows
        self.ref: str | None = None  # the stable version the rows were answered under
        self._reference: Mapping[str, Any] = {}
        self.tables: list[pa.Table] = []  # not binned yet
        self._rows = 0
        self._counts: dict[str, Any] = {}  # binned already

    def add(self, table: pa.Table, ref: str, reference: Mapping[str, Any]) -> None:
        """Keep one request's rows, answered while `ref` (with `reference`) was stable."""
        if ref != self.ref:
            self.ref, self._reference, self.tables, self._rows, self._counts = (
                ref,
                reference,
                [],
                0,
                {},
            )
        self.tables.append(table)
        self._rows += table.num_rows
        if self._rows >= self.bin_rows:
            self._bin()

    def take(self) -> dict[str, Any]:
        """`{"reference", "rows", "counts"}` of the rows since the last take (`{}`: none)."""
        self._bin()
        counts, self._counts = self._counts, {}
        if not counts:
            return {}
        return {"reference": self.ref, "rows": counts["rows"], "counts": counts}

    def _bin(self) -> None:
        tables, self.tables, self._rows = self.tables, [], 0
        # A linear search by `equals`, not a dict: hashing a 30-column schema takes 31 us, more
        # than binning the row, and there are one or two schemas.
        groups: list[tuple[pa.Schema, list[pa.Table]]] = []
        for table in tables:
            schema = table.schema
            for known, members in groups:
                if schema.equals(known):
                    members.append(table)
                    break
            else:
                groups.append((schema, [table]))
        for _, group in groups:
            try:
                counts = drift_counts(pa.concat_tables(group), self._reference)
            except Exception as exc:  # any: see the class docstring
                logger.warning(
                    "ray_ml serve: %d requests left out of drift: %s: %s",
                    len(group),
                    type(exc).__name__,
                    exc,
                )
                continue
            self._counts = merge_counts(self._counts, counts)


class DriftWindow:
    """Feature drift of the most recent live rows against the training reference (state side).

    Chunks (one `drift_counts`/`merge_counts` result per replica flush) enter a sliding window
    that keeps the newest chunks whose rows add up to at most `window_rows`; older chunks are
    dropped whole, except that the newest chunk is always kept even when it alone is larger.

    Per feature, `report()` gives:

    * `psi`, the population stability index of the live shares against the reference shares,
      `sum((live - ref) * ln(live / ref))` over the bins, with both shares floored at
      `PSI_EPSILON` (1e-4) so that an empty bin stays finite. Nulls are not a bin: both sides
      are shares of non-null values, and the live null share is reported as `null_fraction`.
    * `p_value`, a chi-square goodness-of-fit test of the live counts against the reference
      shares (floored at `PSI_EPSILON` and renormalized, times the live count). Bins empty on
      both sides are left out (they carry no information and would only add degrees of freedom).
    * `drifted`: `psi > psi_threshold` **and** `p_value < p_threshold`. PSI alone is a poor flag
      on few rows: for a sample of n rows drawn like the reference, PSI is about Pearson's
      chi-square divided by n, whose mean is (bins - 1) / n, i.e. 0.18 for 10 bins at n = 50, so
      `psi > 0.2` would fire on about a third of healthy 50-row windows. The test accounts for
      the sample size and suppresses those; PSI in turn keeps a large window from flagging a
      shift that is significant but too small to matter. Where no test is possible (fewer than
      two informative bins) the flag falls back to PSI alone.
    * Features with fewer than `min_rows` live non-null rows in the window (including features
      never seen) report `psi` and `p_value` as None and `drifted` false: too few rows to judge.
      So do features whose reference has no distribution (the column was all null in training).

    The window must be fed counts made against the same reference; keep one window per model
    version.

    Args:
        reference: The bundle's `reference_stats` (the whole result or its `columns` mapping).
        window_rows: Most rows kept in the window (the newest chunk is always kept).
        psi_threshold: PSI above which a feature counts as drifted (0.2 is the usual rule).
        p_threshold: Chi-square p-value below which the shift counts as real.
        min_rows: Fewest live non-null rows of a feature before it is judged.

    Raises:
        ValueError: A bad argument, or a reference that is not a `reference_stats` result.
    """

    def __init__(
        self,
        reference: Mapping[str, Any],
        window_rows: int,
        psi_threshold: float,
        p_threshold: float = 0.01,
        *,
        min_rows: int = 50,
    ) -> None:
        if int(window_rows) < 1:
            raise ValueError(f"window_rows must be positive, but got window_rows={window_rows}.")
        if not (psi_threshold > 0 and math.isfinite(psi_threshold)):
            raise ValueError(
                f"psi_threshold must be a positive number, but got psi_threshold={psi_threshold}."
            )
        if not 0 < p_threshold <= 1:
            raise ValueError(f"p_threshold must be in (0, 1], but got p_threshold={p_threshold}.")
        if int(min_rows) < 1:
            raise ValueError(f"min_rows must be positive, but got min_rows={min_rows}.")
        self.window_rows = int(window_rows)
        self.psi_threshold = float(psi_threshold)
        self.p_threshold = float(p_threshold)
        self.min_rows = int(min_rows)
        self._bins = {b.name: b for b in _compile(reference)}
        self._chunks: deque[tuple[int, dict[str, tuple[np.ndarray, int]]]] = deque()
        self._rows = 0
        self._sums = {name: np.zeros(b.n_bins, dtype=np.int64) for name, b in self._bins.items()}
        self._nulls = dict.fromkeys(self._bins, 0)
        self._alerted: set[str] = set()

    @property
    def rows(self) -> int:
        """Rows currently in the window."""
        return self._rows

    def add(self, counts: Mapping[str, Any]) -> None:
        """Append one chunk of `drift_counts` (or merged) counts and slide the window.

        Raises:
            ValueError: The chunk names a feature the reference does not have, or has the wrong
                number of bins for one (counted against another reference). Nothing is added.
        """
        rows = int(counts.get("rows", 0))
        chunk: dict[str, tuple[np.ndarray, int]] = {}
        for name, v in counts.get("features", {}).items():
            b = self._bins.get(name)
            if b is None:
                raise ValueError(
                    f"DriftWindow.add: feature `{name}` is not in the reference; the counts were "
                    "made against another model's reference_stats."
                )
            arr = np.asarray(v["counts"], dtype=np.int64)
            if arr.shape != (b.n_bins,):
                raise ValueError(
                    f"DriftWindow.add: feature `{name}` has {arr.size} bins, but the reference "
                    f"has {b.n_bins}; the counts were made against another reference_stats."
                )
            chunk[name] = (arr, int(v["nulls"]))
        if rows <= 0 and not chunk:
            return
        self._chunks.append((rows, chunk))
        self._apply(chunk, rows, +1)
        while self._rows > self.window_rows and len(self._chunks) > 1:
            old_rows, old = self._chunks.popleft()
            self._apply(old, old_rows, -1)

    def _apply(self, chunk: dict[str, tuple[np.ndarray, int]], rows: int, sign: int) -> None:
        self._rows += sign * rows
        for name, (arr, nulls) in chunk.items():
            self._sums[name] += sign * arr
            self._nulls[name] += sign * nulls

    def report(self) -> dict[str, Any]:
        """Drift of the current window, JSON-able.

        Returns:
            `{"window_rows": rows now in the window, "window_capacity": window_rows,
            "threshold": psi_threshold, "p_threshold": p_threshold, "min_rows": min_rows,
            "features": {name: {"psi", "p_value", "test": "chi2", "drifted", "rows",
            "null_fraction"}}, "drifted": [names], "max_psi": float}`. `rows` counts the
            feature's non-null live rows; `max_psi` is 0.0 when no feature is judged yet.
        """
        features: dict[str, dict[str, Any]] = {}
        for name, b in self._bins.items():
            counts = self._sums[name]
            n = int(counts.sum())
            nulls = self._nulls[name]
            psi: float | None = None
            p_value: float | None = None
            if n >= self.min_rows and b.expected is not None:
                psi, p_value = _psi_and_p(counts, b.expected)
            drifted = psi is not None and psi > self.psi_threshold
            if drifted and p_value is not None:
                drifted = p_value < self.p_threshold
            features[name] = {
                "psi": psi,
                "p_value": p_value,
                "test": "chi2",
                "drifted": drifted,
                "rows": n,
                "null_fraction": nulls / (n + nulls) if n + nulls else None,
            }
        psis = [f["psi"] for f in features.values() if f["psi"] is not None]
        return {
            "window_rows": self._rows,
            "window_capacity": self.window_rows,
            "threshold": self.psi_threshold,
            "p_threshold": self.p_threshold,
            "min_rows": self.min_rows,
            "features": features,
            "drifted": sorted(name for name, f in features.items() if f["drifted"]),
            "max_psi": max(psis, default=0.0),
        }

    def alerts(self, report: Mapping[str, Any] | None = None) -> list[str]:
        """Features whose drifted flag switched on since the previous call, sorted.

        Call once per flush and log one line per returned name: a feature that stays drifted is
        returned once, and again only after it has recovered and drifted anew.

        Args:
            report: This window's `report()` if the caller already has it (saves recomputing).
        """
        now = set((report if report is not None else self.report())["drifted"])
        new = sorted(now - self._alerted)
        self._alerted = now
        return new


def _psi_and_p(counts: np.ndarray, expected: np.ndarray) -> tuple[float, float | None]:
    n = counts.sum()
    live = np.maximum(counts / n, PSI_EPSILON)
    ref = np.maximum(expected, PSI_EPSILON)
    psi = float(np.sum((live - ref) * np.log(live / ref)))
    keep = (expected > 0) | (counts > 0)
    if int(keep.sum()) < 2:
        return psi, None
    # Pearson's statistic and its chi-square survival function: what scipy.stats.chisquare
    # computes (a unit test checks), without its ~200 us of argument handling per feature.
    expected_n = ref[keep] / ref[keep].sum() * n
    stat = float(np.sum((counts[keep] - expected_n) ** 2 / expected_n))
    p = float(scipy_special.chdtrc(int(keep.sum()) - 1, stat))
    return psi, p if math.isfinite(p) else None
