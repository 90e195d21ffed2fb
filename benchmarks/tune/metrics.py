"""The protocol's metrics: pure functions on a replay's reports, and bootstrap intervals.

Numpy only. Conventions: a *score* is `sign * metric` (bigger is better, `sign` = +1 for `max`
tables, -1 for `min`); dollars are the sweep's billed spend (`Replay.spent_usd`) at each report;
the *incumbent* after a report is the report with the best validation score so far (first one
on ties), and what is reported for it is its *test* metric: winners are chosen on validation
and judged on test.

- `cost_to_target`: dollars spent when the incumbent's validation score first reaches the
  table's top-1% validation score (`target_score`); None when the run never does (censored).
- `incumbent_at`: the incumbent's test score at given dollar budgets.
- `normalized_regret`: `(best - score) / (best - median)` of test scores against the table's best
  and median config (0 = the best config, 1 = a median one), comparable across tables.
- `regret_auc`: the cost-adjusted simple regret, the mean over the budget's dollars of
  `min(1, normalized regret)` of the incumbent (1 before the first report); lower is better.
- `pareto_mask`, `hypervolume_2d`: the 2-D front (both axes minimized) and its hypervolume.
- `overspend`: spend beyond the budget as a share of it.
- `geometric_mean`, `bootstrap_geomean`, `bootstrap_ratio`, `bootstrap_mean_diff`: aggregates over seeds and tasks
  with percentile bootstrap intervals (seeds resampled within each task).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "bootstrap_geomean",
    "bootstrap_mean_diff",
    "bootstrap_ratio",
    "cost_to_target",
    "geometric_mean",
    "hypervolume_2d",
    "incumbent_at",
    "incumbent_trace",
    "log_normalize",
    "normalized_regret",
    "overspend",
    "pareto_mask",
    "regret_auc",
    "target_score",
]


def target_score(final_scores: np.ndarray, top: float = 0.01) -> float:
    """The score a config needs to be in the table's top `top` share (by validation).

    Args:
        final_scores: Every config's validation score at its last step (`sign * val`).
        top: The share, e.g. 0.01 for the top 1%.

    Returns:
        The score of the `ceil(top * n)`-th best config: at least that many configs reach it.
    """
    s = np.sort(np.asarray(final_scores, dtype=float))[::-1]
    k = max(1, math.ceil(top * len(s)))
    return float(s[k - 1])


def incumbent_trace(
    val_scores: np.ndarray, test_scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The incumbent's validation and test scores after each report (reports in time order)."""
    val = np.asarray(val_scores, dtype=float)
    test = np.asarray(test_scores, dtype=float)
    if len(val) == 0:
        return val, test
    best = np.maximum.accumulate(val)
    # The first report that set each running best: its index, carried forward.
    is_new = np.concatenate([[True], val[1:] > best[:-1]])
    idx = np.maximum.accumulate(np.where(is_new, np.arange(len(val)), 0))
    return best, test[idx]


def cost_to_target(spent_usd: np.ndarray, val_scores: np.ndarray, target: float) -> float | None:
    """Dollars spent at the first report whose validation score reaches `target`, or None.

    Args:
        spent_usd: The sweep's spend at each report (non-decreasing).
        val_scores: Validation scores of the reports.
        target: The score to reach (`target_score`).

    Returns:
        The spend then, or None (censored: the run never reached the target).
    """
    hit = np.flatnonzero(np.asarray(val_scores, dtype=float) >= target)
    return float(np.asarray(spent_usd, dtype=float)[hit[0]]) if len(hit) else None


def incumbent_at(
    spent_usd: np.ndarray,
    val_scores: np.ndarray,
    test_scores: np.ndarray,
    budgets_usd: Sequence[float],
) -> list[float | None]:
    """The incumbent's test score with `b` dollars spent, for each `b` (None before a report)."""
    spent = np.asarray(spent_usd, dtype=float)
    _, inc_test = incumbent_trace(val_scores, test_scores)
    out: list[float | None] = []
    for b in budgets_usd:
        i = int(np.searchsorted(spent, b, side="right")) - 1
        out.append(float(inc_test[i]) if i >= 0 else None)
    return out


def normalized_regret(scores: np.ndarray | float, best: float, median: float) -> np.ndarray:
    """`(best - score) / (best - median)`: 0 at the table's best config, 1 at a median one."""
    scale = best - median
    if not scale > 0:
        scale = 1.0  # a flat table: every config is as good as the best
    return (best - np.asarray(scores, dtype=float)) / scale


def regret_auc(
    spent_usd: np.ndarray, regrets: np.ndarray, budget_usd: float, cap: float = 1.0
) -> float:
    """Mean over [0, budget] dollars of the capped regret, a step function of spend.

    Args:
        spent_usd: Spend at each report (non-decreasing).
        regrets: The incumbent's normalized regret after each report.
        budget_usd: The budget; spend beyond it is not counted.
        cap: Regret is capped here, and is `cap` before the first report.

    Returns:
        A number in [0, cap]; lower is better.
    """
    spent = np.minimum(np.asarray(spent_usd, dtype=float), budget_usd)
    r = np.minimum(np.asarray(regrets, dtype=float), cap)
    edges = np.concatenate([[0.0], spent, [budget_usd]])
    levels = np.concatenate([[cap], r])
    return float(np.sum(np.diff(edges) * levels) / budget_usd)


def pareto_mask(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """True for points no other point dominates (both axes minimized; duplicates both kept)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    mask = np.ones(len(x), dtype=bool)
    for i in range(len(x)):
        dominated = (x <= x[i]) & (y <= y[i]) & ((x < x[i]) | (y < y[i]))
        mask[i] = not dominated.any()
    return mask


def hypervolume_2d(points: np.ndarray, ref: tuple[float, float] = (1.0, 1.0)) -> float:
    """Area dominated by `points` (both axes minimized) and bounded by `ref`.

    Args:
        points: `(n, 2)` array; points not better than `ref` on both axes add nothing.
        ref: The reference point.

    Returns:
        The hypervolume (0 for no points).
    """
    p = np.asarray(points, dtype=float).reshape(-1, 2)
    p = p[(p[:, 0] < ref[0]) & (p[:, 1] < ref[1])]
    if len(p) == 0:
        return 0.0
    p = p[np.lexsort((p[:, 1], p[:, 0]))]  # by x, then y
    area, y_prev = 0.0, ref[1]
    for x, y in p:
        if y < y_prev:
            area += (ref[0] - x) * (y_prev - y)
            y_prev = y
    return float(area)


def log_normalize(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """`values` placed in [0, 1] on a log scale between `low` and `high` (clipped)."""
    v = np.maximum(np.asarray(values, dtype=float), 1e-300)
    lo, hi = math.log(max(low, 1e-300)), math.log(max(high, 1e-300))
    if not hi > lo:
        return np.zeros_like(v)
    return np.clip((np.log(v) - lo) / (hi - lo), 0.0, 1.0)


def overspend(spent_usd: float, budget_usd: float) -> float:
    """Spend beyond the budget as a share of it; 0 within budget."""
    return max(0.0, spent_usd - budget_usd) / budget_usd


def geometric_mean(values: Sequence[float] | np.ndarray) -> float:
    """The geometric mean of positive values (NaN for none)."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return float("nan")
    return float(np.exp(np.mean(np.log(np.maximum(v, 1e-300)))))


def bootstrap_geomean(
    values: Sequence[float] | np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """The geometric mean of positive values, with a percentile bootstrap interval.

    Returns:
        (point estimate, lower bound, upper bound).
    """
    logs = np.log(np.maximum(np.asarray(values, dtype=float), 1e-300))
    rng = np.random.default_rng(seed)
    reps = logs[rng.integers(len(logs), size=(n_boot, len(logs)))].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(reps, [alpha, 1 - alpha])
    return float(np.exp(logs.mean())), float(np.exp(lo)), float(np.exp(hi))


def _geo_ratio(baselines: Sequence[Sequence[np.ndarray]], ours: Sequence[np.ndarray]) -> float:
    # Per task: the best (cheapest) baseline's geometric mean over ours; then over tasks.
    logs = [
        min(np.mean(np.log(b)) for b in task_baselines) - np.mean(np.log(o))
        for task_baselines, o in zip(baselines, ours, strict=True)
    ]
    return float(np.exp(np.mean(logs)))


def bootstrap_ratio(
    baselines: Sequence[Sequence[np.ndarray]],
    ours: Sequence[np.ndarray],
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """How many times cheaper ours is than the best baseline, with a bootstrap interval.

    Per task, the ratio of geometric means over seeds, best baseline (the cheapest of its
    variants in that task) over ours; the statistic is the geometric mean over tasks. The
    interval resamples each task's seeds with replacement, each method independently, and
    recomputes everything (the best variant included).

    Args:
        baselines: Per task, per baseline variant, the positive costs over seeds.
        ours: Per task, our positive costs over seeds.
        n_boot: Bootstrap replicates.
        seed: Seed of the resampling.
        level: Coverage of the interval.

    Returns:
        (point estimate, lower bound, upper bound).
    """
    base = [[np.asarray(b, dtype=float) for b in task] for task in baselines]
    mine = [np.asarray(o, dtype=float) for o in ours]
    point = _geo_ratio(base, mine)
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for i in range(n_boot):
        rb = [[b[rng.integers(len(b), size=len(b))] for b in task] for task in base]
        ro = [o[rng.integers(len(o), size=len(o))] for o in mine]
        reps[i] = _geo_ratio(rb, ro)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(reps, [alpha, 1 - alpha])
    return point, float(lo), float(hi)


def bootstrap_mean_diff(
    ours: Sequence[np.ndarray],
    other: Sequence[np.ndarray],
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """Mean over tasks of (our mean - the other's mean), with a bootstrap interval.

    Args:
        ours: Per task, our values over seeds.
        other: Per task, the other method's values over seeds.
        n_boot: Bootstrap replicates (seeds resampled within each task, each method apart).
        seed: Seed of the resampling.
        level: Coverage of the interval.

    Returns:
        (point estimate, lower bound, upper bound).
    """
    a = [np.asarray(x, dtype=float) for x in ours]
    b = [np.asarray(x, dtype=float) for x in other]
    point = float(np.mean([x.mean() - y.mean() for x, y in zip(a, b, strict=True)]))
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for i in range(n_boot):
        reps[i] = np.mean(
            [
                x[rng.integers(len(x), size=len(x))].mean()
                - y[rng.integers(len(y), size=len(y))].mean()
                for x, y in zip(a, b, strict=True)
            ]
        )
    alpha = (1 - level) / 2
    lo, hi = np.quantile(reps, [alpha, 1 - alpha])
    return point, float(lo), float(hi)
