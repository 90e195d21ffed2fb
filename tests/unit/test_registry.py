"""The model registry: versions, aliases, promote/rollback, audit, concurrency, URIs, CLI."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import pytest
import torch
from pyarrow._fs import _MockFileSystem  # pyarrow's in-memory filesystem, used by its own tests

from ray_ml.data import fit_preprocessor_table, infer_contract, reference_stats
from ray_ml.errors import RegistryError
from ray_ml.registry import AliasChange, ModelVersion, Registry, add_registry_parser
from ray_ml.train import build_mlp, load_bundle, output_size, write_bundle
from tests.unit import _registry_workers as workers

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


# -- fixtures -------------------------------------------------------------------------------------
def _write_mlp_bundle(path: Path, seed: int, accuracy: float) -> Path:
    """A tiny but real MLP bundle (as in test_train_bundle.py), with lineage in its manifest."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    n = 60
    x1 = rng.normal(size=n)
    color = rng.choice(["red", "green", "blue"], n)
    table = pa.table(
        {"x1": x1, "color": color, "target": ((x1 + (color == "red")) > 0).astype(np.int64)}
    )
    contract = infer_contract(table, name="toy", label="target")
    pre = fit_preprocessor_table(table, contract)
    config: dict[str, Any] = {
        "num_features": pre.num_features,
        "num_outputs": output_size("binary", len(pre.classes)),
        "hidden_sizes": [4],
        "dropout": 0.0,
        "norm": "none",
        "activation": "relu",
    }
    torch.manual_seed(seed)
    return write_bundle(
        path,
        model_kind="mlp",
        model_config=config,
        state_dict=build_mlp(**config).state_dict(),
        preprocessor=pre,
        contract=contract,
        reference_stats=reference_stats(table, contract),
        metrics={
            "val": {"accuracy": accuracy, "roc_auc": None, "per_class": {"0": {"support": 3}}},
            "test": {"accuracy": accuracy - 0.01, "confusion_matrix": [[1, 0], [0, 1]]},
        },
        manifest_extra={
            "data_fingerprint": f"fp{seed}",
            "cost": {"usd": 0.25 * (seed + 1)},
        },
    )


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("bundles")
    return (
        _write_mlp_bundle(root / "b1", seed=0, accuracy=0.8),
        _write_mlp_bundle(root / "b2", seed=1, accuracy=0.9),
    )


def _tree(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


# -- versions -------------------------------------------------------------------------------------
def test_register_two_versions(tmp_path: Path, bundles: tuple[Path, Path]) -> None:
    reg = Registry(tmp_path / "reg", actor="alice@laptop")
    v1 = reg.register(bundles[0], "iris", reason="first")
    v2 = reg.register(bundles[1], "iris")
    assert isinstance(v1, ModelVersion)
    assert (v1.version, v2.version) == (1, 2)
    assert v1.path == str(tmp_path / "reg" / "models" / "iris" / "versions" / "000001")
    assert reg.list_models() == ["iris"]
    assert [v.version for v in reg.list_versions("iris")] == [1, 2]

    # The version folder is the bundle (manifest-listed files only) plus registry.json.
    copied = _tree(Path(v1.path))
    assert copied.pop("registry.json")
    assert copied == _tree(bundles[0])
    load_bundle(v1.path)

    assert v1.metrics == {"val.accuracy": 0.8, "val.roc_auc": None, "test.accuracy": 0.79}
    manifest = json.loads((bundles[0] / "manifest.json").read_text())
    assert v1.lineage == {
        "data_fingerprint": "fp0",
        "git_commit": manifest["git_commit"],
        "git_dirty": manifest["git_dirty"],
        "cost": {"usd": 0.25},
    }
    assert v1.source == str(bundles[0]) and v1.reason == "first"
    assert v1.registered_by == "alice@laptop"
    assert (v1.model_kind, v1.task) == ("mlp", "binary")
    assert v1.manifest_checksum == manifest["checksum"]

    record = json.loads((Path(v1.path) / "registry.json").read_text())
    assert record["version"] == 1 and record["model"] == "iris"
    assert set(record["files"]) == {"manifest.json", *manifest["files"]}
    assert record["created_at"].endswith("+00:00")

    for ref in (2, "2", "v2", "000002", "latest"):
        assert reg.get("iris", ref).version == 2, ref
    shown = reg.show("iris", 1)
    assert shown["version"] == 1 and shown["files"] == record["files"]
    json.dumps(shown)


def test_bundle_path_loads(tmp_path: Path, bundles: tuple[Path, Path]) -> None:
    reg = Registry(tmp_path / "reg")
    reg.register(bundles[0], "m", aliases=["production"])
    path = reg.bundle_path("m", "production")
    assert load_bundle(path).manifest == load_bundle(bundles[0]).manifest


def test_versions_are_immutable(
    tmp_path: Path, bundles: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = Registry(tmp_path / "reg")
    v1 = reg.register(bundles[0], "m")
    before = _tree(Path(v1.path))
    # Re-registering the same bundle makes a new version; it never overwrites.
    assert reg.register(bundles[0], "m").version == 2
    # A stale listing (as when another process registers between listing and claiming) must
    # not make the allocator write into existing versions: it moves past them.
    monkeypatch.setattr(Registry, "_version_numbers", lambda self, name: [])
    assert reg.register(bundles[1], "m").version == 3
    monkeypatch.undo()
    assert _tree(Path(v1.path)) == before
    assert reg.get("m", 2).manifest_checksum == reg.get("m", 1).manifest_checksum
    for file in Path(v1.path).iterdir():
        assert stat.S_IMODE(file.stat().st_mode) & 0o222 == 0, file  # read-only on disk
    # Nothing is left behind in the staging area.
    assert not list((tmp_path / "reg" / "models" / "m" / ".staging").iterdir())


@pytest.mark.parametrize("damage", ["flip", "delete"])
def test_corrupt_bundle_is_refused(tmp_path: Path, bundles: tuple[Path, Path], damage: str) -> None:
    bad = Path(shutil.copytree(bundles[0], tmp_path / "bad"))
    if damage == "flip":
        data = bytearray((bad / "model.pt").read_bytes())
        data[len(data) // 2] ^= 0x01
        (bad / "model.pt").write_bytes(bytes(data))
    else:
        (bad / "preprocessor.json").unlink()
    reg = Registry(tmp_path / "reg")
    with pytest.raises(RegistryError, match=r"refusing to register .*bad.* as model 'm': .*"):
        reg.register(bad, "m")
    assert reg.list_versions("m") == [] and reg.list_models() == []
    with pytest.raises(RegistryError, match="refusing to register .*does not exist"):
        reg.register(tmp_path / "missing", "m")


def test_lookup_errors(tmp_path: Path, bundles: tuple[Path, Path]) -> None:
    reg = Registry(tmp_path / "reg")
    with pytest.raises(RegistryError, match="no model named 'm'.*none yet"):
        reg.get("m", "latest")
    reg.register(bundles[0], "m", aliases=["candidate"])
    with pytest.raises(RegistryError, match="no model named 'other'.*models: m"):
        reg.get("other", 1)
    with pytest.raises(RegistryError, match="has no version 7.*versions: 1"):
        reg.get("m", 7)
    with pytest.raises(RegistryError, match="has no alias 'production'; aliases: candidate->1"):
        reg.bundle_path("m", "production")
    with pytest.raises(RegistryError, match="model name must match"):
        reg.register(bundles[0], "../escape")
    for alias in ("v2", "latest", "2", "has space"):
        with pytest.raises(RegistryError, match="alias must start with a letter"):
            reg.set_alias("m", alias, 1)
    with pytest.raises(RegistryError, match="has no version 5"):
        reg.promote("m", 5)
    with pytest.raises(RegistryError, match="no model named 'other'"):
        reg.set_alias("other", "production", 1)
    assert reg.aliases("m") == {"candidate": 1}  # failed changes change nothing
    assert reg.list_models() == ["m"]


# -- aliases, promote, rollback, audit ------------------------------------------------------------
def test_promote_rollback_and_audit(tmp_path: Path, bundles: tuple[Path, Path]) -> None:
    reg = Registry(tmp_path / "reg", actor="bob@ci")
    reg.register(bundles[0], "m", aliases=["candidate"], reason="nightly")
    first = reg.promote("m", "candidate", reason="looks good")
    assert isinstance(first, AliasChange)
    assert (first.from_version, first.to_version, first.revision) == (None, 1, 2)
    assert first.version is not None and first.version.aliases == ("candidate", "production")

    reg.register(bundles[1], "m", aliases=["candidate"])
    second = reg.promote("m", "candidate", to="production", reason="better auc")
    assert (second.from_version, second.to_version) == (1, 2)
    assert reg.aliases("m") == {"candidate": 2, "production": 2}
    assert reg.get("m", "production").aliases == ("candidate", "production")

    same = reg.promote("m", 2)  # already there: nothing written
    assert not same.changed and same.revision == second.revision

    back = reg.rollback("m", reason="latency regression")
    assert (back.action, back.from_version, back.to_version) == ("rollback", 2, 1)
    assert back.version is not None and back.version.version == 1
    assert reg.get("m", "production").version == 1
    with pytest.raises(RegistryError, match="no version before 1"):
        reg.rollback("m")
    with pytest.raises(RegistryError, match="alias 'staging' of model 'm': it is not set"):
        reg.rollback("m", alias="staging")

    lines = (tmp_path / "reg" / "models" / "m" / "audit.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [(e["action"], e["alias"], e["from_version"], e["to_version"]) for e in entries] == [
        ("register", None, None, 1),
        ("set_alias", "candidate", None, 1),
        ("promote", "production", None, 1),
        ("register", None, None, 2),
        ("set_alias", "candidate", 1, 2),
        ("promote", "production", 1, 2),
        ("rollback", "production", 2, 1),
    ]
    assert {e["actor"] for e in entries} == {"bob@ci"}
    assert [e["reason"] for e in entries if e["alias"] == "production"] == [
        "looks good",
        "better auc",
        "latency regression",
    ]
    alias_revisions = [e["revision"] for e in entries if e["action"] != "register"]
    assert alias_revisions == [1, 2, 3, 4, 5]
    doc = json.loads((tmp_path / "reg" / "models" / "m" / "aliases.json").read_text())
    assert doc["revision"] == 5 and doc["aliases"] == {"candidate": 2, "production": 1}
    assert [e.action for e in reg.audit("m", alias="production")] == [
        "promote",
        "promote",
        "rollback",
    ]


def test_rollback_walks_back_and_restores_deleted(
    tmp_path: Path, bundles: tuple[Path, Path]
) -> None:
    reg = Registry(tmp_path / "reg")
    for _ in range(3):
        reg.register(bundles[0], "m")
    for n in (1, 2, 3):
        reg.promote("m", n)
    assert reg.rollback("m").to_version == 2
    assert reg.rollback("m").to_version == 1  # a second rollback goes one further back
    reg.promote("m", 3)
    assert reg.rollback("m").to_version == 1

    reg.set_alias("m", "shadow", 2)
    deleted = reg.delete_alias("m", "shadow", reason="done")
    assert (deleted.from_version, deleted.to_version, deleted.version) == (2, None, None)
    assert "shadow" not in reg.aliases("m")
    with pytest.raises(RegistryError, match="not set"):
        reg.rollback("m", alias="shadow")
    reg.set_alias("m", "shadow", 3)
    with pytest.raises(RegistryError, match="before version 3 it was deleted"):
        reg.rollback("m", alias="shadow")


# -- concurrency ----------------------------------------------------------------------------------
def test_threads_registering_at_once_get_distinct_versions(
    tmp_path: Path, bundles: tuple[Path, Path]
) -> None:
    reg = Registry(tmp_path / "reg")
    barrier = threading.Barrier(8)
    versions: list[int] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait(timeout=30)
            versions.append(reg.register(bundles[0], "m", aliases=["candidate"]).version)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sorted(versions) == list(range(1, 9))
    assert [v.version for v in reg.list_versions("m")] == list(range(1, 9))
    for n in range(1, 9):
        load_bundle(reg.bundle_path("m", n))
    actions = [e.action for e in reg.audit("m")]
    assert actions.count("register") == 8 and actions.count("set_alias") <= 8


def _join_all(procs: list[Any], timeout: float = 180) -> None:
    for p in procs:
        p.join(timeout=timeout)
    for p in procs:
        if p.is_alive():
            p.terminate()
    assert [p.exitcode for p in procs] == [0] * len(procs)


def test_processes_registering_at_once_get_distinct_versions(
    tmp_path: Path, bundles: tuple[Path, Path]
) -> None:
    ctx = multiprocessing.get_context("spawn")
    root = str(tmp_path / "reg")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [
        ctx.Process(
            target=workers.register_one, args=(root, str(bundles[1]), "m", barrier, results)
        )
        for _ in range(4)
    ]
    for p in procs:
        p.start()
    versions = sorted(results.get(timeout=180) for _ in procs)
    _join_all(procs)
    assert versions == [1, 2, 3, 4]
    reg = Registry(root)
    assert [v.version for v in reg.list_versions("m")] == [1, 2, 3, 4]
    assert [e.to_version for e in reg.audit("m")] != [] and len(reg.audit("m")) == 4


def test_racing_alias_flips_never_tear_or_lose_updates(
    tmp_path: Path, bundles: tuple[Path, Path]
) -> None:
    root = tmp_path / "reg"
    reg = Registry(root)
    reg.register(bundles[0], "m")
    reg.register(bundles[1], "m")
    ctx = multiprocessing.get_context("spawn")
    barrier, results, ready, stop = ctx.Barrier(2), ctx.Queue(), ctx.Event(), ctx.Event()
    polled = ctx.Queue()
    aliases_file = str(root / "models" / "m" / "aliases.json")
    reader = ctx.Process(target=workers.poll_aliases, args=(aliases_file, ready, stop, polled))
    reader.start()
    assert ready.wait(timeout=120)  # the reader polls before the first flip
    flippers = [
        ctx.Process(
            target=workers.flip_alias,
            args=(str(root), "m", f"flip{i}", [1, 2], 50, barrier, results),
        )
        for i in range(2)
    ]
    for p in flippers:
        p.start()
    changed = [results.get(timeout=180) for _ in flippers]
    _join_all(flippers)
    stop.set()
    report = polled.get(timeout=60)
    _join_all([reader])

    assert changed == [50, 50]
    assert report["bad"] == 0, report["errors"]
    assert report["regressions"] == 0
    assert report["revisions_seen"] >= 2, report  # it really read while the flips ran
    doc = json.loads(Path(aliases_file).read_text())
    assert doc["revision"] == 100  # one per change: no update was lost
    assert doc["aliases"] == {"flip0": 2, "flip1": 2}
    flips = [e for e in reg.audit("m") if e.action == "set_alias"]
    assert len(flips) == 100
    assert sorted(e.revision for e in flips if e.revision is not None) == list(range(1, 101))
    assert not [p for p in (root / "models" / "m").iterdir() if ".tmp-" in p.name]


# -- other filesystems ----------------------------------------------------------------------------
def test_file_uri_and_subtree_filesystem(tmp_path: Path, bundles: tuple[Path, Path]) -> None:
    by_uri = Registry(f"file://{tmp_path}/reg")
    assert by_uri.root == str(tmp_path / "reg")
    by_uri.register(bundles[0], "m", aliases=["production"])

    subtree = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    by_fs = Registry("reg", filesystem=subtree)
    assert by_fs.root == str(tmp_path / "reg")  # still local disk: mkdir/flock/rename apply
    by_fs.register(bundles[1], "m", aliases=["candidate"])
    by_fs.promote("m", "candidate")
    assert load_bundle(by_fs.bundle_path("m", "production")).manifest["data_fingerprint"] == "fp1"

    plain = Registry(tmp_path / "reg")
    assert plain.aliases("m") == {"candidate": 2, "production": 2}
    assert [e.action for e in plain.audit("m")][-1] == "promote"
    assert plain.rollback("m").to_version == 1


def test_object_store_protocol(tmp_path: Path, bundles: tuple[Path, Path]) -> None:
    """A remote filesystem (pyarrow's in-memory mock): claims, per-entry audit, downloads."""
    fs = _MockFileSystem()
    reg = Registry("bucket/reg", filesystem=fs, cache_dir=tmp_path / "cache")
    assert reg.root == "bucket/reg"
    barrier = threading.Barrier(6)
    versions: list[int] = []
    errors: list[BaseException] = []

    def work(bundle: Path) -> None:
        try:
            barrier.wait(timeout=30)
            versions.append(reg.register(bundle, "m").version)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(bundles[i % 2],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sorted(versions) == [1, 2, 3, 4, 5, 6]

    reg.promote("m", 1)
    reg.promote("m", 2, reason="newer")
    assert reg.rollback("m").to_version == 1
    assert [e.action for e in reg.audit("m")][-3:] == ["promote", "promote", "rollback"]

    listing = fs.get_file_info(pafs.FileSelector("bucket/reg/models/m", recursive=True))
    names = {info.base_name for info in listing}
    assert "audit.jsonl" not in names and ".lock" not in names and ".staging" not in names
    assert len(fs.get_file_info(pafs.FileSelector("bucket/reg/models/m/audit"))) == 6 + 3
    assert not [n for n in names if n.startswith(".claim-")]  # claims are cleaned up

    local = Path(reg.bundle_path("m", "production"))
    assert local.is_relative_to(tmp_path / "cache")
    source = reg.get("m", 1).source  # the threads raced: either bundle may be version 1
    assert load_bundle(local).manifest == load_bundle(source).manifest
    assert reg.bundle_path("m", 1) == str(local)  # cached by version

    # A damaged cached copy is fetched again; a damaged stored copy is refused.
    (local / "metrics.json").chmod(0o644)
    (local / "metrics.json").write_text("{}")
    assert load_bundle(reg.bundle_path("m", 1)).metrics != {}
    with fs.open_output_stream("bucket/reg/models/m/versions/000003/model.pt") as out:
        out.write(b"garbage")
    with pytest.raises(RegistryError, match="model.pt has sha256 .* stored copy is damaged"):
        reg.bundle_path("m", 3)


# -- CLI and imports ------------------------------------------------------------------------------
def _cli(*argv: str) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="ray-ml")
    add_registry_parser(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(list(argv))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert args.func(args) == 0
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_cli(tmp_path: Path, bundles: tuple[Path, Path]) -> None:
    root = str(tmp_path / "reg")
    assert _cli("registry", "list", "--root", root) == {"root": root, "models": []}
    first = _cli(
        "registry", "register", str(bundles[0]), "m", "--alias", "candidate", "--root", root
    )
    assert first["version"] == 1 and first["aliases"] == ["candidate"]
    Registry(root).register(bundles[1], "m")

    listed = _cli("registry", "list", "--root", root)
    assert listed["models"] == [
        {"name": "m", "versions": 2, "latest": 2, "aliases": {"candidate": 1}}
    ]
    versions = _cli("registry", "list", "m", "--root", root)["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[1]["metrics"]["val.accuracy"] == 0.9

    assert _cli("registry", "show", "m", "--root", root)["version"] == 2
    promoted = _cli("registry", "promote", "m", "candidate", "--reason", "ok", "--root", root)
    assert promoted["to_version"] == 1 and promoted["alias"] == "production"
    _cli("registry", "promote", "m", "2", "--root", root)
    rolled = _cli("registry", "rollback", "m", "--root", root)
    assert (rolled["from_version"], rolled["to_version"]) == (2, 1)
    history = _cli("registry", "history", "m", "--alias", "production", "--root", root)
    assert [e["action"] for e in history["entries"]] == ["promote", "promote", "rollback"]


def test_importing_the_registry_does_not_import_torch_or_ray() -> None:
    code = (
        "import sys, ray_ml.registry, ray_ml.registry._cli\n"
        "bad = {'torch', 'ray', 'xgboost'} & set(sys.modules)\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=os.environ.copy())
