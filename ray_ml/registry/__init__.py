"""The model registry: immutable versions of model bundles, aliases, promote/rollback, audit.

`Registry(root)` works on a local folder (default `runs/registry`) or any `pyarrow.fs` URI
(`s3://`, `gs://`, `file://`); see `ray_ml.registry._registry` for the layout and the
consistency guarantees on each kind of storage.
"""

from ray_ml.registry._registry import (
    AUDIT_ACTIONS,
    DEFAULT_ROOT,
    LATEST,
    AliasChange,
    AuditEntry,
    ModelVersion,
    Registry,
)

__all__ = [
    "AUDIT_ACTIONS",
    "DEFAULT_ROOT",
    "LATEST",
    "AliasChange",
    "AuditEntry",
    "ModelVersion",
    "Registry",
]
