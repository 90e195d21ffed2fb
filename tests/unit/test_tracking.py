"""MLflow tracking against a real local store: the summary run, Ray's trial callback, config."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.tracking._model_registry import utils as registry_utils
from mlflow.tracking._tracking_service import utils as tracking_utils

from ray_ml.config import RunConfig, TrackingConfig, TrackingKind, load_config
from ray_ml.errors import BundleError, ConfigError, RayMLError
from ray_ml.tune._tracking import log_sweep, mlflow_callback, tracking_uri
from tests._ray_head import free_port

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One store for the module: creating MLflow's SQLite schema takes seconds; each test logs
    # to its own experiment (named after the test) instead.
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(autouse=True)
def _restore_mlflow_globals(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Ray's callback sets MLflow's process-wide URIs (module globals and env vars); undo that
    # after each test so no test depends on another's leftovers.
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    monkeypatch.setattr(registry_utils, "_registry_uri", None)
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)
    yield


def _cfg(storage: Path, name: str, **tracking: Any) -> RunConfig:
    fields: dict[str, Any] = {"kind": TrackingKind.mlflow, **tracking}
    return RunConfig(name=name, storage_path=str(storage), tracking=TrackingConfig(**fields))


def _bundle(tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle-v1"
    (bundle / "model").mkdir(parents=True)
    (bundle / "manifest.json").write_text(json.dumps({"model_kind": "mlp"}))
    (bundle / "metrics.json").write_text(json.dumps({"val_loss": 0.21}))
    (bundle / "model" / "state_dict.pt").write_bytes(b"\x00weights")
    return bundle


def _records() -> list[dict[str, Any]]:
    return [
        {
            "trial_id": "t1",
            "status": "completed",
            "config": {"train.lr": 0.01, "model.hidden_sizes": "[64]"},
            "metrics": {"val_loss": 0.2, "cost_usd": 0.03},
            "cost_usd": 0.03,
            "waste_usd": 0.0,
        },
        {
            "trial_id": "t2",
            "status": "pruned",
            "config": {"train.lr": 0.1, "model.hidden_sizes": "[128, 64]"},
            "metrics": {"val_loss": 0.9, "cost_usd": 0.01},
            "cost_usd": 0.01,
            "waste_usd": 0.01,
        },
    ]


def _summary(bundle: Path | None, **changes: Any) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "job": "tune",
        "best": {
            "trial_id": "t1",
            "config": {
                "train.lr": 0.01,
                "model.hidden_sizes": "[64]",
                "nested": {"a": 1},
                "long": "x" * 7000,
                "odd key!": True,
            },
            "val_loss": 0.2,
            "rule": "best",
        },
        "cost_usd": 0.04,
        "waste_usd": 0.01,
        "budget_usd": 5.0,
        "stop_reason": None,
        "trials": 2,
        "pruned": 1,
        "winner_metrics": {"val_loss": 0.19, "accuracy": 0.95, "note": "text is not a metric"},
        "bundle": str(bundle) if bundle else None,
        "registered": {"model": "m", "version": 3, "alias": "candidate"},
        "prices": {"illustrative": True, "read_on": "2026-11-26", "pricing": "on_demand"},
    }
    summary.update(changes)
    return summary


def _artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for info in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, info.path) if info.is_dir else {info.path}
    return found


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:5000",
        "https://mlflow.example/",
        "sqlite:////abs/mlflow.db",
        "file:///abs/mlruns",
        "databricks",
    ],
)
def test_uris_go_to_mlflow_unchanged(uri: str) -> None:
    cfg = RunConfig(tracking=TrackingConfig(kind=TrackingKind.mlflow, uri=uri))
    assert tracking_uri(cfg) == uri


# --------------------------------------------------------------------------------- log_sweep
def test_log_sweep_logs_the_winner_and_its_bundle(storage: Path, tmp_path: Path) -> None:
    cfg = _cfg(storage, "sweep_summary")
    records = _records()
    before = mlflow.get_tracking_uri()

    run_id = log_sweep(cfg, _summary(_bundle(tmp_path)), records)

    assert run_id is not None
    assert mlflow.get_tracking_uri() == before  # no process-wide state changed
    client = MlflowClient(tracking_uri(cfg))
    run = client.get_run(run_id)
    assert run.info.run_name == "sweep_summary-sweep-summary"
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "sweep_summary"
    # The local store keeps its artifacts in its own folder, not under the working directory.
    assert run.info.artifact_uri.startswith((storage / "mlflow" / "artifacts").as_uri())

    params = run.data.params
    assert params["train.lr"] == "0.01"
    assert params["model.hidden_sizes"] == "[64]"
    assert params["nested/a"] == "1"
    assert params["odd key_"] == "True"
    assert len(params["long"]) <= 6000 and params["long"].endswith("...")

    assert run.data.metrics == {
        "val_loss": 0.2,
        "cost_usd": 0.04,
        "waste_usd": 0.01,
        "budget_usd": 5.0,
        "trials": 2.0,
        "pruned": 1.0,
        "final/val_loss": 0.19,
        "final/accuracy": 0.95,
    }
    tags = run.data.tags
    assert tags["winner_trial_id"] == "t1"
    assert tags["registered_version"] == "3"
    assert tags["prices_illustrative"] == "true"
    assert tags["ray_ml.role"] == "sweep-summary"
    assert "stop_reason" not in tags

    assert _artifacts(client, run_id) == {
        "leaderboard.json",
        "summary.json",
        "bundle/manifest.json",
        "bundle/metrics.json",
        "bundle/model/state_dict.pt",
    }
    local = Path(client.download_artifacts(run_id, "", str(tmp_path / "down")))
    board = json.loads((local / "leaderboard.json").read_text())
    assert board["metric"] == "val_loss" and board["mode"] == "min"
    assert board["records"] == records
    assert (local / "bundle" / "model" / "state_dict.pt").read_bytes() == b"\x00weights"


def test_log_sweep_is_off_by_default(tmp_path: Path) -> None:
    cfg = RunConfig(name="off", storage_path=str(tmp_path))
    assert cfg.tracking.kind is TrackingKind.none
    assert log_sweep(cfg, _summary(None), _records()) is None
    assert list(tmp_path.iterdir()) == []  # nothing created, mlflow never touched


def test_log_sweep_without_bundle_and_without_budget(storage: Path, tmp_path: Path) -> None:
    cfg = _cfg(storage, "no_bundle", log_bundle=False, experiment="shared_exp")
    run_id = log_sweep(cfg, _summary(_bundle(tmp_path), budget_usd=None), _records())
    assert run_id is not None
    client = MlflowClient(tracking_uri(cfg))
    run = client.get_run(run_id)
    assert client.get_experiment(run.info.experiment_id).name == "shared_exp"
    assert "budget_usd" not in run.data.metrics
    assert _artifacts(client, run_id) == {"leaderboard.json", "summary.json"}


def test_log_sweep_without_a_winner(storage: Path) -> None:
    # The budget ran out before any trial finished: run_sweep's summary has no best, no bundle.
    summary = {
        "best": None,
        "cost_usd": 1.5,
        "budget_usd": 1.0,
        "stop_reason": "`tune.budget_usd` reached",
        "trials": 2,
        "pruned": 0,
    }
    cfg = _cfg(storage, "no_winner")
    run_id = log_sweep(cfg, summary, [])
    assert run_id is not None
    run = MlflowClient(tracking_uri(cfg)).get_run(run_id)
    assert run.data.params == {}
    assert run.data.metrics == {"cost_usd": 1.5, "budget_usd": 1.0, "trials": 2.0, "pruned": 0.0}
    assert run.data.tags["stop_reason"] == "`tune.budget_usd` reached"
    assert "winner_trial_id" not in run.data.tags


def test_missing_bundle_names_the_path_and_the_switch(storage: Path, tmp_path: Path) -> None:
    cfg = _cfg(storage, "missing_bundle")
    with pytest.raises(BundleError, match=r"gone.*tracking\.log_bundle=false"):
        log_sweep(cfg, _summary(tmp_path / "gone"), _records())
    # Checked before anything is created: no empty run is left behind.
    assert MlflowClient(tracking_uri(cfg)).get_experiment_by_name("missing_bundle") is None


def test_unreachable_server_is_a_ray_ml_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail now, not in 4 minutes
    uri = f"http://127.0.0.1:{free_port()}"
    cfg = _cfg(tmp_path, "down", uri=uri)
    for call in (lambda: log_sweep(cfg, _summary(None), []), lambda: mlflow_callback(cfg)):
        with pytest.raises(RayMLError) as info:
            call()
        msg = str(info.value)
        assert uri in msg and "tracking.uri=" in msg and "tracking=none" in msg


def test_deleted_experiment_says_how_to_restore_it(storage: Path) -> None:
    cfg = _cfg(storage, "deleted_exp")
    client = MlflowClient(tracking_uri(cfg))
    client.delete_experiment(client.create_experiment("deleted_exp"))
    with pytest.raises(RayMLError, match=r"deleted.*mlflow experiments restore.*tracking\."):
        log_sweep(cfg, _summary(None), [])


# --------------------------------------------------------------------------- Ray's callback
def test_callback_is_none_when_tracking_is_off() -> None:
    assert mlflow_callback(RunConfig()) is None


def test_callback_is_rays_logger_for_our_store(storage: Path) -> None:
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    cfg = _cfg(storage, "callback_cfg", experiment="callback_exp")
    callback = mlflow_callback(cfg)
    assert isinstance(callback, MLflowLoggerCallback)
    assert callback.tracking_uri == tracking_uri(cfg)
    assert callback.experiment_name == "callback_exp"
    assert callback.should_save_artifact is False
    assert callback.tags == {
        "ray_ml.name": "callback_cfg",
        "ray_ml.sweep": "callback_cfg-sweep",
        "ray_ml.role": "trial",
    }
    # Created up front, with its artifacts in the store's folder.
    experiment = MlflowClient(tracking_uri(cfg)).get_experiment_by_name("callback_exp")
    assert experiment is not None
    assert experiment.artifact_location == (storage / "mlflow" / "artifacts").as_uri()


def test_callback_logs_trials_as_tune_drives_it(storage: Path) -> None:
    # Tune's controller calls these hooks on the driver; a stub Trial needs no running Ray.
    import ray
    from ray.tune.experiment import Trial

    ray_was_up = ray.is_initialized()  # another suite of the session may have started one
    cfg = _cfg(storage, "callback_trials")
    callback = mlflow_callback(cfg)
    assert callback is not None
    good = Trial("train_driver_fn", config={"train.lr": 0.01, "model.norm": "batch"}, stub=True)
    bad = Trial("train_driver_fn", config={"train.lr": 0.5, "model.norm": "none"}, stub=True)
    callback.setup()
    for trial in (good, bad):
        callback.on_trial_start(iteration=0, trials=[good, bad], trial=trial)
    for step in (1, 2):
        result = {
            "training_iteration": step,
            "val_loss": 1.0 / step,
            "cost_usd": 0.01 * step,
            "trial_id": good.trial_id,
            "hostname": "not a number",
        }
        callback.on_trial_result(iteration=step, trials=[good, bad], trial=good, result=result)
    callback.on_trial_complete(iteration=3, trials=[good, bad], trial=good)
    callback.on_trial_error(iteration=3, trials=[good, bad], trial=bad)
    assert ray.is_initialized() == ray_was_up  # the callback itself never starts Ray

    client = MlflowClient(tracking_uri(cfg))
    experiment = client.get_experiment_by_name("callback_trials")
    assert experiment is not None
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {str(good), str(bad)}
    run = runs[str(good)]
    assert run.info.status == "FINISHED"
    assert run.data.params == {"train.lr": "0.01", "model.norm": "batch"}
    assert run.data.metrics["val_loss"] == 0.5  # the latest value
    assert run.data.metrics["cost_usd"] == pytest.approx(0.02)
    assert "hostname" not in run.data.metrics
    history = client.get_metric_history(run.info.run_id, "cost_usd")
    assert [(m.step, m.value) for m in history] == [(1, 0.01), (2, 0.02)]
    assert run.data.tags["ray_ml.role"] == "trial"
    assert run.data.tags["trial_name"] == str(good)
    assert runs[str(bad)].info.status == "FAILED"


# ------------------------------------------------------------------------------------ config
def test_shipped_tracking_options_compose(tmp_path: Path) -> None:
    off = load_config("tune")
    assert off.tracking.kind is TrackingKind.none
    on = load_config("tune", ["tracking=mlflow", f"storage_path={tmp_path}"])
    assert on.tracking.kind is TrackingKind.mlflow
    assert on.tracking.uri == f"{tmp_path}/mlflow"
    assert on.tracking.experiment is None and on.tracking.log_bundle
    server = load_config("tune", ["tracking=mlflow", "tracking.uri=http://127.0.0.1:5000"])
    assert tracking_uri(server) == "http://127.0.0.1:5000"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["tracking.kind=mlfow"], ["`tracking.kind`", "mlfow", "mlflow"]),
        (["tracking=mlfow"], ["`tracking`", "mlfow", "mlflow"]),
        (["tracking=mlflow", "tracking.experiment=''"], ["`tracking.experiment`", "Fix:"]),
        (["tracking=mlflow", "tracking.uri=' '"], ["`tracking.uri`", "Fix:"]),
        (["tracking.experment=x"], ["`tracking.experment`", "tracking.experiment"]),
    ],
)
def test_bad_tracking_config_names_the_key(overrides: list[str], expected: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config("tune", overrides)
    for text in expected:
        assert text in str(info.value)


def test_tracking_config_validates_itself() -> None:
    with pytest.raises(ConfigError, match=r"`tracking.experiment` must be null .* but got"):
        TrackingConfig(experiment="")
    with pytest.raises(ConfigError, match=r"`tracking.uri`"):
        TrackingConfig(uri="")


def test_callback_survives_tunes_pickle(storage: Path) -> None:
    # Tune cloudpickles its RunConfig, callbacks included, into tuner.pkl for `Tuner.restore`.
    import ray.cloudpickle

    cfg = _cfg(storage, "callback_pickle")
    clone = ray.cloudpickle.loads(ray.cloudpickle.dumps(mlflow_callback(cfg)))
    assert clone.tracking_uri == tracking_uri(cfg)
    assert clone.experiment_name == "callback_pickle"
