"""Data sources: files (Parquet, CSV, JSON lines) on any pyarrow filesystem, bundled datasets and
a seeded synthetic generator, all read as Ray Datasets.

A source is one string:

- a local path, a directory, a glob or a URI pyarrow understands (`s3://b/k`, `gs://b/k`,
  `file:///abs/path`); the format comes from the file extension. In a glob, as in Python's
  `glob`, `*`, `?` and `[...]` match within one directory (`data/*.csv` is not
  `data/old/x.csv`) and a `**` segment any number of directories (`data/**/*.csv`). CSV and
  JSON lines files may be compressed: `.gz`, `.bz2`, `.zst` and `.lz4` (frame format) are
  decompressed by their extension while read (`data/part.csv.gz`);
- `sklearn://NAME`: a real dataset shipped inside scikit-learn (breast_cancer, iris, wine,
  diabetes, digits), the default for demos;
- `synthetic://classification?rows=..&features=..` or `synthetic://regression?...`: generated
  in fixed-size chunks inside Ray tasks, so 10M+ rows never sit in driver memory.

CSV and JSON are read by tolerant readers: a malformed line, a file in the wrong encoding or a
corrupt compressed file becomes a row carrying `_parse_error` (later quarantined with reason
`_row:parse`) instead of a traceback that kills the run.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.json as pajson
import pyarrow.parquet as pq

from ray_ml.data._blocks import map_blocks, use_every_cpu
from ray_ml.data._checks import PARSE_ERROR_COLUMN, RAW_LINE_COLUMN
from ray_ml.data._contract import ColumnSpec, ColumnType, Contract, Task
from ray_ml.errors import SourceError

if TYPE_CHECKING:
    import ray.data

__all__ = [
    "BUNDLED_DATASETS",
    "FileSource",
    "SyntheticSpec",
    "bundled_contract",
    "read_sample",
    "read_source",
    "resolve_files",
    "source_contract",
]

_FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
}
# Extension -> pyarrow codec of the stream decompressor (`.lz4` is the LZ4 frame format).
_COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".lz4": "lz4"}
_GLOB_CHARS = re.compile(r"[*?\[]")
BUNDLED_DIR = Path(__file__).parent / "bundled"
BUNDLED_DATASETS = ("breast_cancer", "iris", "wine", "diabetes", "digits")


# -- files ----------------------------------------------------------------------------------------
def _compression_of(path: str) -> str | None:
    return _COMPRESSIONS.get(Path(path.lower()).suffix)


def _format_of(path: str) -> str | None:
    name = path.lower()
    if _compression_of(name):
        name = name[: -len(Path(name).suffix)]
    return _FORMATS.get(Path(name).suffix)


def _glob_match(path: str, pattern: str) -> bool:
    """Python-glob matching: wildcards stay within one `/` segment, a `**` segment spans any.

    Unlike Python's glob, `*` also matches names that start with a dot.
    """
    return _match_parts(path.split("/"), pattern.split("/"))


def _match_parts(parts: list[str], pattern: list[str]) -> bool:
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":  # zero or more whole directories
        return any(_match_parts(parts[i:], rest) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], head) and _match_parts(parts[1:], rest)


@dataclass(frozen=True)
class FileSource:
    """A resolved file source: the filesystem, the matching files and their format."""

    uri: str
    filesystem: pafs.FileSystem = field(repr=False)
    paths: tuple[str, ...]
    format: str


def _filesystem_for(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" in uri:
        try:
            found: tuple[pafs.FileSystem, str] = pafs.FileSystem.from_uri(uri)
            return found
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise SourceError(
                f"source {uri!r}: pyarrow cannot open this URI ({exc}). Use a local path or a "
                "URI with a scheme pyarrow supports (file://, s3://, gs://, hdfs://)."
            ) from None
    return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())


def resolve_files(uri: str) -> FileSource:
    """Expand a path, directory or glob on its filesystem into the list of data files."""
    fs, path = _filesystem_for(uri)
    glob = _GLOB_CHARS.search(path)
    if glob:
        base = path[: path.rfind("/", 0, glob.start()) + 1] or "/"
        try:
            infos = fs.get_file_info(pafs.FileSelector(base.rstrip("/") or "/", recursive=True))
        except (FileNotFoundError, OSError):
            infos = []
        files = sorted(i.path for i in infos if i.is_file and _glob_match(i.path, path))
    else:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise SourceError(
                f"source {uri!r}: no such file or directory. Check the path (relative paths are "
                "relative to the current directory) or pass a URI such as s3://bucket/key."
            )
        if info.type == pafs.FileType.Directory:
            infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
            files = sorted(
                i.path
                for i in infos
                if i.is_file and _format_of(i.path) and not Path(i.path).name.startswith((".", "_"))
            )
        else:
            files = [path]
    if not files:
        raise SourceError(
            f"source {uri!r}: matched no data files. Expected files ending in "
            f"{sorted(_FORMATS)} (optionally compressed)."
        )
    formats = {_format_of(f) for f in files}
    if None in formats:
        odd = next(f for f in files if _format_of(f) is None)
        raise SourceError(
            f"source {uri!r}: cannot tell the format of {odd!r} from its extension. "
            f"Rename it to one of {sorted(_FORMATS)}."
        )
    if len(formats) > 1:
        raise SourceError(
            f"source {uri!r}: mixes formats {sorted(f for f in formats if f)}. "
            "Give each format as its own source (data.sources is a list)."
        )
    if formats == {"parquet"}:
        packed = next((f for f in files if _compression_of(f)), None)
        if packed is not None:
            raise SourceError(
                f"source {uri!r}: {packed!r} is a compressed Parquet file, but Parquet is read "
                "by row groups from an uncompressed file (it compresses its pages itself). "
                "Decompress it, or write Parquet with compression='zstd'."
            )
    return FileSource(uri=uri, filesystem=fs, paths=tuple(files), format=formats.pop() or "")


def _read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    """A text file's bytes, decompressed by its extension (.gz, .bz2, .zst, .lz4)."""
    with fs.open_input_stream(path, compression=_compression_of(path)) as f:
        data: bytes = f.readall()
    return data


def _decode_lines(data: bytes) -> list[str]:
    return data.decode("utf-8", "backslashreplace").splitlines()


def _parse_failure_rows(errors: list[tuple[str, str]], names: list[str]) -> pa.Table:
    cols: dict[str, pa.Array] = {n: pa.nulls(len(errors), pa.string()) for n in names}
    cols[PARSE_ERROR_COLUMN] = pa.array([e for e, _ in errors], pa.string())
    cols[RAW_LINE_COLUMN] = pa.array([t[:2000] for _, t in errors], pa.string())
    return pa.table(cols)


def _with_parse_columns(table: pa.Table) -> pa.Table:
    n = table.num_rows
    return table.append_column(PARSE_ERROR_COLUMN, pa.nulls(n, pa.string())).append_column(
        RAW_LINE_COLUMN, pa.nulls(n, pa.string())
    )


def _read_csv_tolerant(data: bytes, path: str, columns: list[str] | None) -> pa.Table:
    """Parse CSV bytes; contract columns as strings (the check parses them), bad lines kept."""
    first = data.split(b"\n", 1)[0].decode("utf-8", "replace").lstrip("\ufeff")
    header = next(csv.reader([first]), [])
    wanted = [c for c in (columns or header) if c in header]
    bad: list[tuple[str, str]] = []

    def on_invalid(row: Any) -> str:
        bad.append(
            (
                f"{path}: line {row.number}: expected {row.expected_columns} columns, "
                f"got {row.actual_columns}",
                row.text or "",
            )
        )
        return "skip"

    def parse(text_type: pa.DataType) -> pa.Table:
        return pacsv.read_csv(
            io.BytesIO(data),
            parse_options=pacsv.ParseOptions(
                invalid_row_handler=on_invalid, newlines_in_values=True
            ),
            convert_options=pacsv.ConvertOptions(
                include_columns=wanted,
                column_types={c: text_type for c in wanted},
                strings_can_be_null=True,
            ),
        )

    try:
        try:
            table = parse(pa.string())
        except pa.ArrowInvalid as exc:
            if "UTF8" not in str(exc) and "utf8" not in str(exc).lower():
                raise
            bad.clear()
            table = parse(pa.binary())  # the check finds and names the undecodable cells
    except (pa.ArrowInvalid, OSError) as exc:
        return _parse_failure_rows([(f"{path}: unreadable CSV: {exc}", first)], wanted)
    table = _with_parse_columns(table)
    if bad:
        failures = _parse_failure_rows(bad, wanted).cast(
            pa.schema([table.schema.field(n) for n in table.column_names])
        )
        table = pa.concat_tables([table, failures])
    return table


def _read_json_tolerant(data: bytes, path: str, columns: list[str] | None) -> pa.Table:
    """Parse JSON lines; on any error fall back to line-by-line parsing that names bad lines."""
    try:
        table = pajson.read_json(io.BytesIO(data))
        return _with_parse_columns(table)
    except (pa.ArrowInvalid, OSError):
        pass
    rows: list[dict[str, Any]] = []
    bad: list[tuple[str, str]] = []
    for number, raw_line in enumerate(data.split(b"\n"), start=1):
        if not raw_line.strip():
            continue
        try:
            obj = json.loads(raw_line.decode("utf-8"))
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
            rows.append(obj)
        except (UnicodeDecodeError, ValueError) as exc:
            text = raw_line.decode("utf-8", "backslashreplace")
            bad.append((f"{path}: line {number}: {type(exc).__name__}: {exc}", text))
    names = list(columns or sorted({k for r in rows for k in r}))
    # Values go through as text; the contract check parses and reports them per cell.
    cols = {
        n: pa.array([None if r.get(n) is None else _text(r[n]) for r in rows], pa.string())
        for n in names
    }
    table = _with_parse_columns(pa.table(cols) if names else pa.table({}).slice(0, 0))
    if bad:
        table = pa.concat_tables(
            [table, _parse_failure_rows(bad, names)], promote_options="default"
        )
    return table


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)


_UNIT_ROWS = 262_144  # rows per read task for Parquet (whole row groups); ~1 block each


def _read_units(src: FileSource, num_blocks: int | None) -> list[dict[str, Any]]:
    """Split a file source into read units: Parquet by row groups, text formats by file.

    Parquet footers are read here, on the driver, so a corrupt file is named before any task
    runs. Units are sized to about `_UNIT_ROWS` rows, or to give `num_blocks` units.
    """
    if src.format != "parquet":
        return [{"path": p, "first": 0, "last": -1} for p in src.paths]
    metas = []
    for path in src.paths:
        try:
            with src.filesystem.open_input_file(path) as f:
                metas.append((path, pq.read_metadata(f)))
        except (pa.ArrowInvalid, OSError) as exc:
            raise SourceError(
                f"source {src.uri!r}: {path!r} is not a readable Parquet file ({exc}). "
                "Remove or replace the file."
            ) from None
    total = sum(m.num_rows for _, m in metas)
    target = max(1, math.ceil(total / num_blocks)) if num_blocks else _UNIT_ROWS
    units: list[dict[str, Any]] = []
    for path, meta in metas:
        first, rows = 0, 0
        for rg in range(meta.num_row_groups):
            rows += meta.row_group(rg).num_rows
            if rows >= target or rg == meta.num_row_groups - 1:
                units.append({"path": path, "first": first, "last": rg})
                first, rows = rg + 1, 0
    return units


def _read_unit(
    unit: pa.Table, fs: pafs.FileSystem, fmt: str, columns: list[str] | None
) -> pa.Table:
    path, first, last = unit["path"][0].as_py(), unit["first"][0].as_py(), unit["last"][0].as_py()
    if fmt == "parquet":
        with fs.open_input_file(path) as f:
            pf = pq.ParquetFile(f)
            names = pf.schema_arrow.names
            keep = [c for c in columns if c in names] if columns else None
            return pf.read_row_groups(list(range(first, last + 1)), columns=keep)
    try:
        data = _read_bytes(fs, path)
    except (pa.ArrowInvalid, OSError) as exc:
        if _compression_of(path) is None:
            raise
        # A corrupt or truncated archive: one `_row:parse` reject naming it, not a failed task.
        return _parse_failure_rows([(f"{path}: cannot decompress: {exc}", "")], columns or [])
    reader = _read_csv_tolerant if fmt == "csv" else _read_json_tolerant
    return reader(data, path, columns)


# -- bundled datasets -------------------------------------------------------------------------------
def _bundled_table(name: str) -> pa.Table:
    import sklearn.datasets as skd

    if name not in BUNDLED_DATASETS:
        raise SourceError(
            f"source 'sklearn://{name}': unknown bundled dataset. Choose one of {list(BUNDLED_DATASETS)}."
        )
    # Original column names (e.g. "mean radius"): rows sent to serving look like the source.
    frame = getattr(skd, f"load_{name}")(as_frame=True).frame
    frame.columns = [str(c) for c in frame.columns]
    if name != "diabetes":
        frame["target"] = frame["target"].astype("int64")
    return pa.Table.from_pandas(frame, preserve_index=False)


def bundled_contract(name: str) -> Contract:
    path = BUNDLED_DIR / f"{name}.yaml"
    if not path.is_file():
        raise SourceError(f"no bundled contract for 'sklearn://{name}' (looked for {path}).")
    return Contract.load(path)


# -- synthetic ------------------------------------------------------------------------------------
_CHUNK_ROWS = 65_536  # fixed: the data depends on (seed, chunk index), never on Ray's blocking
_LEVELS = ("a", "b", "c", "d")


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of the synthetic generator (the query string of a `synthetic://` source).

    Attributes:
        task: classification or regression.
        rows: Total rows.
        features: Numeric feature columns `f0..`.
        categorical: Categorical columns `c0..` with levels a-d, correlated with the label.
        classes: Number of classes (classification).
        imbalance: Fraction of the minority class (binary) or of the rarest class (multiclass,
            geometric priors); 0 means balanced.
        informative: How many numeric features carry signal (default: half).
        drift: Shift added to every numeric feature, in standard deviations (serving drift).
        noise: Label noise (flip probability, or std of the regression noise).
        null_rate: Fraction of feature cells set to null (the contract marks them nullable).
        seed: Generator seed.
    """

    task: str = "classification"
    rows: int = 10_000
    features: int = 10
    categorical: int = 0
    classes: int = 2
    imbalance: float = 0.0
    informative: int = -1
    drift: float = 0.0
    noise: float = 0.05
    null_rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        def bad(key: str, why: str) -> SourceError:
            return SourceError(
                f"synthetic source: `{key}` {why}, but got {key}={getattr(self, key)}."
            )

        if self.task not in ("classification", "regression"):
            raise bad("task", "must be classification or regression")
        if self.rows < 1:
            raise bad("rows", "must be >= 1")
        if self.features < 1:
            raise bad("features", "must be >= 1")
        if self.categorical < 0:
            raise bad("categorical", "must be >= 0")
        if self.classes < 2:
            raise bad("classes", "must be >= 2")
        if not 0 <= self.imbalance < 1:
            raise bad("imbalance", "must be in [0, 1)")
        if not 0 <= self.null_rate < 1:
            raise bad("null_rate", "must be in [0, 1)")
        if self.noise < 0:
            raise bad("noise", "must be >= 0")

    @classmethod
    def from_uri(cls, uri: str) -> SyntheticSpec:
        parts = urlsplit(uri)
        params: dict[str, Any] = {"task": parts.netloc or "classification"}
        fields = {f for f in cls.__dataclass_fields__ if f != "task"}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key not in fields:
                raise SourceError(
                    f"source {uri!r}: unknown synthetic parameter {key!r}. Known: {sorted(fields)}."
                )
            typ = float if key in ("imbalance", "drift", "noise", "null_rate") else int
            try:
                params[key] = typ(float(value)) if typ is int else typ(value)
            except ValueError:
                raise SourceError(f"source {uri!r}: {key}={value!r} is not a number.") from None
        return cls(**params)

    @property
    def n_informative(self) -> int:
        return (
            self.features // 2 + 1 if self.informative < 0 else min(self.informative, self.features)
        )

    @property
    def priors(self) -> np.ndarray:
        k = self.classes
        if self.imbalance <= 0:
            return np.full(k, 1.0 / k)
        if k == 2:
            return np.array([1.0 - self.imbalance, self.imbalance])
        # geometric priors whose rarest class has the requested share
        ratio = self.imbalance ** (1.0 / (k - 1))
        p: np.ndarray = ratio ** np.arange(k)
        priors: np.ndarray = p / p.sum()
        return priors

    def contract(self) -> Contract:
        nullable = self.null_rate > 0
        cols = [
            ColumnSpec(f"f{i}", ColumnType.FLOAT, nullable=nullable) for i in range(self.features)
        ]
        cols += [
            ColumnSpec(f"c{i}", ColumnType.CATEGORY, nullable=nullable, categories=_LEVELS)
            for i in range(self.categorical)
        ]
        if self.task == "classification":
            task = Task.BINARY if self.classes == 2 else Task.MULTICLASS
            cols.append(ColumnSpec("target", ColumnType.INT, categories=tuple(range(self.classes))))
        else:
            task = Task.REGRESSION
            cols.append(ColumnSpec("target", ColumnType.FLOAT))
        return Contract(name="synthetic", task=task, label="target", columns=tuple(cols))

    def chunk(self, index: int) -> pa.Table:
        """Rows [index * 65536, ...) of the dataset: a pure function of (spec, index)."""
        start = index * _CHUNK_ROWS
        n = min(_CHUNK_ROWS, self.rows - start)
        structure = np.random.default_rng([self.seed, 0x5EED])
        k_inf = self.n_informative
        centroids = structure.normal(0.0, 1.2, size=(self.classes, k_inf))
        weights = structure.normal(0.0, 1.0, size=k_inf)
        level_bias = structure.dirichlet(
            np.ones(len(_LEVELS)) * 2, size=(max(self.categorical, 1), self.classes)
        )
        rng = np.random.default_rng([self.seed, index + 1])
        x = rng.standard_normal((n, self.features))
        cols: dict[str, Any] = {}
        y: np.ndarray
        if self.task == "classification":
            y = rng.choice(self.classes, size=n, p=self.priors)
            x[:, :k_inf] += centroids[y]
            # Label noise redraws from the priors, so the class balance stays as requested.
            flip = rng.random(n) < self.noise
            y = np.where(flip, rng.choice(self.classes, size=n, p=self.priors), y)
        else:
            y = x[:, :k_inf] @ weights + self.noise * rng.standard_normal(n)
        x += self.drift
        for i in range(self.features):
            col = x[:, i]
            mask = rng.random(n) < self.null_rate if self.null_rate else None
            cols[f"f{i}"] = pa.array(col, pa.float64(), mask=mask)
        for j in range(self.categorical):
            if self.task == "classification":
                probs = level_bias[j][y]
                u = rng.random((n, 1))
                codes = (u > np.cumsum(probs, axis=1)).sum(axis=1).clip(0, len(_LEVELS) - 1)
            else:
                codes = rng.integers(0, len(_LEVELS), n)
            mask = rng.random(n) < self.null_rate if self.null_rate else None
            cols[f"c{j}"] = pa.DictionaryArray.from_arrays(
                pa.array(codes, pa.int32(), mask=mask), pa.array(_LEVELS)
            ).dictionary_decode()
        cols["target"] = pa.array(y, pa.int64() if self.task == "classification" else pa.float64())
        return pa.table(cols)

    @property
    def num_chunks(self) -> int:
        return math.ceil(self.rows / _CHUNK_ROWS)


def _synthetic_chunks(batch: pa.Table, spec: SyntheticSpec) -> pa.Table:
    return pa.concat_tables([spec.chunk(int(i)) for i in batch.column("id").to_pylist()])


# -- public entry points ----------------------------------------------------------------------------
def source_contract(uri: str) -> Contract | None:
    """The contract that comes with a bundled or synthetic source (None for files)."""
    if uri.startswith("sklearn://"):
        return bundled_contract(urlsplit(uri).netloc)
    if uri.startswith("synthetic://"):
        return SyntheticSpec.from_uri(uri).contract()
    return None


def read_source(
    uri: str, columns: list[str] | None = None, num_blocks: int | None = None
) -> ray.data.Dataset:
    """Read one source as a Ray Dataset of raw (not yet checked) rows.

    Args:
        uri: See the module docstring.
        columns: Contract columns; CSV/JSON readers read these as text for the check to parse.
        num_blocks: Override Ray Data's read parallelism.
    """
    return use_every_cpu(_read_source(uri, columns, num_blocks))


def _read_source(uri: str, columns: list[str] | None, num_blocks: int | None) -> ray.data.Dataset:
    import ray.data

    if uri.startswith("sklearn://"):
        ds = ray.data.from_arrow(_bundled_table(urlsplit(uri).netloc))
        return ds.repartition(num_blocks) if num_blocks else ds
    if uri.startswith("synthetic://"):
        spec = SyntheticSpec.from_uri(uri)
        blocks = min(spec.num_chunks, num_blocks or max(spec.num_chunks, 1))
        return map_blocks(
            ray.data.range(spec.num_chunks, override_num_blocks=blocks),
            _synthetic_chunks,
            spec,
            batch_size=1,
        )
    # One Ray task per read unit, reading with pyarrow directly: on 2 CPUs this measured 2.5x
    # faster than ray.data.read_parquet (its file listing and block splitting dominate here),
    # and it lets the tolerant CSV/JSON readers keep bad lines instead of failing the task.
    src = resolve_files(uri)
    units = _read_units(src, num_blocks)
    items = ray.data.from_items(units, override_num_blocks=len(units))
    return map_blocks(items, _read_unit, src.filesystem, src.format, columns, batch_size=1)


def read_sample(uri: str, rows: int = 10_000) -> pa.Table:
    """Up to `rows` raw rows of a source, read on the driver without Ray (for `data infer`)."""
    if uri.startswith("sklearn://"):
        return _bundled_table(urlsplit(uri).netloc).slice(0, rows)
    if uri.startswith("synthetic://"):
        spec = SyntheticSpec.from_uri(uri)
        return spec.chunk(0).slice(0, rows)
    src = resolve_files(uri)
    tables: list[pa.Table] = []
    have = 0
    for path in src.paths:
        if src.format == "parquet":
            with src.filesystem.open_input_file(path) as f:
                table = pq.read_table(f)
        else:
            reader = pacsv.read_csv if src.format == "csv" else pajson.read_json
            try:
                table = reader(io.BytesIO(_read_bytes(src.filesystem, path)))
            except (pa.ArrowInvalid, OSError) as exc:
                raise SourceError(
                    f"source {uri!r}: cannot infer a contract from {path!r}: {exc}. "
                    "Infer from a clean sample of the data."
                ) from None
        tables.append(table)
        have += table.num_rows
        if have >= rows:
            break
    return pa.concat_tables(tables, promote_options="permissive").slice(0, rows)
