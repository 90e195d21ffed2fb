"""Request validation for the inference service: an HTTP body in, a typed Arrow table out.

`RequestValidator` checks a `POST /v1/predict` body, `{"rows": [{column: value, ...}, ...]}`,
against the model bundle's data contract and returns a table with exactly the contract's feature
columns, typed as in training, ready for `Predictor.predict`. Every bad input becomes a
`RequestError` (a 4xx status, a short machine code, the offending field and a message); nothing
else escapes, so a client can never cause a 5xx. Messages quote at most ~40 characters of an
offending value and never echo the payload.

The checks are strict where the batch pipeline is lenient on purpose: the batch check coerces
CSV text ("3", "yes") because files are messy, while an API client sends JSON and should learn
about a type mistake at once rather than get a prediction from a silently coerced value.

Speed: the common case (every row has exactly the feature keys, every value of the right JSON
type) runs per column through C-level builtins (`map`, `set`, `min`, `max`) or numpy for larger
batches; the per-value Python loop only runs when a column holds nulls, mixed types or an error.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import AsyncIterable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, NoReturn

import numpy as np
import pyarrow as pa

from ray_ml.data import ColumnSpec, ColumnType, Contract
from ray_ml.errors import ConfigError, RayMLError

__all__ = ["RequestError", "RequestLimits", "RequestValidator"]

_QUOTE_CHARS = 40  # the most characters of a client's value (or key) that a message repeats
_MAX_LISTED_CATEGORIES = 10
_VECTOR_MIN_ROWS = 64  # below this, builtins beat numpy's per-call overhead
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_JSON_TYPES = ("application/json",)
_CHARSETS = ("utf-8", "utf8")  # "utf8" is a common alias that Python decodes identically


class _Missing:
    """Sentinel type for a key absent from a row (distinct from an explicit JSON null)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()
_CONTAINERS = frozenset((dict, list))
_NUMBER_TYPES = frozenset((float, int))
_FLOAT_ONLY = frozenset((float,))
_INT_ONLY = frozenset((int,))
_BOOL_ONLY = frozenset((bool,))
_STR_ONLY = frozenset((str,))
_JSON_CONSTANTS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

# One decoder for every request: json.loads with keyword arguments would build a new one per
# call. NaN/Infinity literals (not standard JSON, but Python and JavaScript clients emit them)
# parse to floats so that the per-column check reports them as `not_finite` with the column name.
_DECODER = json.JSONDecoder(parse_constant=_JSON_CONSTANTS.__getitem__)


class RequestError(RayMLError):
    """A client error: HTTP status, a short machine code, the offending field (or None), a message.

    Args:
        status: HTTP status to answer with (400, 413, 415 or 422).
        code: Short, stable machine-readable code, e.g. `missing_column`.
        message: Human-readable explanation naming the field and the fix; never the payload.
        field: The offending field (`rows`, `rows[3]`, a column name) or None for the whole body.
    """

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def __reduce__(self) -> tuple[Any, ...]:
        # The default reduce would call RequestError(message) and fail on the missing arguments
        # when the error travels back from a Serve replica.
        return (type(self), (self.status, self.code, self.message, self.field))

    def to_json(self) -> dict[str, Any]:
        """The JSON response body: `{"error": code, "field": field, "message": message}`."""
        return {"error": self.code, "field": self.field, "message": self.message}


@dataclass(frozen=True)
class RequestLimits:
    """Size limits of one prediction request.

    Attributes:
        max_rows: Most rows in one request.
        max_body_bytes: Most bytes in one request body.
        max_json_depth: Deepest nesting of objects and arrays; the top-level object is depth 1
            and the `{"rows": [{...}]}` shape is depth 3.
    """

    max_rows: int = 1024
    max_body_bytes: int = 4 * 1024 * 1024
    max_json_depth: int = 10

    def __post_init__(self) -> None:
        for key, minimum in (("max_rows", 1), ("max_body_bytes", 1), ("max_json_depth", 3)):
            value = getattr(self, key)
            if type(value) is not int or value < minimum:
                why = " (a body {'rows': [{...}]} is already depth 3)" if minimum == 3 else ""
                raise ConfigError(
                    f"RequestLimits.{key} must be an integer >= {minimum}{why}, but got "
                    f"{key}={value!r}."
                )


# -- message helpers --------------------------------------------------------------------------
def _clip(text: str) -> str:
    """At most `_QUOTE_CHARS` characters of client text, safe to encode as UTF-8 in a response."""
    if len(text) > _QUOTE_CHARS:
        text = text[:_QUOTE_CHARS] + "…"
    # A lone surrogate (JSON allows "\ud800") would make the response's UTF-8 encoding fail.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _quote(text: str) -> str:
    if len(text) <= _QUOTE_CHARS:
        return repr(text)
    r = repr(text[:_QUOTE_CHARS])
    return r[:-1] + "…" + r[-1]


def _describe(value: Any) -> str:
    """A short description of a JSON value for a message, e.g. `the string 'abc'`."""
    t = type(value)
    if value is None or value is _MISSING:
        return "null"
    if t is bool:
        return f"the boolean {'true' if value else 'false'}"
    if t is int:
        return f"the number {_clip(str(value))}"
    if t is float:
        return f"the number {_float_text(value)}"
    if t is str:
        return f"the string {_quote(value)}"
    if t is dict:
        return "an object"
    if t is list:
        return "an array"
    return f"a {t.__name__}"  # not reachable from json.loads


def _float_text(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return repr(x)


def _bound_text(bound: float, integral: bool) -> str:
    return str(_bound_json(bound, integral))


def _bound_json(bound: float | None, integral: bool) -> float | int | None:
    if bound is None:
        return None
    return int(bound) if integral and float(bound).is_integer() else float(bound)


def _more_rows(count: int) -> str:
    if count <= 1:
        return ""
    more = count - 1
    return f" (and {more} more row{'s' if more > 1 else ''} with problems)"


def _too_deep(limit: int) -> RequestError:
    return RequestError(
        400,
        "too_deep",
        f"the JSON body nests objects/arrays deeper than the limit of {limit}. A request is "
        '{"rows": [{"column": value, ...}]}: depth 3, with plain values in the rows.',
    )


def _exceeds_depth(root: Any, limit: int) -> bool:
    """Whether `root` nests dicts/lists deeper than `limit`; iterative, stops at the first hit."""
    if type(root) not in _CONTAINERS:
        return False
    stack: list[tuple[Any, int]] = [(root, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        children = node.values() if type(node) is dict else node
        # C-level early exit: most nodes (a row of numbers) have no container children.
        if _CONTAINERS.isdisjoint(map(type, children)):
            continue
        if depth + 1 > limit:
            return True
        for child in children:
            # An empty container adds no depth below it: skipping it keeps [[], [], ...] cheap.
            if (type(child) is dict or type(child) is list) and child:
                push((child, depth + 1))
    return False


class _Bad(Exception):
    """One value's problem, raised by `_Column.convert` and turned into a RequestError."""

    def __init__(self, code: str, text: str) -> None:
        self.code = code
        self.text = text


class _Problems:
    """The first problem in (row, column order) and the set of rows with any problem.

    Columns are checked in contract order, so once a row has a problem no later column can give
    it an earlier one: later columns skip such rows, and a message is only formatted when it
    becomes the first. A body of 1024 bad rows thus costs about as much as a good one.
    """

    __slots__ = ("first", "first_key", "rows")

    def __init__(self) -> None:
        self.first: RequestError | None = None
        self.first_key: tuple[int, int] = (0, 0)
        self.rows: set[int] = set()

    def beats(self, row: int, order: int) -> bool:
        """Whether a problem at (row, order) would be the new first problem."""
        return self.first is None or (row, order) < self.first_key

    def add(self, row: int, order: int, code: str, message: str, field: str | None) -> None:
        self.rows.add(row)
        if self.beats(row, order):
            self.first = RequestError(422, code, message, field)
            self.first_key = (row, order)

    def raise_first(self) -> NoReturn:
        assert self.first is not None  # only called when a problem was added
        err = self.first
        message = err.message + _more_rows(len(self.rows))
        raise RequestError(err.status, err.code, message, err.field)


class _Column:
    """A feature column's checks, precomputed from its `ColumnSpec`."""

    __slots__ = (
        "arrow_type",
        "cat_set",
        "cats_text",
        "getter",
        "hi",
        "kind",
        "lo",
        "name",
        "nullable",
        "order",
        "spec",
    )

    def __init__(self, spec: ColumnSpec, order: int) -> None:
        self.spec = spec
        self.name = spec.name
        self.order = order
        self.kind = spec.type
        self.nullable = spec.nullable
        # float(): a hand-built ColumnSpec may hold int bounds (only the YAML loader converts).
        self.lo = None if spec.min is None else float(spec.min)
        self.hi = None if spec.max is None else float(spec.max)
        self.arrow_type = spec.type.arrow_type
        self.getter = itemgetter(spec.name)
        self.cat_set: frozenset[Any] | None = None
        self.cats_text = ""
        if spec.categories is not None:
            self.cat_set = frozenset(spec.categories)
            shown = ", ".join(
                _quote(c) if isinstance(c, str) else str(c)
                for c in spec.categories[:_MAX_LISTED_CATEGORIES]
            )
            extra = len(spec.categories) - _MAX_LISTED_CATEGORIES
            self.cats_text = shown + (f", … ({len(spec.categories)} in all)" if extra > 0 else "")

    # -- fast path: the whole column at once ----------------------------------------------------
    def fast(self, values: list[Any], types: set[type], n: int) -> pa.Array | None:
        """The typed array if every value is plainly valid, else None (the slow path decides)."""
        kind = self.kind
        # Numeric columns go list -> numpy -> Arrow: pa.array(np) is ~3x faster than from a list.
        if kind is ColumnType.FLOAT:
            if not types <= _NUMBER_TYPES:
                return None
            try:
                a = np.array(values, dtype=np.float64)
            except OverflowError:  # an integer beyond float64's range
                return None
            if n < _VECTOR_MIN_ROWS and types == _FLOAT_ONLY:
                # Few values: C-level builtins beat numpy's per-call overhead. min/max are exact
                # once NaN is ruled out.
                if not all(map(math.isfinite, values)):
                    return None
                lo, hi = min(values), max(values)
            else:
                if not np.isfinite(a).all():
                    return None
                lo, hi = a.min(), a.max()
            return pa.array(a) if self._in_range(lo, hi) else None
        if kind is ColumnType.INT:
            if types != _INT_ONLY:
                return None
            lo, hi = min(values), max(values)
            if lo < _INT64_MIN or hi > _INT64_MAX or not self._in_range(lo, hi):
                return None
            if self.cat_set is not None and not self.cat_set.issuperset(values):
                return None
            return pa.array(np.array(values, dtype=np.int64))
        if kind is ColumnType.BOOL:
            return pa.array(values, type=self.arrow_type) if types == _BOOL_ONLY else None
        # string / category
        if types != _STR_ONLY:
            return None
        if self.cat_set is not None and not self.cat_set.issuperset(values):
            return None
        try:
            return pa.array(values, type=self.arrow_type)
        except (UnicodeEncodeError, pa.ArrowException):  # a lone surrogate: find it slowly
            return None

    def _in_range(self, lo: float, hi: float) -> bool:
        return (self.lo is None or lo >= self.lo) and (self.hi is None or hi <= self.hi)

    # -- slow path: one value at a time, with the exact problem -------------------------------
    def convert(self, v: Any) -> Any:
        """One non-null value -> its Python value for the Arrow array; raises `_Bad`."""
        t = type(v)
        kind = self.kind
        if kind is ColumnType.FLOAT:
            if t is float:
                x = v
            elif t is int:
                try:
                    x = float(v)  # pyarrow rejects ints above 2**53 for float64: convert here
                except OverflowError:
                    raise _Bad(
                        "out_of_range", f"is too large for a 64-bit float, but got {_describe(v)}"
                    ) from None
            else:
                raise _Bad("wrong_type", f"must be a number, but got {_describe(v)}")
            if not math.isfinite(x):
                raise _Bad("not_finite", f"must be a finite number, but got {_float_text(x)}")
            self._check_range(x, v)
            return x
        if kind is ColumnType.INT:
            if t is int:
                i = v
            elif t is float:
                if not math.isfinite(v):
                    raise _Bad("not_finite", f"must be a finite integer, but got {_float_text(v)}")
                if not v.is_integer():
                    raise _Bad("wrong_type", f"must be an integer, but got {_describe(v)}")
                i = int(v)
            else:
                raise _Bad("wrong_type", f"must be an integer, but got {_describe(v)}")
            if not _INT64_MIN <= i <= _INT64_MAX:
                raise _Bad("out_of_range", f"must fit a 64-bit integer, but got {_describe(v)}")
            self._check_range(i, v)
            self._check_category(i, v)
            return i
        if kind is ColumnType.BOOL:
            if t is bool:
                return v
            raise _Bad("wrong_type", f"must be true or false, but got {_describe(v)}")
        if t is not str:
            raise _Bad("wrong_type", f"must be a string, but got {_describe(v)}")
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise _Bad(
                "wrong_type",
                f"must be valid Unicode text, but got {_describe(v)} (it has a lone surrogate "
                "\\uD800-\\uDFFF escape)",
            ) from None
        self._check_category(v, v)
        return v

    def _check_range(self, x: float, raw: Any) -> None:
        integral = self.kind is ColumnType.INT
        if self.lo is not None and x < self.lo:
            raise _Bad(
                "out_of_range",
                f"must be >= {_bound_text(self.lo, integral)} (the contract's min), but got "
                f"{_describe(raw)}",
            )
        if self.hi is not None and x > self.hi:
            raise _Bad(
                "out_of_range",
                f"must be <= {_bound_text(self.hi, integral)} (the contract's max), but got "
                f"{_describe(raw)}",
            )

    def _check_category(self, x: Any, raw: Any) -> None:
        if self.cat_set is not None and x not in self.cat_set:
            raise _Bad(
                "unknown_category", f"must be one of {self.cats_text}, but got {_describe(raw)}"
            )

    def slow(self, values: list[Any], problems: _Problems) -> pa.Array | None:
        """Check value by value, recording problems; the typed array, or None on a problem."""
        out: list[Any] = []
        append = out.append
        bad_rows = problems.rows
        ok = not bad_rows  # with any bad row the request fails: no array needed, only counts
        convert, order, name = self.convert, self.order, self.name
        for i, v in enumerate(values):
            if bad_rows and i in bad_rows:
                continue
            if v is None or v is _MISSING:
                if self.nullable:
                    append(None)
                    continue
                ok = False
                if not problems.beats(i, order):
                    bad_rows.add(i)
                elif v is _MISSING:
                    problems.add(
                        i,
                        order,
                        "missing_column",
                        f"rows[{i}]: missing column `{name}` ({self.kind.value}, not "
                        "nullable). Send a value for every feature column.",
                        name,
                    )
                else:
                    problems.add(
                        i,
                        order,
                        "null_value",
                        f"rows[{i}]: column `{name}` must not be null (the contract does "
                        f"not allow missing values in it); send a {self.kind.value}.",
                        name,
                    )
                continue
            try:
                append(convert(v))
            except _Bad as bad:
                ok = False
                problems.add(i, order, bad.code, f"rows[{i}]: column `{name}` {bad.text}.", name)
        return pa.array(out, type=self.arrow_type) if ok else None

    def describe(self) -> dict[str, Any]:
        s = self.spec
        integral = s.type is ColumnType.INT
        return {
            "name": s.name,
            "type": s.type.value,
            "nullable": s.nullable,
            "min": _bound_json(s.min, integral),
            "max": _bound_json(s.max, integral),
            "categories": None if s.categories is None else list(s.categories),
        }


class RequestValidator:
    """Checks prediction requests against a data contract and returns typed Arrow tables.

    Use `check_headers` before reading the body (it rejects a wrong media type or a declared
    length over the limit without reading anything), `read_body` to read it (it stops at the
    limit), then `parse` on the body.

    Args:
        contract: The model bundle's data contract; its feature columns (every column but the
            label) are what a request row must hold.
        limits: Size limits of one request.

    Example:
        >>> validator = RequestValidator(contract)
        >>> validator.check_headers(request.headers.get("content-type"),
        ...                         request.headers.get("content-length"))
        >>> table = validator.parse(await validator.read_body(request.stream()))
        >>> predictor.predict(table)
    """

    def __init__(self, contract: Contract, limits: RequestLimits = RequestLimits()) -> None:
        self.contract = contract
        self.limits = limits
        features = contract.feature_columns
        self._columns = [_Column(spec, j) for j, spec in enumerate(features)]
        self._names = [c.name for c in self._columns]
        self._feature_keys = frozenset(self._names)
        # An id column (`role: id`) may ride along with a row (it is echoed, never a feature).
        self._allowed_keys = (
            self._feature_keys | {contract.label} | {c.name for c in contract.id_columns}
        )
        self._schema = pa.schema([pa.field(c.name, c.arrow_type) for c in self._columns])

    @property
    def columns(self) -> list[str]:
        """Feature column names, in contract order."""
        return list(self._names)

    def schema_json(self) -> dict[str, Any]:
        """What a request row must look like, for a `GET /v1/models` answer.

        Returns:
            `{"contract", "task", "label", "columns": [{"name", "type", "nullable", "min",
            "max", "categories"}, ...], "limits": {...}}`; absent bounds and categories are None.
        """
        return {
            "contract": self.contract.name,
            "task": self.contract.task.value,
            "label": self.contract.label,
            "columns": [c.describe() for c in self._columns],
            "limits": {
                "max_rows": self.limits.max_rows,
                "max_body_bytes": self.limits.max_body_bytes,
                "max_json_depth": self.limits.max_json_depth,
            },
        }

    # -- headers --------------------------------------------------------------------------------
    def check_headers(self, content_type: str | None, content_length: str | None) -> None:
        """Reject a request by its headers alone, before its body is read.

        Args:
            content_type: The `Content-Type` header, or None when absent.
            content_length: The `Content-Length` header, or None when absent (chunked); the body
                length is checked again by `parse`.

        Raises:
            RequestError: 415 `unsupported_media_type`, 400 `bad_content_length` or 413
                `body_too_large`.
        """
        self._check_content_type(content_type)
        if content_length is None:
            return
        text = content_length.strip()
        if not (text.isascii() and text.isdigit()):
            raise RequestError(
                400,
                "bad_content_length",
                f"the Content-Length header must be a non-negative integer, but got "
                f"{_quote(content_length)}.",
                "Content-Length",
            )
        digits = text.lstrip("0") or "0"
        # Compare lengths first: int() of a huge digit string would be slow (or raise).
        if len(digits) > 19 or int(digits) > self.limits.max_body_bytes:
            raise self._body_too_large(f"declares {_clip(digits)} bytes")

    async def read_body(self, chunks: AsyncIterable[bytes]) -> bytes:
        """Read a streamed request body, refusing it as soon as it grows past the limit.

        `check_headers` refuses a body that declares too many bytes; this refuses one sent
        without a Content-Length (chunked) or with a false one, before it is held in memory.

        Args:
            chunks: The body's chunks as they arrive (e.g. Starlette's `request.stream()`).

        Raises:
            RequestError: 413 `body_too_large`.
        """
        limit = self.limits.max_body_bytes
        parts: list[bytes] = []
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise self._body_too_large(f"has at least {size} bytes")
            parts.append(chunk)
        return b"".join(parts)

    def _check_content_type(self, content_type: str | None) -> None:
        if content_type is None:
            raise RequestError(
                415,
                "unsupported_media_type",
                "the request has no Content-Type header; send the body as JSON with "
                "`Content-Type: application/json`.",
                "Content-Type",
            )
        media, _, params = content_type.partition(";")
        if media.strip().lower() not in _JSON_TYPES:
            raise RequestError(
                415,
                "unsupported_media_type",
                f"Content-Type must be application/json, but got {_quote(content_type)}.",
                "Content-Type",
            )
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset":
                charset = value.strip().strip('"').lower()
                if charset not in _CHARSETS:
                    raise RequestError(
                        415,
                        "unsupported_media_type",
                        f"the body must be UTF-8 JSON, but Content-Type declares charset="
                        f"{_quote(charset)}. Send UTF-8 and `charset=utf-8` (or no charset).",
                        "Content-Type",
                    )

    def _body_too_large(self, what: str) -> RequestError:
        """The one 413 for a body over `max_body_bytes`, whichever check finds it."""
        limit = self.limits.max_body_bytes
        return RequestError(
            413,
            "body_too_large",
            f"the request body {what}, over the limit of {limit} bytes. Split the rows over "
            f"several requests (at most {self.limits.max_rows} rows each).",
        )

    # -- body -----------------------------------------------------------------------------------
    def parse(self, body: bytes) -> pa.Table:
        """Check a request body and return its rows as a table of the contract's feature columns.

        Args:
            body: The raw request body, `{"rows": [{column: value, ...}, ...]}` as UTF-8 JSON.
                A row may also hold the label column (ignored) and may leave out a nullable
                column (null).

        Returns:
            A table with exactly the feature columns, in contract order, typed with the
            contract's Arrow types (float64, int64, bool, string), nulls where allowed.

        Raises:
            RequestError: The first problem in row order, then contract column order; its
                message counts the other rows with problems.
        """
        limits = self.limits
        if len(body) > limits.max_body_bytes:
            raise self._body_too_large(f"has {len(body)} bytes")
        doc = self._decode(body)
        if type(doc) is not dict:
            raise RequestError(
                422,
                "invalid_body",
                f'the body must be a JSON object {{"rows": [...]}}, but got {_describe(doc)}.',
            )
        if "rows" not in doc or len(doc) > 1:
            unknown = next((k for k in doc if k != "rows"), None)
            if unknown is not None:
                raise RequestError(
                    422,
                    "invalid_body",
                    f'unknown top-level key `{_clip(unknown)}`; the body must be {{"rows": [...]}}'
                    " and nothing else.",
                    _clip(unknown),
                )
            raise RequestError(
                422,
                "invalid_body",
                'the body has no "rows" key; send {"rows": [{"column": value, ...}, ...]}.',
                "rows",
            )
        rows = doc["rows"]
        if type(rows) is not list:
            raise RequestError(
                422,
                "invalid_body",
                f'"rows" must be an array of row objects, but got {_describe(rows)}.',
                "rows",
            )
        n = len(rows)
        if n == 0:
            raise RequestError(
                422, "no_rows", '"rows" is empty; send at least one row to predict.', "rows"
            )
        if n > limits.max_rows:
            raise RequestError(
                413,
                "too_many_rows",
                f'"rows" has {n} rows, over the limit of {limits.max_rows}. Split them over '
                "several requests.",
                "rows",
            )
        # After the row count check, so the walk is bounded by max_rows as well as body size.
        if _exceeds_depth(doc, limits.max_json_depth):
            raise _too_deep(limits.max_json_depth)
        return self._rows_to_table(rows, n)

    def _decode(self, body: bytes) -> Any:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestError(
                400,
                "invalid_json",
                f"the body is not valid UTF-8 (bad byte at offset {exc.start}); send UTF-8 JSON.",
            ) from None
        if text.startswith("\ufeff"):
            text = text[1:]  # RFC 8259 lets a parser ignore a byte order mark
        if not text.strip():
            raise RequestError(400, "invalid_json", "the body is empty; send a JSON object.")
        try:
            return _DECODER.decode(text)
        except json.JSONDecodeError as exc:
            raise RequestError(
                400,
                "invalid_json",
                f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}.",
            ) from None
        except RecursionError:
            raise _too_deep(self.limits.max_json_depth) from None
        except ValueError:
            # Python's int parser refuses more than sys.get_int_max_str_digits() digits.
            raise RequestError(
                400,
                "invalid_json",
                "the body has a number with too many digits to parse; send ordinary numbers.",
            ) from None

    def _rows_to_table(self, rows: list[Any], n: int) -> pa.Table:
        problems = _Problems()
        feature_keys, allowed = self._feature_keys, self._allowed_keys
        exact = True  # every row has exactly the feature keys (plus the label, maybe)
        unknown: list[tuple[int, str]] = []
        for i, row in enumerate(rows):
            if type(row) is not dict:
                exact = False
                if problems.first is None:  # only the first invalid row's message is shown
                    problems.add(
                        i,
                        -1,
                        "invalid_row",
                        f"rows[{i}] must be an object {{column: value, ...}}, but got "
                        f"{_describe(row)}.",
                        f"rows[{i}]",
                    )
                else:
                    problems.rows.add(i)
                continue
            keys = row.keys()
            if keys in (feature_keys, allowed):  # dict_keys == set: a C-level comparison
                continue
            exact = False
            if not keys <= allowed:
                unknown.append((i, next(k for k in row if k not in allowed)))

        arrays: list[pa.Array] = []
        for col in self._columns:
            if exact:
                values = list(map(col.getter, rows))
            else:
                values = [r.get(col.name, _MISSING) if type(r) is dict else _MISSING for r in rows]
            arr = col.fast(values, set(map(type, values)), n)
            if arr is None:
                arr = col.slow(values, problems)
            if arr is not None:
                arrays.append(arr)

        order = len(self._columns)  # unknown keys rank after every contract column of a row
        for i, key in unknown:
            if problems.beats(i, order):
                problems.add(i, order, "unknown_column", self._unknown_message(i, key), _clip(key))
            else:
                problems.rows.add(i)
        first = problems.first
        if first is not None:
            row = problems.first_key[0]
            if first.code == "missing_column" and unknown and row in dict(unknown):
                # A missing column next to an unknown key is most often a misspelled name.
                first.message += (
                    f" The row has an unknown column `{_clip(dict(unknown)[row])}`: "
                    "is it misspelled?"
                )
            problems.raise_first()
        return pa.Table.from_arrays(arrays, schema=self._schema)

    def _unknown_message(self, row: int, key: str) -> str:
        message = (
            f"rows[{row}]: unknown column `{_clip(key)}`; the model's contract "
            f"`{self.contract.name}` has no such feature column."
        )
        # Clip before matching: difflib's cost grows with the key's length.
        close = difflib.get_close_matches(key[: 2 * _QUOTE_CHARS], self._names, n=1, cutoff=0.75)
        if close:
            message += f" Did you mean `{close[0]}`?"
        return message
