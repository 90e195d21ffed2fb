"""What the registry answers with: a version, an audit-log entry, the result of an alias change.

Frozen dataclasses with `to_dict()` for JSON (the CLI prints them, reports embed them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["AliasChange", "AuditEntry", "ModelVersion"]


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model.

    Attributes:
        name: The model name.
        version: The version number (1, 2, ...).
        path: The version folder: an OS path on local disk, else a URI (or the filesystem's
            path when a `filesystem` was passed). Use `Registry.bundle_path` for a local copy.
        created_at: When it was registered (UTC, ISO 8601).
        registered_by: `user@host` that registered it.
        source: The bundle folder it was copied from.
        reason: Why it was registered, as given.
        model_kind: `mlp` or `xgboost`.
        task: `binary`, `multiclass` or `regression`.
        manifest_checksum: The bundle manifest's own checksum (identifies the bundle content).
        metrics: Numeric metrics of the bundle, flattened to `split.metric` keys.
        lineage: `data_fingerprint`, `git_commit`, `git_dirty`, `cost` from the bundle manifest
            (None where the bundle does not record them).
        aliases: Aliases pointing at this version when it was read.
    """

    name: str
    version: int
    path: str
    created_at: str
    registered_by: str
    source: str
    reason: str
    model_kind: str
    task: str
    manifest_checksum: str
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    aliases: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["aliases"] = list(self.aliases)
        return out


@dataclass(frozen=True)
class AuditEntry:
    """One line of a model's audit log.

    Attributes:
        time: UTC, ISO 8601 with milliseconds.
        actor: `user@host` (or `$RAY_ML_ACTOR`).
        action: One of `AUDIT_ACTIONS`.
        model: The model name.
        alias: The alias changed (None for `register`).
        from_version: The version the alias pointed to before (None when unset).
        to_version: The version registered, or the alias's new version (None when deleted).
        reason: Why, as given.
        revision: The `aliases.json` revision the change produced (None for `register`).
    """

    time: str
    actor: str
    action: str
    model: str
    alias: str | None
    from_version: int | None
    to_version: int | None
    reason: str
    revision: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditEntry:
        return cls(
            time=str(data["time"]),
            actor=str(data.get("actor", "")),
            action=str(data["action"]),
            model=str(data.get("model", "")),
            alias=data.get("alias"),
            from_version=_opt_int(data.get("from_version")),
            to_version=_opt_int(data.get("to_version")),
            reason=str(data.get("reason", "")),
            revision=_opt_int(data.get("revision")),
        )


@dataclass(frozen=True)
class AliasChange:
    """The result of `set_alias`, `promote`, `rollback` or `delete_alias`.

    Attributes:
        model: The model name.
        alias: The alias changed.
        action: The audit action recorded.
        from_version: Where the alias pointed before (None when unset).
        to_version: Where it points now (None when deleted).
        revision: The `aliases.json` revision after the change.
        changed: False when the alias already pointed there (nothing written, no audit entry).
        version: The version the alias now points to (None when deleted).
    """

    model: str
    alias: str
    action: str
    from_version: int | None
    to_version: int | None
    revision: int
    changed: bool
    version: ModelVersion | None

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "version"}
        out["path"] = None if self.version is None else self.version.path
        return out


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)
