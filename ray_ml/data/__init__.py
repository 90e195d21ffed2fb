"""Data layer: sources, contracts and validation, splits, preprocessing, fingerprints, and the
reference statistics (with their binning rule) that drift checks compare live data with."""

from ray_ml.data._blocks import map_blocks
from ray_ml.data._checks import (
    RAW_COLUMN,
    REASON_COLUMN,
    ROW_HASH_COLUMN,
    WARNINGS_COLUMN,
    check_table,
    row_hashes,
)
from ray_ml.data._contract import (
    ColumnRole,
    ColumnSpec,
    ColumnType,
    Contract,
    Expectation,
    Task,
    infer_contract,
)
from ray_ml.data._fingerprint import fingerprint
from ray_ml.data._prepare import (
    PreparedData,
    prepare_data,
    preprocessing_kwargs,
    resolve_contract,
    run_data_job,
    source_name,
    write_data_artifacts,
)
from ray_ml.data._preprocess import Preprocessor, fit_preprocessor, fit_preprocessor_table
from ray_ml.data._reference import (
    bin_counts,
    bin_fractions,
    bin_of,
    category_strings,
    inner_edges,
    reference_stats,
)
from ray_ml.data._sources import (
    SyntheticSpec,
    read_sample,
    read_source,
    resolve_files,
    source_contract,
)
from ray_ml.data._split import Splits, split_dataset
from ray_ml.data._validate import CheckedData, ValidationReport, check_sources

__all__ = [
    "RAW_COLUMN",
    "REASON_COLUMN",
    "ROW_HASH_COLUMN",
    "WARNINGS_COLUMN",
    "CheckedData",
    "ColumnRole",
    "ColumnSpec",
    "ColumnType",
    "Contract",
    "Expectation",
    "PreparedData",
    "Preprocessor",
    "Splits",
    "SyntheticSpec",
    "Task",
    "ValidationReport",
    "bin_counts",
    "bin_fractions",
    "bin_of",
    "category_strings",
    "check_sources",
    "check_table",
    "fingerprint",
    "fit_preprocessor",
    "fit_preprocessor_table",
    "infer_contract",
    "inner_edges",
    "map_blocks",
    "prepare_data",
    "preprocessing_kwargs",
    "read_sample",
    "read_source",
    "reference_stats",
    "resolve_contract",
    "source_name",
    "resolve_files",
    "run_data_job",
    "row_hashes",
    "source_contract",
    "split_dataset",
    "write_data_artifacts",
]
