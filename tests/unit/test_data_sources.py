"""File sources without Ray: compressed CSV/JSON lines, and glob semantics."""

from __future__ import annotations

import bz2
import gzip
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

from ray_ml.data import Contract, check_table, read_sample, resolve_files
from ray_ml.data._sources import _glob_match, _read_unit
from ray_ml.errors import SourceError

pytestmark = pytest.mark.unit

CONTRACT = Contract.from_dict(
    {
        "name": "t",
        "task": "binary",
        "label": "y",
        "columns": [
            {"name": "id", "type": "int", "role": "id"},
            {"name": "a", "type": "float", "min": 0},
            {"name": "c", "type": "category", "categories": ["x", "z"]},
            {"name": "y", "type": "int", "categories": [0, 1]},
        ],
    }
)
ROWS = [
    {"id": 1, "a": 1.5, "c": "x", "y": 0},
    {"id": 2, "a": 2.5, "c": "z", "y": 1},
    {"id": 3, "a": 0.0, "c": "x", "y": 1},
]
TEXT = {
    "csv": "id,a,c,y\n" + "".join(f"{r['id']},{r['a']},{r['c']},{r['y']}\n" for r in ROWS),
    "jsonl": "".join(
        f'{{"id": {r["id"]}, "a": {r["a"]}, "c": "{r["c"]}", "y": {r["y"]}}}\n' for r in ROWS
    ),
}


def _arrow(codec: str) -> Callable[[bytes], bytes]:
    def compress(data: bytes) -> bytes:
        sink = pa.BufferOutputStream()
        with pa.CompressedOutputStream(sink, codec) as out:
            out.write(data)
        return sink.getvalue().to_pybytes()

    return compress


# gzip and bz2 as the standard tools write them; zstd and lz4 (frame format) through pyarrow.
COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gz": gzip.compress,
    "bz2": bz2.compress,
    "zst": _arrow("zstd"),
    "lz4": _arrow("lz4"),
}


def _read(path: Path, fmt: str) -> pa.Table:
    """What one Ray read task returns for the file (the same function, called directly)."""
    src = resolve_files(str(path))
    unit = pa.table({"path": [src.paths[0]], "first": [0], "last": [-1]})
    return _read_unit(unit, src.filesystem, fmt, CONTRACT.names)


@pytest.mark.parametrize("ext", sorted(COMPRESSORS))
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_compressed_csv_and_jsonl_are_decompressed(tmp_path: Path, fmt: str, ext: str) -> None:
    path = tmp_path / f"part.{fmt}.{ext}"
    path.write_bytes(COMPRESSORS[ext](TEXT[fmt].encode()))
    checked = check_table(_read(path, "csv" if fmt == "csv" else "json"), CONTRACT)
    assert checked.column("_reject_reason").null_count == len(ROWS)  # no `_row:parse`
    assert checked.select(CONTRACT.names).to_pylist() == ROWS
    # `data infer` reads its sample through the same decompression.
    assert read_sample(str(path)).to_pylist() == ROWS


def test_corrupt_archive_is_one_parse_reject_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "part.csv.gz"
    path.write_bytes(gzip.compress(TEXT["csv"].encode())[:20])  # truncated
    raw = _read(path, "csv")
    [error] = raw.column("_parse_error").to_pylist()
    assert "part.csv.gz: cannot decompress" in error
    assert check_table(raw, CONTRACT).column("_reject_reason").to_pylist() == ["_row:parse"]
    with pytest.raises(SourceError, match="cannot infer a contract from"):
        read_sample(str(path))


def test_compressed_parquet_is_refused_with_a_fix(tmp_path: Path) -> None:
    (tmp_path / "part.parquet.gz").write_bytes(gzip.compress(b"PAR1"))
    with pytest.raises(SourceError, match=r"compressed Parquet file.*Decompress it"):
        resolve_files(str(tmp_path / "part.parquet.gz"))


def test_star_matches_within_one_directory_and_double_star_recursively(tmp_path: Path) -> None:
    for rel in ("data/new.csv", "data/b.csv.gz", "data/archive/old.csv", "data/x/y/deep.csv"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(TEXT["csv"])

    def names(pattern: str) -> list[str]:
        root = str(tmp_path.resolve()) + "/"
        return [p.removeprefix(root) for p in resolve_files(str(tmp_path / pattern)).paths]

    assert names("data/*.csv") == ["data/new.csv"]
    assert names("data/*.csv*") == ["data/b.csv.gz", "data/new.csv"]
    assert names("data/**/*.csv") == [
        "data/archive/old.csv",
        "data/new.csv",
        "data/x/y/deep.csv",
    ]
    assert names("data/*/old.csv") == ["data/archive/old.csv"]
    assert names("**/deep.csv") == ["data/x/y/deep.csv"]
    with pytest.raises(SourceError, match="matched no data files"):
        names("data/*/deep.csv")  # one `*` is one directory, not two


@pytest.mark.parametrize(
    ("path", "pattern", "hit"),
    [
        ("/d/a.csv", "/d/*.csv", True),
        ("/d/sub/a.csv", "/d/*.csv", False),
        ("/d/a.csv", "/d/**/a.csv", True),  # `**` also matches no directory
        ("/d/s/t/a.csv", "/d/**/a.csv", True),
        ("/d/s/t/a.csv", "/d/**", True),
        ("/d/a1.csv", "/d/a?.csv", True),
        ("/d/a/1.csv", "/d/a?1.csv", False),  # `?` never matches the separator
        ("/d/b.csv", "/d/[ab].csv", True),
        ("/d/c.csv", "/d/[!ab].csv", True),
        ("bucket/k/a.csv", "bucket/*/a.csv", True),  # object-store paths split the same way
    ],
)
def test_glob_match_follows_python_glob(path: str, pattern: str, hit: bool) -> None:
    assert _glob_match(path, pattern) is hit
