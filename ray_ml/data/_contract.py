"""The data contract: what a dataset's columns must look like.

A contract is a small YAML file per dataset (columns, types, nullability, ranges, allowed values,
label, task). It is checked strictly when loaded: an unknown key or a wrong value fails with a
message naming the column and the key, because a contract typo would otherwise silently weaken
every check that follows.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from ray_ml.errors import ContractError

__all__ = ["ColumnSpec", "ColumnType", "Contract", "Task", "infer_contract"]


class ColumnType(enum.StrEnum):
    FLOAT = "float"
    INT = "int"
    BOOL = "bool"
    STRING = "string"
    CATEGORY = "category"

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW_TYPES[self]

    @property
    def is_numeric(self) -> bool:
        return self in (ColumnType.FLOAT, ColumnType.INT)


_ARROW_TYPES = {
    ColumnType.FLOAT: pa.float64(),
    ColumnType.INT: pa.int64(),
    ColumnType.BOOL: pa.bool_(),
    ColumnType.STRING: pa.string(),
    ColumnType.CATEGORY: pa.string(),
}


class Task(enum.StrEnum):
    BINARY = "binary"
    MULTICLASS = "multiclass"
    REGRESSION = "regression"

    @property
    def is_classification(self) -> bool:
        return self is not Task.REGRESSION


_RESERVED_PREFIX = "_"  # columns we add (_reject_reason, _row_hash, _split) start with it


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a contract.

    Attributes:
        name: Column name as it appears in the source data.
        type: Logical type; the check coerces the source column to it.
        nullable: Whether nulls (and NaN) are allowed.
        min: Inclusive lower bound for numeric columns.
        max: Inclusive upper bound for numeric columns.
        categories: Allowed values (strings for category/string columns, integers for int
            columns). For a classification label these are the classes, in index order.
    """

    name: str
    type: ColumnType
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        where = f"column `{self.name}`"
        if not self.name or self.name.startswith(_RESERVED_PREFIX):
            raise ContractError(
                f"{where}: names must be non-empty and must not start with '_' "
                "(ray_ml adds its own _-prefixed columns). Rename the column."
            )
        if (self.min is not None or self.max is not None) and not self.type.is_numeric:
            raise ContractError(
                f"{where}: min/max only apply to float or int columns, but type={self.type.value}."
                " Remove min/max or change the type."
            )
        for bound in ("min", "max"):
            value = getattr(self, bound)
            if value is not None and not math.isfinite(value):
                raise ContractError(f"{where}: {bound} must be finite, but got {bound}={value}.")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ContractError(
                f"{where}: min must be <= max, but got min={self.min}, max={self.max}."
            )
        if self.categories is not None:
            if self.type not in (ColumnType.CATEGORY, ColumnType.STRING, ColumnType.INT):
                raise ContractError(
                    f"{where}: categories apply to category, string or int columns, "
                    f"but type={self.type.value}."
                )
            if len(self.categories) == 0:
                raise ContractError(
                    f"{where}: categories must not be empty; remove the key instead."
                )
            if len(set(self.categories)) != len(self.categories):
                raise ContractError(
                    f"{where}: categories contain duplicates: {list(self.categories)}."
                )
        if self.type is ColumnType.CATEGORY and self.categories is None:
            raise ContractError(
                f"{where}: a category column needs `categories:` (the allowed values). "
                "List them, or use type: string for free text."
            )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type.value,
            "nullable": self.nullable,
        }
        if self.min is not None:
            out["min"] = self.min
        if self.max is not None:
            out["max"] = self.max
        if self.categories is not None:
            out["categories"] = list(self.categories)
        return out


_COLUMN_KEYS = {"name", "type", "nullable", "min", "max", "categories"}
_CONTRACT_KEYS = {"name", "task", "label", "columns", "version"}


def _parse_column(raw: Any, index: int) -> ColumnSpec:
    if not isinstance(raw, dict):
        raise ContractError(f"columns[{index}] must be a mapping, but got {raw!r}.")
    name = raw.get("name")
    where = f"columns[{index}] (`{name}`)"
    unknown = set(raw) - _COLUMN_KEYS
    if unknown:
        raise ContractError(
            f"{where}: unknown key(s) {sorted(unknown)}. Allowed keys: {sorted(_COLUMN_KEYS)}."
        )
    if not isinstance(name, str):
        raise ContractError(f"{where}: `name` must be a string.")
    try:
        ctype = ColumnType(str(raw.get("type")))
    except ValueError:
        raise ContractError(
            f"{where}: type={raw.get('type')!r} is not one of {[t.value for t in ColumnType]}."
        ) from None
    bounds: dict[str, float | None] = {}
    for key in ("min", "max"):
        value = raw.get(key)
        try:
            # PyYAML reads `1e-3` as a string: convert explicitly.
            bounds[key] = None if value is None else float(value)
        except (TypeError, ValueError):
            raise ContractError(f"{where}: {key}={value!r} is not a number.") from None
    nullable = raw.get("nullable", False)
    if not isinstance(nullable, bool):
        raise ContractError(f"{where}: nullable must be true or false, but got {nullable!r}.")
    cats = raw.get("categories")
    if cats is not None:
        if not isinstance(cats, list):
            raise ContractError(f"{where}: categories must be a list, but got {cats!r}.")
        if ctype is ColumnType.INT:
            try:
                cats = [int(c) for c in cats]
            except (TypeError, ValueError):
                raise ContractError(
                    f"{where}: int categories must be integers: {cats!r}."
                ) from None
        else:
            cats = [str(c) for c in cats]
    return ColumnSpec(
        name=name,
        type=ctype,
        nullable=nullable,
        min=bounds["min"],
        max=bounds["max"],
        categories=None if cats is None else tuple(cats),
    )


@dataclass(frozen=True)
class Contract:
    """Columns a dataset must have, its label and its task.

    Attributes:
        name: Dataset name (free text, used in reports).
        task: binary, multiclass or regression.
        label: Name of the label column (must be one of `columns`).
        columns: Column specs, in output order.
        version: Contract format version.
    """

    name: str
    task: Task
    label: str
    columns: tuple[ColumnSpec, ...]
    version: int = 1
    _by_name: dict[str, ColumnSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if not names:
            raise ContractError(f"contract `{self.name}`: `columns` must not be empty.")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ContractError(f"contract `{self.name}`: duplicate column names {dupes}.")
        object.__setattr__(self, "_by_name", {c.name: c for c in self.columns})
        if self.label not in self._by_name:
            raise ContractError(
                f"contract `{self.name}`: label={self.label!r} is not a column. Columns: {names}."
            )
        spec = self._by_name[self.label]
        if spec.nullable:
            raise ContractError(
                f"contract `{self.name}`: the label column `{self.label}` must not be nullable."
            )
        if self.task.is_classification:
            if spec.categories is None:
                raise ContractError(
                    f"contract `{self.name}`: a {self.task.value} label needs `categories:` "
                    f"(the classes, in index order) on column `{self.label}`."
                )
            n = len(spec.categories)
            if self.task is Task.BINARY and n != 2:
                raise ContractError(
                    f"contract `{self.name}`: task=binary needs exactly 2 label categories, "
                    f"but `{self.label}` has {n}. Use task: multiclass."
                )
        elif not spec.type.is_numeric:
            raise ContractError(
                f"contract `{self.name}`: task=regression needs a float or int label, "
                f"but `{self.label}` is {spec.type.value}."
            )

    # -- access -------------------------------------------------------------------------------
    def column(self, name: str) -> ColumnSpec:
        return self._by_name[name]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def feature_columns(self) -> list[ColumnSpec]:
        return [c for c in self.columns if c.name != self.label]

    @property
    def classes(self) -> list[Any]:
        """Class values in index order (empty for regression)."""
        if not self.task.is_classification:
            return []
        return list(self.column(self.label).categories or ())

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type.arrow_type) for c in self.columns])

    def subset(self, names: list[str]) -> list[ColumnSpec]:
        return [c for c in self.columns if c.name in set(names)]

    # -- (de)serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "name": self.name,
            "task": self.task.value,
            "label": self.label,
            "columns": [c.to_dict() for c in self.columns],
        }

    def to_yaml(self, header: str = "") -> str:
        body = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=100)
        return header + body

    def save(self, path: str | Path, header: str = "") -> None:
        Path(path).write_text(self.to_yaml(header))

    @classmethod
    def from_dict(cls, raw: Any, origin: str = "contract") -> Contract:
        if not isinstance(raw, dict):
            raise ContractError(
                f"{origin}: expected a mapping at the top level, got {type(raw).__name__}."
            )
        unknown = set(raw) - _CONTRACT_KEYS
        if unknown:
            raise ContractError(
                f"{origin}: unknown key(s) {sorted(unknown)}. Allowed: {sorted(_CONTRACT_KEYS)}."
            )
        for key in ("task", "label", "columns"):
            if key not in raw:
                raise ContractError(f"{origin}: missing required key `{key}`.")
        try:
            task = Task(raw["task"])
        except ValueError:
            raise ContractError(
                f"{origin}: task={raw['task']!r} is not one of {[t.value for t in Task]}."
            ) from None
        if not isinstance(raw["columns"], list):
            raise ContractError(f"{origin}: `columns` must be a list of column mappings.")
        try:
            return cls(
                name=str(raw.get("name", "dataset")),
                task=task,
                label=str(raw["label"]),
                columns=tuple(_parse_column(c, i) for i, c in enumerate(raw["columns"])),
                version=int(raw.get("version", 1)),
            )
        except ContractError as exc:
            raise ContractError(f"{origin}: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> Contract:
        p = Path(path)
        if not p.is_file():
            raise ContractError(
                f"contract file {str(p)!r} does not exist. Create one with "
                "`ray-ml data infer SOURCE > contract.yaml` and edit it."
            )
        try:
            raw = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise ContractError(f"contract file {str(p)!r} is not valid YAML: {exc}") from None
        return cls.from_dict(raw, origin=f"contract {str(p)!r}")


# -- inference ------------------------------------------------------------------------------------
_LABEL_GUESSES = ("target", "label", "y", "class", "outcome")


def _logical_type(dtype: pa.DataType) -> ColumnType:
    if pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return ColumnType.FLOAT
    if pa.types.is_integer(dtype):
        return ColumnType.INT
    if pa.types.is_boolean(dtype):
        return ColumnType.BOOL
    if pa.types.is_dictionary(dtype):
        return _logical_type(dtype.value_type)
    return ColumnType.STRING


def _widen(lo: float, hi: float, margin: float, integral: bool) -> tuple[float, float]:
    """Observed bounds widened by `margin` of the span: a sample rarely shows the true extremes."""
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    new_lo, new_hi = lo - margin * span, hi + margin * span
    if lo >= 0 > new_lo:
        new_lo = 0.0  # a non-negative quantity stays non-negative
    if integral:
        return float(math.floor(new_lo)), float(math.ceil(new_hi))
    # 6 significant digits keep the YAML readable; the margin dwarfs the rounding.
    return float(f"{new_lo:.6g}"), float(f"{new_hi:.6g}")


def infer_contract(
    table: pa.Table,
    *,
    name: str = "dataset",
    label: str | None = None,
    task: Task | None = None,
    max_categories: int = 50,
    range_margin: float = 0.1,
) -> Contract:
    """Infer a contract from a clean sample, meant to be reviewed and edited.

    Numeric ranges are the observed ones widened by `range_margin` of their span; string columns
    with at most `max_categories` distinct values become categories; a column is nullable when
    the sample has a null in it.
    """
    names = table.column_names
    if label is None:
        label = next((n for n in names if n.lower() in _LABEL_GUESSES), names[-1])
    if label not in names:
        raise ContractError(f"label={label!r} is not a column of the sample. Columns: {names}.")
    columns: list[ColumnSpec] = []
    for col_name in names:
        if col_name.startswith(_RESERVED_PREFIX):
            continue
        col = table.column(col_name)
        ctype = _logical_type(col.type)
        nullable = col.null_count > 0
        lo = hi = None
        cats: tuple[Any, ...] | None = None
        if ctype.is_numeric and len(col) - col.null_count > 0:
            mm = pc.min_max(col)
            lo_v, hi_v = mm["min"].as_py(), mm["max"].as_py()
            if lo_v is not None and math.isfinite(lo_v) and math.isfinite(hi_v):
                lo, hi = _widen(float(lo_v), float(hi_v), range_margin, ctype is ColumnType.INT)
        if ctype is ColumnType.STRING:
            distinct = pc.unique(col.drop_null())
            if len(distinct) <= max_categories:
                ctype = ColumnType.CATEGORY
                cats = tuple(sorted(str(v) for v in distinct.to_pylist()))
        if col_name == label:
            nullable = False
            distinct = pc.unique(col.drop_null())
            n_distinct = len(distinct)
            if task is None:
                if ctype is ColumnType.FLOAT or (
                    ctype is ColumnType.INT and n_distinct > max_categories
                ):
                    task = Task.REGRESSION
                else:
                    task = Task.BINARY if n_distinct == 2 else Task.MULTICLASS
            if task.is_classification:
                if ctype is ColumnType.FLOAT:
                    ctype = ColumnType.INT
                values = sorted(distinct.to_pylist())
                cats = (
                    tuple(int(v) for v in values)
                    if ctype is ColumnType.INT
                    else tuple(str(v) for v in values)
                )
                if ctype is ColumnType.STRING:
                    ctype = ColumnType.CATEGORY
                lo = hi = None
        columns.append(
            ColumnSpec(
                name=col_name, type=ctype, nullable=nullable, min=lo, max=hi, categories=cats
            )
        )
    assert task is not None  # set when the label column was visited
    return Contract(name=name, task=task, label=label, columns=tuple(columns))
