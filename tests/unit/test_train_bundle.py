"""Model bundles: write, verify, load, predict; tampering is caught; reference statistics."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import torch
import xgboost as xgb

import ray_ml.train._predictor as predictor_module
from ray_ml.data import (
    Contract,
    Preprocessor,
    bin_fractions,
    fit_preprocessor_table,
    infer_contract,
    reference_stats,
)
from ray_ml.errors import BundleError, ContractError
from ray_ml.train import (
    Bundle,
    MetricAccumulator,
    Predictor,
    build_mlp,
    compute_metrics,
    load_bundle,
    output_size,
    predict_scores,
    write_bundle,
)

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def _raw_table(task: str, n: int = 120, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.integers(0, 10, n)
    color = rng.choice(["red", "green", "blue"], n)
    flag = rng.random(n) < 0.3
    signal = x1 + (color == "red") - 0.1 * x2
    if task == "binary":
        target: Any = (signal > 0).astype(np.int64)
    elif task == "multiclass":
        target = np.array(["low", "mid", "high"])[np.digitize(signal, [-0.5, 0.5])]
    else:
        target = signal + rng.normal(scale=0.1, size=n)
    x1_list: list[float | None] = x1.tolist()
    for i in range(0, n, 17):
        x1_list[i] = None  # some missing values for the imputer
    return pa.table(
        {
            "x1": pa.array(x1_list, pa.float64()),
            "x2": x2,
            "color": color,
            "flag": flag,
            "target": target,
        }
    )


def _prepared(task: str) -> tuple[pa.Table, Contract, Preprocessor]:
    table = _raw_table(task)
    contract = infer_contract(table, name=f"toy_{task}", label="target")
    assert contract.task.value == task
    return table, contract, fit_preprocessor_table(table, contract)


def _mlp_bundle(
    tmp_path: Path, task: str = "binary"
) -> tuple[Path, pa.Table, Preprocessor, torch.nn.Module]:
    table, contract, pre = _prepared(task)
    config: dict[str, Any] = {
        "num_features": pre.num_features,
        "num_outputs": output_size(task, len(pre.classes)),
        "hidden_sizes": [8, 4],
        "dropout": 0.1,
        "norm": "batch",
        "activation": "gelu",
    }
    torch.manual_seed(0)
    model = build_mlp(**config)
    # A few steps so BatchNorm's running statistics are not the defaults.
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.from_numpy(pre.transform(table))
    for _ in range(3):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
    model.eval()
    y = pre.labels(table)
    with torch.no_grad():
        scores = predict_scores(task, model(x))
    path = write_bundle(
        tmp_path / "bundle",
        model_kind="mlp",
        model_config=config,
        state_dict=model.state_dict(),
        preprocessor=pre,
        contract=contract,
        reference_stats=reference_stats(table, contract),
        metrics={"val": compute_metrics(task, y, scores, pre.classes)},
        manifest_extra={"data_fingerprint": "abc123", "wall_time_s": np.float64(1.5)},
    )
    return path, table, pre, model


def _xgb_booster(pre: Preprocessor, table: pa.Table, objective: str) -> xgb.Booster:
    params: dict[str, Any] = {"objective": objective, "max_depth": 2, "eta": 0.5, "nthread": 1}
    if objective.startswith("multi:"):
        params["num_class"] = len(pre.classes)
    dtrain = xgb.DMatrix(pre.transform(table), label=pre.labels(table))
    return xgb.train(params, dtrain, num_boost_round=5)


def _xgb_bundle(
    tmp_path: Path, task: str, fmt: str = "ubj"
) -> tuple[Path, pa.Table, Preprocessor, xgb.Booster]:
    table, contract, pre = _prepared(task)
    objective = {"binary": "binary:logistic", "multiclass": "multi:softprob"}.get(
        task, "reg:squarederror"
    )
    booster = _xgb_booster(pre, table, objective)
    path = write_bundle(
        tmp_path / "bundle",
        model_kind="xgboost",
        model_config={"objective": objective, "num_boost_round": 5},
        xgboost_model=booster.save_raw(raw_format=fmt),
        xgboost_format=fmt,
        preprocessor=pre,
        contract=contract,
        reference_stats=reference_stats(table, contract),
        metrics={},
    )
    return path, table, pre, booster


# -- round trips ----------------------------------------------------------------------------------
def test_mlp_bundle_round_trip(tmp_path: Path) -> None:
    path, table, pre, model = _mlp_bundle(tmp_path)
    assert sorted(p.name for p in path.iterdir()) == [
        "contract.yaml",
        "manifest.json",
        "metrics.json",
        "model.pt",
        "model_config.json",
        "preprocessor.json",
        "reference_stats.json",
    ]
    bundle = load_bundle(path)
    assert isinstance(bundle, Bundle)
    assert bundle.model_kind == "mlp" and bundle.task == "binary"
    assert bundle.preprocessor == pre
    assert bundle.contract == infer_contract(table, name="toy_binary", label="target")
    assert bundle.metrics["val"]["support"] == table.num_rows
    assert bundle.manifest["data_fingerprint"] == "abc123"
    assert bundle.manifest["wall_time_s"] == 1.5

    rows = table.drop_columns(["target"]).to_pylist()  # raw rows, as a client sends them
    out = Predictor.from_bundle(path).predict(rows)
    with torch.no_grad():
        p1 = torch.sigmoid(model(torch.from_numpy(pre.transform(rows)))[:, 0]).numpy()
    np.testing.assert_allclose([s[1] for s in out["scores"]], p1, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose([s[0] for s in out["scores"]], 1 - p1, rtol=1e-6, atol=1e-7)
    assert out["predictions"] == [pre.classes[int(p >= 0.5)] for p in p1]
    json.dumps(out)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("fmt", ["ubj", "json"])
def test_xgboost_bundle_round_trip(tmp_path: Path, task: str, fmt: str) -> None:
    path, table, pre, booster = _xgb_bundle(tmp_path, task, fmt)
    assert (path / f"model.{fmt}").is_file()
    predictor = Predictor.from_bundle(path)
    rows = table.to_pandas().drop(columns=["target"])
    out = predictor.predict(rows)
    expected = booster.predict(xgb.DMatrix(pre.transform(rows)))
    if task == "regression":
        assert out["scores"] is None
        np.testing.assert_allclose(out["predictions"], expected, rtol=1e-6)
    elif task == "binary":
        np.testing.assert_allclose(np.asarray(out["scores"])[:, 1], expected, rtol=1e-6)
    else:
        np.testing.assert_allclose(out["scores"], expected, rtol=1e-6)
        assert out["predictions"] == [pre.classes[i] for i in expected.argmax(axis=1)]
        assert set(out["predictions"]) <= {"high", "low", "mid"}


def test_predict_accepts_every_row_format(tmp_path: Path) -> None:
    path, table, _, _ = _xgb_bundle(tmp_path, "multiclass")
    predictor = Predictor(path)
    raw = table.drop_columns(["target"])
    ref = predictor.predict_table(raw)
    assert ref.shape == (table.num_rows, 3)
    for rows in (raw.to_pylist(), raw.to_pandas(), raw.to_batches()[0], raw.to_pydict()):
        np.testing.assert_array_equal(predictor.predict_table(rows), ref)


def test_call_follows_map_batches_convention(tmp_path: Path) -> None:
    path, table, pre, _ = _mlp_bundle(tmp_path)
    predictor = Predictor(path, keep_columns=["x2"])
    numpy_batch = {
        name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names
    }
    for batch in (table, numpy_batch, table.to_pandas()):
        out = predictor(batch)
        assert set(out) == {"prediction", "scores", "x2"}
        assert out["scores"].shape == (table.num_rows, 2) and out["scores"].dtype == np.float32
        assert set(out["prediction"].tolist()) <= set(pre.classes)
        np.testing.assert_array_equal(out["x2"], table.column("x2").to_numpy())
    with pytest.raises(ContractError, match="'id'"):
        Predictor(path, keep_columns=["id"])(table)


def test_missing_feature_column_is_a_clear_error(tmp_path: Path) -> None:
    path, table, _, _ = _mlp_bundle(tmp_path)
    with pytest.raises(ContractError, match="color"):
        Predictor(path).predict(table.drop_columns(["color"]).to_pylist())


# -- manifest -------------------------------------------------------------------------------------
def test_manifest_contents(tmp_path: Path) -> None:
    path, _, _, _ = _mlp_bundle(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["model_kind"] == "mlp" and manifest["weights_file"] == "model.pt"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", manifest["created_at"])
    assert set(manifest["packages"]) >= {
        "ray",
        "torch",
        "xgboost",
        "pyarrow",
        "numpy",
        "scikit-learn",
    }
    assert manifest["packages"]["torch"] == importlib.metadata.version("torch")
    assert manifest["python"] == ".".join(map(str, sys.version_info[:3]))
    assert manifest["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", manifest["git_commit"])
    listed = set(manifest["files"])
    assert listed == {p.name for p in path.iterdir()} - {"manifest.json"}
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((path / name).read_bytes()).hexdigest() == digest


def test_git_commit_is_null_outside_a_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray_ml.train._bundle as bundle_module

    monkeypatch.setattr(bundle_module, "__file__", str(tmp_path / "x" / "_bundle.py"))
    (tmp_path / "x").mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert bundle_module._git_state() == (None, None)

    def no_git(*args: Any, **kwargs: Any) -> Any:
        raise FileNotFoundError("git")

    monkeypatch.setattr(bundle_module.subprocess, "run", no_git)
    assert bundle_module._git_state() == (None, None)


def test_manifest_extra_cannot_shadow_own_keys(tmp_path: Path) -> None:
    table, contract, pre = _prepared("binary")
    booster = _xgb_booster(pre, table, "binary:logistic")
    with pytest.raises(ValueError, match=r"\['files'\]"):
        write_bundle(
            tmp_path / "b",
            model_kind="xgboost",
            model_config={},
            xgboost_model=booster.save_raw(),
            preprocessor=pre,
            contract=contract,
            reference_stats={},
            metrics={},
            manifest_extra={"files": {}},
        )
    assert not (tmp_path / "b").exists()


# -- integrity ------------------------------------------------------------------------------------
BUNDLE_FILES = [
    "manifest.json",
    "model.pt",
    "model_config.json",
    "preprocessor.json",
    "contract.yaml",
    "reference_stats.json",
    "metrics.json",
]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, _, _, _ = _mlp_bundle(tmp_path_factory.mktemp("pristine"))
    return path


@pytest.mark.parametrize("name", BUNDLE_FILES)
@pytest.mark.parametrize("where", [0.0, 0.5, 0.999])
def test_changing_one_byte_is_caught(
    pristine: Path, tmp_path: Path, name: str, where: float
) -> None:
    path = Path(shutil.copytree(pristine, tmp_path / "copy"))
    data = bytearray((path / name).read_bytes())
    data[int(where * (len(data) - 1))] ^= 0x01
    (path / name).write_bytes(bytes(data))
    with pytest.raises(
        BundleError, match=rf"corrupt or was modified.*{re.escape(name)}.*re-export"
    ):
        load_bundle(path)


@pytest.mark.parametrize("name", BUNDLE_FILES)
def test_deleting_a_file_is_caught(pristine: Path, tmp_path: Path, name: str) -> None:
    path = Path(shutil.copytree(pristine, tmp_path / "copy"))
    (path / name).unlink()
    with pytest.raises(BundleError, match=rf"{re.escape(name)} is missing"):
        Predictor.from_bundle(path)


def test_manifest_edit_with_fixed_up_checksum_of_file_is_caught(
    pristine: Path, tmp_path: Path
) -> None:
    # Someone edits metrics.json and updates its sha256 in the manifest by hand.
    path = Path(shutil.copytree(pristine, tmp_path / "copy"))
    (path / "metrics.json").write_text("{}")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["metrics.json"] = hashlib.sha256(b"{}").hexdigest()
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="manifest.json does not match its own checksum"):
        load_bundle(path)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope")


def test_existing_target_needs_overwrite(tmp_path: Path) -> None:
    path, table, pre, _ = _xgb_bundle(tmp_path, "regression")
    contract = load_bundle(path).contract
    booster = _xgb_booster(pre, table, "reg:squarederror")
    kwargs: dict[str, Any] = {
        "model_kind": "xgboost",
        "model_config": {"version": 2},
        "xgboost_model": booster.save_raw(),
        "preprocessor": pre,
        "contract": contract,
        "reference_stats": {},
        "metrics": {},
    }
    with pytest.raises(BundleError, match="already exists"):
        write_bundle(path, **kwargs)
    write_bundle(path, overwrite=True, **kwargs)
    assert load_bundle(path).model_config == {"version": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no temp or old dirs left


# -- write-time checks ----------------------------------------------------------------------------
def test_mismatched_state_dict_is_rejected(tmp_path: Path) -> None:
    table, contract, pre = _prepared("binary")
    config: dict[str, Any] = {
        "num_features": pre.num_features,
        "num_outputs": 1,
        "hidden_sizes": [8],
        "dropout": 0.0,
        "norm": "none",
        "activation": "relu",
    }
    other = build_mlp(**{**config, "hidden_sizes": [4]})
    with pytest.raises(ValueError, match="state_dict does not match"):
        write_bundle(
            tmp_path / "b",
            model_kind="mlp",
            model_config=config,
            state_dict=other.state_dict(),
            preprocessor=pre,
            contract=contract,
            reference_stats={},
            metrics={},
        )
    wrong_width = {**config, "num_features": pre.num_features + 1}
    with pytest.raises(ValueError, match="preprocessor gives"):
        write_bundle(
            tmp_path / "b",
            model_kind="mlp",
            model_config=wrong_width,
            state_dict=build_mlp(**wrong_width).state_dict(),
            preprocessor=pre,
            contract=contract,
            reference_stats={},
            metrics={},
        )
    assert not (tmp_path / "b").exists()


def test_ddp_prefixed_state_dict_is_accepted(tmp_path: Path) -> None:
    table, contract, pre = _prepared("binary")
    config: dict[str, Any] = {
        "num_features": pre.num_features,
        "num_outputs": 1,
        "hidden_sizes": [8],
        "dropout": 0.0,
        "norm": "none",
        "activation": "relu",
    }
    model = build_mlp(**config)
    prefixed = {f"module.{k}": v for k, v in model.state_dict().items()}
    path = write_bundle(
        tmp_path / "b",
        model_kind="mlp",
        model_config=config,
        state_dict=prefixed,
        preprocessor=pre,
        contract=contract,
        reference_stats={},
        metrics={},
    )
    np.testing.assert_allclose(
        Predictor(path).predict_table(table),
        torch.sigmoid(model(torch.from_numpy(pre.transform(table)))[:, 0]).detach().numpy(),
        rtol=1e-6,
    )


def test_xgboost_objective_without_probabilities_is_rejected(tmp_path: Path) -> None:
    table, contract, pre = _prepared("multiclass")
    booster = _xgb_booster(pre, table, "multi:softmax")
    with pytest.raises(ValueError, match="objective=multi:softprob"):
        write_bundle(
            tmp_path / "b",
            model_kind="xgboost",
            model_config={},
            xgboost_model=booster.save_raw(),
            preprocessor=pre,
            contract=contract,
            reference_stats={},
            metrics={},
        )


def test_weights_must_match_kind(tmp_path: Path) -> None:
    table, contract, pre = _prepared("binary")
    with pytest.raises(ValueError, match="model_kind=mlp needs `state_dict`"):
        write_bundle(
            tmp_path / "b",
            model_kind="mlp",
            model_config={},
            preprocessor=pre,
            contract=contract,
            reference_stats={},
            metrics={},
        )
    with pytest.raises(ValueError, match="model_kind must be one of"):
        write_bundle(
            tmp_path / "b",
            model_kind="lightgbm",
            model_config={},
            preprocessor=pre,
            contract=contract,
            reference_stats={},
            metrics={},
        )


def test_non_json_values_are_rejected(tmp_path: Path) -> None:
    table, contract, pre = _prepared("binary")
    booster = _xgb_booster(pre, table, "binary:logistic")
    with pytest.raises(ValueError, match=r"metrics.val.obj is a object"):
        write_bundle(
            tmp_path / "b",
            model_kind="xgboost",
            model_config={},
            xgboost_model=booster.save_raw(),
            preprocessor=pre,
            contract=contract,
            reference_stats={},
            metrics={"val": {"obj": object()}},
        )


# -- no pickle, no ray ----------------------------------------------------------------------------
def test_torch_weights_are_loaded_with_weights_only(
    pristine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []
    real_load = torch.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(predictor_module.torch, "load", spy)
    Predictor.from_bundle(pristine)
    assert calls and all(c.get("weights_only") is True for c in calls)
    source = Path(predictor_module.__file__).read_text()
    assert "torch.load(" in source and "weights_only=True" in source


def test_train_package_uses_no_pickle_and_imports_no_ray() -> None:
    # The bundle/predictor side must load with no Ray at all; the Ray Train loops import Ray
    # lazily inside their entry points, so importing ray_ml.train stays Ray-free too.
    pure = {"_bundle.py", "_predictor.py", "_metrics.py", "_models.py"}
    for file in (REPO / "ray_ml" / "train").glob("*.py"):
        text = file.read_text()
        banned = (
            "pickle|cloudpickle|joblib|ray" if file.name in pure else "pickle|cloudpickle|joblib"
        )
        assert not re.search(rf"^\s*(import|from)\s+({banned})\b", text, re.M), file
    code = "import sys, ray_ml.train; assert 'ray' not in sys.modules, 'ray was imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# -- reference statistics -------------------------------------------------------------------------
def test_reference_stats(tmp_path: Path) -> None:
    table, contract, _ = _prepared("multiclass")
    stats = reference_stats(table, contract)
    json.dumps(stats, allow_nan=False)
    assert stats["rows"] == table.num_rows
    assert set(stats["columns"]) == {"x1", "x2", "color", "flag"}

    x1 = stats["columns"]["x1"]
    raw = table.column("x1").to_numpy(zero_copy_only=False)
    valid = raw[~np.isnan(raw)]
    assert x1["kind"] == "numeric"
    assert x1["count"] == valid.size
    assert x1["null_fraction"] == pytest.approx(1 - valid.size / raw.size)
    assert x1["mean"] == pytest.approx(valid.mean())
    assert x1["std"] == pytest.approx(valid.std())
    np.testing.assert_allclose(x1["bin_edges"], np.quantile(valid, np.linspace(0, 1, 11)))
    assert len(x1["bin_fractions"]) == 10
    assert sum(x1["bin_fractions"]) == pytest.approx(1.0)
    assert max(x1["bin_fractions"]) < 0.15  # deciles of continuous data: about 0.1 each

    color = stats["columns"]["color"]
    assert color["kind"] == "categorical"
    assert set(color["frequencies"]) == {"red", "green", "blue"}
    assert sum(color["frequencies"].values()) == pytest.approx(1.0)
    assert color["other_fraction"] == 0.0
    assert set(stats["columns"]["flag"]["frequencies"]) == {"true", "false"}
    assert stats["label"]["kind"] == "categorical"
    assert set(stats["label"]["frequencies"]) == {"high", "low", "mid"}

    # A contract category absent from the data still appears (as 0); rare values fold into other.
    only_red = table.filter(pa.compute.equal(table.column("color"), "red"))
    assert reference_stats(only_red, contract)["columns"]["color"]["frequencies"]["blue"] == 0.0
    capped = reference_stats(table, contract, max_categories=1)["columns"]["x1"]
    assert capped["kind"] == "numeric"
    with pytest.raises(ContractError, match=r"\['color'\]"):
        reference_stats(table.drop_columns(["color"]), contract)


def test_reference_stats_regression_label_and_all_null_column() -> None:
    table, contract, _ = _prepared("regression")
    table = table.set_column(0, "x1", pa.nulls(table.num_rows, pa.float64()))
    stats = reference_stats(table, contract)
    assert stats["label"]["kind"] == "numeric"
    assert stats["columns"]["x1"]["null_fraction"] == 1.0
    assert stats["columns"]["x1"]["bin_edges"] is None


def test_bin_fractions() -> None:
    edges = [0.0, 1.0, 2.0, 3.0]
    # Out-of-range values go to the end bins; a value on an inner edge to the bin above.
    assert bin_fractions(np.array([-5.0, 0.5, 1.0, 2.5, 99.0]), edges) == [0.4, 0.2, 0.4]
    assert bin_fractions(np.array([]), edges) == [0.0, 0.0, 0.0]


def test_metrics_from_predictor_match_accumulated(tmp_path: Path) -> None:
    path, table, pre, _ = _xgb_bundle(tmp_path, "multiclass")
    predictor = Predictor(path)
    acc = MetricAccumulator()
    for batch in table.to_batches(max_chunksize=50):
        acc.add(pre.labels(batch), predictor.predict_table(batch))
    y = pre.labels(table)
    assert acc.compute("multiclass", pre.classes) == compute_metrics(
        "multiclass", y, predictor.predict_table(table), pre.classes
    )
