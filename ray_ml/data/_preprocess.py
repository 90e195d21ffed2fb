"""Preprocessing fitted on the train split only, stored as plain JSON, applied by a pure function.

Fitting is a streaming aggregation: every block reduces to mergeable statistics (count, mean and
M2 per numeric column by Chan's parallel update; value counts per categorical column), merged on
the driver. The result, `Preprocessor`, holds numbers and category lists only; `transform` turns
raw rows (an Arrow table, a pandas frame or a list of dicts) into a float32 matrix and is the one
code path used by training workers, batch inference and serving.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ray_ml.data._blocks import reduce_rows
from ray_ml.data._contract import ColumnType, Contract, Task
from ray_ml.errors import ConfigError, ContractError

if TYPE_CHECKING:
    import ray.data

__all__ = [
    "CategoricalFeature",
    "NumericFeature",
    "Preprocessor",
    "fit_preprocessor",
    "fit_preprocessor_table",
]

_IMPUTE = ("mean", "zero")
_SCALE = ("standard", "minmax", "none")
_ENCODE = ("onehot", "ordinal")


@dataclass
class NumericFeature:
    name: str
    fill: float  # value that replaces a missing cell, before scaling
    center: float
    scale: float


@dataclass
class CategoricalFeature:
    name: str
    categories: list[str]  # known values in output order; others (and nulls) encode as unknown


@dataclass
class Preprocessor:
    """A fitted preprocessing, as data. See the module docstring.

    Attributes:
        label: Label column.
        task: binary, multiclass or regression.
        classes: Class values in index order (classification).
        numeric: Numeric (and boolean) features, in output order.
        categorical: Categorical features, after the numeric ones.
        encode: onehot (one column per known category, all zero for unknown) or ordinal (the
            category's index, -1 for unknown).
        fit_rows: Rows the statistics came from (the train split).
    """

    label: str
    task: str
    classes: list[Any]
    numeric: list[NumericFeature]
    categorical: list[CategoricalFeature]
    encode: str = "onehot"
    impute: str = "mean"
    scale: str = "standard"
    fit_rows: int = 0
    version: int = 1
    feature_names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        names = [f.name for f in self.numeric]
        for cat in self.categorical:
            if self.encode == "onehot":
                names += [f"{cat.name}={c}" for c in cat.categories]
            else:
                names.append(cat.name)
        self.feature_names = names

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    @property
    def input_columns(self) -> list[str]:
        return [f.name for f in self.numeric] + [c.name for c in self.categorical]

    # -- apply --------------------------------------------------------------------------------
    def transform(self, rows: pa.Table | Any) -> np.ndarray:
        """Raw rows -> float32 matrix (n, num_features). Missing columns raise a clear error."""
        table = _as_table(rows)
        missing = [c for c in self.input_columns if c not in table.column_names]
        if missing:
            raise ContractError(f"rows are missing feature column(s) {missing}.")
        n = table.num_rows
        out = np.empty((n, self.num_features), np.float32)
        j = 0
        for f in self.numeric:
            col = table.column(f.name)
            if pa.types.is_boolean(col.type):
                col = col.cast(pa.float64())
            x = pc.cast(col, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
            x = np.where(np.isnan(x), f.fill, x)
            out[:, j] = (x - f.center) / f.scale
            j += 1
        for cat in self.categorical:
            col = table.column(cat.name)
            if not pa.types.is_string(col.type):
                col = col.cast(pa.string())
            idx = pc.index_in(col, value_set=pa.array(cat.categories, pa.string()))
            idx_np = idx.fill_null(-1).to_numpy(zero_copy_only=False)
            if self.encode == "onehot":
                k = len(cat.categories)
                block = np.zeros((n, k), np.float32)
                hit = idx_np >= 0
                block[np.flatnonzero(hit), idx_np[hit]] = 1.0
                out[:, j : j + k] = block
                j += k
            else:
                out[:, j] = idx_np
                j += 1
        return out

    def labels(self, rows: pa.Table | Any) -> np.ndarray:
        """Label column -> int64 class indices (classification) or float32 targets."""
        table = _as_table(rows)
        col = table.column(self.label)
        if self.task == Task.REGRESSION.value:
            targets: np.ndarray = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
            return targets.astype(np.float32)
        value_type = pa.int64() if all(isinstance(c, int) for c in self.classes) else pa.string()
        if value_type == pa.string() and not pa.types.is_string(col.type):
            col = col.cast(pa.string())
        idx = pc.index_in(col, value_set=pa.array(self.classes, value_type))
        if idx.null_count:
            raise ContractError(
                f"label `{self.label}` has values outside the classes {self.classes}."
            )
        index: np.ndarray = idx.to_numpy(zero_copy_only=False)
        return index.astype(np.int64)

    def transform_batch(self, table: pa.Table) -> dict[str, np.ndarray]:
        """For `Dataset.map_batches`: {"x": features, "y": labels}."""
        return {"x": self.transform(table), "y": self.labels(table)}

    # -- persistence (plain JSON, never pickle) ------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("feature_names")
        out["feature_names"] = self.feature_names  # informative; recomputed on load
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Preprocessor:
        raw = dict(raw)
        raw.pop("feature_names", None)
        raw["numeric"] = [NumericFeature(**f) for f in raw["numeric"]]
        raw["categorical"] = [CategoricalFeature(**c) for c in raw["categorical"]]
        return cls(**raw)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> Preprocessor:
        return cls.from_dict(json.loads(Path(path).read_text()))


def _as_table(rows: Any) -> pa.Table:
    if isinstance(rows, pa.Table):
        return rows
    if isinstance(rows, pa.RecordBatch):
        return pa.Table.from_batches([rows])
    if isinstance(rows, list):
        return pa.Table.from_pylist(rows)
    if isinstance(rows, dict):
        return pa.table(rows)
    return pa.Table.from_pandas(rows, preserve_index=False)


# -- fitting --------------------------------------------------------------------------------------
def _block_stats(table: pa.Table, contract: Contract) -> pa.Table:
    stats: dict[str, Any] = {"rows": table.num_rows, "numeric": {}, "categorical": {}}
    # Never the label, never an id column: a key identifies a row, it carries no signal.
    for spec in contract.feature_columns:
        col = table.column(spec.name)
        if spec.type in (ColumnType.FLOAT, ColumnType.INT, ColumnType.BOOL):
            x = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
            x = x[~np.isnan(x)]
            n = int(x.size)
            mean = float(x.mean()) if n else 0.0
            m2 = float(((x - mean) ** 2).sum()) if n else 0.0
            lo = float(x.min()) if n else math.inf
            hi = float(x.max()) if n else -math.inf
            stats["numeric"][spec.name] = [n, mean, m2, lo, hi]
        else:
            vc = pc.value_counts(col.drop_null())
            stats["categorical"][spec.name] = {
                str(v): int(c)
                for v, c in zip(
                    vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True
                )
            }
    return pa.table({"stats": [json.dumps(stats)]})


def _merge_numeric(a: list[float], b: list[float]) -> list[float]:
    # Chan et al.'s parallel variance update: exact merge of (count, mean, M2).
    na, ma, m2a, loa, hia = a
    nb, mb, m2b, lob, hib = b
    n = na + nb
    if n == 0:
        return [0, 0.0, 0.0, math.inf, -math.inf]
    delta = mb - ma
    mean = ma + delta * nb / n
    m2 = m2a + m2b + delta * delta * na * nb / n
    return [n, mean, m2, min(loa, lob), max(hia, hib)]


def _finish(
    stats: list[dict[str, Any]],
    contract: Contract,
    impute: str,
    scale: str,
    encode: str,
    max_categories: int,
) -> Preprocessor:
    for key, value, allowed in (
        ("impute", impute, _IMPUTE),
        ("scale", scale, _SCALE),
        ("encode", encode, _ENCODE),
    ):
        if value not in allowed:
            raise ConfigError(
                f"data.{key} must be one of {list(allowed)}, but got {key}={value!r}."
            )
    rows = sum(s["rows"] for s in stats)
    if rows == 0:
        raise ConfigError(
            "the train split is empty: nothing to fit preprocessing on. Check data.val_fraction, "
            "data.test_fraction and the data check's reject counts."
        )
    numeric: list[NumericFeature] = []
    categorical: list[CategoricalFeature] = []
    for spec in contract.feature_columns:
        if spec.name in stats[0]["numeric"]:
            acc: list[float] = [0, 0.0, 0.0, math.inf, -math.inf]
            for s in stats:
                acc = _merge_numeric(acc, s["numeric"][spec.name])
            n, mean, m2, lo, hi = acc
            if n == 0:
                mean, lo, hi = 0.0, 0.0, 0.0
            std = math.sqrt(m2 / n) if n else 0.0
            fill = mean if impute == "mean" else 0.0
            if scale == "standard":
                center, spread = mean, std
            elif scale == "minmax":
                center, spread = lo, hi - lo
            else:
                center, spread = 0.0, 1.0
            numeric.append(
                NumericFeature(spec.name, fill, center, spread if spread > 1e-12 else 1.0)
            )
        else:
            counts: Counter[str] = Counter()
            for s in stats:
                counts.update(s["categorical"][spec.name])
            if spec.known_categories is not None:
                # The contract's order (its rule's or expectation's categories) is stable across
                # refits; keep the most frequent if too many.
                known = [str(c) for c in spec.known_categories]
                if len(known) > max_categories:
                    top = {c for c, _ in counts.most_common(max_categories)}
                    known = [c for c in known if c in top]
            else:
                known = sorted(c for c, _ in counts.most_common(max_categories))
            categorical.append(CategoricalFeature(spec.name, known))
    return Preprocessor(
        label=contract.label,
        task=contract.task.value,
        classes=contract.classes,
        numeric=numeric,
        categorical=categorical,
        encode=encode,
        impute=impute,
        scale=scale,
        fit_rows=rows,
    )


def fit_preprocessor(
    train: ray.data.Dataset,
    contract: Contract,
    *,
    impute: str = "mean",
    scale: str = "standard",
    encode: str = "onehot",
    max_categories: int = 50,
) -> Preprocessor:
    """Fit on the train split (a Ray Dataset of checked rows); only per-block stats reach the driver.

    A split part of `check_sources`' rows is fitted by one plain task per checked block, any other
    dataset by a Ray Data pass (`reduce_rows`).
    """
    rows = reduce_rows(train, _block_stats, contract)
    return _finish(
        [json.loads(r["stats"]) for r in rows], contract, impute, scale, encode, max_categories
    )


def fit_preprocessor_table(
    table: pa.Table,
    contract: Contract,
    *,
    impute: str = "mean",
    scale: str = "standard",
    encode: str = "onehot",
    max_categories: int = 50,
) -> Preprocessor:
    """The same fit on an in-memory table (single process; tests and the benchmark baseline)."""
    stats = json.loads(_block_stats(table, contract).column("stats")[0].as_py())
    return _finish([stats], contract, impute, scale, encode, max_categories)
