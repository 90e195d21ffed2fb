"""A versioned model registry: immutable versions, atomically changed aliases, an audit log.

Layout under the root (a local folder or any `pyarrow.fs` URI)::

    models/<name>/versions/000001/   a verified copy of a bundle directory + registry.json
    models/<name>/aliases.json       {"revision": 7, "aliases": {"production": 2, ...}, ...}
    models/<name>/audit.jsonl        one JSON line per change (local disk)
    models/<name>/audit/             one JSON object per change (object stores: no append)
    models/<name>/.lock              flock(2) target serialising changes (local disk only)
    models/<name>/.staging/          bundles being copied in (local disk only)

Guarantees on local disk (POSIX):
    * Version numbers are allocated with `os.mkdir` of the version folder, which is atomic and
      exclusive across threads, processes and (on a POSIX-compliant shared filesystem) hosts. The
      bundle is first copied into `.staging/<uuid>/` and checksummed, then renamed over the
      claimed, still empty folder, so a version appears complete or not at all.
    * Alias changes hold an exclusive `flock` on `.lock` for read-modify-write, write the new
      `aliases.json` under a temporary name and `rename` it over the old one: two racing writers
      never lose an update and a reader never sees a half-written file. `revision` increases by
      one per change. The audit line is appended under the same lock.

Guarantees on object stores (S3, GCS, ...), which offer no rename, lock or create-exclusive
through `pyarrow.fs` (conditional writes are not exposed), but do offer strong read-after-write
and list-after-write consistency:
    * A version number is claimed by writing a uniquely named `.claim-<uuid>` object into its
      folder and listing the folder: the writer owns the number only if its claim is the only
      entry. Of two racing claimants at most one can win (whoever writes second sees the first
      claim); both may lose, and retry after a random back-off. Files are uploaded after the
      claim, and `registry.json`, written last, marks the version complete; readers ignore
      folders without it.
    * Alias changes are optimistic: read `revision`, write `revision + 1` (replacing one object
      is atomic, so readers never see a torn file), read it back and retry when another writer's
      file replaced ours. Two writers within the same instant can still lose an update: change
      aliases of one model from one place (a pipeline, an operator) at a time on object stores.
    * Each audit entry is its own object, so concurrent entries are never lost.

The two protocols live in `ray_ml.registry._store` (`LocalStore`, `ObjectStore`, with the same
methods); this module holds the layout and the rules, and never asks which store it has.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import posixpath
import re
import shutil
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from ray_ml.errors import BundleError, RegistryError
from ray_ml.registry._records import AliasChange, AuditEntry, ModelVersion
from ray_ml.registry._store import REMOTE_ATTEMPTS, open_store

__all__ = ["AUDIT_ACTIONS", "DEFAULT_ROOT", "LATEST", "Registry"]

DEFAULT_ROOT = "runs/registry"
LATEST = "latest"
AUDIT_ACTIONS = ("register", "promote", "rollback", "set_alias", "delete_alias")
RECORD_FORMAT_VERSION = 1

_MODELS = "models"
_VERSIONS = "versions"
_RECORD = "registry.json"
_ALIASES = "aliases.json"
_AUDIT_LOG = "audit.jsonl"
_AUDIT_DIR = "audit"
_LOCK = ".lock"
_STAGING = ".staging"
_MANIFEST = "manifest.json"  # the bundle's manifest; every other file is listed in it
_CHUNK = 1 << 20

_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
_VERSION_REF_RE = re.compile(r"^[vV]?(\d+)$")
_VERSION_DIR_RE = re.compile(r"^\d{6,}$")
# Metrics deeper than `split.metric` (per-class tables, confusion matrices) stay in the bundle.
_METRIC_DEPTH = 2
_LINEAGE_KEYS = ("data_fingerprint", "git_commit", "git_dirty", "cost")


# -- the registry ---------------------------------------------------------------------------------
class Registry:
    """A model registry rooted at a local folder or a `pyarrow.fs` URI.

    Args:
        root: A local folder (created on first write) or a URI such as `s3://bucket/registry`,
            `gs://bucket/registry` or `file:///abs/path`; with `filesystem`, a path on it.
        filesystem: A ready `pyarrow.fs.FileSystem` (e.g. an `S3FileSystem` with credentials, a
            `SubTreeFileSystem`); `root` is then a path on it.
        actor: Who is recorded in the audit log; default `$RAY_ML_ACTOR`, else `user@host`.
        cache_dir: Where `bundle_path` downloads versions from remote filesystems; default
            `$RAY_ML_CACHE_DIR/registry`, else `~/.cache/ray_ml/registry`.

    See the module docstring for the layout and the consistency guarantees.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] = DEFAULT_ROOT,
        *,
        filesystem: pafs.FileSystem | None = None,
        actor: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if not os.fspath(root) and filesystem is None:
            raise RegistryError(
                "registry root must be a folder or a URI, but got root=''. Pass e.g. "
                f"{DEFAULT_ROOT!r} or 's3://bucket/registry'."
            )
        try:
            self._store = open_store(root, filesystem)
        except (OSError, ValueError) as exc:
            raise RegistryError(
                f"cannot open registry root {os.fspath(root)!r}: {exc}. Check the path or URI "
                "(s3://, gs://, file://) and the credentials of its filesystem."
            ) from None
        self.actor = actor or _default_actor()
        if cache_dir is None:
            base = os.environ.get("RAY_ML_CACHE_DIR") or os.path.join("~", ".cache", "ray_ml")
            cache_dir = os.path.join(base, "registry")
        self.cache_dir = Path(os.path.expanduser(os.fspath(cache_dir)))

    @property
    def root(self) -> str:
        """The root as shown to users: an OS path on local disk, else a URI or filesystem path."""
        return self._store.display(self._store.root)

    @property
    def filesystem(self) -> pafs.FileSystem:
        return self._store.fs

    def __repr__(self) -> str:
        return f"Registry({self.root!r})"

    # -- reading ----------------------------------------------------------------------------------
    def list_models(self) -> list[str]:
        """Names of the models with at least one complete version, sorted."""
        return [
            info.base_name
            for info in self._store.list_dir(self._store.join(_MODELS))
            if info.type == pafs.FileType.Directory
            and _MODEL_RE.match(info.base_name)
            and self._published_numbers(info.base_name)
        ]

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every complete version of `name`, oldest first (empty for an unknown model)."""
        name = _check_model_name(name)
        aliases = self._read_aliases(name)[1]
        out = []
        for n in self._version_numbers(name):
            record = self._read_record(name, n)
            if record is not None:  # else a registration still in progress (or abandoned)
                out.append(self._model_version(name, record, aliases))
        return out

    def aliases(self, name: str) -> dict[str, int]:
        """The aliases of `name` and the versions they point to."""
        return self._read_aliases(_check_model_name(name))[1]

    def get(self, name: str, version_or_alias: int | str = LATEST) -> ModelVersion:
        """Look up one version.

        Args:
            name: The model name.
            version_or_alias: A version number (`3`, `"3"`, `"v3"`, `"000003"`), an alias
                (`"production"`) or `"latest"` (the highest version).

        Raises:
            RegistryError: The model, version or alias does not exist.
        """
        name = _check_model_name(name)
        aliases = self._read_aliases(name)[1]
        n = self._resolve(name, version_or_alias, aliases)
        return self._model_version(name, self._require_record(name, n), aliases)

    def show(self, name: str, version_or_alias: int | str = LATEST) -> dict[str, Any]:
        """Everything known about one version, as a JSON-able dict (for the CLI and reports)."""
        name = _check_model_name(name)
        revision, aliases = self._read_aliases(name)
        n = self._resolve(name, version_or_alias, aliases)
        record = self._require_record(name, n)
        return {
            **self._model_version(name, record, aliases).to_dict(),
            "bundle_created_at": record.get("bundle_created_at"),
            "files": record.get("files", {}),
            "model_aliases": aliases,
            "aliases_revision": revision,
        }

    def audit(self, name: str, alias: str | None = None) -> list[AuditEntry]:
        """The audit log of `name` (only entries of `alias` when given), oldest first."""
        name = _check_model_name(name)
        entries = self._read_audit(name)
        return entries if alias is None else [e for e in entries if e.alias == alias]

    def bundle_path(self, name: str, version_or_alias: int | str = LATEST) -> str:
        """A local folder holding the version's bundle, ready for `load_bundle`.

        On local disk this is the version folder itself. On a remote filesystem the bundle is
        downloaded once into `cache_dir` (keyed by registry, model and version: versions are
        immutable, so the cache never goes stale), every file is checked against its SHA-256,
        and a damaged cached copy is downloaded again.

        Raises:
            RegistryError: Unknown model/version/alias, or the stored copy is corrupt.
        """
        name = _check_model_name(name)
        n = self._resolve(name, version_or_alias, self._read_aliases(name)[1])
        record = self._require_record(name, n)
        return self._store.local_copy(
            self._version_dir(name, n), lambda: self._download(name, n, record)
        )

    # -- registering ------------------------------------------------------------------------------
    def register(
        self,
        bundle_dir: str | os.PathLike[str],
        model_name: str,
        *,
        aliases: Iterable[str] = (),
        reason: str = "",
        lineage: Mapping[str, Any] | None = None,
    ) -> ModelVersion:
        """Copy a verified bundle into the registry as the next version of `model_name`.

        The bundle is verified with `load_bundle` first, then the manifest and every file it
        lists are copied and checksummed again after the copy. Registering the same bundle
        twice makes two versions; nothing is ever overwritten.

        Args:
            bundle_dir: A bundle folder written by `write_bundle` (local disk).
            model_name: Letters, digits, `_`, `.`, `-` (it becomes a folder name).
            aliases: Aliases to point at the new version (e.g. `["candidate"]`), each recorded
                as a `set_alias` audit entry.
            reason: Free text kept in the version record and the audit log.
            lineage: More lineage for the version record, next to the bundle's own (data
                fingerprint, git commit, cost): e.g. the monitor's trigger and the data
                partitions a retrain read. JSON-able values.

        Returns:
            The new version.

        Raises:
            RegistryError: The bundle is missing or corrupt (nothing is registered), a name is
                invalid, or the copy did not match its checksums.
        """
        name = _check_model_name(model_name)
        alias_list = _check_alias_list(aliases)
        # Imported here: the bundle code pulls in torch, which `ray-ml registry list` and the
        # serving side's lookups do not need.
        from ray_ml.train import load_bundle

        source = Path(bundle_dir).expanduser().resolve()
        try:
            bundle = load_bundle(source)
        except BundleError as exc:
            raise RegistryError(
                f"refusing to register {str(source)!r} as model {name!r}: {exc}"
            ) from None
        manifest_bytes = (source / _MANIFEST).read_bytes()
        if json.loads(manifest_bytes) != bundle.manifest:
            raise RegistryError(
                f"refusing to register {str(source)!r}: its manifest.json changed while it was "
                "being verified. Register it again once the bundle is no longer being written."
            )
        files = {_MANIFEST: hashlib.sha256(manifest_bytes).hexdigest()}
        files.update({str(k): str(v) for k, v in bundle.manifest["files"].items()})
        record: dict[str, Any] = {
            "format": "ray_ml.registry.version",
            "format_version": RECORD_FORMAT_VERSION,
            "model": name,
            "version": None,  # set once the number is allocated
            "created_at": _now(),
            "registered_by": self.actor,
            "source": str(source),
            "reason": str(reason),
            "model_kind": bundle.model_kind,
            "task": bundle.task,
            "manifest_checksum": str(bundle.manifest.get("checksum")),
            "bundle_created_at": bundle.manifest.get("created_at"),
            "metrics": _metrics_summary(bundle.metrics),
            "lineage": {
                **{key: bundle.manifest.get(key) for key in _LINEAGE_KEYS},
                **dict(lineage or {}),
            },
            "files": files,
        }
        n = self._store.publish(_NewVersion(self, name, source, record))
        entry = self._entry("register", name, None, None, n, reason, None)
        with self._locked(name):
            self._append_audit(name, entry)
        for alias in alias_list:
            self.set_alias(name, alias, n, reason=reason)
        return self.get(name, n)

    def _copy_in(self, source: Path, files: Mapping[str, str], dest_dir: str) -> None:
        store = self._store
        store.fs.create_dir(dest_dir, recursive=True)
        for file, digest in files.items():
            dest = posixpath.join(dest_dir, file)
            h = hashlib.sha256()
            with open(source / file, "rb") as src, store.fs.open_output_stream(dest) as out:
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
            if h.hexdigest() != digest:
                raise RegistryError(
                    f"refusing to register {str(source)!r}: {file} changed while it was being "
                    "copied. Register it again once the bundle is no longer being written."
                )
            store.fsync(dest)
            copied = store.sha256(dest)
            if copied != digest:
                raise RegistryError(
                    f"the copy of {file} at {store.display(dest)} has sha256 {copied}, but the "
                    f"bundle says {digest}: the registry storage corrupted it. Nothing was "
                    "registered; check the storage and register again."
                )

    # -- aliases ----------------------------------------------------------------------------------
    def set_alias(self, name: str, alias: str, version: int | str, reason: str = "") -> AliasChange:
        """Point `alias` at a version (a number, or another alias's current version).

        Setting an alias to the version it already points to changes nothing.

        Raises:
            RegistryError: Invalid alias name, or unknown model/version.
        """
        return self._point(name, alias, version, reason, "set_alias")

    def promote(
        self,
        name: str,
        version_or_alias: int | str,
        to: str = "production",
        reason: str = "",
    ) -> AliasChange:
        """Point alias `to` at a version, e.g. `promote("iris", "candidate")`.

        Args:
            name: The model name.
            version_or_alias: The version to promote: a number, an alias (`candidate`), or
                `latest`, resolved under the same lock as the change.
            to: The alias to move (default `production`).
            reason: Why, for the audit log.
        """
        return self._point(name, to, version_or_alias, reason, "promote")

    def rollback(self, name: str, alias: str = "production", reason: str = "") -> AliasChange:
        """Point `alias` back at the version it pointed to before its last change.

        The history comes from the audit log: each `set_alias`/`promote` pushes a version, each
        `rollback` pops one, so rolling back twice goes two versions back.

        Raises:
            RegistryError: The alias is not set, or has no earlier version.
        """
        name = _check_model_name(name)
        alias = _check_alias(alias)

        def decide(aliases: Mapping[str, int]) -> int | None:
            current = aliases.get(alias)
            if current is None:
                raise RegistryError(
                    f"cannot roll back alias {alias!r} of model {name!r}: it is not set "
                    f"(aliases: {_fmt_aliases(aliases)}). Set it with `promote`."
                )
            stack = _alias_history(self._read_audit(name), alias)
            if not stack or stack[-1] != current:
                stack.append(current)  # the audit log missed the last change; trust aliases.json
            if len(stack) < 2:
                raise RegistryError(
                    f"cannot roll back alias {alias!r} of model {name!r}: the audit log shows no "
                    f"version before {current}. Point it explicitly with "
                    f"`promote(name, VERSION, to={alias!r})`."
                )
            target = stack[-2]
            if target is None:
                raise RegistryError(
                    f"cannot roll back alias {alias!r} of model {name!r}: before version "
                    f"{current} it was deleted. Use `delete_alias` to delete it again, or point "
                    "it at a version explicitly."
                )
            self._require_record(name, target)
            return target

        return self._change_alias(name, alias, "rollback", reason, decide)

    def delete_alias(self, name: str, alias: str, reason: str = "") -> AliasChange:
        """Remove `alias` (a no-op when it is not set)."""
        return self._change_alias(
            _check_model_name(name), _check_alias(alias), "delete_alias", reason, lambda _: None
        )

    def _point(
        self, name: str, alias: str, ref: int | str, reason: str, action: str
    ) -> AliasChange:
        name = _check_model_name(name)
        alias = _check_alias(alias)

        def decide(aliases: Mapping[str, int]) -> int | None:
            n = self._resolve(name, ref, aliases)
            self._require_record(name, n)
            return n

        return self._change_alias(name, alias, action, reason, decide)

    def _change_alias(
        self,
        name: str,
        alias: str,
        action: str,
        reason: str,
        decide: Callable[[Mapping[str, int]], int | None],
    ) -> AliasChange:
        """Read-modify-write of aliases.json; `decide` maps the current aliases to the new target."""
        if not self._published_numbers(name):
            raise self._unknown_model(name)  # before locking: the lock file would create it
        path = self._store.join(_MODELS, name, _ALIASES)
        for _ in range(REMOTE_ATTEMPTS):
            with self._locked(name):
                revision, aliases = self._read_aliases(name)
                before = aliases.get(alias)
                after = decide(aliases)
                if after == before:
                    return self._alias_change(name, alias, action, before, after, revision, False)
                new = dict(aliases)
                if after is None:
                    new.pop(alias)
                else:
                    new[alias] = after
                # A unique id per write: an object store tells our write from a racing one by it.
                write_id = uuid.uuid4().hex
                doc = {
                    "model": name,
                    "revision": revision + 1,
                    "aliases": dict(sorted(new.items())),
                    "updated_at": _now(),
                    "updated_by": self.actor,
                    "write_id": write_id,
                }
                if not self._store.replace_bytes(path, _json_bytes(doc)):
                    continue  # another writer replaced our file: redo the change on top of it
                entry = self._entry(action, name, alias, before, after, reason, revision + 1)
                self._append_audit(name, entry)
                return self._alias_change(name, alias, action, before, after, revision + 1, True)
        raise RegistryError(
            f"could not change alias {alias!r} of model {name!r}: other writers kept replacing "
            f"{self._store.display(path)}. Change aliases from one place at a time."
        )

    def _alias_change(
        self,
        name: str,
        alias: str,
        action: str,
        before: int | None,
        after: int | None,
        revision: int,
        changed: bool,
    ) -> AliasChange:
        version = None if after is None else self.get(name, after)
        return AliasChange(name, alias, action, before, after, revision, changed, version)

    def _locked(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Serialises changes of one model (an exclusive lock on local disk; none on objects)."""
        return self._store.locked(self._store.join(_MODELS, name, _LOCK))

    # -- audit ------------------------------------------------------------------------------------
    def _entry(
        self,
        action: str,
        name: str,
        alias: str | None,
        before: int | None,
        after: int | None,
        reason: str,
        revision: int | None,
    ) -> AuditEntry:
        return AuditEntry(_now(), self.actor, action, name, alias, before, after, reason, revision)

    def _append_audit(self, name: str, entry: AuditEntry) -> None:
        """One audit line; the caller holds the model lock."""
        line = json.dumps(entry.to_dict(), sort_keys=True) + "\n"
        store = self._store
        store.append_entry(
            store.join(_MODELS, name, _AUDIT_LOG),
            store.join(_MODELS, name, _AUDIT_DIR),
            line.encode(),
        )

    def _read_audit(self, name: str) -> list[AuditEntry]:
        store = self._store
        lines: list[str] = []
        data = store.read_bytes(store.join(_MODELS, name, _AUDIT_LOG))
        if data is not None:
            lines.extend(data.decode().splitlines())
        for info in store.list_dir(store.join(_MODELS, name, _AUDIT_DIR)):
            if info.type == pafs.FileType.File and info.base_name.endswith(".json"):
                lines.append((store.read_bytes(info.path) or b"").decode())
        entries = []
        for line in lines:
            if not line.strip():
                continue
            try:
                entries.append(AuditEntry.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash: the rest of the log still counts
        return entries

    # -- internals --------------------------------------------------------------------------------
    def _version_dir(self, name: str, n: int) -> str:
        return self._store.join(_MODELS, name, _VERSIONS, _version_name(n))

    def _version_numbers(self, name: str) -> list[int]:
        """Every version folder, complete or not, ascending."""
        infos = self._store.list_dir(self._store.join(_MODELS, name, _VERSIONS))
        return sorted(
            int(i.base_name)
            for i in infos
            if i.type == pafs.FileType.Directory and _VERSION_DIR_RE.match(i.base_name)
        )

    def _published_numbers(self, name: str) -> list[int]:
        numbers = self._version_numbers(name)
        records = {posixpath.join(self._version_dir(name, n), _RECORD): n for n in numbers}
        present = self._store.existing_files(records)
        return sorted(n for path, n in records.items() if path in present)

    def _read_record(self, name: str, n: int) -> dict[str, Any] | None:
        data = self._store.read_bytes(posixpath.join(self._version_dir(name, n), _RECORD))
        if data is None:
            return None
        try:
            record = json.loads(data)
        except ValueError as exc:
            raise RegistryError(
                f"{_RECORD} of version {n} of model {name!r} in {self.root} is not valid JSON "
                f"({exc}); the registry was edited by hand or its storage is damaged."
            ) from None
        if not isinstance(record, dict):
            raise RegistryError(f"{_RECORD} of version {n} of model {name!r} is not an object.")
        return record

    def _require_record(self, name: str, n: int) -> dict[str, Any]:
        record = self._read_record(name, n)
        if record is not None:
            return record
        versions = self._published_numbers(name)
        if not versions:
            raise self._unknown_model(name)
        raise RegistryError(
            f"model {name!r} has no version {n} in {self.root}; versions: "
            f"{', '.join(map(str, versions))}. Use one of them, an alias or 'latest'."
        )

    def _unknown_model(self, name: str) -> RegistryError:
        models = self.list_models()
        return RegistryError(
            f"no model named {name!r} in registry {self.root}; models: "
            f"{', '.join(models) if models else 'none yet'}. Check the name and --root."
        )

    def _resolve(self, name: str, ref: int | str, aliases: Mapping[str, int]) -> int:
        if isinstance(ref, bool) or not isinstance(ref, int | str):
            raise RegistryError(
                f"a version must be a number, an alias or 'latest', but got {ref!r} "
                f"({type(ref).__name__})."
            )
        if isinstance(ref, int):
            return ref
        text = ref.strip()
        if text == LATEST:
            published = self._published_numbers(name)
            if not published:
                raise self._unknown_model(name)
            return published[-1]
        match = _VERSION_REF_RE.match(text)
        if match:
            return int(match.group(1))
        if text in aliases:
            return aliases[text]
        if not self._version_numbers(name):
            raise self._unknown_model(name)
        raise RegistryError(
            f"model {name!r} has no alias {text!r}; aliases: {_fmt_aliases(aliases)}. Use one "
            "of them, a version number or 'latest'."
        )

    def _read_aliases(self, name: str) -> tuple[int, dict[str, int]]:
        path = self._store.join(_MODELS, name, _ALIASES)
        data = self._store.read_bytes(path)
        if data is None:
            return 0, {}
        try:
            doc = json.loads(data)
            revision = int(doc["revision"])
            aliases = {str(k): int(v) for k, v in doc["aliases"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RegistryError(
                f"{self._store.display(path)} is not a valid aliases file ({exc!r}); it was "
                "edited by hand or its storage is damaged. Restore it from the audit log."
            ) from None
        return revision, aliases

    def _model_version(
        self, name: str, record: Mapping[str, Any], aliases: Mapping[str, int]
    ) -> ModelVersion:
        n = int(record["version"])
        return ModelVersion(
            name=name,
            version=n,
            path=self._store.display(self._version_dir(name, n)),
            created_at=str(record.get("created_at", "")),
            registered_by=str(record.get("registered_by", "")),
            source=str(record.get("source", "")),
            reason=str(record.get("reason", "")),
            model_kind=str(record.get("model_kind", "")),
            task=str(record.get("task", "")),
            manifest_checksum=str(record.get("manifest_checksum", "")),
            metrics=dict(record.get("metrics") or {}),
            lineage=dict(record.get("lineage") or {}),
            aliases=tuple(sorted(a for a, v in aliases.items() if v == n)),
        )

    def _download(self, name: str, n: int, record: Mapping[str, Any]) -> Path:
        from ray_ml.train import load_bundle

        root_key = hashlib.sha256(self.root.encode()).hexdigest()[:16]
        final = self.cache_dir / root_key / name / _version_name(n)
        if final.is_dir():
            try:
                load_bundle(final)
                return final
            except BundleError:
                shutil.rmtree(final, ignore_errors=True)  # damaged cache: fetch it again
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:12]}"
        tmp.mkdir()
        vdir = self._version_dir(name, n)
        try:
            for file, digest in {**record["files"], _RECORD: None}.items():
                h = hashlib.sha256()
                src_path = posixpath.join(vdir, file)
                with (
                    self._store.fs.open_input_stream(src_path) as src,
                    open(tmp / file, "wb") as out,
                ):
                    while chunk := src.read(_CHUNK):
                        h.update(chunk)
                        out.write(chunk)
                if digest is not None and h.hexdigest() != digest:
                    raise RegistryError(
                        f"version {n} of model {name!r}: {self._store.display(src_path)} has "
                        f"sha256 {h.hexdigest()}, but the registry recorded {digest}. The "
                        "stored copy is damaged; register the bundle again as a new version."
                    )
            try:
                load_bundle(tmp)
            except BundleError as exc:
                raise RegistryError(f"version {n} of model {name!r} is damaged: {exc}") from None
            try:
                os.rename(tmp, final)
            except OSError:  # another process finished the same download first
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final


# -- helpers --------------------------------------------------------------------------------------
def _check_model_name(name: str) -> str:
    if not isinstance(name, str) or not _MODEL_RE.match(name):
        raise RegistryError(
            f"model name must match {_MODEL_RE.pattern} (it becomes a folder name), but got "
            f"{name!r}. Use letters, digits, '_', '.' and '-', e.g. 'iris_mlp'."
        )
    return name


def _check_alias(alias: str) -> str:
    if (
        not isinstance(alias, str)
        or not _ALIAS_RE.match(alias)
        or _VERSION_REF_RE.match(alias)
        or alias == LATEST
    ):
        raise RegistryError(
            f"alias must start with a letter and match {_ALIAS_RE.pattern}, and must not look "
            f"like a version ('v3') or be {LATEST!r}, but got {alias!r}. Use e.g. 'production' "
            "or 'candidate'."
        )
    return alias


def _check_alias_list(aliases: Iterable[str]) -> list[str]:
    items = [aliases] if isinstance(aliases, str) else list(aliases)
    return list(dict.fromkeys(_check_alias(a) for a in items))


def _alias_history(entries: Iterable[AuditEntry], alias: str) -> list[int | None]:
    """The versions `alias` pointed to, oldest first, with rollbacks popping their change."""
    stack: list[int | None] = []
    for entry in entries:
        if entry.alias != alias:
            continue
        if entry.action in ("set_alias", "promote"):
            stack.append(entry.to_version)
        elif entry.action == "delete_alias":
            stack.append(None)
        elif entry.action == "rollback":
            if stack:
                stack.pop()
            if not stack or stack[-1] != entry.to_version:
                stack.append(entry.to_version)
    return stack


def _metrics_summary(
    metrics: Mapping[str, Any], prefix: str = "", depth: int = 1
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
            out[name] = value
        elif isinstance(value, Mapping) and depth < _METRIC_DEPTH:
            out.update(_metrics_summary(value, f"{name}.", depth + 1))
    return out


def _version_name(n: int) -> str:
    return f"{n:06d}"


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _default_actor() -> str:
    if os.environ.get("RAY_ML_ACTOR"):
        return os.environ["RAY_ML_ACTOR"]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # containers without a passwd entry for the uid
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def _fmt_aliases(aliases: Mapping[str, int]) -> str:
    return ", ".join(f"{a}->{v}" for a, v in sorted(aliases.items())) or "none"


class _NewVersion:
    """A bundle being registered as the next version of a model: the `Draft` a store publishes."""

    def __init__(self, registry: Registry, name: str, source: Path, record: dict[str, Any]) -> None:
        self._registry = registry
        self._source = source
        self._record = record
        self.model = name
        self.staging = registry._store.join(_MODELS, name, _STAGING, uuid.uuid4().hex)
        self.files = [*record["files"], _RECORD]

    def folder(self, n: int) -> str:
        return self._registry._version_dir(self.model, n)

    def taken(self) -> list[int]:
        return self._registry._version_numbers(self.model)

    def published(self) -> list[int]:
        return self._registry._published_numbers(self.model)

    def fill(self, folder: str) -> None:
        self._registry._copy_in(self._source, self._record["files"], folder)

    def seal(self, folder: str, n: int) -> None:
        self._record["version"] = n
        self._registry._store.write_bytes(
            posixpath.join(folder, _RECORD), _json_bytes(self._record)
        )
