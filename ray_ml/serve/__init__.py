"""Serving on Ray Serve: the HTTP app built from a registry alias, version or bundle.

`deploy(cfg)` runs it on the connected Ray; `run_serve_job(cfg)` is `python -m jobs.serve`.
"""

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
    "RequestError",
    "RequestLimits",
    "RequestValidator",
    "app_builder",
    "build_app",
    "deploy",
    "run_serve_job",
    "serve_config",
    "serve_token",
]
