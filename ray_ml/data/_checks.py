"""Vectorized contract checks over one Arrow table (one Ray Data block).

`check_table` is a pure function: the distributed validation maps it over blocks, the benchmark's
single-process baseline calls it directly, so both measure the same checks. Every check is a
pyarrow compute kernel over whole columns; Python only touches the (few) rejected rows, to record
their raw values.

Output schema: the contract's columns with the contract's Arrow types, then
`_reject_reason` (null for good rows; otherwise `column:rule` entries joined by `;`),
`_raw` (null for good rows; the row's original values as JSON), `_warnings` (null unless the
row breaks a soft expectation, see the contract's `expect:`; then `column:rule` entries joined
by `;`; such a row is kept) and `_row_hash` (uint64 content hash, see `row_hashes`). Rows keep
their input order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ray_ml.data._contract import ColumnSpec, ColumnType, Contract

__all__ = [
    "PARSE_ERROR_COLUMN",
    "RAW_COLUMN",
    "RAW_LINE_COLUMN",
    "REASON_COLUMN",
    "ROW_HASH_COLUMN",
    "WARNINGS_COLUMN",
    "check_table",
    "checked_schema",
    "row_hashes",
]

REASON_COLUMN = "_reject_reason"
RAW_COLUMN = "_raw"
ROW_HASH_COLUMN = "_row_hash"
WARNINGS_COLUMN = "_warnings"
# Set by the tolerant readers on rows they could not parse (a bad CSV line, a bad JSON line, an
# unreadable file); those rows carry no column values, only the error and the raw text.
PARSE_ERROR_COLUMN = "_parse_error"
RAW_LINE_COLUMN = "_raw_line"

_FLOAT_RE = r"^\s*[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf|infinity|nan)\s*$"
_TRUE = ["true", "t", "yes", "y", "1"]
_FALSE = ["false", "f", "no", "n", "0"]


def checked_schema(contract: Contract) -> pa.Schema:
    """The schema `check_table` produces for the full contract."""
    return (
        contract.arrow_schema.append(pa.field(REASON_COLUMN, pa.string()))
        .append(pa.field(RAW_COLUMN, pa.string()))
        .append(pa.field(WARNINGS_COLUMN, pa.string()))
        .append(pa.field(ROW_HASH_COLUMN, pa.uint64()))
    )


# -- coercion -------------------------------------------------------------------------------------
def _as_string(arr: pa.Array) -> tuple[pa.Array, pa.Array | None]:
    """Binary -> string with per-cell UTF-8 check; returns (strings, bad-encoding mask)."""
    if pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type):
        try:
            return arr.cast(pa.string()), None
        except pa.ArrowInvalid:
            # Rare path (a file in the wrong encoding): decode cell by cell to find the culprits.
            decoded: list[str | None] = []
            bad: list[bool] = []
            for v in arr.to_pylist():
                if v is None:
                    decoded.append(None)
                    bad.append(False)
                    continue
                try:
                    decoded.append(v.decode("utf-8"))
                    bad.append(False)
                except UnicodeDecodeError:
                    decoded.append(None)
                    bad.append(True)
            return pa.array(decoded, pa.string()), pa.array(bad, pa.bool_())
    if pa.types.is_large_string(arr.type) or pa.types.is_string_view(arr.type):
        return arr.cast(pa.string()), None
    if pa.types.is_dictionary(arr.type):
        return _as_string(arr.dictionary_decode())
    return arr, None


def _coerce(arr: pa.Array, spec: ColumnSpec) -> tuple[pa.Array, dict[str, pa.Array]]:
    """Cast `arr` to the contract type; returns the typed array and masks of rule failures.

    Cells that cannot be converted become null in the typed array and are flagged `type`
    (or `encoding`), so the null check does not report them a second time.
    """
    target = spec.type.arrow_type
    fails: dict[str, pa.Array] = {}
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), target), fails
    is_text = (
        pa.types.is_string(arr.type)
        or pa.types.is_large_string(arr.type)
        or pa.types.is_string_view(arr.type)
        or pa.types.is_binary(arr.type)
        or pa.types.is_large_binary(arr.type)
    )
    if is_text:
        arr, bad_enc = _as_string(arr)
        if bad_enc is not None:
            fails["encoding"] = bad_enc
        if spec.type in (ColumnType.STRING, ColumnType.CATEGORY):
            return arr, fails
        # Empty or blank cells are missing values, as in every CSV reader.
        stripped = pc.utf8_trim_whitespace(arr)
        arr = pc.if_else(pc.equal(stripped, ""), pa.scalar(None, pa.string()), stripped)
        if spec.type is ColumnType.BOOL:
            lower = pc.utf8_lower(arr)
            is_t = pc.is_in(lower, value_set=pa.array(_TRUE))
            is_f = pc.is_in(lower, value_set=pa.array(_FALSE))
            ok = pc.or_(is_t, is_f)
            fails["type"] = pc.and_(pc.is_valid(arr), pc.invert(ok))
            return pc.if_else(ok, is_t, pa.scalar(None, pa.bool_())), fails
        numeric_ok = pc.match_substring_regex(arr, _FLOAT_RE, ignore_case=True)
        fails["type"] = pc.and_(pc.is_valid(arr), pc.invert(numeric_ok))
        arr = pc.if_else(numeric_ok, arr, pa.scalar(None, pa.string())).cast(pa.float64())
    elif spec.type in (ColumnType.STRING, ColumnType.CATEGORY):
        if pa.types.is_floating(arr.type):
            # 3.0 read from a float column is the category "3", not "3.0".
            integral = pc.equal(arr, pc.floor(arr))
            as_int = pc.if_else(integral, arr, pa.scalar(None, arr.type)).cast(
                pa.int64(), safe=False
            )
            return pc.if_else(integral, as_int.cast(pa.string()), arr.cast(pa.string())), fails
        try:
            return arr.cast(pa.string()), fails
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            fails["type"] = pc.is_valid(arr)
            return pa.nulls(len(arr), target), fails
    elif spec.type is ColumnType.BOOL:
        if pa.types.is_boolean(arr.type):
            return arr, fails
        if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
            ok = pc.is_in(arr, value_set=pa.array([0, 1], arr.type))
            fails["type"] = pc.and_(pc.is_valid(arr), pc.invert(ok))
            return pc.if_else(
                ok, pc.equal(arr, pa.scalar(1, arr.type)), pa.scalar(None, pa.bool_())
            ), fails
        fails["type"] = pc.is_valid(arr)
        return pa.nulls(len(arr), target), fails
    elif not (
        pa.types.is_integer(arr.type)
        or pa.types.is_floating(arr.type)
        or pa.types.is_boolean(arr.type)
        or pa.types.is_decimal(arr.type)
    ):
        fails["type"] = pc.is_valid(arr)
        return pa.nulls(len(arr), target), fails

    # Numeric target from a numeric (or parsed) array.
    if pa.types.is_floating(arr.type):
        arr = arr.cast(pa.float64())
        # NaN is a missing value (pandas writes it for nulls); +-inf is a real, non-finite value.
        arr = pc.if_else(pc.is_nan(arr), pa.scalar(None, pa.float64()), arr)
        inf = pc.is_inf(arr)
        if pc.any(inf).as_py():
            fails["non_finite"] = pc.fill_null(inf, False)
            arr = pc.if_else(inf, pa.scalar(None, pa.float64()), arr)
        if spec.type is ColumnType.INT:
            integral = pc.equal(arr, pc.floor(arr))
            bad = pc.fill_null(pc.invert(integral), False)
            fails["type"] = pc.or_(fails["type"], bad) if "type" in fails else bad
            return pc.if_else(integral, arr, pa.scalar(None, pa.float64())).cast(
                pa.int64(), safe=False
            ), fails
        return arr, fails
    return arr.cast(target, safe=False), fails


def _bound_masks(
    values: pa.Array,
    lo: float | None,
    hi: float | None,
    categories: tuple[Any, ...] | None,
) -> dict[str, pa.Array]:
    masks: dict[str, pa.Array] = {}
    if lo is not None:
        masks["range"] = pc.less(values, pa.scalar(lo))
    if hi is not None:
        above = pc.greater(values, pa.scalar(hi))
        masks["range"] = pc.or_(masks["range"], above) if "range" in masks else above
    if categories is not None:
        value_set = pa.array(list(categories), values.type)
        masks["category"] = pc.and_(
            pc.is_valid(values), pc.invert(pc.is_in(values, value_set=value_set))
        )
    return {k: pc.fill_null(v, False) for k, v in masks.items()}


def _rule_masks(
    values: pa.Array, spec: ColumnSpec
) -> tuple[dict[str, pa.Array], dict[str, pa.Array]]:
    """(rejecting, warning) masks per rule: the column's rules, then its expectations."""
    # The contract allows min/max on numeric columns only, so no type test is needed here.
    rejects = _bound_masks(values, spec.min, spec.max, spec.categories)
    warns: dict[str, pa.Array] = {}
    e = spec.expect
    if e is not None:
        expected = _bound_masks(values, e.min, e.max, e.categories)
        if e.strict:
            for rule, mask in expected.items():
                rejects[rule] = pc.or_(rejects[rule], mask) if rule in rejects else mask
        else:
            warns = expected
    return rejects, warns


def _joined_rules(rules: list[tuple[str, pa.Array]], n: int) -> pa.Array:
    """`column:rule` names joined by `;` where a row's mask is set, else null.

    Vectorized, unlike the reject reasons: warnings may be set on most rows of a block. Each
    distinct combination of rules is joined once, then gathered. (pyarrow's
    `binary_join_element_wise` with null_handling="skip" drops all-null rows in pyarrow 26.)
    """
    hit = [
        (name, np.asarray(pc.fill_null(m, False).to_numpy(zero_copy_only=False), bool))
        for name, m in rules
    ]
    hit = [(name, m) for name, m in hit if m.any()]
    if not hit:
        return pa.nulls(n, pa.string())
    combos, which = np.unique(np.stack([m for _, m in hit], axis=1), axis=0, return_inverse=True)
    joined = [
        ";".join(name for (name, _), on in zip(hit, row, strict=True) if on) or None
        for row in combos
    ]
    return pa.array(joined, pa.string()).take(pa.array(which.reshape(-1), pa.int64()))


# -- hashing --------------------------------------------------------------------------------------
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, vectorized: a fast, well-mixed uint64 -> uint64 map."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64, copy=True) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def _column_hash(arr: pa.Array, salt: int) -> np.ndarray:
    n = len(arr)
    if pa.types.is_null(arr.type):
        return np.full(n, salt, np.uint64)
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        # Hash each distinct value once (categories repeat a lot), then gather.
        enc = pc.dictionary_encode(arr)
        if len(enc.dictionary) == 0:
            return splitmix64(np.full(n, 0x5BD1E995 ^ salt, np.uint64))
        dict_hash = pd.util.hash_array(np.asarray(enc.dictionary.to_pylist(), dtype=object))
        idx = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False)
        bits = np.where(idx >= 0, dict_hash[np.clip(idx, 0, None)], np.uint64(0x5BD1E995))
    else:
        if pa.types.is_boolean(arr.type):
            arr = arr.cast(pa.uint8())
        filled = arr.fill_null(0) if arr.null_count else arr
        values = filled.to_numpy(zero_copy_only=False)
        if values.dtype.kind == "f":
            values = values.astype(np.float64) + 0.0  # -0.0 and 0.0 hash alike
            bits = values.view(np.uint64)
        else:
            bits = values.astype(np.int64).view(np.uint64)
        if arr.null_count:
            valid = arr.is_valid().to_numpy(zero_copy_only=False)
            bits = np.where(valid, bits, np.uint64(0x5BD1E995))
    return splitmix64(bits ^ np.uint64(salt))


def row_hashes(table: pa.Table) -> np.ndarray:
    """A uint64 content hash per row over all columns of `table`, independent of blocking.

    Used for the dataset fingerprint (summed, so it does not depend on row order or block
    boundaries) and for the split assignment (identical rows land in the same split).
    """
    h = np.zeros(table.num_rows, np.uint64)
    for i, name in enumerate(table.column_names):
        arr = table.column(name).combine_chunks()
        salt = int(pd.util.hash_array(np.asarray([name], dtype=object))[0]) ^ i
        h = splitmix64(h ^ _column_hash(arr, salt))
    return h


# -- the check ------------------------------------------------------------------------------------
def _raw_cell(v: Any) -> Any:
    # Not `ray_ml._json.jsonable`: a quarantined cell must show what it held ("nan", not null).
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if np.isfinite(v) else str(v)  # keep the JSON strict: "nan", "inf"
    return str(v)


def _raw_json(raw: pa.Table, idx: np.ndarray) -> list[str]:
    sub = raw.take(pa.array(idx, pa.int64()))
    cols: dict[str, list[Any]] = {}
    for name in sub.column_names:
        if name == PARSE_ERROR_COLUMN:
            continue
        arr = sub.column(name).combine_chunks()
        if pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type):
            cols[name] = [
                None if v is None else v.decode("utf-8", "backslashreplace")
                for v in arr.to_pylist()
            ]
        else:
            cols[name] = [_raw_cell(v) for v in arr.to_pylist()]
    out = []
    for i in range(len(idx)):
        row = {k: v[i] for k, v in cols.items()}
        if RAW_LINE_COLUMN in row:
            line = row.pop(RAW_LINE_COLUMN)
            if line is not None:
                row = {RAW_LINE_COLUMN: line}
        out.append(json.dumps(row, default=str))
    return out


def check_table(
    raw: pa.Table, contract: Contract, columns: Sequence[ColumnSpec] | None = None
) -> pa.Table:
    """Coerce `raw` to the contract and flag every rule a row breaks.

    Columns missing from `raw` are all null (and flagged `missing` unless nullable); columns not
    in the contract are not carried over. `columns` restricts the check to some of the
    contract's columns (one side of a join). See the module docstring for the output schema.
    """
    specs = list(contract.columns if columns is None else columns)
    schema = pa.schema([pa.field(c.name, c.type.arrow_type) for c in specs])
    n = raw.num_rows
    typed: dict[str, pa.Array] = {}
    reasons: list[tuple[str, pa.Array]] = []
    warnings: list[tuple[str, pa.Array]] = []
    parse_err = None
    if PARSE_ERROR_COLUMN in raw.column_names:
        parse_err = pc.is_valid(raw.column(PARSE_ERROR_COLUMN).combine_chunks())
        reasons.append(("_row:parse", parse_err))
    for spec in specs:
        if spec.name not in raw.column_names:
            typed[spec.name] = pa.nulls(n, spec.type.arrow_type)
            if not spec.nullable:
                reasons.append((f"{spec.name}:missing", pa.array(np.ones(n, bool))))
            continue
        values, fails = _coerce(raw.column(spec.name).combine_chunks(), spec)
        # Kernels propagate nulls (null AND false is null): a mask must be plain booleans.
        fails = {rule: pc.fill_null(mask, False) for rule, mask in fails.items()}
        typed[spec.name] = values
        already = None
        for rule, mask in fails.items():
            reasons.append((f"{spec.name}:{rule}", mask))
            already = mask if already is None else pc.or_(already, mask)
        if not spec.nullable:
            null = pc.is_null(values)
            if already is not None:
                null = pc.and_(null, pc.invert(already))
            if parse_err is not None:  # an unparsed row is reported once, as a parse error
                null = pc.and_(null, pc.invert(parse_err))
            reasons.append((f"{spec.name}:null", null))
        rejects, warns = _rule_masks(values, spec)
        reasons.extend((f"{spec.name}:{rule}", mask) for rule, mask in rejects.items())
        warnings.extend((f"{spec.name}:{rule}", mask) for rule, mask in warns.items())

    table = pa.table(typed, schema=schema)
    bad_np = np.zeros(n, bool)
    mask_np: list[tuple[str, np.ndarray]] = []
    for reason, mask in reasons:
        m = np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), bool)
        if m.any():
            mask_np.append((reason, m))
            bad_np |= m
    hashes = row_hashes(table)
    warn_col = _joined_rules(warnings, n)
    if not bad_np.any():
        return (
            table.append_column(REASON_COLUMN, pa.nulls(n, pa.string()))
            .append_column(RAW_COLUMN, pa.nulls(n, pa.string()))
            .append_column(WARNINGS_COLUMN, warn_col)
            .append_column(ROW_HASH_COLUMN, pa.array(hashes, pa.uint64()))
        )

    bad_idx = np.flatnonzero(bad_np)
    reason_lists: list[list[str]] = [[] for _ in bad_idx]
    for reason, m in mask_np:
        for j in np.flatnonzero(m[bad_idx]):
            reason_lists[j].append(reason)
    raw_json = _raw_json(raw, bad_idx)
    # Rejected rows hash over their raw text too: two different bad rows differ in fingerprint.
    hashes[bad_idx] ^= pd.util.hash_array(np.asarray(raw_json, dtype=object))
    # Scatter the few rejected rows' strings into null columns: no copy of the good rows.
    bad_mask = pa.array(bad_np)
    reason_col = pc.replace_with_mask(
        pa.nulls(n, pa.string()),
        bad_mask,
        pa.array([";".join(r) for r in reason_lists], pa.string()),
    )
    raw_col = pc.replace_with_mask(
        pa.nulls(n, pa.string()), bad_mask, pa.array(raw_json, pa.string())
    )
    return (
        table.append_column(REASON_COLUMN, reason_col)
        .append_column(RAW_COLUMN, raw_col)
        .append_column(WARNINGS_COLUMN, warn_col)
        .append_column(ROW_HASH_COLUMN, pa.array(hashes, pa.uint64()))
    )
