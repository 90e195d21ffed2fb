"""The model registry: immutable versions of model bundles, aliases, promote/rollback, audit.

`Registry(root)` works on a local folder (default `runs/registry`) or any `pyarrow.fs` URI
(`s3://`, `gs://`, `file://`); see `ray_ml.registry._registry` for the layout and the
consistency guarantees on each kind of storage, and `ray_ml.registry._store` for the two storage
protocols. `add_registry_parser` adds the `ray-ml registry ...` verbs to the console script.
"""

from ray_ml.registry._cli import add_registry_parser
from ray_ml.registry._records import AliasChange, AuditEntry, ModelVersion
from ray_ml.registry._registry import AUDIT_ACTIONS, DEFAULT_ROOT, LATEST, Registry

__all__ = [
    "AUDIT_ACTIONS",
    "DEFAULT_ROOT",
    "LATEST",
    "AliasChange",
    "AuditEntry",
    "ModelVersion",
    "Registry",
    "add_registry_parser",
]
