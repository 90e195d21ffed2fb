"""The XGBoost per-worker loop run by Ray Train's (distributed) XGBoostTrainer.

Each worker turns its train shard into a DMatrix through the run's `Preprocessor` (the function
serving uses) and trains inside the collective context Ray Train sets up, so the trees are built
over all shards together. The validation set is read whole by every worker and split by row
hash, so XGBoost's distributed evaluation covers every validation row exactly once.

Checkpoints are the booster (`model.ubj`) plus a small progress file, every
`model.checkpoint_every_rounds` boosting rounds and at the end; a restarted worker group continues
boosting from the last one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import xgboost as xgb

from ray_ml.train._loop_common import (
    LATENCY_ROWS,
    LoopSpec,
    latency_ms_per_1k,
    maybe_chaos_kill,
    validation_part,
)
from ray_ml.train._session import LoopSession, TrainSession, rank0_checkpoint

__all__ = [
    "MODEL_FILE",
    "load_xgboost_checkpoint",
    "xgboost_params",
    "xgboost_train_loop",
    "xgboost_train_loop_per_worker",
]

MODEL_FILE = "model.ubj"
PROGRESS_FILE = "progress.json"
_EVAL_METRIC = {"binary": "logloss", "multiclass": "mlogloss", "regression": "rmse"}


def xgboost_params(spec: LoopSpec) -> dict[str, Any]:
    """XGBoost parameters from the model/train config (hist; cuda when GPUs are used)."""
    m = spec.model
    params: dict[str, Any] = {
        "tree_method": m.tree_method,
        "max_depth": m.max_depth,
        "eta": m.eta,
        "subsample": m.subsample,
        "colsample_bytree": m.colsample_bytree,
        "min_child_weight": m.min_child_weight,
        "lambda": m.reg_lambda,
        "seed": spec.seed,
        "eval_metric": _EVAL_METRIC[spec.task],
        "device": "cuda" if spec.use_gpu else "cpu",
        "nthread": max(1, int(spec.cpus_per_worker)),
    }
    if spec.task == "binary":
        params["objective"] = "binary:logistic"
        if spec.class_weights:  # balanced weights -> the usual negatives/positives ratio
            params["scale_pos_weight"] = spec.class_weights[1] / spec.class_weights[0]
    elif spec.task == "multiclass":
        params["objective"] = "multi:softprob"
        params["num_class"] = len(spec.classes)
    else:
        params["objective"] = "reg:squarederror"
    return params


def _read(
    shard: Any, spec: LoopSpec, part: tuple[int, int] | None
) -> tuple[xgb.DMatrix, np.ndarray]:
    """The shard as a DMatrix, and its preprocessed features."""
    prep = spec.preprocessing()
    tables = [b for b in shard.iter_batches(batch_size=None, batch_format="pyarrow")]
    table = pa.concat_tables(tables) if tables else None
    if table is not None and part is not None:
        table = validation_part(table, *part)
    if table is None or table.num_rows == 0:
        x = np.zeros((0, prep.num_features), np.float32)
        return xgb.DMatrix(x, label=np.zeros(0, np.float32)), x
    y = prep.labels(table)
    weight = None
    if spec.class_weights and spec.task == "multiclass":
        weight = np.asarray(spec.class_weights, np.float32)[y]
    x = prep.transform(table)
    return xgb.DMatrix(x, label=y, weight=weight, feature_names=None), x


class _ReportCallback(xgb.callback.TrainingCallback):
    """Reports `val_loss`/`train_loss` with a checkpoint every k rounds and at the end."""

    def __init__(
        self, spec: LoopSpec, session: LoopSession, start_round: int, latency_x: np.ndarray | None
    ) -> None:
        self.spec = spec
        self.session = session
        self.rank = session.rank
        self.start_round = start_round
        self.every = spec.model.checkpoint_every_rounds
        self.metric = _EVAL_METRIC[spec.task]
        self.last_saved = -1
        self.final_reported = False
        self.latency_x = latency_x
        self.metrics: dict[str, Any] = {}
        self.cpu0 = time.process_time()

    def _report(self, model: xgb.Booster, rnd: int, done: bool) -> None:
        self.last_saved = rnd
        self.final_reported = done
        # `training_done`: every round boosted or early stopping ended it; see the torch loop.
        metrics = {**self.metrics, "training_done": done, "cpu_s": time.process_time() - self.cpu0}
        if self.latency_x is not None:
            x = self.latency_x
            metrics["latency_ms"] = latency_ms_per_1k(lambda: model.inplace_predict(x))

        def save(directory: Path) -> None:
            model.save_model(str(directory / MODEL_FILE))
            (directory / PROGRESS_FILE).write_text(
                json.dumps({"round": rnd, "metrics": self.metrics})
            )

        with rank0_checkpoint(self.session, save) as d:
            self.session.report(metrics, d)

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: dict[str, Any]) -> bool:
        rnd = self.start_round + epoch
        self.metrics = {"epoch": rnd, "round": rnd}
        for name, key in (("validation", "val_loss"), ("train", "train_loss")):
            if name in evals_log and self.metric in evals_log[name]:
                self.metrics[key] = float(evals_log[name][self.metric][-1])
        if (rnd + 1) % self.every == 0:
            # Reports are synchronisation points (and Tune's rungs): every k rounds, with a
            # checkpoint, not every round.
            last = rnd + 1 >= self.spec.model.num_boost_round
            self._report(model, rnd, done=last)
            maybe_chaos_kill(self.spec, rnd, self.rank, self.session.settle_s)
        return False

    def after_training(self, model: xgb.Booster) -> xgb.Booster:
        rnd = model.num_boosted_rounds() - 1
        # Early stopping ends training between reports; the final report says it is done.
        if self.metrics and not self.final_reported:
            self._report(model, rnd, done=True)
        return model


def xgboost_train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point: `XGBoostTrainer(xgboost_train_loop_per_worker, train_loop_config={"spec": spec})`."""
    spec: LoopSpec = config["spec"]
    xgboost_train_loop(spec, TrainSession(total=spec.model.num_boost_round, unit="rounds"))


def xgboost_train_loop(spec: LoopSpec, session: LoopSession) -> None:
    """Boost the model of `spec` in `session` (inside XGBoostTrainer's collective, or alone)."""
    rank, world = session.rank, session.world
    dtrain, _ = _read(session.shard("train"), spec, None)
    dval, x_val = _read(session.shard("validation"), spec, (rank, world))
    latency_x = None
    if rank == 0 and len(x_val):
        reps = -(-LATENCY_ROWS // len(x_val))
        latency_x = np.tile(x_val[:LATENCY_ROWS], (reps, 1))[:LATENCY_ROWS]
    booster, start = None, 0
    with session.checkpoint_dir() as d:
        if d is not None:
            booster = xgb.Booster(model_file=str(Path(d) / MODEL_FILE))
    if booster is not None:
        start = booster.num_boosted_rounds()
    rounds = spec.model.num_boost_round - start
    if rounds <= 0:
        return
    early = spec.model.early_stopping_rounds
    xgb.train(
        xgboost_params(spec),
        dtrain,
        num_boost_round=rounds,
        evals=[(dtrain, "train"), (dval, "validation")],
        early_stopping_rounds=early or None,
        xgb_model=booster,
        verbose_eval=False,
        callbacks=[_ReportCallback(spec, session, start, latency_x)],
    )


def load_xgboost_checkpoint(
    directory: str | Path, early_stopping: bool
) -> tuple[bytes, dict[str, Any]]:
    """(UBJ model bytes, facts) from a checkpoint; trees after the best round are dropped."""
    booster = xgb.Booster(model_file=str(Path(directory) / MODEL_FILE))
    facts: dict[str, Any] = {"num_boosted_rounds": booster.num_boosted_rounds()}
    best = booster.attr("best_iteration")
    if early_stopping and best is not None:
        booster = booster[: int(best) + 1]  # a Booster predicts with every tree it holds
        facts["best_iteration"] = int(best)
    return bytes(booster.save_raw("ubj")), facts
