"""Serving on Ray Serve: the HTTP app built from a registry alias, version or bundle.

`deploy(cfg)` runs it on the connected Ray; `run_serve_job(cfg)` is `python -m jobs.serve`.
`build_app(cfg, loader=...)` is the typed builder both use (and `app_builder`, the entry of
Serve config files: `import_path: ray_ml.serve:app_builder`).

Modules, one thing each: `_validate` (requests -> typed tables), `_routing` (`ServeSpec`, the
routing table), `_loader` (the injected model loader), `_metrics`, `_canary`, `_cost` (serving dollars), `_drift` (the
monitor's pure-Python state), `_predlog` (the Parquet prediction log), `_quality` (live quality
from feedback labels), `_app` (the two Serve deployments) and `_server` (build, deploy, run).
"""

from ray_ml.serve._canary import CanaryAction, CanaryDecision, CanaryJudge
from ray_ml.serve._cost import ServingCost
from ray_ml.serve._drift import PSI_EPSILON, DriftWindow, drift_counts, merge_counts
from ray_ml.serve._ingress import ingress_env
from ray_ml.serve._loader import BundleLoader, ModelLoader, Slot
from ray_ml.serve._metrics import CONTENT_TYPE, LATENCY_BUCKETS, MetricsDelta, ServeMetrics
from ray_ml.serve._predlog import PREDICTION_SCHEMA, PredictionLog, read_predictions
from ray_ml.serve._quality import (
    HIGHER_IS_BETTER,
    FeedbackResult,
    LiveQuality,
    prediction_parts,
    row_predictions,
)
from ray_ml.serve._routing import ServeSpec, resolve_routing, serve_spec
from ray_ml.serve._server import (
    app_builder,
    build_app,
    deploy,
    run_serve_job,
    serve_config,
    serve_token,
)
from ray_ml.serve._validate import RequestError, RequestLimits, RequestValidator

__all__ = [
    "ingress_env",
    "CONTENT_TYPE",
    "HIGHER_IS_BETTER",
    "LATENCY_BUCKETS",
    "PREDICTION_SCHEMA",
    "PSI_EPSILON",
    "BundleLoader",
    "CanaryAction",
    "CanaryDecision",
    "CanaryJudge",
    "DriftWindow",
    "FeedbackResult",
    "LiveQuality",
    "MetricsDelta",
    "ModelLoader",
    "PredictionLog",
    "RequestError",
    "RequestLimits",
    "RequestValidator",
    "ServeMetrics",
    "ServeSpec",
    "ServingCost",
    "Slot",
    "app_builder",
    "build_app",
    "deploy",
    "drift_counts",
    "merge_counts",
    "prediction_parts",
    "read_predictions",
    "resolve_routing",
    "row_predictions",
    "run_serve_job",
    "serve_config",
    "serve_spec",
    "serve_token",
]
