"""Request validation of the inference service (`ray_ml.serve._validate`), without Ray."""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from ray_ml.data import ColumnSpec, ColumnType, Contract, Task, fit_preprocessor_table
from ray_ml.errors import ConfigError
from ray_ml.serve import RequestError, RequestLimits, RequestValidator

pytestmark = pytest.mark.unit

BREAST_CANCER = Path(__file__).resolve().parents[2] / "ray_ml/data/bundled/breast_cancer.yaml"

CONTRACT = Contract(
    name="toy",
    task=Task.BINARY,
    label="y",
    columns=(
        ColumnSpec("x", ColumnType.FLOAT, min=0.0, max=10.0),
        ColumnSpec("n", ColumnType.INT, min=-5, max=100),
        ColumnSpec("flag", ColumnType.BOOL),
        ColumnSpec("color", ColumnType.CATEGORY, categories=("red", "green", "blue")),
        ColumnSpec("note", ColumnType.STRING, nullable=True),
        ColumnSpec("level", ColumnType.INT, nullable=True, categories=(1, 2, 3)),
        ColumnSpec("y", ColumnType.INT, categories=(0, 1)),
    ),
)
FEATURES = ["x", "n", "flag", "color", "note", "level"]


def good_row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "x": 1.5,
        "n": 7,
        "flag": True,
        "color": "red",
        "note": "hello",
        "level": 2,
    }
    row.update(changes)
    return row


def body(rows: Any) -> bytes:
    return json.dumps({"rows": rows}).encode()


@pytest.fixture
def validator() -> RequestValidator:
    return RequestValidator(CONTRACT)


def expect_error(
    fn: Any, *args: Any, status: int, code: str, field: str | None = "<any>"
) -> RequestError:
    with pytest.raises(RequestError) as info:
        fn(*args)
    err = info.value
    assert (err.status, err.code) == (status, code), err.message
    if field != "<any>":
        assert err.field == field, err.message
    # Every error must serialize to a UTF-8 JSON response.
    json.dumps(err.to_json(), ensure_ascii=False).encode("utf-8")
    return err


# -- happy path -----------------------------------------------------------------------------------
def test_parse_returns_typed_feature_columns(validator: RequestValidator) -> None:
    rows = [
        good_row(y=1),  # the label is allowed and dropped
        good_row(x=3, n=3.0, flag=False, color="blue", note=None, level=None),
        {k: v for k, v in good_row().items() if k not in ("note", "level")},  # nullable absent
    ]
    table = validator.parse(body(rows))
    assert table.column_names == FEATURES == validator.columns
    assert table.schema.types == [
        pa.float64(),
        pa.int64(),
        pa.bool_(),
        pa.string(),
        pa.string(),
        pa.int64(),
    ]
    assert table.to_pydict() == {
        "x": [1.5, 3.0, 1.5],
        "n": [7, 3, 7],
        "flag": [True, False, True],
        "color": ["red", "blue", "red"],
        "note": ["hello", None, None],
        "level": [2, None, None],
    }


def test_parse_large_batch_takes_the_vector_path(validator: RequestValidator) -> None:
    rng = random.Random(0)
    rows = [
        good_row(x=rng.uniform(0, 10), n=rng.randint(-5, 100), level=rng.choice([1, 2, 3]))
        for _ in range(500)
    ]
    rows[10]["x"] = 4  # an int in a float column
    table = validator.parse(body(rows))
    assert table.num_rows == 500
    assert table.column("x").to_pylist() == [float(r["x"]) for r in rows]
    assert table.column("n").to_pylist() == [r["n"] for r in rows]


def test_parse_accepts_bounds_inclusive_and_byte_order_mark(validator: RequestValidator) -> None:
    rows = [good_row(x=0.0, n=-5), good_row(x=10, n=100)]
    table = validator.parse(b"\xef\xbb\xbf" + body(rows))
    assert table.column("x").to_pylist() == [0.0, 10.0]


def test_int_column_takes_integral_floats_only(validator: RequestValidator) -> None:
    assert validator.parse(body([good_row(n=-0.0)])).column("n").to_pylist() == [0]
    err = expect_error(
        validator.parse, body([good_row(n=3.5)]), status=422, code="wrong_type", field="n"
    )
    assert "3.5" in err.message


def test_table_feeds_the_preprocessor(validator: RequestValidator) -> None:
    train = pa.table(
        {
            "x": [1.0, 2.0, 3.0],
            "n": [1, 2, 3],
            "flag": [True, False, True],
            "color": ["red", "green", "blue"],
            "note": ["a", None, "b"],
            "level": [1, None, 3],
            "y": [0, 1, 0],
        }
    )
    pre = fit_preprocessor_table(train, CONTRACT)
    table = validator.parse(body([good_row(), good_row(note=None, level=None)]))
    x = pre.transform(table)
    assert x.shape == (2, pre.num_features)
    assert np.isfinite(x).all()


# -- headers --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        'application/json;charset="UTF-8"',
        "application/json; charset=utf8",
    ],
)
def test_check_headers_accepts_json(validator: RequestValidator, content_type: str) -> None:
    validator.check_headers(content_type, "123")
    validator.check_headers(content_type, None)


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin-1",
    ],
)
def test_check_headers_rejects_other_media_types(
    validator: RequestValidator, content_type: str | None
) -> None:
    expect_error(
        validator.check_headers,
        content_type,
        "10",
        status=415,
        code="unsupported_media_type",
        field="Content-Type",
    )


@pytest.mark.parametrize("length", ["abc", "-1", "1.5", "", "1e3", "\u00b2", "5, 5"])
def test_check_headers_rejects_a_bad_content_length(
    validator: RequestValidator, length: str
) -> None:
    expect_error(
        validator.check_headers,
        "application/json",
        length,
        status=400,
        code="bad_content_length",
        field="Content-Length",
    )


@pytest.mark.parametrize("length", [str(4 * 1024 * 1024 + 1), "9" * 5000])
def test_check_headers_rejects_a_large_declared_body(
    validator: RequestValidator, length: str
) -> None:
    err = expect_error(
        validator.check_headers, "application/json", length, status=413, code="body_too_large"
    )
    assert len(err.message) < 300


def test_check_headers_allows_the_limit_and_leading_zeros(validator: RequestValidator) -> None:
    validator.check_headers("application/json", str(4 * 1024 * 1024))
    validator.check_headers("application/json", " 0000" + "0" * 5000 + "12 ")


# -- body: size, syntax, depth ------------------------------------------------------------------
def test_body_over_the_byte_limit() -> None:
    small = RequestValidator(CONTRACT, RequestLimits(max_body_bytes=100))
    expect_error(small.parse, body([good_row(), good_row()]), status=413, code="body_too_large")


@pytest.mark.parametrize(
    "raw",
    [b"", b"   ", b"{", b'{"rows": [}', b"\xff\xfe{}", b'{"rows": [1,]}', b"{} {}"],
)
def test_invalid_json(validator: RequestValidator, raw: bytes) -> None:
    expect_error(validator.parse, raw, status=400, code="invalid_json", field=None)


def test_syntax_error_names_line_and_column_not_content(validator: RequestValidator) -> None:
    secret = "s3cr3t-value"
    err = expect_error(
        validator.parse,
        b'{"rows": [{"x": "' + secret.encode() + b'" oops}]}',
        status=400,
        code="invalid_json",
    )
    assert "line 1 column" in err.message
    assert secret not in err.message


def test_a_5000_digit_integer_is_invalid_json(validator: RequestValidator) -> None:
    raw = b'{"rows": [{"n": ' + b"1" * 5000 + b"}]}"
    err = expect_error(validator.parse, raw, status=400, code="invalid_json")
    assert "1111111111" not in err.message


def nested(depth_in_row: int) -> bytes:
    """A body whose deepest point is the top-level object + rows + row + `depth_in_row` arrays."""
    value = "[" * depth_in_row + "]" * depth_in_row
    return b'{"rows": [{"x": ' + value.encode() + b"}]}"


def test_depth_at_the_limit_passes_the_depth_check(validator: RequestValidator) -> None:
    # depth 10 (3 + 7 arrays) is allowed; the nested array is then just the wrong type.
    expect_error(validator.parse, nested(7), status=422, code="wrong_type", field="x")


def test_depth_over_the_limit_is_too_deep(validator: RequestValidator) -> None:
    expect_error(validator.parse, nested(8), status=400, code="too_deep", field=None)
    deep_object = b'{"rows": [{"x": 1, "y": ' + b'{"a": ' * 8 + b"1" + b"}" * 8 + b"}]}"
    expect_error(validator.parse, deep_object, status=400, code="too_deep")


def test_a_custom_depth_limit() -> None:
    strict = RequestValidator(CONTRACT, RequestLimits(max_json_depth=3))
    expect_error(strict.parse, nested(1), status=400, code="too_deep")
    assert strict.parse(body([good_row()])).num_rows == 1


def test_a_100k_deep_body_is_too_deep_not_a_crash(validator: RequestValidator) -> None:
    expect_error(validator.parse, b"[" * 100_000, status=400, code="too_deep")
    deep = b'{"rows": [{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}"
    expect_error(validator.parse, deep, status=400, code="too_deep")


# -- body: envelope -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "code", "status", "field"),
    [
        (b"[]", "invalid_body", 422, None),
        (b'"rows"', "invalid_body", 422, None),
        (b"{}", "invalid_body", 422, "rows"),
        (b'{"rows": [], "extra": 1}', "invalid_body", 422, "extra"),
        (b'{"rows": {"x": 1}}', "invalid_body", 422, "rows"),
        (b'{"rows": null}', "invalid_body", 422, "rows"),
        (b'{"rows": []}', "no_rows", 422, "rows"),
        (b'{"rows": [1]}', "invalid_row", 422, "rows[0]"),
    ],
)
def test_envelope_errors(
    validator: RequestValidator, raw: bytes, code: str, status: int, field: str | None
) -> None:
    expect_error(validator.parse, raw, status=status, code=code, field=field)


def test_too_many_rows() -> None:
    small = RequestValidator(CONTRACT, RequestLimits(max_rows=3))
    assert small.parse(body([good_row()] * 3)).num_rows == 3
    err = expect_error(
        small.parse, body([good_row()] * 4), status=413, code="too_many_rows", field="rows"
    )
    assert "4" in err.message and "3" in err.message


def test_invalid_row_is_reported_with_its_index(validator: RequestValidator) -> None:
    err = expect_error(
        validator.parse, body([good_row(), [1, 2]]), status=422, code="invalid_row", field="rows[1]"
    )
    assert "an array" in err.message


# -- body: per-column checks ----------------------------------------------------------------------
def without(key: str) -> dict[str, Any]:
    row = good_row()
    del row[key]
    return row


@pytest.mark.parametrize(
    ("row", "code", "field"),
    [
        (without("x"), "missing_column", "x"),
        (without("color"), "missing_column", "color"),
        (good_row(extra=1), "unknown_column", "extra"),
        (good_row(x="1.5"), "wrong_type", "x"),
        (good_row(x=True), "wrong_type", "x"),
        (good_row(x={"v": 1}), "wrong_type", "x"),
        (good_row(n=True), "wrong_type", "n"),
        (good_row(n="7"), "wrong_type", "n"),
        (good_row(flag=1), "wrong_type", "flag"),
        (good_row(flag="true"), "wrong_type", "flag"),
        (good_row(color=3), "wrong_type", "color"),
        (good_row(note=3), "wrong_type", "note"),
        (good_row(level=2.5), "wrong_type", "level"),
        (good_row(x=-0.1), "out_of_range", "x"),
        (good_row(x=10.5), "out_of_range", "x"),
        (good_row(n=-6), "out_of_range", "n"),
        (good_row(n=101.0), "out_of_range", "n"),
        (good_row(color="purple"), "unknown_category", "color"),
        (good_row(color="Red"), "unknown_category", "color"),
        (good_row(level=4), "unknown_category", "level"),
        (good_row(x=None), "null_value", "x"),
        (good_row(flag=None), "null_value", "flag"),
        (good_row(color=None), "null_value", "color"),
    ],
)
def test_column_errors(
    validator: RequestValidator, row: dict[str, Any], code: str, field: str
) -> None:
    err = expect_error(validator.parse, body([good_row(), row]), status=422, code=code, field=field)
    assert err.message.startswith("rows[1]")
    assert f"`{field}`" in err.message
    assert "more row" not in err.message


def test_messages_name_the_problem(validator: RequestValidator) -> None:
    err = expect_error(validator.parse, body([without("x")]), status=422, code="missing_column")
    assert err.message.startswith("rows[0]: missing column `x`")
    err = expect_error(validator.parse, body([good_row(x=12)]), status=422, code="out_of_range")
    assert "<= 10.0" in err.message and "12" in err.message
    err = expect_error(validator.parse, body([good_row(n=-9)]), status=422, code="out_of_range")
    assert ">= -5 " in err.message
    err = expect_error(
        validator.parse, body([good_row(color="pink")]), status=422, code="unknown_category"
    )
    assert "'red', 'green', 'blue'" in err.message and "'pink'" in err.message


def test_nan_literal_is_not_finite_naming_the_column(validator: RequestValidator) -> None:
    for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e400"):
        raw = b'{"rows": [{"x": ' + literal + b', "n": 1, "flag": true, "color": "red"}]}'
        err = expect_error(validator.parse, raw, status=422, code="not_finite", field="x")
        assert "`x`" in err.message
    raw = b'{"rows": [{"x": 1, "n": NaN, "flag": true, "color": "red"}]}'
    expect_error(validator.parse, raw, status=422, code="not_finite", field="n")


def test_nan_in_a_large_batch_is_found(validator: RequestValidator) -> None:
    rows = [good_row() for _ in range(100)]
    raw = body(rows).replace(b'"x": 1.5', b'"x": NaN', 80)  # rows 0..79
    err = expect_error(validator.parse, raw, status=422, code="not_finite", field="x")
    assert err.message.startswith("rows[0]")
    assert "(and 79 more rows with problems)" in err.message


def test_numbers_beyond_64_bits_are_out_of_range(validator: RequestValidator) -> None:
    expect_error(validator.parse, body([good_row(x=10**400)]), status=422, code="out_of_range")
    unbounded = Contract(
        name="u",
        task=Task.REGRESSION,
        label="y",
        columns=(
            ColumnSpec("i", ColumnType.INT),
            ColumnSpec("f", ColumnType.FLOAT),
            ColumnSpec("y", ColumnType.FLOAT),
        ),
    )
    v = RequestValidator(unbounded)
    expect_error(v.parse, body([{"i": 2**63, "f": 1}]), status=422, code="out_of_range", field="i")
    expect_error(v.parse, body([{"i": 1e19, "f": 1}]), status=422, code="out_of_range", field="i")
    table = v.parse(body([{"i": 2**63 - 1, "f": 2**53 + 1}] * 100))
    assert table.column("i")[0].as_py() == 2**63 - 1
    assert table.column("f")[0].as_py() == float(2**53)


def test_first_problem_by_row_then_column_and_the_count(validator: RequestValidator) -> None:
    rows = [
        good_row(),
        good_row(color="pink", x=-1),  # row 1: x comes before color in the contract
        good_row(n=1000),
        good_row(extra=1),
    ]
    err = expect_error(validator.parse, body(rows), status=422, code="out_of_range", field="x")
    assert err.message.startswith("rows[1]: column `x`")
    assert err.message.endswith("(and 2 more rows with problems)")
    err = expect_error(
        validator.parse,
        body([good_row(), good_row(extra=1, color=5)]),
        status=422,
        code="wrong_type",
    )
    assert "(and" not in err.message  # one row with two problems is one row


def test_invalid_row_ranks_before_column_errors_of_later_rows(
    validator: RequestValidator,
) -> None:
    err = expect_error(
        validator.parse, body([good_row(), None, good_row(x="a")]), status=422, code="invalid_row"
    )
    assert err.field == "rows[1]"
    assert "(and 1 more row with problems)" in err.message


def test_unknown_column_suggests_a_close_name(validator: RequestValidator) -> None:
    row = without("color")
    row["colour"] = "red"
    err = expect_error(validator.parse, body([row]), status=422, code="missing_column")
    assert "`colour`" in err.message  # the likely misspelling is named
    err = expect_error(
        validator.parse, body([good_row(colr="red")]), status=422, code="unknown_column"
    )
    assert "Did you mean `color`?" in err.message


# -- messages never echo the payload --------------------------------------------------------------
def test_long_values_are_truncated(validator: RequestValidator) -> None:
    long_value = "A" * 10_000
    for row, code in [
        (good_row(color=long_value), "unknown_category"),
        (good_row(x=long_value), "wrong_type"),
        (good_row(**{long_value: 1}), "unknown_column"),
    ]:
        err = expect_error(validator.parse, body([row]), status=422, code=code)
        response = json.dumps(err.to_json())
        assert long_value not in response
        assert "A" * 40 + "…" in err.message
        assert len(response) < 600
        assert err.field is not None and len(err.field) <= 41


def test_long_keys_and_headers_are_truncated(validator: RequestValidator) -> None:
    raw = json.dumps({"rows": [good_row()], "k" * 5000: 1}).encode()
    err = expect_error(validator.parse, raw, status=422, code="invalid_body")
    assert "k" * 41 not in json.dumps(err.to_json())
    err = expect_error(
        validator.check_headers,
        "text/" + "p" * 5000,
        None,
        status=415,
        code="unsupported_media_type",
    )
    assert len(err.message) < 300


def test_lone_surrogates_are_rejected_and_the_message_encodes(validator: RequestValidator) -> None:
    raw = b'{"rows": [{"x": 1, "n": 1, "flag": true, "color": "red", "note": "a\\ud800b"}]}'
    err = expect_error(validator.parse, raw, status=422, code="wrong_type", field="note")
    assert "\\ud800" in err.message
    raw = b'{"rows": [{"x": 1, "n": 1, "flag": true, "color": "red", "\\udfff": 1}]}'
    err = expect_error(validator.parse, raw, status=422, code="unknown_column")
    assert err.field == "\\udfff"


def test_only_request_errors_escape_for_mangled_bodies(validator: RequestValidator) -> None:
    rng = random.Random(1234)
    good = body([good_row(), good_row(note=None)])
    garbage = [b"NaN", b"null", b"[]", b"{}", b'"\\ud800"', b"1e999", b"-", b"true", b"\xff"]
    for _ in range(2000):
        raw = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(raw))
            op = rng.random()
            if op < 0.4:
                raw[pos : pos + rng.randint(1, 4)] = b""
            elif op < 0.8:
                raw[pos:pos] = rng.choice(garbage)
            else:
                raw[pos] = rng.randrange(256)
        try:
            table = validator.parse(bytes(raw))
        except RequestError as err:
            assert 400 <= err.status < 500
            json.dumps(err.to_json(), ensure_ascii=False).encode("utf-8")
        else:
            assert table.column_names == FEATURES


# -- the bundled breast cancer contract -----------------------------------------------------------
def test_breast_cancer_contract() -> None:
    contract = Contract.load(BREAST_CANCER)
    v = RequestValidator(contract)
    assert len(v.columns) == 30 and "target" not in v.columns
    row = {s.name: (s.min + s.max) / 2 for s in contract.feature_columns}
    table = v.parse(body([dict(row, target=1)] * 3))
    assert table.num_columns == 30 and table.num_rows == 3
    assert set(table.schema.types) == {pa.float64()}
    assert table.column("mean radius").to_pylist() == [row["mean radius"]] * 3

    bad = dict(row)
    del bad["mean radius"]
    err = expect_error(
        v.parse, body([row, row, row, bad]), status=422, code="missing_column", field="mean radius"
    )
    assert err.message.startswith("rows[3]: missing column `mean radius`")
    err = expect_error(
        v.parse,
        body([dict(row, **{"mean area": -1.0})] * 5),
        status=422,
        code="out_of_range",
        field="mean area",
    )
    assert "(and 4 more rows with problems)" in err.message


# -- API details ----------------------------------------------------------------------------------
def test_request_error_json_and_pickle() -> None:
    err = RequestError(422, "wrong_type", "rows[0]: column `x` must be a number.", "x")
    assert err.to_json() == {
        "error": "wrong_type",
        "field": "x",
        "message": "rows[0]: column `x` must be a number.",
    }
    assert str(err) == err.message
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.status, copy.code, copy.message, copy.field) == (
        422,
        "wrong_type",
        err.message,
        "x",
    )


def test_schema_json(validator: RequestValidator) -> None:
    schema = validator.schema_json()
    json.dumps(schema)
    assert [c["name"] for c in schema["columns"]] == FEATURES
    x, n, flag, color, note, level = schema["columns"]
    assert x == {
        "name": "x",
        "type": "float",
        "nullable": False,
        "min": 0.0,
        "max": 10.0,
        "categories": None,
    }
    assert (n["min"], n["max"]) == (-5, 100)
    assert color["categories"] == ["red", "green", "blue"]
    assert note["nullable"] is True and level["categories"] == [1, 2, 3]
    assert schema["label"] == "y" and schema["limits"]["max_rows"] == 1024


@pytest.mark.parametrize(
    "kwargs", [{"max_rows": 0}, {"max_body_bytes": -1}, {"max_json_depth": 2}, {"max_rows": 1.5}]
)
def test_request_limits_validate(kwargs: dict[str, Any]) -> None:
    key = next(iter(kwargs))
    with pytest.raises(ConfigError, match=f"RequestLimits.{key}"):
        RequestLimits(**kwargs)
