"""Training on Ray Train (PyTorch DDP, distributed XGBoost), metrics, model bundles, prediction."""

from ray_ml.train._batch import batch_predict
from ray_ml.train._bundle import (
    BUNDLE_FORMAT_VERSION,
    MODEL_KINDS,
    Bundle,
    load_bundle,
    write_bundle,
)
from ray_ml.train._loop_common import LATENCY_ROWS, latency_ms_per_1k
from ray_ml.train._metrics import MetricAccumulator, compute_metrics
from ray_ml.train._models import (
    build_mlp,
    class_weights_balanced,
    loss_fn,
    output_size,
    predict_scores,
)
from ray_ml.train._predictor import Predictor
from ray_ml.train._run import (
    FitInputs,
    TrainingFailed,
    class_counts,
    evaluate,
    fit_inputs,
    fit_trainer,
    loop_spec,
    run_loop,
    run_train_job,
    run_training,
    scaling_resources,
    train_parts,
)
from ray_ml.train._session import LoopSession, TrainSession, TrialSession

__all__ = [
    "LATENCY_ROWS",
    "latency_ms_per_1k",
    "BUNDLE_FORMAT_VERSION",
    "MODEL_KINDS",
    "Bundle",
    "batch_predict",
    "FitInputs",
    "LoopSession",
    "MetricAccumulator",
    "Predictor",
    "TrainSession",
    "TrainingFailed",
    "TrialSession",
    "build_mlp",
    "class_counts",
    "class_weights_balanced",
    "compute_metrics",
    "evaluate",
    "fit_inputs",
    "fit_trainer",
    "load_bundle",
    "loop_spec",
    "loss_fn",
    "output_size",
    "predict_scores",
    "run_loop",
    "run_train_job",
    "run_training",
    "scaling_resources",
    "train_parts",
    "write_bundle",
]
