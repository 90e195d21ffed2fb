"""Getting a Ray: embedded local Ray, joining a cluster, job submission and YAML checks."""

from ray_ml.cluster._capacity import autoscaler_capacity
from ray_ml.cluster._local import RayHandle, start_ray, stop_ray

__all__ = ["RayHandle", "autoscaler_capacity", "start_ray", "stop_ray"]
