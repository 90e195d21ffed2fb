"""What a sweep found: the leaderboard, the Pareto front and the winning trial. Pure Python.

Every function takes the sweep's trial records, plain dicts with at least:

| key                    | meaning                                                          |
|------------------------|------------------------------------------------------------------|
| `trial_id`             | the Tune trial id                                                |
| `status`               | `completed`, `pruned`, `failed`, `budget_stopped` or `running`   |
| `config`               | tuned params, dotted keys (nested dicts are flattened with dots) |
| `metrics`              | the last reported metrics, including the sweep's metric          |
| `iterations`           | reports done                                                     |
| `pruned_at_rung`       | the scheduler rung (iteration) it was stopped at, or None        |
| `cost_usd`             | billed dollars                                                   |
| `algorithmic_cost_usd` | dollars of CPU time the search itself needed                     |
| `waste_usd`            | billed dollars that bought nothing                               |
| `wall_s`               | wall seconds                                                     |
| `latency_ms`           | inference latency (p95 per request), or None when not measured   |
| `checkpoint`           | optional: where its last checkpoint is, or None                  |

**Which trials can win** (and sit on the Pareto front): `completed` trials, and
`budget_stopped` trials that have a `checkpoint`, both with a finite value of the metric. A
trial the budget stopper ended mid-training was measured on a real validation pass and left a
model to promote, so ruling it out would throw away paid-for work; without a checkpoint there
is nothing to promote. The driver should report, for such a trial, the metric of its last
checkpoint. `pruned` trials are out: the scheduler judged them at a rung, under-trained, on
purpose. `failed` and `running` trials are out.

Example:
    >>> records = [
    ...     {"trial_id": "a", "status": "completed", "config": {"train.lr": 0.1},
    ...      "metrics": {"val_loss": 0.30}, "cost_usd": 1.0, "latency_ms": 5.0},
    ...     {"trial_id": "b", "status": "completed", "config": {"train.lr": 0.01},
    ...      "metrics": {"val_loss": 0.31}, "cost_usd": 0.2, "latency_ms": 5.0},
    ... ]
    >>> choose_winner(records, "cheapest_within_eps", "val_loss", "min", eps=0.02).trial_id
    'b'
    >>> [r["trial_id"] for r in pareto_front(records, default_objectives("val_loss", "min"))]
    ['a', 'b']
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray_ml._json import finite_number
from ray_ml.config import SortMode, WinnerRule
from ray_ml.errors import ConfigError, RayMLError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ELIGIBLE_STATUSES",
    "Leaderboard",
    "NoWinnerError",
    "Winner",
    "choose_winner",
    "default_objectives",
    "eligible",
    "pareto_front",
]

ELIGIBLE_STATUSES = ("completed", "budget_stopped")  # budget_stopped needs a checkpoint
_STATUSES = ("completed", "pruned", "failed", "budget_stopped", "running")
# Relative slack when comparing a metric with `best ± eps`: values that are equal up to float
# round-off (0.1 + 0.2 vs 0.3) must count as within the tolerance.
_REL_TOL = 1e-9
# Record fields shown as leaderboard columns, in order, after rank, trial_id and status.
_FIELDS = (
    "cost_usd",
    "algorithmic_cost_usd",
    "waste_usd",
    "wall_s",
    "latency_ms",
    "iterations",
    "pruned_at_rung",
    "checkpoint",  # in the files, not in the Markdown table
)


class NoWinnerError(RayMLError):
    """No trial of a sweep can be chosen: none finished, or none meets the winner rule."""


@dataclass(frozen=True)
class Winner:
    """The trial a winner rule picked, and why.

    Attributes:
        trial_id: The winning trial's id.
        record: Its trial record, as given.
        rule: The rule that picked it.
        value: Its value of the metric.
        reason: One line for logs and reports, e.g. "cheapest trial within eps=0.01 ...".
    """

    trial_id: str
    record: Mapping[str, Any]
    rule: WinnerRule
    value: float
    reason: str


# ------------------------------------------------------------------------------- helpers
def _mode(mode: SortMode | str) -> SortMode:
    try:
        return SortMode(mode)
    except ValueError:
        raise ConfigError(
            f"`mode` must be one of min, max, but got mode={mode!r}. Fix: use `min` for a "
            "loss, `max` for a score such as ROC-AUC."
        ) from None


def _status(record: Mapping[str, Any]) -> str:
    status = record.get("status")
    return str(status.value if isinstance(status, Enum) else status)


def _metric(record: Mapping[str, Any], metric: str) -> float | None:
    metrics = record.get("metrics") or {}
    return finite_number(metrics.get(metric))


def _value(record: Mapping[str, Any], name: str) -> float | None:
    """An objective's value: a record field such as `cost_usd`, else a reported metric."""
    if name in record:
        return finite_number(record[name])
    return _metric(record, name)


def _cost(record: Mapping[str, Any]) -> float:
    cost = finite_number(record.get("cost_usd"))
    return math.inf if cost is None else cost  # unknown cost never wins a cost tie


def _sign(mode: SortMode) -> float:
    # Every comparison below minimizes `sign * value`.
    return 1.0 if mode is SortMode.min else -1.0


def eligible(records: Sequence[Mapping[str, Any]], metric: str) -> list[Mapping[str, Any]]:
    """The records that may win: see "Which trials can win" in the module docstring.

    Args:
        records: Trial records.
        metric: The sweep's metric; records without a finite value are left out.

    Returns:
        The eligible records, in the given order.
    """
    out = []
    for record in records:
        status = _status(record)
        if status not in ELIGIBLE_STATUSES:
            continue
        if status == "budget_stopped" and not record.get("checkpoint"):
            continue
        if _metric(record, metric) is None:
            continue
        out.append(record)
    return out


def flatten_mapping(values: Mapping[str, Any], sep: str = ".") -> dict[str, Any]:
    """Nested mappings as one level, keys joined by `sep` (`{"a": {"b": 1}}` -> `{"a.b": 1}`)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out.update({f"{key}{sep}{k}": v for k, v in flatten_mapping(value, sep).items()})
        else:
            out[str(key)] = value
    return out


def _flatten(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _cell(v) for k, v in flatten_mapping(config).items()}


def _cell(value: Any) -> Any:
    # Lists (hidden sizes) become the same JSON strings `SearchSpace.to_tune` sends to Tune, so a
    # column holds one type and Parquet can store it.
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=str)
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and not isinstance(value, str | bytes):
        try:
            return item()
        except (TypeError, ValueError):
            return value
    return value


def _no_trial_error(records: Sequence[Mapping[str, Any]], metric: str) -> NoWinnerError:
    counts: dict[str, int] = {}
    for record in records:
        counts[_status(record)] = counts.get(_status(record), 0) + 1
    seen = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no trials at all"
    missing = [
        str(r.get("trial_id"))
        for r in records
        if _status(r) in ELIGIBLE_STATUSES and _metric(r, metric) is None
    ]
    hint = (
        f" Trials {', '.join(missing[:5])} finished without reporting `{metric}`: check that "
        "the training loop reports it (and the spelling of `tune.metric`)."
        if missing
        else ""
    )
    return NoWinnerError(
        f"no trial can win: a winner must be completed (or budget_stopped with a checkpoint) "
        f"and report a finite `{metric}`, but the sweep has {seen}.{hint} Likely causes: every "
        "trial failed (see their error files), the budget ran out before any trial finished "
        "(raise `tune.budget_usd`), or the metric name is wrong."
    )


# ------------------------------------------------------------------------------ winner
def choose_winner(
    records: Sequence[Mapping[str, Any]],
    rule: WinnerRule | str,
    metric: str,
    mode: SortMode | str,
    eps: float = 0.0,
    latency_bound_ms: float | None = None,
) -> Winner:
    """Pick the sweep's winning trial; the same records always give the same winner.

    Rules (only eligible trials take part, see the module docstring):

    - `best`: the best metric; ties go to the lower `cost_usd`, then the smaller trial id.
    - `cheapest_within_eps`: the cheapest trial whose metric is within `eps` (absolute, in
      metric units) of the best; ties go to the better metric, then the smaller trial id.
    - `best_under_latency`: the best metric among trials with `latency_ms <= latency_bound_ms`;
      ties as for `best`. Trials whose latency was not measured do not qualify.

    A trial without a `cost_usd` counts as infinitely expensive when costs are compared.

    Args:
        records: Trial records.
        rule: A `WinnerRule` or its value.
        metric: The sweep's metric, e.g. `val_loss`.
        mode: `min` or `max`.
        eps: Tolerance of `cheapest_within_eps`; must be >= 0.
        latency_bound_ms: Bound of `best_under_latency`; required for it.

    Returns:
        The winner and a one-line reason.

    Raises:
        ConfigError: An unknown rule or mode, a negative `eps`, or no bound for
            `best_under_latency`.
        NoWinnerError: No trial is eligible, or none meets the latency bound (the message
            names the bound and the fastest trial).
    """
    try:
        rule = WinnerRule(rule)
    except ValueError:
        choices = ", ".join(r.value for r in WinnerRule)
        raise ConfigError(
            f"`tune.winner_rule` must be one of {choices}, but got {rule!r}. Fix: use one of those."
        ) from None
    sort_mode = _mode(mode)
    eps_value = finite_number(eps)
    if eps_value is None or eps_value < 0:
        raise ConfigError(
            f"`tune.winner_eps` must be a finite number >= 0, but got eps={eps!r}. Fix: give "
            "the tolerance in metric units, e.g. 0.01."
        )
    if rule is WinnerRule.best_under_latency and finite_number(latency_bound_ms) is None:
        raise ConfigError(
            "`tune.latency_bound_ms` is required when tune.winner_rule=best_under_latency, but "
            f"got latency_bound_ms={latency_bound_ms!r}. Fix: set e.g. `tune.latency_bound_ms=50`."
        )
    pool = eligible(records, metric)
    if not pool:
        raise _no_trial_error(records, metric)
    sign = _sign(sort_mode)

    def by_metric(r: Mapping[str, Any]) -> tuple[float, float, str]:
        return (sign * _metric(r, metric), _cost(r), str(r.get("trial_id")))  # type: ignore[operator]

    if rule is WinnerRule.best:
        top = min(pool, key=by_metric)
        value = _metric(top, metric)
        assert value is not None  # eligible() keeps finite metrics only
        return Winner(
            str(top.get("trial_id")),
            top,
            rule,
            value,
            f"best {metric}={value:.6g} ({sort_mode.value}) of {len(pool)} eligible trials",
        )
    if rule is WinnerRule.cheapest_within_eps:
        best = min(sign * _metric(r, metric) for r in pool)  # type: ignore[operator]
        slack = eps_value + _REL_TOL * max(1.0, abs(best))
        near = [r for r in pool if sign * _metric(r, metric) - best <= slack]  # type: ignore[operator]
        top = min(near, key=lambda r: (_cost(r), *by_metric(r)))
        value = _metric(top, metric)
        assert value is not None
        cost = finite_number(top.get("cost_usd"))
        shown = "unknown cost" if cost is None else f"${cost:.4g}"
        return Winner(
            str(top.get("trial_id")),
            top,
            rule,
            value,
            f"cheapest ({shown}) of {len(near)} trials within eps={eps_value:g} of the best "
            f"{metric}={sign * best:.6g}; its {metric}={value:.6g}",
        )
    bound = float(latency_bound_ms)  # type: ignore[arg-type]  # checked above
    fast = [
        r for r in pool if (lat := finite_number(r.get("latency_ms"))) is not None and lat <= bound
    ]
    if not fast:
        measured = [r for r in pool if finite_number(r.get("latency_ms")) is not None]
        if not measured:
            raise NoWinnerError(
                f"no trial meets tune.latency_bound_ms={bound:g}: none of the {len(pool)} "
                "eligible trials has a measured `latency_ms`. Fix: measure latency in the sweep, "
                "or use tune.winner_rule=best."
            )
        fastest = min(
            measured, key=lambda r: (finite_number(r.get("latency_ms")), str(r["trial_id"]))
        )
        raise NoWinnerError(
            f"no trial meets tune.latency_bound_ms={bound:g}: the fastest eligible trial, "
            f"{fastest.get('trial_id')}, takes {finite_number(fastest.get('latency_ms')):.4g} ms "
            f"({len(measured)} trials measured). Fix: raise `tune.latency_bound_ms`, search "
            "smaller models, or use tune.winner_rule=best."
        )
    top = min(fast, key=by_metric)
    value = _metric(top, metric)
    assert value is not None
    return Winner(
        str(top.get("trial_id")),
        top,
        rule,
        value,
        f"best {metric}={value:.6g} of {len(fast)} trials with latency_ms <= {bound:g} "
        f"(its latency {finite_number(top.get('latency_ms')):.4g} ms)",
    )


# ------------------------------------------------------------------------------ pareto
def default_objectives(metric: str, mode: SortMode | str) -> list[tuple[str, str]]:
    """Quality vs training cost vs serving cost: `[(metric, mode), cost_usd min, latency_ms min]`."""
    return [(metric, _mode(mode).value), ("cost_usd", "min"), ("latency_ms", "min")]


def pareto_front(
    records: Sequence[Mapping[str, Any]],
    objectives: Sequence[tuple[str, SortMode | str]],
) -> list[Mapping[str, Any]]:
    """The eligible trials no other eligible trial dominates.

    Trial `a` dominates `b` when `a` is at least as good in every objective and strictly better
    in one. Trials with equal objective values (duplicates) do not dominate each other, so all
    of them stay on the front.

    An objective name is looked up as a record field (`cost_usd`, `latency_ms`, `wall_s`, ...)
    and otherwise among the reported `metrics`. Objectives no eligible trial has a value for
    (e.g. `latency_ms` when latency was not measured) are dropped; trials missing a value of a
    remaining objective are left out. Eligibility is that of `choose_winner`, judged on the
    first objective.

    Args:
        records: Trial records.
        objectives: `(name, mode)` pairs, e.g. `default_objectives("val_loss", "min")`; the
            first should be the sweep's metric.

    Returns:
        The front, sorted by the first objective (best first), then the next ones, then trial
        id: the same records always give the same list.

    Raises:
        ConfigError: No objectives, or a mode that is not min or max.
    """
    if not objectives:
        raise ConfigError(
            "`objectives` must list at least one (name, mode) pair, but got none. Fix: e.g. "
            "`default_objectives('val_loss', 'min')`."
        )
    signs = [(name, _sign(_mode(mode))) for name, mode in objectives]
    pool = eligible(records, signs[0][0])
    used = [(n, s) for n, s in signs if any(_value(r, n) is not None for r in pool)]
    points: list[tuple[tuple[float, ...], str, Mapping[str, Any]]] = []
    for record in pool:
        values = [_value(record, name) for name, _ in used]
        if any(v is None for v in values):
            continue
        vector = tuple(s * v for (_, s), v in zip(used, values, strict=True))  # type: ignore[operator]
        points.append((vector, str(record.get("trial_id")), record))
    # Sorted lexicographically, a dominating point always comes before the points it dominates,
    # so each point needs checking only against the front built so far.
    points.sort(key=lambda p: (p[0], p[1]))
    front: list[tuple[tuple[float, ...], str, Mapping[str, Any]]] = []
    for point in points:
        if not any(_dominates(kept[0], point[0]) for kept in front):
            front.append(point)
    return [record for _, _, record in front]


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


# -------------------------------------------------------------------------- leaderboard
class Leaderboard:
    """Every trial of a sweep in one table, the best first.

    Eligible trials (see the module docstring) come first, ranked 1, 2, ... by the metric
    (ties: lower cost, then trial id); the rest follow, unranked, in the same order with
    missing metrics last. Columns: `rank`, `trial_id`, `status`, the metric, `pareto` (on the
    front of `default_objectives`), `cost_usd`, `algorithmic_cost_usd`, `waste_usd`, `wall_s`,
    `latency_ms`, `iterations`, `pruned_at_rung`, `checkpoint` (where the trial's model is, to
    serve or inspect one that did not win; not in the Markdown), then one column per tuned key
    (lists as JSON strings, as `SearchSpace.to_tune` encodes them).

    Args:
        records: Trial records.
        metric: The sweep's metric.
        mode: `min` or `max`.

    Attributes:
        frame: The table, a pandas DataFrame.
        metric: The sweep's metric.
        mode: Its direction.
    """

    def __init__(
        self, records: Sequence[Mapping[str, Any]], metric: str, mode: SortMode | str
    ) -> None:
        self.metric = metric
        self.mode = _mode(mode)
        self.frame = self._build(records)

    def _build(self, records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
        import pandas as pd  # here: choosing a winner must not pay for importing pandas

        sign = _sign(self.mode)
        good = {id(r) for r in eligible(records, self.metric)}
        front = {id(r) for r in pareto_front(records, default_objectives(self.metric, self.mode))}

        def order(r: Mapping[str, Any]) -> tuple[int, int, float, float, str]:
            value = _metric(r, self.metric)
            return (
                0 if id(r) in good else 1,
                0 if value is not None else 1,
                sign * value if value is not None else 0.0,
                _cost(r),
                str(r.get("trial_id")),
            )

        fixed = ("rank", "trial_id", "status", self.metric, "pareto", *_FIELDS)
        rows = []
        for i, record in enumerate(sorted(records, key=order)):
            row: dict[str, Any] = {
                "rank": i + 1 if id(record) in good else None,
                "trial_id": str(record.get("trial_id")),
                "status": _status(record),
                self.metric: _metric(record, self.metric),
                "pareto": id(record) in front,
            }
            for name in _FIELDS:
                row[name] = _cell(record.get(name))
            for key, value in _flatten(record.get("config") or {}).items():
                row[f"config.{key}" if key in fixed else key] = value
            rows.append(row)
        frame = pd.DataFrame(rows, columns=list(fixed) if not rows else None)
        for name in ("rank", "iterations", "pruned_at_rung"):
            frame[name] = frame[name].astype("Int64")  # whole numbers with gaps, not floats
        for name in (self.metric, "cost_usd", "algorithmic_cost_usd", "waste_usd", "wall_s"):
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
        frame["latency_ms"] = pd.to_numeric(frame["latency_ms"], errors="coerce")
        frame["pareto"] = frame["pareto"].astype(bool)
        return frame

    def __len__(self) -> int:
        return len(self.frame)

    def to_parquet(self, path: str | Path) -> Path:
        """Write the table as Parquet, with the metric and mode in the file's metadata.

        Returns:
            The path written.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(self.frame, preserve_index=False)
        meta = dict(table.schema.metadata or {})
        meta[b"ray_ml.leaderboard"] = json.dumps(
            {"metric": self.metric, "mode": self.mode.value}
        ).encode()
        pq.write_table(table.replace_schema_metadata(meta), path)
        return path

    def to_csv(self, path: str | Path) -> Path:
        """Write the table as CSV (no index column).

        Returns:
            The path written.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.frame.to_csv(path, index=False)
        return path

    def to_markdown(self, max_rows: int | None = None) -> str:
        """The table as GitHub Markdown, numbers to 4 significant digits, gaps left blank.

        Args:
            max_rows: Show at most this many rows (the best ones), with a line saying how many
                were left out; None shows all.
        """
        import pandas as pd

        frame = self.frame if max_rows is None else self.frame.head(max_rows)
        frame = frame.drop(columns=["checkpoint"])
        header = [str(c) for c in frame.columns]
        body = [[_fmt(v) for v in row] for row in frame.itertuples(index=False, name=None)]
        widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(header)]
        numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]

        def line(cells: Sequence[str]) -> str:
            padded = [
                c.rjust(w) if num else c.ljust(w)
                for c, w, num in zip(cells, widths, numeric, strict=True)
            ]
            return "| " + " | ".join(padded) + " |"

        rule = [
            ("-" * (w - 1) + ":") if num else "-" * w
            for w, num in zip(widths, numeric, strict=True)
        ]
        lines = [line(header), "|" + "|".join(f" {r} " for r in rule) + "|"]
        lines += [line(r) for r in body]
        if max_rows is not None and len(self.frame) > max_rows:
            lines.append(f"\n({len(self.frame) - max_rows} more trials not shown)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_markdown()

    def __repr__(self) -> str:
        return f"Leaderboard(metric={self.metric!r}, mode={self.mode.value!r}, trials={len(self)})"


def _fmt(value: Any) -> str:
    import pandas as pd

    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")  # a pipe would split the Markdown cell
