"""The model bundle: one directory holding everything serving needs, verified on load.

Layout (every file but the manifest is listed in the manifest with its SHA-256)::

    model.pt | model.ubj | model.json   weights: torch state dict (tensors only) or XGBoost model
    model_config.json                   `build_mlp` kwargs (mlp) or free-form model facts (xgboost)
    preprocessor.json                   the fitted `Preprocessor`: raw rows -> feature matrix
    contract.yaml                       the data contract the model was trained under
    reference_stats.json                per-column statistics of the training data (drift checks)
    metrics.json                        validation/test metrics
    manifest.json                       format version, provenance, package versions, checksums

Nothing is pickled: torch weights are a plain tensor dict read back with
`torch.load(..., weights_only=True)` (the `safetensors` package is not a dependency), XGBoost
uses its own UBJSON/JSON model format, and everything else is JSON or YAML.

A bundle is written into a temporary sibling directory and renamed into place, so a reader never
sees a half-written bundle. `load_bundle` checks every checksum (and the manifest's own) before
parsing anything, so a bundle edited or damaged after export fails loudly instead of serving a
model that no longer matches its preprocessing.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ray_ml._json import jsonable
from ray_ml.data import Contract, Preprocessor
from ray_ml.errors import BundleError, ContractError
from ray_ml.train._models import build_mlp, output_size

if TYPE_CHECKING:
    import torch
    import xgboost

__all__ = [
    "BUNDLE_FORMAT_VERSION",
    "MODEL_KINDS",
    "Bundle",
    "load_bundle",
    "write_bundle",
]

BUNDLE_FORMAT_VERSION = 1
MODEL_KINDS = ("mlp", "xgboost")
MANIFEST = "manifest.json"
MODEL_CONFIG = "model_config.json"
PREPROCESSOR = "preprocessor.json"
CONTRACT = "contract.yaml"
REFERENCE_STATS = "reference_stats.json"
METRICS = "metrics.json"
TORCH_WEIGHTS = "model.pt"
_XGB_FORMATS = ("ubj", "json")
_REQUIRED = (MODEL_CONFIG, PREPROCESSOR, CONTRACT, REFERENCE_STATS, METRICS)
# Keys written by write_bundle; manifest_extra must not shadow them.
_RESERVED = frozenset(
    {
        "format",
        "format_version",
        "created_at",
        "model_kind",
        "task",
        "weights_file",
        "packages",
        "python",
        "git_commit",
        "git_dirty",
        "files",
        "checksum",
    }
)
_PACKAGES = ("ray", "torch", "xgboost", "pyarrow", "numpy", "pandas", "scikit-learn", "ray-ml")
# Wrappers that prefix every state-dict key: DistributedDataParallel and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


@dataclass(frozen=True)
class Bundle:
    """A verified, parsed bundle (weights stay on disk until a `Predictor` loads them).

    Attributes:
        path: The bundle directory.
        manifest: Parsed `manifest.json` (provenance, versions, checksums, `manifest_extra`).
        model_config: Parsed `model_config.json`.
        preprocessor: The fitted preprocessing of the training run.
        contract: The data contract of the training run.
        metrics: Parsed `metrics.json`.
        reference_stats: Parsed `reference_stats.json` (see `ray_ml.data.reference_stats`).
    """

    path: Path
    manifest: dict[str, Any]
    model_config: dict[str, Any]
    preprocessor: Preprocessor
    contract: Contract
    metrics: dict[str, Any]
    reference_stats: dict[str, Any]

    @property
    def model_kind(self) -> str:
        return str(self.manifest["model_kind"])

    @property
    def task(self) -> str:
        return self.preprocessor.task

    @property
    def weights_path(self) -> Path:
        return self.path / str(self.manifest["weights_file"])


# -- writing --------------------------------------------------------------------------------------
def write_bundle(
    path: str | Path,
    *,
    model_kind: str,
    model_config: Mapping[str, Any],
    preprocessor: Preprocessor,
    contract: Contract,
    reference_stats: Mapping[str, Any],
    metrics: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor] | None = None,
    xgboost_model: bytes | bytearray | None = None,
    xgboost_format: str = "ubj",
    manifest_extra: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a bundle directory atomically; see the module docstring for its layout.

    The weights are checked against the rest before anything is written: an MLP's state dict
    must load strictly into `build_mlp(**model_config)`, whose input width must equal the
    preprocessor's; an XGBoost model must have that many features and an objective whose
    predictions are what the predictor expects (probabilities for classification).

    Args:
        path: Target directory (local filesystem). Must not exist unless `overwrite`.
        model_kind: `mlp` or `xgboost`.
        model_config: For `mlp`, exactly the `build_mlp` keyword arguments. For `xgboost`,
            free-form JSON facts (e.g. params, best_iteration) kept for reports.
        preprocessor: The preprocessing the model was trained on.
        contract: The data contract of the training data.
        reference_stats: Training-data statistics from `ray_ml.data.reference_stats`.
        metrics: Evaluation metrics (e.g. from `compute_metrics`).
        state_dict: The MLP's weights (`model.state_dict()`; DDP `module.` and torch.compile
            `_orig_mod.` prefixes are removed). Required for and only for `mlp`.
        xgboost_model: The booster as bytes, `booster.save_raw(xgboost_format)`, taken after
            any early-stopping slicing (`booster[: best_iteration + 1]`): prediction uses every
            tree stored. Required for and only for `xgboost`.
        xgboost_format: `ubj` (stored as `model.ubj`) or `json` (`model.json`).
        manifest_extra: More JSON-able provenance merged into the manifest's top level (resolved
            config, data fingerprint, wall time, resources, cost). Must not reuse the
            manifest's own keys.
        overwrite: Replace an existing bundle at `path` (atomically).

    Returns:
        The bundle directory.

    Raises:
        ValueError: Inconsistent arguments (wrong weights for the kind, shape mismatches, a
            reserved manifest key, a value that is not JSON-able).
        BundleError: `path` exists and `overwrite` is false.
    """
    kind = str(model_kind)
    if kind not in MODEL_KINDS:
        raise ValueError(f"model_kind must be one of {list(MODEL_KINDS)}, but got {kind!r}.")
    if preprocessor.label != contract.label or preprocessor.task != contract.task.value:
        raise ValueError(
            f"preprocessor (label={preprocessor.label!r}, task={preprocessor.task!r}) does not "
            f"match the contract (label={contract.label!r}, task={contract.task.value!r}); "
            "pass the contract the preprocessor was fitted with."
        )
    extra = dict(manifest_extra or {})
    clash = sorted(set(extra) & _RESERVED)
    if clash:
        raise ValueError(
            f"manifest_extra must not set the manifest's own key(s) {clash}; rename them."
        )
    config = jsonable(dict(model_config), "model_config")

    files: dict[str, bytes] = {}
    if kind == "mlp":
        if state_dict is None or xgboost_model is not None:
            raise ValueError(
                "model_kind=mlp needs `state_dict` (the torch weights) and no `xgboost_model`."
            )
        weights_file = TORCH_WEIGHTS
        files[weights_file] = _torch_bytes(_checked_state_dict(state_dict, config, preprocessor))
    else:
        if xgboost_model is None or state_dict is not None:
            raise ValueError(
                "model_kind=xgboost needs `xgboost_model` (booster.save_raw(...)) and no "
                "`state_dict`."
            )
        fmt = str(xgboost_format)
        if fmt not in _XGB_FORMATS:
            raise ValueError(
                f"xgboost_format must be one of {list(_XGB_FORMATS)}, but got {fmt!r}."
            )
        weights_file = f"model.{fmt}"
        raw = bytes(xgboost_model)
        _check_booster(_booster_from_bytes(raw), preprocessor, where="xgboost_model")
        files[weights_file] = raw

    files[MODEL_CONFIG] = _json_bytes(config)
    files[PREPROCESSOR] = _json_bytes(preprocessor.to_dict())
    files[CONTRACT] = contract.to_yaml(
        "# Data contract of the training run that produced this bundle.\n"
    ).encode()
    files[REFERENCE_STATS] = _json_bytes(jsonable(dict(reference_stats), "reference_stats"))
    files[METRICS] = _json_bytes(jsonable(dict(metrics), "metrics"))

    commit, dirty = _git_state()
    manifest: dict[str, Any] = {
        "format": "ray_ml.bundle",
        "format_version": BUNDLE_FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_kind": kind,
        "task": preprocessor.task,
        "weights_file": weights_file,
        "packages": _package_versions(),
        "python": platform.python_version(),
        "git_commit": commit,
        "git_dirty": dirty,
        **jsonable(extra, "manifest_extra"),
        "files": {name: _sha256(data) for name, data in sorted(files.items())},
    }
    manifest["checksum"] = _manifest_checksum(manifest)
    files[MANIFEST] = _json_bytes(manifest)
    return _write_atomically(Path(path), files, overwrite)


def _write_atomically(target: Path, files: Mapping[str, bytes], overwrite: bool) -> Path:
    if target.exists() and not overwrite:
        raise BundleError(
            f"bundle directory {str(target)!r} already exists. Choose a new path or pass "
            "overwrite=True to replace it."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    # A sibling, so the final rename stays on one filesystem (and is atomic).
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
    old: Path | None = None
    try:
        tmp.mkdir()
        for name, data in files.items():
            with open(tmp / name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        if target.exists():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:12]}"
            os.replace(target, old)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not target.exists():
            os.replace(old, target)  # put the previous bundle back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _checked_state_dict(
    state_dict: Mapping[str, torch.Tensor], config: dict[str, Any], pre: Preprocessor
) -> dict[str, torch.Tensor]:
    clean: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        clean[key] = value.detach().cpu().contiguous()
    try:
        model = build_mlp(**config)
    except TypeError as exc:
        raise ValueError(
            f"model_config for model_kind=mlp must be exactly the build_mlp arguments "
            f"(num_features, num_outputs, hidden_sizes, dropout, norm, activation): {exc}"
        ) from None
    want_in = pre.num_features
    want_out = output_size(pre.task, len(pre.classes))
    if config["num_features"] != want_in or config["num_outputs"] != want_out:
        raise ValueError(
            f"model_config has num_features={config['num_features']}, "
            f"num_outputs={config['num_outputs']}, but the preprocessor gives {want_in} "
            f"features and task={pre.task} needs {want_out} output(s)."
        )
    try:
        model.load_state_dict(clean, strict=True)
    except RuntimeError as exc:
        raise ValueError(
            f"state_dict does not match build_mlp(**model_config): {exc}. Pass the state dict "
            "of the model built from this model_config."
        ) from None
    return clean


def _torch_bytes(state: dict[str, torch.Tensor]) -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def _booster_from_bytes(raw: bytes) -> xgboost.Booster:
    import xgboost

    booster = xgboost.Booster()
    booster.load_model(bytearray(raw))
    return booster


def _check_booster(booster: xgboost.Booster, pre: Preprocessor, where: str) -> None:
    """Raise ValueError unless `booster` fits the preprocessor's width and the task's outputs."""
    if booster.num_features() != pre.num_features:
        raise ValueError(
            f"{where}: the XGBoost model has {booster.num_features()} features, but the "
            f"preprocessor gives {pre.num_features}. Export the booster trained on this "
            "preprocessor's output."
        )
    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    allowed = {
        "binary": ("binary:logistic",),
        "multiclass": ("multi:softprob",),
    }.get(pre.task)
    if allowed is not None and objective not in allowed:
        raise ValueError(
            f"{where}: task={pre.task} needs class probabilities, but the XGBoost objective is "
            f"{objective!r}. Train with objective={allowed[0]}."
        )
    if allowed is None and objective.split(":")[0] in ("binary", "multi", "rank"):
        raise ValueError(
            f"{where}: task=regression, but the XGBoost objective is {objective!r}. Train with "
            "objective=reg:squarederror."
        )


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest_checksum(manifest: Mapping[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return _sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def _package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git_state() -> tuple[str | None, bool | None]:
    """(HEAD commit, has uncommitted changes) of the checkout ray_ml runs from; None outside git."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=here, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    head = git("rev-parse", "HEAD")
    if head is None or not re.fullmatch(r"[0-9a-f]{40,64}", head.strip()):
        return None, None
    status = git("status", "--porcelain", "--untracked-files=no")
    return head.strip(), None if status is None else bool(status.strip())


# -- loading --------------------------------------------------------------------------------------
def load_bundle(path: str | Path) -> Bundle:
    """Verify a bundle's checksums and parse it.

    Args:
        path: A directory written by `write_bundle`.

    Returns:
        The parsed bundle; the weights file is verified but not loaded.

    Raises:
        BundleError: The directory or a listed file is missing, a checksum does not match (the
            bundle is corrupt or was modified after export), or a file cannot be parsed.
    """
    root = Path(path)
    if not root.is_dir():
        raise BundleError(
            f"model bundle {str(root)!r} does not exist or is not a directory. Check the path, "
            "or export the model again."
        )
    manifest = _read_manifest(root)
    for name, digest in manifest["files"].items():
        _verify_file(root, name, digest)

    def parse(name: str, reader: Any) -> Any:
        try:
            return reader((root / name).read_text())
        except (ValueError, TypeError, KeyError, yaml.YAMLError, ContractError) as exc:
            raise BundleError(
                f"model bundle {str(root)!r}: {name} passed its checksum but cannot be parsed "
                f"({exc}). It was probably written by an incompatible ray_ml version; "
                "re-export the bundle."
            ) from None

    return Bundle(
        path=root,
        manifest=manifest,
        model_config=parse(MODEL_CONFIG, json.loads),
        preprocessor=parse(PREPROCESSOR, lambda t: Preprocessor.from_dict(json.loads(t))),
        contract=parse(CONTRACT, lambda t: Contract.from_dict(yaml.safe_load(t))),
        metrics=parse(METRICS, json.loads),
        reference_stats=parse(REFERENCE_STATS, json.loads),
    )


def _corrupt(root: Path, name: str, what: str) -> BundleError:
    return BundleError(
        f"model bundle {str(root)!r} is corrupt or was modified after export: {name} {what}. "
        "Do not edit bundles by hand; re-export the bundle from its training run."
    )


def _read_manifest(root: Path) -> dict[str, Any]:
    file = root / MANIFEST
    if not file.is_file():
        raise _corrupt(root, MANIFEST, "is missing")
    try:
        manifest = json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise _corrupt(root, MANIFEST, f"is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise _corrupt(root, MANIFEST, "has no `files` table")
    if manifest.get("checksum") != _manifest_checksum(manifest):
        raise _corrupt(root, MANIFEST, "does not match its own checksum")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"model bundle {str(root)!r} has format_version={version!r}, but this ray_ml reads "
            f"versions up to {BUNDLE_FORMAT_VERSION}. Upgrade ray_ml or re-export the bundle."
        )
    if manifest.get("model_kind") not in MODEL_KINDS:
        raise _corrupt(
            root, MANIFEST, f"names an unknown model_kind={manifest.get('model_kind')!r}"
        )
    files = manifest["files"]
    for name in (*_REQUIRED, str(manifest.get("weights_file"))):
        if name not in files:
            raise _corrupt(root, MANIFEST, f"does not list the required file {name}")
    for name in files:
        # Plain names only: a manifest must not point outside its directory.
        if not isinstance(name, str) or Path(name).name != name or name in (".", "..", MANIFEST):
            raise _corrupt(root, MANIFEST, f"lists an invalid file name {name!r}")
    return manifest


def _verify_file(root: Path, name: str, digest: Any) -> None:
    file = root / name
    if not file.is_file():
        raise _corrupt(root, name, "is missing")
    h = hashlib.sha256()
    with open(file, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != digest:
        raise _corrupt(root, name, f"has sha256 {h.hexdigest()}, but the manifest says {digest}")
