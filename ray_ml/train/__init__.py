"""Training building blocks: metrics, the torch MLP and its losses, model bundles, prediction."""

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

__all__ = [
    "BUNDLE_FORMAT_VERSION",
    "MODEL_KINDS",
    "Bundle",
    "MetricAccumulator",
    "Predictor",
    "bin_fractions",
    "build_mlp",
    "class_weights_balanced",
    "compute_metrics",
    "load_bundle",
    "loss_fn",
    "output_size",
    "predict_scores",
    "reference_stats",
    "write_bundle",
]
