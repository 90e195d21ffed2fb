"""Ray Train end to end on the shared local Ray: PyTorch DDP and XGBoost on 2 workers,
metrics against scikit-learn, bundle round trips, and recovery from a SIGKILLed worker."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from ray_ml.config import load_config
from ray_ml.data import prepare_data
from ray_ml.train import Predictor, TrainingFailed, load_bundle, run_training


def config(tmp_path: Path, *overrides: str):
    return load_config(
        "train",
        [
            "debug=tiny",
            "data=breast_cancer",
            "scaling.num_workers=2",
            f"storage_path={tmp_path}",
            *overrides,
        ],
    )


def raw_rows(ds) -> pa.Table:
    return pa.concat_tables(
        list(ds.iter_batches(batch_format="pyarrow", batch_size=None))
    ).drop_columns(["_row_hash"])


def test_mlp_on_two_workers_metrics_equal_sklearn_and_bundle_round_trips(tmp_path: Path) -> None:
    cfg = config(tmp_path, "train.epochs=3", "model.hidden_sizes=[32]")
    summary = run_training(cfg)
    assert set(summary["metrics"]) == {"validation", "test"}
    bundle = load_bundle(summary["bundle"])
    assert bundle.manifest["data_fingerprint"] == summary["fingerprint"]

    # The same split again (same seed), predicted offline from raw rows: no Ray involved.
    prepared = prepare_data(cfg.data, cfg.seed, tmp_path / "again")
    validation = raw_rows(prepared.splits.validation)
    predictor = Predictor.from_bundle(summary["bundle"])
    offline = predictor.predict(validation.drop_columns(["target"]).to_pylist())
    y = validation.column("target").to_numpy()
    scores = np.asarray(offline["scores"])[:, 1]
    got = summary["metrics"]["validation"]
    assert got["support"] == validation.num_rows  # every validation row, none dropped
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y, scores), abs=1e-9)
    assert got["accuracy"] == pytest.approx(accuracy_score(y, offline["predictions"]), abs=1e-12)

    # Batch inference with Ray Data uses the same predictor and gives identical predictions.
    batch = prepared.splits.validation.map_batches(
        Predictor, fn_constructor_args=(summary["bundle"],), batch_format="pyarrow", batch_size=64
    )
    online = np.concatenate(
        [b["scores"] for b in batch.iter_batches(batch_format="numpy", batch_size=None)]
    )
    np.testing.assert_allclose(np.sort(online[:, 1]), np.sort(scores), rtol=0, atol=1e-6)


def test_xgboost_on_two_workers(tmp_path: Path) -> None:
    cfg = config(
        tmp_path, "model=xgboost", "model.num_boost_round=20", "model.checkpoint_every_rounds=5"
    )
    summary = run_training(cfg)
    assert (Path(summary["bundle"]) / "model.ubj").is_file()
    assert summary["last_reported"]["round"] == 19
    assert summary["metrics"]["test"]["roc_auc"] > 0.95
    # the bundle predicts on raw rows, missing values included
    rows = [{c.name: None for c in load_bundle(summary["bundle"]).contract.feature_columns}]
    assert len(Predictor.from_bundle(summary["bundle"]).predict(rows)["predictions"]) == 1


@pytest.mark.slow  # over a minute here: the slow step runs it (default run < ~20 min)
def test_killed_worker_resumes_from_checkpoint_and_matches_unfaulted_run(tmp_path: Path) -> None:
    common = ("train.epochs=4", "train.early_stopping_patience=0", "model.dropout=0.2")
    clean = run_training(config(tmp_path, *common, "name=clean"))
    faulty = run_training(
        config(
            tmp_path, *common, "name=faulty", "train.max_failures=1", "train.chaos_kill_at_epoch=1"
        )
    )
    assert faulty["chaos_kills"] == 1  # a train worker really was SIGKILLed once
    # Restarted from a checkpoint, not from scratch: epoch 1's own checkpoint if the controller
    # registered it before the kill, else epoch 0's (the kill races the report).
    assert faulty["last_reported"]["start_epoch"] in (1, 2)
    a, b = clean["last_reported"]["val_loss"], faulty["last_reported"]["val_loss"]
    assert b == pytest.approx(a, rel=1e-6)


@pytest.mark.slow  # over a minute here: the slow step runs it (default run < ~20 min)
def test_killed_worker_without_retries_fails_fast_and_rerun_resumes(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        "train.epochs=4",
        "name=fragile",
        "train.chaos_kill_at_epoch=1",
        "train.resume=true",
    )
    t0 = time.monotonic()
    with pytest.raises(TrainingFailed, match=r"train.max_failures>=1"):
        run_training(cfg)
    assert time.monotonic() - t0 < 120  # no hang
    summary = run_training(cfg)  # same name and storage: resumes; the one-shot fault is spent
    assert summary["last_reported"]["start_epoch"] >= 1  # from a checkpoint, not from scratch
    assert summary["last_reported"]["epoch"] == 3


def test_shard_cache_holds_every_row_and_permutes_reproducibly(tmp_path: Path) -> None:
    # The GPU cache's logic, exercised on the CPU device with a real Ray Data iterator.
    import torch

    from ray_ml.train._torch import ShardCache

    cfg = config(tmp_path)
    prepared = prepare_data(cfg.data, cfg.seed, tmp_path / "d")
    train = prepared.splits.train.materialize()
    n = train.count()
    cache = ShardCache.build(
        train.iterator(),
        prepared.preprocessor,
        torch.device("cpu"),
        budget_bytes=10**9,
        batch_size=50,
    )
    assert cache is not None and len(cache) == n
    assert cache.x.shape == (n, prepared.preprocessor.num_features)
    first = torch.cat([y for _, y in cache.batches(64, seed=3)])
    again = torch.cat([y for _, y in cache.batches(64, seed=3)])
    other = torch.cat([y for _, y in cache.batches(64, seed=4)])
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert sorted(first.tolist()) == sorted(cache.y.tolist())  # a permutation: every row once
    assert (
        ShardCache.build(
            train.iterator(), prepared.preprocessor, torch.device("cpu"), budget_bytes=1000
        )
        is None
    )


@pytest.mark.slow  # over a minute here: the slow step runs it (default run < ~20 min)
def test_cpu_workers_cache_their_shard_when_it_fits_and_train_every_row(tmp_path: Path) -> None:
    from ray_ml.train._torch import _fits_cpu_cache

    cfg = config(tmp_path, "train.epochs=2")
    spec_rows = 4 * 2**20 // (10 * 4 + 8)  # rows of 10 features that fill 4 MiB per worker
    small = cfg.train.__class__(**{**cfg.train.__dict__, "cpu_cache_mb": 4})
    spec = type("Spec", (), {"train_rows": 2 * spec_rows, "train": small})()
    assert _fits_cpu_cache(spec, 2, 10) and not _fits_cpu_cache(spec, 1, 10)
    # on the shared 2-worker Ray, cached (the default) and streamed runs see the same rows
    cached = run_training(cfg)
    streamed = run_training(config(tmp_path / "s", "train.epochs=2", "train.cpu_cache_mb=0"))
    rows = [run["last_reported"]["train_rows"] for run in (cached, streamed)]
    assert rows[0] == rows[1] > 0  # rank 0's rows in its last epoch: its whole shard, once
    assert (
        cached["metrics"]["test"]["roc_auc"] > 0.9 and streamed["metrics"]["test"]["roc_auc"] > 0.9
    )


@pytest.mark.gpu
def test_gpu_training_with_cached_shard_and_bf16(tmp_path: Path) -> None:
    summary = run_training(
        config(
            tmp_path,
            "scaling=gpu",
            "cluster=local_gpu",
            "scaling.num_workers=1",
            "train.mixed_precision=bf16",
            "train.epochs=3",
        )
    )
    assert summary["metrics"]["test"]["roc_auc"] > 0.9


@pytest.mark.slow  # over a minute here: the slow step runs it (default run < ~20 min)
def test_kfold_cross_validation_reports_mean_and_spread(tmp_path: Path) -> None:
    summary = run_training(
        config(
            tmp_path,
            "data.kfold=3",
            "data.val_fraction=0",
            "scaling.num_workers=1",
            "train.epochs=1",
        )
    )
    cv = summary["metrics"]["cv"]["val_loss"]
    assert len(cv["folds"]) == 3 and cv["std"] >= 0
    assert cv["mean"] == pytest.approx(sum(cv["folds"]) / 3)
    assert summary["metrics"]["validation"]["support"] > 0  # fold 0 is the main run's validation


@pytest.mark.slow
def test_kfold_fits_preprocessing_and_class_statistics_on_each_folds_training_part(
    tmp_path: Path,
) -> None:
    import json

    from ray_ml.data import Preprocessor

    cfg = config(tmp_path, "data.kfold=3", "scaling.num_workers=1", "model=xgboost")
    summary = run_training(cfg)
    assert set(summary["metrics"]["cv"]["val_loss"]) == {"mean", "std", "folds"}
    prepared = prepare_data(cfg.data, cfg.seed, tmp_path / "again")  # same seed: same folds
    label = prepared.contract.label
    folds = [
        pa.concat_tables(list(f.iter_batches(batch_format="pyarrow", batch_size=None)))
        for f in prepared.splits.folds
    ]
    feature = prepared.preprocessor.numeric[0].name
    for i in range(3):
        facts = tmp_path / cfg.name / "folds" / f"fold_{i}"
        train = pa.concat_tables([t for j, t in enumerate(folds) if j != i])
        fitted = Preprocessor.load(facts / "preprocessor.json")
        # standard scaling: centred on the mean of this fold's training rows only
        (spec,) = [f for f in fitted.numeric if f.name == feature]
        values = np.asarray(train.column(feature).to_numpy(zero_copy_only=False), float)
        assert spec.center == pytest.approx(float(np.nanmean(values)), rel=1e-6)
        held_out = np.asarray(folds[i].column(feature).to_numpy(zero_copy_only=False), float)
        if not np.isclose(np.nanmean(held_out), np.nanmean(values)):
            # a fit that had seen the held-out fold would be centred elsewhere
            everything = np.concatenate([values, held_out])
            assert spec.center != pytest.approx(float(np.nanmean(everything)), rel=1e-9)
        labels = train.column(label).to_pylist()
        counts = json.loads((facts / "class_counts.json").read_text())
        assert counts == [labels.count(c) for c in prepared.contract.classes]
