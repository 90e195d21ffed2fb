"""`run_training`: data stage -> Ray Train (PyTorch or XGBoost) -> model bundle -> metrics.

The trainer is named after the run and a hash of everything that shapes the model (model, train,
scaling config and the data fingerprint), and stored under `<storage_path>/ray_train/`. Ray Train
restores a run with the same name and storage path from its latest checkpoint, so a crashed run
(or one whose workers died more often than `train.max_failures` allows) resumes when rerun, while
a changed config starts a new run instead of loading incompatible weights.

Final metrics come from the bundle itself: its `Predictor` runs over the full validation and test
sets with Ray Data (`map_batches`), and scikit-learn computes the metrics over every row.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pyarrow as pa

from ray_ml.config import ClassWeighting, ModelKind, Resample, run_config_to_dict
from ray_ml.console import current_console
from ray_ml.data import (
    ROW_HASH_COLUMN,
    PreparedData,
    Preprocessor,
    fit_preprocessor,
    map_blocks,
    prepare_data,
    preprocessing_kwargs,
    reference_stats,
)
from ray_ml.errors import RayMLError
from ray_ml.train._bundle import write_bundle
from ray_ml.train._loop_common import LoopSpec
from ray_ml.train._metrics import compute_metrics
from ray_ml.train._models import class_weights_balanced
from ray_ml.train._predictor import Predictor, predict_batch
from ray_ml.train._session import LoopSession, progress_fields

if TYPE_CHECKING:
    import ray.data

    from ray_ml.config import RunConfig

__all__ = [
    "FitInputs",
    "TrainingFailed",
    "class_counts",
    "evaluate",
    "fit_inputs",
    "fit_trainer",
    "loop_spec",
    "run_loop",
    "run_train_job",
    "run_training",
    "scaling_resources",
    "train_parts",
]


class TrainingFailed(RayMLError):
    """Ray Train gave up on the run (a worker died more often than train.max_failures allows)."""


def _config_hash(cfg: RunConfig, fingerprint: str) -> str:
    plain = run_config_to_dict(cfg)
    shaping = {
        "model": plain["model"],
        "train": plain["train"],
        "scaling": plain["scaling"],
        "data": fingerprint,
        "seed": cfg.seed,
    }
    shaping["train"].pop("resume", None)
    shaping["train"].pop("chaos_kill_at_epoch", None)
    shaping["train"].pop("max_failures", None)
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:10]


def _oversample(table: pa.Table, label: str, classes: list[Any], factors: list[int]) -> pa.Table:
    """Repeat each row of class c factors[c] times (deterministic, so resumes replay it)."""
    values = table.column(label).to_pylist()
    index = {c: i for i, c in enumerate(classes)}
    reps = np.array([factors[index[v]] for v in values], np.int64)
    return table.take(pa.array(np.repeat(np.arange(table.num_rows), reps)))


def _per_worker_resources(cfg: RunConfig) -> dict[str, float]:
    s = cfg.scaling
    per_worker = {"CPU": s.cpus_per_worker, **dict(s.resources_per_worker)}
    if s.use_gpu:
        per_worker["GPU"] = s.gpus_per_worker
    return per_worker


def scaling_resources(cfg: RunConfig) -> dict[str, float]:
    """Everything a run holds: all its Train workers (what the cost meter prices)."""
    return {k: v * cfg.scaling.num_workers for k, v in _per_worker_resources(cfg).items()}


def _build_trainer(
    cfg: RunConfig,
    spec: LoopSpec,
    datasets: dict[str, Any],
    name: str,
    storage: Path,
    callbacks: list[Any] | None,
) -> Any:
    import ray.train

    s = cfg.scaling
    per_worker = _per_worker_resources(cfg)
    scaling = ray.train.ScalingConfig(
        num_workers=s.num_workers,
        use_gpu=s.use_gpu,
        resources_per_worker=per_worker,
        placement_strategy=s.placement_strategy.value,
    )
    run_config = ray.train.RunConfig(
        name=name,
        storage_path=str(storage),
        failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        callbacks=callbacks or None,
    )
    # Validation is read whole by each worker and split by row hash (no rows dropped).
    data_config = ray.train.DataConfig(datasets_to_split=["train"])
    trainer_cls: Any
    if cfg.model.kind == ModelKind.xgboost:
        from ray.train.xgboost import XGBoostTrainer as trainer_cls

        from ray_ml.train._xgboost import xgboost_train_loop_per_worker as loop
    else:
        from ray.train.torch import TorchTrainer as trainer_cls

        from ray_ml.train._torch import torch_train_loop_per_worker as loop
    return trainer_cls(
        loop,
        train_loop_config={"spec": spec},  # a dataclass: pickled to the workers as it is
        scaling_config=scaling,
        run_config=run_config,
        datasets=datasets,
        dataset_config=data_config,
    )


def evaluate(bundle_dir: str | Path, ds: ray.data.Dataset, label: str) -> dict[str, Any]:
    """Metrics of a bundle over a whole Ray Dataset, predicting with `Predictor` in map_batches."""

    predictor = Predictor.from_bundle(bundle_dir)  # for label encoding; actors load their own
    # Tasks, not an actor pool: Ray's core worker prints an error line on the driver's console
    # for every restartable actor pool whose arguments sit in the object store (ray#53727).
    out = ds.map_batches(
        cast(Any, predict_batch),  # Ray's stub does not model fn_kwargs
        fn_kwargs={"bundle_dir": str(bundle_dir), "keep_columns": [label]},
        batch_format="pyarrow",
        batch_size=4096,
    )
    ys, ss = [], []
    for batch in out.iter_batches(batch_format="numpy", batch_size=None):
        ys.append(predictor.preprocessor.labels(pa.table({label: batch[label]})))
        ss.append(batch["scores"] if "scores" in batch else batch["prediction"])
    if not ys:
        return {}
    return compute_metrics(
        predictor.task, np.concatenate(ys), np.concatenate(ss), predictor.classes
    )


@dataclass(frozen=True)
class FitInputs:
    """What one training run trains on: the loop's spec and its two datasets."""

    spec: LoopSpec
    train: ray.data.Dataset
    validation: ray.data.Dataset


def class_counts(prepared: PreparedData, parts: list[int]) -> list[int]:
    """Rows per class in the split parts `parts` (empty for regression)."""
    if not prepared.contract.classes:
        return []
    return [int(c) for c in prepared.splits.plan.counts[:, parts].sum(axis=1)]


def train_parts(prepared: PreparedData) -> list[int]:
    """The split parts `splits.train` holds: part 0, or folds 1..k-1 with k-fold."""
    folds = len(prepared.splits.folds)
    return list(range(1, folds)) if folds else [0]


def fit_inputs(
    cfg: RunConfig,
    prepared: PreparedData,
    train: ray.data.Dataset,
    validation: ray.data.Dataset,
    *,
    preprocessor: Preprocessor | None = None,
    counts: list[int] | None = None,
) -> FitInputs:
    """The loop spec (preprocessing, class statistics) and datasets of one run.

    Args:
        cfg: The run config.
        prepared: The data stage's output.
        train: The rows to train on.
        validation: The rows to validate on.
        preprocessor: Fitted on `train`; None: the data stage's (fitted on `splits.train`).
        counts: Rows per class of `train`; None: those of `splits.train`.
    """
    contract = prepared.contract
    classes = contract.classes
    counts = class_counts(prepared, train_parts(prepared)) if counts is None else counts
    train_rows = int(train.count())
    if classes and cfg.train.resample == Resample.oversample:
        biggest = max(counts)
        factors = [max(1, round(biggest / max(c, 1))) for c in counts]
        train = map_blocks(train, _oversample, contract.label, classes, factors)
        train_rows = sum(c * f for c, f in zip(counts, factors, strict=True))
    # Materialized in the object store (not on the driver): iterating it needs no Ray Data
    # tasks, so training workers holding every CPU cannot starve the input pipeline.
    train = train.materialize()
    validation = validation.materialize()
    spec = loop_spec(cfg, prepared, train_rows=train_rows, counts=counts, preprocessor=preprocessor)
    return FitInputs(spec, train, validation)


def loop_spec(
    cfg: RunConfig,
    prepared: PreparedData,
    *,
    train_rows: int,
    counts: list[int],
    preprocessor: Preprocessor | None = None,
) -> LoopSpec:
    """What a training worker needs, for `cfg` on rows already prepared (see `fit_inputs`)."""
    contract = prepared.contract
    class_weights = None
    if contract.classes and cfg.train.class_weighting == ClassWeighting.balanced:
        class_weights = class_weights_balanced(counts)
    return LoopSpec(
        task=contract.task.value,
        classes=contract.classes,
        preprocessor=(preprocessor or prepared.preprocessor).to_dict(),
        model=cfg.model,
        train=cfg.train,
        seed=cfg.seed,
        train_rows=train_rows,
        cpus_per_worker=cfg.scaling.cpus_per_worker,
        class_weights=class_weights,
        use_gpu=cfg.scaling.use_gpu,
    )


def run_loop(inputs: FitInputs, session: LoopSession) -> None:
    """Run the model kind's training loop in `session` (see `ray_ml.train._session`)."""
    if inputs.spec.model.kind == ModelKind.xgboost:
        from ray_ml.train._xgboost import xgboost_train_loop

        xgboost_train_loop(inputs.spec, session)
    else:
        from ray_ml.train._torch import torch_train_loop

        torch_train_loop(inputs.spec, session)


def fit_trainer(
    cfg: RunConfig,
    prepared: PreparedData,
    train: ray.data.Dataset,
    validation: ray.data.Dataset,
    run_name: str,
    callbacks: list[Any] | None = None,
    *,
    preprocessor: Preprocessor | None = None,
    counts: list[int] | None = None,
) -> tuple[Any, LoopSpec, str]:
    """One Ray Train run; returns (result, spec, trainer name)."""
    storage = Path(cfg.storage_path).resolve()
    inputs = fit_inputs(cfg, prepared, train, validation, preprocessor=preprocessor, counts=counts)
    spec = inputs.spec
    name = f"{run_name}-{cfg.model.kind}-{_config_hash(cfg, prepared.fingerprint)}"
    trial_dir = storage / "ray_train" / name
    if not cfg.train.resume and trial_dir.exists():
        shutil.rmtree(trial_dir)
    spec.chaos_dir = str(storage / "chaos" / name)
    trainer = _build_trainer(
        cfg,
        spec,
        {"train": inputs.train, "validation": inputs.validation},
        name,
        storage / "ray_train",
        callbacks,
    )
    try:
        result = trainer.fit()
        xgboost = spec.model.kind == ModelKind.xgboost
        total = spec.model.num_boost_round if xgboost else spec.train.epochs
        unit = "rounds" if xgboost else "epochs"
        current_console().finish("train", **progress_fields(result.metrics or {}, total, unit))
    except Exception as exc:  # Ray Train wraps worker deaths in its own error types
        if isinstance(exc, RayMLError):
            raise
        hint = (
            "Set train.max_failures>=1 to restart the workers from the last checkpoint automatically."
            if cfg.train.max_failures == 0
            else f"It failed more than train.max_failures={cfg.train.max_failures} times."
        )
        raise TrainingFailed(
            f"training run {name!r} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:500]}. {hint} "
            f"Rerunning the same command resumes from the last checkpoint under {trial_dir}."
        ) from exc
    if result.checkpoint is None:
        raise TrainingFailed(
            f"training run {name!r} finished without a checkpoint; see the logs under {trial_dir}."
        )
    last = (result.metrics or {}).get("epoch")
    if (
        cfg.model.kind == ModelKind.mlp
        and last is not None
        and int(last) < cfg.train.epochs - 1
        and not (result.metrics or {}).get("stopped_early")
    ):
        # Seen on 2.60 when a node died under a worker: fit() returned as if training had
        # finished. A run that stopped short is a failure; rerunning resumes it.
        raise TrainingFailed(
            f"training run {name!r} ended after epoch {int(last) + 1} of {cfg.train.epochs} "
            "without early stopping: its workers were lost. Rerunning the same command resumes "
            f"from the last checkpoint under {trial_dir}."
        )
    return result, spec, name


def _write_bundle(
    cfg: RunConfig,
    prepared: PreparedData,
    result: Any,
    path: Path,
    metrics: dict[str, Any],
    extra: dict[str, Any],
) -> Path:
    contract = prepared.contract
    sample = prepared.splits.train.limit(100_000)
    table = pa.concat_tables(list(sample.iter_batches(batch_format="pyarrow", batch_size=None)))
    ref = reference_stats(table.drop_columns([ROW_HASH_COLUMN]), contract)
    common: dict[str, Any] = {
        "preprocessor": prepared.preprocessor,
        "contract": contract,
        "reference_stats": ref,
        "metrics": metrics,
        "manifest_extra": extra,
        "overwrite": True,
    }
    with result.checkpoint.as_directory() as d:
        if cfg.model.kind == ModelKind.xgboost:
            from ray_ml.train._xgboost import load_xgboost_checkpoint

            raw, facts = load_xgboost_checkpoint(
                d, early_stopping=cfg.model.early_stopping_rounds > 0
            )
            return write_bundle(
                path,
                model_kind="xgboost",
                model_config={**run_config_to_dict(cfg)["model"], **facts},
                xgboost_model=raw,
                **common,
            )
        from ray_ml.train._torch import load_torch_checkpoint

        state, progress = load_torch_checkpoint(d)
        return write_bundle(
            path,
            model_kind="mlp",
            model_config=progress["model_kwargs"],
            state_dict=state,
            **common,
        )


@dataclass(frozen=True)
class _Trained:
    """What `_write_bundle` reads of a Ray Train result: its checkpoint and last metrics."""

    checkpoint: Any
    metrics: dict[str, Any]


def _write_fold_facts(directory: Path, preprocessor: Preprocessor, counts: list[int]) -> None:
    """What one k-fold round trained with (lineage): its preprocessing and class counts."""
    directory.mkdir(parents=True, exist_ok=True)
    preprocessor.save(directory / "preprocessor.json")
    (directory / "class_counts.json").write_text(json.dumps(counts))


def run_training(
    cfg: RunConfig,
    *,
    prepared: PreparedData | None = None,
    run_name: str | None = None,
    callbacks: list[Any] | None = None,
    from_checkpoint: str | None = None,
) -> dict[str, Any]:
    """Train the configured model on the current Ray cluster and write its bundle.

    Args:
        cfg: The whole run config.
        prepared: The data stage's output, if already computed (tuning reuses one per sweep).
        run_name: Name for the run's outputs (default `cfg.name`); Tune passes the trial id.
        callbacks: Ray Train callbacks (Tune's report callback, for instance).
        from_checkpoint: A checkpoint of this config that trained every epoch (a sweep's
            winning trial): bundle and evaluate it instead of training again (no k-fold).

    Returns:
        The summary: `metrics` (`validation`, `test`, and `cv` with k-fold), `bundle`,
        `fingerprint`, `wall_s`, `resources`, the training history and the restarts seen.
    """
    t0 = time.perf_counter()
    run_name = run_name or cfg.name
    storage = Path(cfg.storage_path).resolve()
    run_dir = storage / run_name
    prepared = prepared or prepare_data(cfg.data, cfg.seed, run_dir / "data")
    splits = prepared.splits
    cv: dict[str, Any] | None = None
    if splits.folds:
        per_fold = []
        k = len(splits.folds)
        for i in range(1, k):  # fold 0 is the main run below
            others = [j for j in range(k) if j != i]
            fold_train = splits.folds[others[0]].union(*[splits.folds[j] for j in others[1:]])
            # Preprocessing and class statistics fitted on this fold's training part only:
            # the main run's (folds 1..k-1) would have seen fold i's rows.
            fold_prep = fit_preprocessor(
                fold_train, prepared.contract, **preprocessing_kwargs(cfg.data)
            )
            fold_counts = class_counts(prepared, others)
            _write_fold_facts(run_dir / "folds" / f"fold_{i}", fold_prep, fold_counts)
            fold_result, _, _ = fit_trainer(
                cfg,
                prepared,
                fold_train,
                splits.folds[i],
                f"{run_name}-fold{i}",
                callbacks,
                preprocessor=fold_prep,
                counts=fold_counts,
            )
            per_fold.append(fold_result.metrics)
        _write_fold_facts(
            run_dir / "folds" / "fold_0",
            prepared.preprocessor,
            class_counts(prepared, train_parts(prepared)),
        )
    if from_checkpoint is not None and not splits.folds:
        import ray.train

        result: Any = _Trained(ray.train.Checkpoint(from_checkpoint), {})
        trainer_name = f"checkpoint:{from_checkpoint}"
    else:
        result, _, trainer_name = fit_trainer(
            cfg, prepared, splits.train, splits.validation, run_name, callbacks
        )
    if splits.folds:
        per_fold.insert(0, result.metrics)
        keys = [
            k
            for k, v in per_fold[0].items()
            if k.startswith("val_") and isinstance(v, (int, float))
        ]
        cv = {
            k: {
                "mean": statistics.fmean(f[k] for f in per_fold),
                "std": statistics.pstdev(f[k] for f in per_fold),
                "folds": [f[k] for f in per_fold],
            }
            for k in keys
            if all(k in f for f in per_fold)
        }
    wall_train = time.perf_counter() - t0
    bundle_dir = run_dir / "bundle"
    extra = {
        "run_name": run_name,
        "trainer_name": trainer_name,
        "config": run_config_to_dict(cfg),
        "data_fingerprint": prepared.fingerprint,
        "wall_s": round(wall_train, 3),
        "resources": scaling_resources(cfg),
    }
    # Metrics come from the bundle's own predictor, so write it, evaluate, then rewrite with them.
    staging = run_dir / "bundle.staging"
    _write_bundle(cfg, prepared, result, staging, {}, extra)
    label = prepared.contract.label
    metrics = {
        "validation": evaluate(staging, splits.validation, label),
        "test": evaluate(staging, splits.test, label),
    }
    if cv:
        metrics["cv"] = cv
    _write_bundle(cfg, prepared, result, bundle_dir, metrics, extra)
    shutil.rmtree(staging, ignore_errors=True)
    restarts = (
        len(list((storage / "chaos" / trainer_name).glob("chaos_fired_*")))
        if (storage / "chaos" / trainer_name).exists()
        else 0
    )
    summary = {
        "job": "train",
        "name": run_name,
        "model": cfg.model.kind.value,
        "metrics": metrics,
        "bundle": str(bundle_dir),
        "fingerprint": prepared.fingerprint,
        "wall_s": round(time.perf_counter() - t0, 3),
        "resources": scaling_resources(cfg),
        "trainer": trainer_name,
        "checkpoint": result.checkpoint.path,
        "last_reported": {
            k: v
            for k, v in (result.metrics or {}).items()
            if isinstance(v, (int, float, bool)) and not (isinstance(v, float) and math.isnan(v))
        },
        "chaos_kills": restarts,
        "data": {
            "rows_ok": prepared.report.rows_ok,
            "rows_rejected": prepared.report.rows_rejected,
        },
    }
    (run_dir / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def run_train_job(cfg: RunConfig) -> dict[str, Any]:
    """`python -m jobs.train`: embedded (or joined) Ray, then `run_training`."""
    from ray_ml.cluster import start_ray, stop_ray

    handle = start_ray(cfg.cluster)
    try:
        return run_training(cfg)
    finally:
        stop_ray(handle)
