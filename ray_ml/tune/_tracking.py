"""Experiment tracking with MLflow: every Tune trial as an MLflow run, plus one summary run.

`tracking=mlflow` turns it on (`tracking=none`, the default, turns it off):

- `mlflow_callback(cfg)` is Ray Tune's own `MLflowLoggerCallback`, for the sweep's
  `tune.RunConfig(callbacks=[...])`: each trial becomes an MLflow run with its params (the
  trial config) and every metric it reports, `cost_usd` included.
- `log_sweep(cfg, summary, records)`, once the winner is registered, logs one more run,
  `<name>-sweep-summary`: the winner's params, the sweep's metrics (metric, cost, waste,
  budget, trial counts), tags tying it to the registry, the leaderboard and the winner's bundle.

Where: `tracking.uri` is a folder (by default `<storage_path>/mlflow`) or an MLflow tracking URI.
A folder holds a local store: `mlflow.db` (SQLite) and `artifacts/`. Not MLflow's plain-file
store (`file:` URIs): MLflow 3 keeps it in maintenance mode and refuses it unless
`MLFLOW_ALLOW_FILE_STORE=true`; an explicit `file:` URI is still passed on for those who set
that. Any other URI (`http(s)://`, `sqlite:///`, `postgresql://`, `databricks`) goes to MLflow
unchanged, so a tracking server is a config change.

Global state: Ray's callback calls `mlflow.set_tracking_uri` in its `setup()` (which also sets
`MLFLOW_TRACKING_URI` in this process) and reads it back on every log call, so while and after a
sweep runs, the driver's fluent MLflow API points at our URI. `log_sweep` uses an `MlflowClient`
bound to the URI and changes no global state.

`mlflow` (the `mlflow-skinny` package) and Ray are imported inside the functions: this module
loads without either, and `tracking=none` never needs them.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from ray_ml._json import finite_number
from ray_ml.config import RunConfig, TrackingKind
from ray_ml.errors import BundleError, RayMLError
from ray_ml.tune._results import flatten_mapping

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["log_sweep", "mlflow_callback", "tracking_uri"]

_DB_FILE = "mlflow.db"
_ARTIFACTS_DIR = "artifacts"
# MLflow's own names for these limits live in `mlflow.utils.validation`; older servers allow
# less than the client, so the client's limits are the most we send.
_KEY_CHARS = re.compile(r"[^/\w.\- :]")  # what MLflow accepts in param and metric names
_MAX_KEY = 250
_MAX_TAG = 8000
_PARAMS_PER_BATCH = 100
_FIX = (
    "Fix: start the tracking server (e.g. `mlflow server --host 127.0.0.1 --port 5000`), point "
    "`tracking.uri=...` at a reachable server or a writable folder, or turn tracking off with "
    "`tracking=none`."
)


# ------------------------------------------------------------------------------------ public
def tracking_uri(cfg: RunConfig) -> str:
    """The MLflow tracking URI that `cfg.tracking.uri` stands for.

    Args:
        cfg: The run config.

    Returns:
        For a folder (no URI scheme), `sqlite:///<absolute folder>/mlflow.db`; any other URI
        unchanged.
    """
    store = _local_store(cfg.tracking.uri)
    return cfg.tracking.uri if store is None else f"sqlite:///{store / _DB_FILE}"


def mlflow_callback(cfg: RunConfig) -> Any | None:
    """Ray Tune's `MLflowLoggerCallback` for this run, or None when tracking is off.

    Pass it in `tune.RunConfig(callbacks=[...])`: each trial then becomes an MLflow run named
    after the trial, with the trial config as params and every reported metric (`cost_usd`
    included) logged at each `training_iteration`.

    The experiment is found or created here, before any trial runs, so that an unreachable
    server fails the sweep before it spends anything, and a local store keeps its artifacts in
    its own folder (Ray would create the experiment with MLflow's default location, `./mlruns`
    under the working directory).

    Args:
        cfg: The run config; `tracking.*` says where to log.

    Returns:
        A `ray.air.integrations.mlflow.MLflowLoggerCallback`, or None if `tracking.kind=none`.

    Raises:
        RayMLError: `mlflow` is not installed, the tracking server cannot be reached, or the
            experiment was deleted.
    """
    if cfg.tracking.kind == TrackingKind.none:
        return None
    uri = tracking_uri(cfg)
    name = _experiment_name(cfg)
    _open_experiment(cfg, uri, name)
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    return MLflowLoggerCallback(
        tracking_uri=uri,
        experiment_name=name,
        tags=_base_tags(cfg, role="trial"),
        # A trial's folder holds its checkpoints: copying every one would multiply the store.
        # The winner's bundle is logged once, by `log_sweep`.
        save_artifact=False,
    )


def log_sweep(
    cfg: RunConfig, summary: Mapping[str, Any], records: list[dict[str, Any]]
) -> str | None:
    """Log a finished sweep as one MLflow run named `<name>-sweep-summary`.

    The run gets:

    - params: the winner's trial config, flattened with `/` like Ray's trial runs, values as
      strings, cut to MLflow's length limit;
    - metrics: the winner's `tune.metric`, the sweep's `cost_usd` (every trial's billed spend)
      and `waste_usd`, `budget_usd` (if set), `trials`, `pruned`, and the retrained winner's
      metrics as `final/<name>`;
    - tags: `winner_trial_id`, `registered_version`, `prices_illustrative` (and `stop_reason`
      when a budget ended the sweep);
    - artifacts: `leaderboard.json` (`records`: each trial's config, metrics, cost and status),
      `summary.json`, and with `tracking.log_bundle` the winner's bundle under `bundle/`.

    A summary without a winner (the budget ran out first) logs what it has: no params, no
    bundle.

    Args:
        cfg: The run config of the sweep.
        summary: What `run_sweep` returns.
        records: The per-trial records of the sweep's leaderboard.

    Returns:
        The MLflow run id, or None if `tracking.kind=none`.

    Raises:
        BundleError: `tracking.log_bundle` is on and `summary["bundle"]` is not a folder.
        RayMLError: `mlflow` is not installed or the tracking server cannot be reached.
    """
    if cfg.tracking.kind == TrackingKind.none:
        return None
    bundle = _bundle_dir(cfg, summary)  # before any run exists: a bad path leaves no empty run
    uri = tracking_uri(cfg)
    client, experiment_id = _open_experiment(cfg, uri, _experiment_name(cfg))
    best = summary.get("best") or {}
    run_name = f"{cfg.name}-sweep-summary"
    with _talking_to(uri, f"creating the run {run_name!r}"):
        run_id: str = client.create_run(
            experiment_id, run_name=run_name, tags=_summary_tags(cfg, summary)
        ).info.run_id
    try:
        with _talking_to(uri, f"logging to run {run_id}"):
            _log_values(client, run_id, _params(best.get("config") or {}), _metrics(cfg, summary))
            board = {"metric": cfg.tune.metric, "mode": str(cfg.tune.mode), "records": records}
            client.log_text(run_id, _json(board), "leaderboard.json")
            client.log_text(run_id, _json(dict(summary)), "summary.json")
            if bundle is not None:
                client.log_artifacts(run_id, str(bundle), "bundle")
    except BaseException:
        # Best effort: the error that got us here says more than a failure to mark the run.
        with contextlib.suppress(Exception):
            client.set_terminated(run_id, "FAILED")
        raise
    with _talking_to(uri, f"closing run {run_id}"):
        client.set_terminated(run_id, "FINISHED")
    return run_id


# ---------------------------------------------------------------------------------- helpers
def _local_store(uri: str) -> Path | None:
    # "databricks" is a scheme-less URI MLflow knows; anything else without a scheme is a folder.
    if urlparse(uri).scheme or uri == "databricks":
        return None
    return Path(uri).expanduser().resolve()


def _experiment_name(cfg: RunConfig) -> str:
    return cfg.tracking.experiment or cfg.name


def _base_tags(cfg: RunConfig, *, role: str) -> dict[str, str]:
    return {"ray_ml.name": cfg.name, "ray_ml.sweep": f"{cfg.name}-sweep", "ray_ml.role": role}


@contextlib.contextmanager
def _talking_to(uri: str, action: str) -> Iterator[None]:
    from mlflow.exceptions import MlflowException

    try:
        yield
    except (MlflowException, OSError) as exc:
        reason = " ".join(str(exc).split())[:500] or type(exc).__name__
        raise RayMLError(
            f"MLflow tracking at {uri!r} failed while {action}: {reason}. Likely causes: the "
            "tracking server is not running or not reachable, the URI is misspelled, or the "
            f"local store is not writable. {_FIX}"
        ) from exc


def _client(uri: str) -> MlflowClient:
    try:
        from mlflow import MlflowClient
    except ImportError as exc:
        raise RayMLError(
            "`tracking.kind=mlflow` needs MLflow, but `import mlflow` failed "
            f"({exc}). Fix: `pip install mlflow-skinny`, or turn tracking off with "
            "`tracking=none`."
        ) from exc
    with _talking_to(uri, "connecting"):
        return MlflowClient(tracking_uri=uri)


def _open_experiment(cfg: RunConfig, uri: str, name: str) -> tuple[MlflowClient, str]:
    """The client and the id of experiment `name`, created if it does not exist yet."""
    store = _local_store(cfg.tracking.uri)
    client = _client(uri)
    with _talking_to(uri, f"opening the experiment {name!r}"):
        if store is not None:
            store.mkdir(parents=True, exist_ok=True)
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            location = None if store is None else (store / _ARTIFACTS_DIR).as_uri()
            return client, client.create_experiment(name, artifact_location=location)
    if experiment.lifecycle_stage == "deleted":
        raise RayMLError(
            f"MLflow experiment {name!r} at {uri!r} is deleted, so runs cannot be logged to it. "
            f"Fix: restore it (`mlflow experiments restore --experiment-id "
            f"{experiment.experiment_id}`), or log elsewhere with `tracking.experiment=NAME`."
        )
    return client, str(experiment.experiment_id)


def _bundle_dir(cfg: RunConfig, summary: Mapping[str, Any]) -> Path | None:
    bundle = summary.get("bundle")
    if not cfg.tracking.log_bundle or bundle is None:
        return None
    path = Path(str(bundle))
    if not path.is_dir():
        raise BundleError(
            f"the winner's bundle {str(path)!r} (summary['bundle']) is not a folder, so it "
            "cannot be logged to MLflow. Likely causes: it was moved or deleted after the "
            "sweep. Fix: log the summary before moving bundles, or set "
            "`tracking.log_bundle=false`."
        )
    return path


def _key(key: str) -> str:
    return _KEY_CHARS.sub("_", key)[:_MAX_KEY]


def _params(config: Mapping[str, Any]) -> dict[str, str]:
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    params = {}
    for key, value in flatten_mapping(config, sep="/").items():
        text = str(value)  # as Ray's trial runs do, so the summary's params compare with theirs
        if len(text) > MAX_PARAM_VAL_LENGTH:
            text = text[: MAX_PARAM_VAL_LENGTH - 3] + "..."
        params[_key(key)] = text
    return params


def _metrics(cfg: RunConfig, summary: Mapping[str, Any]) -> dict[str, float]:
    best = summary.get("best") or {}
    candidates: dict[str, Any] = {
        cfg.tune.metric: best.get(cfg.tune.metric),
        "cost_usd": summary.get("cost_usd"),
        "waste_usd": summary.get("waste_usd"),
        "budget_usd": summary.get("budget_usd"),
        "trials": summary.get("trials"),
        "pruned": summary.get("pruned"),
    }
    for key, value in flatten_mapping(summary.get("winner_metrics") or {}, sep="/").items():
        candidates[f"final/{key}"] = value
    metrics = {}
    for key, value in candidates.items():
        number = finite_number(value)
        if number is not None:  # None (e.g. no budget) and non-numbers are left out
            metrics[_key(key)] = number
    return metrics


def _summary_tags(cfg: RunConfig, summary: Mapping[str, Any]) -> dict[str, str]:
    best = summary.get("best") or {}
    registered = summary.get("registered") or {}
    prices = summary.get("prices") or {}
    tags = _base_tags(cfg, role="sweep-summary")
    candidates = {
        "winner_trial_id": best.get("trial_id"),
        "winner_rule": best.get("rule"),
        "registered_model": registered.get("model"),
        "registered_version": registered.get("version"),
        "registered_alias": registered.get("alias"),
        "prices_illustrative": prices.get("illustrative"),
        "stop_reason": summary.get("stop_reason"),
    }
    for key, value in candidates.items():
        if value is not None:
            text = str(value).lower() if isinstance(value, bool) else str(value)
            tags[key] = text[:_MAX_TAG]
    return tags


def _log_values(
    client: MlflowClient, run_id: str, params: dict[str, str], metrics: dict[str, float]
) -> None:
    from mlflow.entities import Metric, Param

    now_ms = int(time.time() * 1000)
    items = [Param(k, v) for k, v in params.items()]
    # MLflow takes at most 100 params per batch.
    for start in range(0, len(items), _PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[start : start + _PARAMS_PER_BATCH])
    client.log_batch(run_id, metrics=[Metric(k, v, now_ms, 0) for k, v in metrics.items()])


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)
