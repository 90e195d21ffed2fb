"""The data contract: what a dataset's columns must look like.

A contract is a small YAML file per dataset (columns, types, nullability, ranges, allowed values,
label, task). It is checked strictly when loaded: an unknown key or a wrong value fails with a
message naming the column and the key, because a contract typo would otherwise silently weaken
every check that follows.

Rules come in two strengths. `min`, `max` and `categories` written on a column are *rules*: a
row that breaks one is rejected (`column:range`, `column:category`). The same keys under an
`expect:` block are *expectations*: a row that breaks one is kept and counted as a warning
(`warnings: {"column:range": n}` in the check's report), unless the block says `strict: true`.
`ray-ml data infer` writes what it saw in a sample as expectations, because a sample rarely
shows the true extremes or every category; a rule the user writes by hand rejects::

    - name: age
      type: int
      min: 0               # rule: a negative age is rejected
      expect:              # inferred from the sample: outside it is a warning
        min: 18
        max: 90
        # strict: true     # uncomment to reject instead
    - name: customer_id
      type: int
      role: id             # a key: kept in outputs, never a feature, never range-checked

`role: id` marks an identifier column (int or string). It is checked for its type and nulls,
carried into the quarantine and into predictions, and never used as a model feature.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from ray_ml.errors import ContractError

__all__ = [
    "ColumnRole",
    "ColumnSpec",
    "ColumnType",
    "Contract",
    "Expectation",
    "Task",
    "infer_contract",
]


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


class ColumnRole(enum.StrEnum):
    FEATURE = "feature"
    ID = "id"  # a key: type- and null-checked, kept in outputs, never a feature


_RESERVED_PREFIX = "_"  # columns we add (_reject_reason, _row_hash, _split) start with it


def _check_rules(
    where: str,
    ctype: ColumnType,
    lo: float | None,
    hi: float | None,
    cats: tuple[Any, ...] | None,
    prefix: str,
) -> None:
    """What `min`, `max` and `categories` must satisfy, as rules (prefix "") or under expect."""
    k_min, k_max, k_cats = f"{prefix}min", f"{prefix}max", f"{prefix}categories"
    if (lo is not None or hi is not None) and not ctype.is_numeric:
        raise ContractError(
            f"{where}: {k_min}/{k_max} only apply to float or int columns, but "
            f"type={ctype.value}. Remove {k_min}/{k_max} or change the type."
        )
    for key, value in ((k_min, lo), (k_max, hi)):
        if value is not None and not math.isfinite(value):
            raise ContractError(f"{where}: {key} must be finite, but got {key}={value}.")
    if lo is not None and hi is not None and lo > hi:
        raise ContractError(
            f"{where}: {k_min} must be <= {k_max}, but got {k_min}={lo}, {k_max}={hi}."
        )
    if cats is not None:
        if ctype not in (ColumnType.CATEGORY, ColumnType.STRING, ColumnType.INT):
            raise ContractError(
                f"{where}: {k_cats} apply to category, string or int columns, "
                f"but type={ctype.value}."
            )
        if len(cats) == 0:
            raise ContractError(f"{where}: {k_cats} must not be empty; remove the key instead.")
        if len(set(cats)) != len(cats):
            raise ContractError(f"{where}: {k_cats} contain duplicates: {list(cats)}.")


@dataclass(frozen=True)
class Expectation:
    """Soft rules of one column, its `expect:` block: broken ones are warnings, not rejects.

    A row outside them is kept and counted as `column:rule` in the report's warnings, unless
    `strict` is set; then it is rejected for that rule, as a hand-written rule would reject it.

    Attributes:
        min: Expected inclusive lower bound (float or int columns).
        max: Expected inclusive upper bound.
        categories: Expected values; for a category column also the encoding's values.
        strict: Reject rows that break these expectations, as if they were rules.
    """

    min: float | None = None
    max: float | None = None
    categories: tuple[Any, ...] | None = None
    strict: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.min is not None:
            out["min"] = self.min
        if self.max is not None:
            out["max"] = self.max
        if self.categories is not None:
            out["categories"] = list(self.categories)
        if self.strict:
            out["strict"] = True
        return out


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a contract.

    Attributes:
        name: Column name as it appears in the source data.
        type: Logical type; the check coerces the source column to it.
        nullable: Whether nulls (and NaN) are allowed.
        min: Inclusive lower bound for numeric columns (a rule: rows below are rejected).
        max: Inclusive upper bound for numeric columns (a rule).
        categories: Allowed values (strings for category/string columns, integers for int
            columns). For a classification label these are the classes, in index order.
        role: `feature` (default) or `id`: a key column (int or string), checked for type and
            nulls only, kept in the quarantine and in predictions, never a model feature.
        expect: Soft bounds and values (see `Expectation`); inferred contracts write these.
    """

    name: str
    type: ColumnType
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[Any, ...] | None = None
    role: ColumnRole = ColumnRole.FEATURE
    expect: Expectation | None = None

    def __post_init__(self) -> None:
        where = f"column `{self.name}`"
        if not self.name or self.name.startswith(_RESERVED_PREFIX):
            raise ContractError(
                f"{where}: names must be non-empty and must not start with '_' "
                "(ray_ml adds its own _-prefixed columns). Rename the column."
            )
        _check_rules(where, self.type, self.min, self.max, self.categories, "")
        if self.expect is not None:
            e = self.expect
            if e.min is None and e.max is None and e.categories is None:
                raise ContractError(
                    f"{where}: `expect:` sets none of min, max or categories. "
                    "Set one, or remove the block."
                )
            _check_rules(where, self.type, e.min, e.max, e.categories, "expect.")
            if self.categories is not None and e.categories is not None:
                raise ContractError(
                    f"{where}: categories are set both as a rule and under expect:, but they "
                    "are also the column's encoding, so keep one list: `categories:` rejects "
                    "other values, `expect: {categories: [...]}` counts them as warnings."
                )
        if self.role is ColumnRole.ID:
            if self.type not in (ColumnType.INT, ColumnType.STRING):
                raise ContractError(
                    f"{where}: role=id needs type int or string (a key), but got "
                    f"type={self.type.value}. Change the type or remove `role: id`."
                )
            checks = [
                key
                for key in ("min", "max", "categories", "expect")
                if getattr(self, key) is not None
            ]
            if checks:
                raise ContractError(
                    f"{where}: an id column is never range- or category-checked, but it sets "
                    f"{checks}. Remove them, or remove `role: id` to make it a feature."
                )
        if self.type is ColumnType.CATEGORY and self.known_categories is None:
            raise ContractError(
                f"{where}: a category column needs `categories:` (the allowed values) or "
                "`expect: {categories: [...]}` (the expected ones). List them, or use "
                "type: string for free text."
            )

    @property
    def is_id(self) -> bool:
        return self.role is ColumnRole.ID

    @property
    def known_categories(self) -> tuple[Any, ...] | None:
        """The allowed or, failing those, the expected categories, in contract order."""
        if self.categories is not None:
            return self.categories
        return None if self.expect is None else self.expect.categories

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type.value}
        if self.role is not ColumnRole.FEATURE:
            out["role"] = self.role.value
        out["nullable"] = self.nullable
        if self.min is not None:
            out["min"] = self.min
        if self.max is not None:
            out["max"] = self.max
        if self.categories is not None:
            out["categories"] = list(self.categories)
        if self.expect is not None:
            out["expect"] = self.expect.to_dict()
        return out


_COLUMN_KEYS = {"name", "type", "role", "nullable", "min", "max", "categories", "expect"}
_EXPECT_KEYS = {"min", "max", "categories", "strict"}
_CONTRACT_KEYS = {"name", "task", "label", "columns", "version"}


def _parse_number(where: str, key: str, value: Any) -> float | None:
    try:
        # PyYAML reads `1e-3` as a string: convert explicitly.
        return None if value is None else float(value)
    except (TypeError, ValueError):
        raise ContractError(f"{where}: {key}={value!r} is not a number.") from None


def _parse_categories(where: str, key: str, cats: Any, ctype: ColumnType) -> tuple[Any, ...] | None:
    if cats is None:
        return None
    if not isinstance(cats, list):
        raise ContractError(f"{where}: {key} must be a list, but got {cats!r}.")
    if ctype is ColumnType.INT:
        try:
            return tuple(int(c) for c in cats)
        except (TypeError, ValueError):
            raise ContractError(f"{where}: int {key} must be integers: {cats!r}.") from None
    return tuple(str(c) for c in cats)


def _parse_expect(where: str, raw: Any, ctype: ColumnType) -> Expectation | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ContractError(
            f"{where}: expect must be a mapping (min, max, categories, strict), but got "
            f"expect={raw!r}."
        )
    unknown = set(raw) - _EXPECT_KEYS
    if unknown:
        raise ContractError(
            f"{where}: unknown key(s) {sorted(unknown)} under expect. "
            f"Allowed keys: {sorted(_EXPECT_KEYS)}."
        )
    strict = raw.get("strict", False)
    if not isinstance(strict, bool):
        raise ContractError(
            f"{where}: expect.strict must be true or false, but got expect.strict={strict!r}."
        )
    return Expectation(
        min=_parse_number(where, "expect.min", raw.get("min")),
        max=_parse_number(where, "expect.max", raw.get("max")),
        categories=_parse_categories(where, "expect.categories", raw.get("categories"), ctype),
        strict=strict,
    )


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
    try:
        role = ColumnRole(str(raw.get("role", ColumnRole.FEATURE.value)))
    except ValueError:
        raise ContractError(
            f"{where}: role={raw.get('role')!r} is not one of {[r.value for r in ColumnRole]}."
        ) from None
    nullable = raw.get("nullable", False)
    if not isinstance(nullable, bool):
        raise ContractError(f"{where}: nullable must be true or false, but got {nullable!r}.")
    return ColumnSpec(
        name=name,
        type=ctype,
        nullable=nullable,
        min=_parse_number(where, "min", raw.get("min")),
        max=_parse_number(where, "max", raw.get("max")),
        categories=_parse_categories(where, "categories", raw.get("categories"), ctype),
        role=role,
        expect=_parse_expect(where, raw.get("expect"), ctype),
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
        if spec.is_id:
            raise ContractError(
                f"contract `{self.name}`: the label column `{self.label}` cannot have role: id."
                " Remove `role: id` or choose another label."
            )
        if self.task.is_classification:
            if spec.categories is None:
                moved = (
                    " Classes are a rule, not an expectation: move them out of `expect:`."
                    if spec.known_categories is not None
                    else ""
                )
                raise ContractError(
                    f"contract `{self.name}`: a {self.task.value} label needs `categories:` "
                    f"(the classes, in index order) on column `{self.label}`.{moved}"
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
        """The columns a model sees: all but the label and the id columns."""
        return [c for c in self.columns if c.name != self.label and not c.is_id]

    @property
    def id_columns(self) -> list[ColumnSpec]:
        return [c for c in self.columns if c.is_id]

    @property
    def inference_columns(self) -> list[ColumnSpec]:
        """The columns a row to predict carries: ids and features (all but the label)."""
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
_ID_WORDS = frozenset({"id", "uuid", "guid", "key"})
_CAMEL_ID = re.compile(r"[a-z0-9](Id|ID|Key|Uuid|UUID|Guid|GUID)$")  # userId, orderKey
# Without a name hint, an int column needs this many rows, all distinct, to pass for a key:
# in a small sample even ages can be all distinct (and, in a sorted file, increasing).
_ID_MIN_ROWS = 100
_KEY_TEXT = r"^\S{1,64}$"  # keys are short and have no spaces; free text has both


def _id_name(name: str) -> bool:
    words = [w for w in re.split(r"[^0-9a-z]+", name.lower()) if w]
    return (bool(words) and words[-1] in _ID_WORDS) or bool(_CAMEL_ID.search(name))


def _looks_like_id(name: str, col: pa.ChunkedArray, ctype: ColumnType, max_categories: int) -> bool:
    """Whether a sample column is an identifier, by the rule `infer_contract` documents."""
    n = len(col)
    if ctype not in (ColumnType.INT, ColumnType.STRING) or n < 2 or col.null_count:
        return False
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)  # count_distinct has no dictionary kernel
    if pc.count_distinct(col).as_py() != n:
        return False  # a repeated value: a foreign key or a measurement, not this row's key
    if _id_name(name):
        return True
    if ctype is ColumnType.STRING:
        # More distinct values than a category may have, and every one key-like.
        if n <= max_categories:
            return False
        try:
            key_like = pc.match_substring_regex(col.cast(pa.string()), _KEY_TEXT)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return False  # binary, not UTF-8: left to the reviewer
        return bool(pc.all(key_like).as_py())
    if n < _ID_MIN_ROWS:
        return False
    values = col.to_numpy()
    lo, hi = int(values.min()), int(values.max())
    # A sequence (increasing in file order) or dense keys (they fill half their range), where a
    # measurement with distinct values is spread thin over its range.
    increasing = bool((np.diff(values) > 0).all())
    return lo >= 0 and (increasing or n >= 0.5 * (hi - lo + 1))


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

    What the sample shows becomes expectations (`expect:`), not rules: numeric ranges are the
    observed ones widened by `range_margin` of their span, and string columns with at most
    `max_categories` distinct values become categories whose seen values are expected. Rows of
    the full data outside them are counted as warnings, not rejected. The label's classes are
    rules (a class the model never saw cannot be trained on). A column is nullable when the
    sample has a null in it.

    A column becomes an id (`role: id`, no ranges, never a feature) when it is int or string,
    not the label, null-free and unique in the sample, and either its name says so (its last
    word is id, uuid, guid or key, as in `id`, `user_id`, `order-key`, `userId`) or its values
    do: strings with more than `max_categories` values, none with spaces or over 64 characters;
    ints (at least 100 rows) that are non-negative and either increase in file order or fill at
    least half of their [min, max] range, as row numbers and dense keys do and measurements
    rarely do. (An increasing timestamp passes too; `role: feature` in the contract keeps it a
    feature.)
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
        raw = table.column(col_name)
        col = _numeric_despite_typos(raw)
        ctype = _logical_type(col.type)
        is_label = col_name == label
        if not is_label and _looks_like_id(col_name, col, ctype, max_categories):
            columns.append(ColumnSpec(name=col_name, type=ctype, role=ColumnRole.ID))
            continue
        nullable = raw.null_count > 0  # a typo made null above is not a null of the data
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
        if is_label:
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
        seen_cats = None if is_label else cats
        expect = (
            Expectation(min=lo, max=hi, categories=seen_cats)
            if lo is not None or hi is not None or seen_cats is not None
            else None
        )
        columns.append(
            ColumnSpec(
                name=col_name,
                type=ctype,
                nullable=nullable,
                categories=cats if is_label else None,
                expect=expect,
            )
        )
    assert task is not None  # set when the label column was visited
    return Contract(name=name, task=task, label=label, columns=tuple(columns))


_NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
_INTEGER = r"^\s*[-+]?\d+\s*$"
_NUMERIC_SHARE = 0.95  # a text column this numeric is a numeric column with a few typos


def _numeric_despite_typos(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """A text column whose values are nearly all numbers, as those numbers (typos as nulls).

    A few bad values ("n/a", "12,5", "?") make a CSV reader type a whole numeric column as
    text; a contract inferred from that would make the feature a category and accept the bad
    rows. The sample's typos are left out of its range; the checked data rejects them.
    """
    if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
        return col
    values = col.drop_null()
    if len(values) == 0:
        return col
    numeric = pc.match_substring_regex(values, _NUMBER)
    if pc.sum(numeric).as_py() / len(values) < _NUMERIC_SHARE:
        return col
    good = pc.filter(values, numeric)
    whole = pc.all(pc.match_substring_regex(good, _INTEGER)).as_py()
    kept = pc.if_else(pc.match_substring_regex(col, _NUMBER), col, pa.scalar(None, col.type))
    return pc.cast(pc.utf8_trim_whitespace(kept), pa.int64() if whole else pa.float64())
