"""Pure-Python state behind the model service: metrics, the canary judge and the drift monitor.

The service runs several replicas and one state holder. Each replica records small per-request
deltas (`MetricsDelta`, `drift_counts` merged with `merge_counts`) and flushes them about every
0.5 s; the state holder folds them into `ServeMetrics` (the `/metrics` page and the `/v1/models`
totals), a `CanaryJudge` (promote or roll back the canary) and a `DriftWindow` per model version
(feature drift against the training data's `reference_stats`).

Everything that crosses from a replica to the state holder is a plain JSON-able dict of lists,
strings and numbers, so it travels through Ray without pickling any class of this module and can
be logged or replayed as is. Nothing here imports Ray or torch.

The numeric binning repeats the one-line rule of `ray_ml.train.bin_fractions` (split at the inner
edges with `searchsorted(side="right")`) instead of importing it, because importing
`ray_ml.train` pulls in torch, which the state holder does not otherwise need; a unit test checks
that both give the same bins.
"""

from __future__ import annotations

import bisect
import enum
import math
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from scipy import special as scipy_special

__all__ = [
    "CANARY",
    "CONTENT_TYPE",
    "LATENCY_BUCKETS",
    "PSI_EPSILON",
    "ROLES",
    "STABLE",
    "CanaryAction",
    "CanaryDecision",
    "CanaryJudge",
    "DriftWindow",
    "MetricsDelta",
    "ServeMetrics",
    "drift_counts",
    "merge_counts",
]

STABLE = "stable"
CANARY = "canary"
ROLES = (STABLE, CANARY)
#: Content type of `ServeMetrics.render()` (Prometheus text format 0.0.4).
CONTENT_TYPE = CONTENT_TYPE_LATEST
#: Upper bounds (seconds) of the latency histogram buckets; `+Inf` is implied.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
#: Floor on both bin shares in PSI (and on the expected shares of the chi-square test): an empty
#: bin would otherwise make ln(live / ref) infinite. 1e-4 is the usual choice; it caps the term of
#: one bin that is empty on one side at about 0.1 * ln(0.1 / 1e-4) ~= 0.69.
PSI_EPSILON = 1e-4
_N_BUCKETS = len(LATENCY_BUCKETS) + 1  # with +Inf
_MAX_LATENCIES = 10_000  # latency samples kept per role by the canary judge
_EARLY_MIN_REQUESTS = 10  # canary requests before an early rollback on errors
_MIN_STABLE_FOR_LATENCY = 20  # stable requests before latencies are compared


# =================================================================================================
# Drift
# =================================================================================================
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
        counts = np.bincount(
            np.searchsorted(self.inner, valid, side="right"), minlength=self.n_bins
        )
        return {"counts": counts.tolist(), "nulls": nulls}

    def _count_numeric_small(self, values: list[Any]) -> dict[str, Any]:
        counts = [0] * self.n_bins
        nulls = 0
        for v in values:
            if v is None or v != v:  # null or NaN
                nulls += 1
            elif self.n_bins:
                # bisect_right is searchsorted(side="right"): an inner edge goes to the bin above.
                counts[bisect.bisect_right(self.inner_list, float(v))] += 1
        return {"counts": counts, "nulls": nulls}

    def _count_categorical(self, col: pa.ChunkedArray) -> dict[str, Any]:
        assert self.value_set is not None
        if not pa.types.is_string(col.type):
            col = pc.cast(col, pa.string())  # bools -> "true"/"false", ints -> decimal
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
            if isinstance(v, bool):  # written as Arrow casts it, as reference_stats did
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
            inner = np.asarray(edges, dtype=np.float64)[1:-1]
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

    Numeric features are binned exactly as `ray_ml.train.bin_fractions` bins the training data
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


# =================================================================================================
# Canary
# =================================================================================================
class CanaryAction(enum.StrEnum):
    PROMOTE = "promote"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class CanaryDecision:
    """What to do with the canary, and why.

    Attributes:
        action: `promote` or `rollback` (a str enum: compares equal to the plain string).
        reason: One human-readable line with the numbers behind the decision.
    """

    action: CanaryAction
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"action": self.action.value, "reason": self.reason}


class _RoleStats:
    __slots__ = ("errors", "latencies", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.latencies: deque[float] = deque(maxlen=_MAX_LATENCIES)

    def percentiles(self, *qs: float) -> list[float | None]:
        if not self.latencies:
            return [None] * len(qs)
        return np.percentile(np.fromiter(self.latencies, np.float64), qs).tolist()

    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


class CanaryJudge:
    """Decides whether a canary version is promoted or rolled back (state side).

    Requests count as errors when `ok` is false (the service passes `status < 500`: client
    errors are not the model's fault). Latencies of all requests, failed ones included, are kept
    (the newest 10,000 per role) for the p95 comparison.

    `decide()` answers None until the canary has `min_requests` requests, then:

    * rollback when the canary error rate exceeds `max_error_rate`;
    * rollback when the canary p95 latency exceeds `max_latency_ratio` times the stable p95
      (only compared once stable has at least 20 requests; before that latency is not judged);
    * promote otherwise.

    Early rollback: from the canary's 10th request on, once its errors alone exceed
    `max_error_rate * min_requests` (so the error rate at `min_requests` must exceed the bound
    whatever the remaining requests do), it is rolled back without waiting.

    The first decision is final until `reset()`: later requests do not re-judge it, so the
    controller acts exactly once per canary.

    Args:
        min_requests: Canary requests needed before promoting.
        max_error_rate: Highest acceptable canary error rate, in [0, 1].
        max_latency_ratio: Highest acceptable canary p95 / stable p95.

    Raises:
        ValueError: A bad argument.
    """

    def __init__(self, min_requests: int, max_error_rate: float, max_latency_ratio: float) -> None:
        if int(min_requests) < 1:
            raise ValueError(f"min_requests must be positive, but got min_requests={min_requests}.")
        if not 0.0 <= max_error_rate <= 1.0:
            raise ValueError(
                f"max_error_rate must be in [0, 1], but got max_error_rate={max_error_rate}."
            )
        if not (max_latency_ratio > 0 and math.isfinite(max_latency_ratio)):
            raise ValueError(
                "max_latency_ratio must be a positive number, but got "
                f"max_latency_ratio={max_latency_ratio}."
            )
        self.min_requests = int(min_requests)
        self.max_error_rate = float(max_error_rate)
        self.max_latency_ratio = float(max_latency_ratio)
        self._lock = threading.Lock()
        self._roles = {role: _RoleStats() for role in ROLES}
        self._decision: CanaryDecision | None = None

    def _role(self, role: str) -> _RoleStats:
        stats = self._roles.get(role)
        if stats is None:
            raise ValueError(f"role must be one of {list(ROLES)}, but got role={role!r}.")
        return stats

    def record(self, role: str, ok: bool, latency_s: float) -> None:
        """Record one request of `role` ("stable" or "canary")."""
        self.record_many(role, [ok], [latency_s])

    def record_many(self, role: str, oks: Sequence[bool], latencies: Sequence[float]) -> None:
        """Record several requests of `role`; `oks[i]` and `latencies[i]` describe request i.

        Raises:
            ValueError: Unknown role, or the two lists differ in length.
        """
        stats = self._role(role)
        if len(oks) != len(latencies):
            raise ValueError(
                f"record_many: oks has {len(oks)} entries but latencies has {len(latencies)}; "
                "pass one of each per request."
            )
        with self._lock:
            stats.requests += len(oks)
            stats.errors += sum(1 for ok in oks if not ok)
            stats.latencies.extend(float(x) for x in latencies)

    def record_delta(
        self, delta: Mapping[str, Any], versions: Mapping[str, str | None] | None = None
    ) -> None:
        """Record the per-request samples of a `MetricsDelta.drain()` result.

        Args:
            delta: The drained delta.
            versions: The version each role is judged for (e.g. `{"stable": "1", "canary":
                "2"}`); samples of other versions (requests of a previous canary that finished
                after the routing changed) are left out. None keeps every sample.
        """
        for role, s in delta.get("samples", {}).items():
            oks, lats = s["ok"], s["latency_s"]
            if versions is not None and "version" in s:
                want = versions.get(role)
                keep = [i for i, v in enumerate(s["version"]) if v == want]
                oks, lats = [oks[i] for i in keep], [lats[i] for i in keep]
            if oks:
                self.record_many(role, oks, lats)

    @property
    def decision(self) -> CanaryDecision | None:
        """The decision taken so far (None while undecided)."""
        return self._decision

    def decide(self) -> CanaryDecision | None:
        """Judge the canary; None while it has too few requests. See the class docstring."""
        with self._lock:
            if self._decision is None:
                self._decision = self._judge()
            return self._decision

    def _judge(self) -> CanaryDecision | None:
        canary, stable = self._roles[CANARY], self._roles[STABLE]
        n, errors = canary.requests, canary.errors
        rate_text = f"canary error rate {canary.error_rate():.1%} ({errors}/{n})"
        budget = self.max_error_rate * self.min_requests
        if _EARLY_MIN_REQUESTS <= n < self.min_requests and errors > budget:
            return CanaryDecision(
                CanaryAction.ROLLBACK,
                f"{rate_text}: {errors} errors already exceed {self.max_error_rate:.1%} of "
                f"min_requests={self.min_requests} ({budget:g}); rolled back early",
            )
        if n < self.min_requests:
            return None
        if canary.error_rate() > self.max_error_rate:
            return CanaryDecision(CanaryAction.ROLLBACK, f"{rate_text} > {self.max_error_rate:.1%}")
        rate_ok = f"{rate_text} <= {self.max_error_rate:.1%}"
        if stable.requests < _MIN_STABLE_FOR_LATENCY:
            return CanaryDecision(
                CanaryAction.PROMOTE,
                f"{rate_ok}; latency not compared (stable has {stable.requests} < "
                f"{_MIN_STABLE_FOR_LATENCY} requests)",
            )
        (c95,), (s95,) = canary.percentiles(95), stable.percentiles(95)
        assert c95 is not None and s95 is not None
        limit = self.max_latency_ratio * s95
        latency_text = (
            f"canary p95 latency {c95 * 1e3:.1f} ms {{op}} {self.max_latency_ratio:g} x "
            f"stable p95 {s95 * 1e3:.1f} ms"
        )
        if c95 > limit:
            return CanaryDecision(CanaryAction.ROLLBACK, latency_text.format(op=">"))
        return CanaryDecision(CanaryAction.PROMOTE, f"{rate_ok} and {latency_text.format(op='<=')}")

    def stats(self) -> dict[str, Any]:
        """Counts, error rates and p50/p95 latency (seconds, None without samples) per role."""
        with self._lock:
            out: dict[str, Any] = {}
            for role, s in self._roles.items():
                p50, p95 = s.percentiles(50, 95)
                out[role] = {
                    "requests": s.requests,
                    "errors": s.errors,
                    "error_rate": s.error_rate(),
                    "p50_s": p50,
                    "p95_s": p95,
                }
            out["decision"] = None if self._decision is None else self._decision.to_dict()
            return out

    def reset(self) -> None:
        """Forget everything, for a new canary."""
        with self._lock:
            self._roles = {role: _RoleStats() for role in ROLES}
            self._decision = None


# =================================================================================================
# Metrics
# =================================================================================================
def _label(value: Any) -> str:
    """A class value as a label, written the way `reference_stats` writes categories."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return str(value)


class MetricsDelta:
    """Per-replica request and prediction counts since the last `drain()` (replica side).

    Besides the aggregated counters it keeps each request's outcome (`status < 500`) and latency
    per role for the `CanaryJudge` (at most `max_samples` per role and flush; 4xx answers are
    left out, as a client's bad request says nothing about the model); see
    `CanaryJudge.record_delta`.

    Args:
        max_samples: Most per-request samples kept per role between two drains.
    """

    def __init__(self, max_samples: int = _MAX_LATENCIES) -> None:
        self._lock = threading.Lock()
        self._max_samples = int(max_samples)
        self._clear()

    def _clear(self) -> None:
        self._requests: dict[tuple[str, str, int], int] = {}
        self._latency: dict[tuple[str, str], list[Any]] = {}  # [bucket counts, sum]
        self._predictions: dict[tuple[str, str], int] = {}
        self._samples: dict[str, tuple[list[bool], list[float], list[str]]] = {}

    def record_request(self, version: str, role: str, status: int, latency_s: float) -> None:
        """Count one answered request: its model version, role, HTTP status and latency."""
        latency_s = float(latency_s)
        key = (str(version), str(role))
        # Prometheus buckets are `le` (value <= bound): bisect_left finds the first bound >= x.
        bucket = bisect.bisect_left(LATENCY_BUCKETS, latency_s)
        with self._lock:
            rkey = (key[0], key[1], int(status))
            self._requests[rkey] = self._requests.get(rkey, 0) + 1
            hist = self._latency.get(key)
            if hist is None:
                hist = self._latency[key] = [[0] * _N_BUCKETS, 0.0]
            hist[0][bucket] += 1
            hist[1] += latency_s
            # A client's bad request (4xx) says nothing about the model: no canary sample.
            if not 400 <= int(status) < 500:
                oks, lats, versions = self._samples.setdefault(key[1], ([], [], []))
                if len(oks) < self._max_samples:
                    oks.append(int(status) < 500)
                    lats.append(latency_s)
                    versions.append(str(version))

    def record_predictions(self, version: str, predictions: Sequence[Any]) -> None:
        """Count predicted classes (as strings); pass an empty list for regression."""
        if not predictions:
            return
        with self._lock:
            for p in predictions:
                key = (str(version), _label(p))
                self._predictions[key] = self._predictions.get(key, 0) + 1

    @property
    def empty(self) -> bool:
        """Whether nothing was recorded since the last drain (the flush can be skipped)."""
        return not (self._requests or self._predictions)

    def drain(self) -> dict[str, Any]:
        """Everything recorded since the last drain, as a JSON-able dict, and start afresh.

        Returns:
            `{"requests": [{"version", "role", "code", "count"}], "latency": [{"version", "role",
            "buckets": [count per LATENCY_BUCKETS bound, then +Inf; not cumulative], "sum",
            "count"}], "predictions": [{"version", "class", "count"}], "samples": {role: {"ok":
            [bool], "latency_s": [float]}}}`.
        """
        with self._lock:
            requests, latency = self._requests, self._latency
            predictions, samples = self._predictions, self._samples
            self._clear()
        return {
            "requests": [
                {"version": v, "role": r, "code": c, "count": n}
                for (v, r, c), n in requests.items()
            ],
            "latency": [
                {"version": v, "role": r, "buckets": b, "sum": s, "count": sum(b)}
                for (v, r), (b, s) in latency.items()
            ],
            "predictions": [
                {"version": v, "class": c, "count": n} for (v, c), n in predictions.items()
            ],
            "samples": {
                role: {"ok": oks, "latency_s": lats, "version": vs}
                for role, (oks, lats, vs) in samples.items()
            },
        }


class ServeMetrics:
    """The service's aggregated metrics and their Prometheus page (state side).

    Series (all counters since the state holder started):

    * `ray_ml_serve_requests_total{version, role, code}`
    * `ray_ml_serve_request_errors_total{version, role}`: requests answered with status >= 500
    * `ray_ml_serve_request_latency_seconds{version, role}`: histogram, `LATENCY_BUCKETS`
    * `ray_ml_serve_predictions_total{version, class}`
    * `ray_ml_serve_drift_psi{feature}` and `ray_ml_serve_drift_alert{feature}` (0/1), gauges
      from the latest `set_drift` report; a feature with too few rows has no PSI series.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = {}
        self._latency: dict[tuple[str, str], tuple[list[int], float]] = {}
        self._predictions: dict[tuple[str, str], int] = {}
        self._drift: dict[str, tuple[float | None, bool]] = {}
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_ServeCollector(self))

    def merge(self, delta: Mapping[str, Any]) -> None:
        """Add one replica's `MetricsDelta.drain()` result.

        Raises:
            ValueError: The delta is malformed (nothing is added then).
        """
        try:
            requests = [
                ((str(d["version"]), str(d["role"]), str(int(d["code"]))), int(d["count"]))
                for d in delta.get("requests", ())
            ]
            latency = [
                (
                    (str(d["version"]), str(d["role"])),
                    [int(x) for x in d["buckets"]],
                    float(d["sum"]),
                )
                for d in delta.get("latency", ())
            ]
            predictions = [
                ((str(d["version"]), str(d["class"])), int(d["count"]))
                for d in delta.get("predictions", ())
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"ServeMetrics.merge: malformed delta ({type(exc).__name__}: {exc}); pass the "
                "result of MetricsDelta.drain()."
            ) from None
        for key, buckets, _ in latency:
            if len(buckets) != _N_BUCKETS:
                raise ValueError(
                    f"ServeMetrics.merge: latency of {key} has {len(buckets)} buckets, expected "
                    f"{_N_BUCKETS}; replica and state holder run different ray_ml versions."
                )
        with self._lock:
            for rkey, n in requests:
                self._requests[rkey] = self._requests.get(rkey, 0) + n
            for lkey, buckets, total in latency:
                old = self._latency.get(lkey)
                if old is not None:
                    buckets = [a + b for a, b in zip(old[0], buckets, strict=True)]
                    total += old[1]
                self._latency[lkey] = (buckets, total)
            for pkey, n in predictions:
                self._predictions[pkey] = self._predictions.get(pkey, 0) + n

    def set_drift(self, report: Mapping[str, Any]) -> None:
        """Replace the drift gauges with those of a `DriftWindow.report()`."""
        drift = {
            str(name): (f.get("psi"), bool(f.get("drifted")))
            for name, f in report.get("features", {}).items()
        }
        with self._lock:
            self._drift = drift

    def render(self) -> bytes:
        """The Prometheus text exposition of all series (serve with `CONTENT_TYPE`)."""
        return generate_latest(self._registry)

    def snapshot(self) -> dict[str, Any]:
        """JSON-able totals: `{"requests", "errors", "versions": {version: {"requests",
        "errors", "codes": {code: n}, "roles": {role: {"requests", "errors",
        "mean_latency_s"}}, "predictions": {class: n}}}}`."""
        with self._lock:
            versions: dict[str, dict[str, Any]] = {}

            def version(v: str) -> dict[str, Any]:
                return versions.setdefault(
                    v, {"requests": 0, "errors": 0, "codes": {}, "roles": {}, "predictions": {}}
                )

            for (v, role, code), n in sorted(self._requests.items()):
                entry = version(v)
                err = n if int(code) >= 500 else 0
                entry["requests"] += n
                entry["errors"] += err
                entry["codes"][code] = entry["codes"].get(code, 0) + n
                r = entry["roles"].setdefault(
                    role, {"requests": 0, "errors": 0, "mean_latency_s": None}
                )
                r["requests"] += n
                r["errors"] += err
            for (v, role), (buckets, total) in sorted(self._latency.items()):
                count = sum(buckets)
                r = version(v)["roles"].setdefault(
                    role, {"requests": 0, "errors": 0, "mean_latency_s": None}
                )
                r["mean_latency_s"] = total / count if count else None
            for (v, cls), n in sorted(self._predictions.items()):
                version(v)["predictions"][cls] = n
        return {
            "requests": sum(e["requests"] for e in versions.values()),
            "errors": sum(e["errors"] for e in versions.values()),
            "versions": versions,
        }

    def _families(self) -> Iterator[Metric]:
        with self._lock:
            requests = sorted(self._requests.items())
            latency = sorted(self._latency.items())
            predictions = sorted(self._predictions.items())
            drift = sorted(self._drift.items())
        req = CounterMetricFamily(
            "ray_ml_serve_requests", "Requests answered.", labels=["version", "role", "code"]
        )
        errors: dict[tuple[str, str], int] = {}
        for (v, role, code), n in requests:
            req.add_metric([v, role, code], n)
            errors[(v, role)] = errors.get((v, role), 0) + (n if int(code) >= 500 else 0)
        yield req
        err = CounterMetricFamily(
            "ray_ml_serve_request_errors",
            "Requests answered with a status >= 500.",
            labels=["version", "role"],
        )
        for (v, role), n in sorted(errors.items()):
            err.add_metric([v, role], n)
        yield err
        hist = HistogramMetricFamily(
            "ray_ml_serve_request_latency_seconds",
            "Request latency in seconds, as measured by the replica.",
            labels=["version", "role"],
        )
        bounds = [floatToGoString(b) for b in (*LATENCY_BUCKETS, math.inf)]
        for (v, role), (buckets, total) in latency:
            cumulative = np.cumsum(buckets).tolist()
            hist.add_metric([v, role], list(zip(bounds, cumulative, strict=True)), total)
        yield hist
        pred = CounterMetricFamily(
            "ray_ml_serve_predictions", "Predicted classes.", labels=["version", "class"]
        )
        for (v, cls), n in predictions:
            pred.add_metric([v, cls], n)
        yield pred
        psi = GaugeMetricFamily(
            "ray_ml_serve_drift_psi",
            "Population stability index of a feature over the drift window.",
            labels=["feature"],
        )
        alert = GaugeMetricFamily(
            "ray_ml_serve_drift_alert",
            "1 while a feature is flagged as drifted.",
            labels=["feature"],
        )
        for name, (value, drifted) in drift:
            if value is not None:
                psi.add_metric([name], float(value))
            alert.add_metric([name], 1.0 if drifted else 0.0)
        yield psi
        yield alert


class _ServeCollector(Collector):
    def __init__(self, metrics: ServeMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics._families()
