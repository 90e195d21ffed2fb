"""Getting a Ray: embedded local Ray, joining a cluster, job submission and YAML checks."""

from ray_ml.cluster._capacity import autoscaler_capacity
from ray_ml.cluster._jobs import (
    TERMINAL,
    job_client,
    job_summary,
    resolve_token,
    submit_job,
    wait_for_job,
)
from ray_ml.cluster._launch import (
    check_kuberay_manifest,
    check_launcher_yaml,
    cluster_down,
    cluster_status,
    cluster_up,
    fake_cluster_config,
    unfilled_placeholders,
)
from ray_ml.cluster._local import RayHandle, start_ray, stop_ray

__all__ = [
    "TERMINAL",
    "RayHandle",
    "autoscaler_capacity",
    "check_kuberay_manifest",
    "check_launcher_yaml",
    "cluster_down",
    "cluster_status",
    "cluster_up",
    "fake_cluster_config",
    "job_client",
    "job_summary",
    "resolve_token",
    "start_ray",
    "stop_ray",
    "submit_job",
    "unfilled_placeholders",
    "wait_for_job",
]
