"""Training on Ray Train (PyTorch DDP, distributed XGBoost), metrics, model bundles, prediction."""

from ray_ml.train._bundle import (
    BUNDLE_FORMAT_VERSION,
    MODEL_KINDS,
    Bundle,
    bin_fractions,
    load_bundle,
    reference_stats,
    write_bundle,
)
from ray_ml.train._metrics import MetricAccumulator, compute_metrics
from ray_ml.train._models import (
    build_mlp,
    class_weights_balanced,
    loss_fn,
    output_size,
    predict_scores,
)
from ray_ml.train._predictor import Predictor
from ray_ml.train._run import TrainingFailed, evaluate, run_train_job, run_training

__all__ = [
    "BUNDLE_FORMAT_VERSION",
    "MODEL_KINDS",
    "Bundle",
    "MetricAccumulator",
    "Predictor",
    "TrainingFailed",
    "bin_fractions",
    "build_mlp",
    "class_weights_balanced",
    "compute_metrics",
    "evaluate",
    "load_bundle",
    "loss_fn",
    "output_size",
    "predict_scores",
    "reference_stats",
    "run_train_job",
    "run_training",
    "write_bundle",
]
