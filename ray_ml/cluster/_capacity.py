"""What a cluster can become: the most resources its autoscaler may launch.

A sweep sizes its concurrency from this, not from what the cluster has now: the shipped AWS and
GCP clusters start as a CPU-0 head with `min_workers: 0`, so today's resources would allow one
trial at a time, forever (the autoscaler adds nodes only for work that is waiting).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["BOOTSTRAP_CONFIG", "autoscaler_capacity"]

# `ray up` copies the resolved cluster YAML here on the head node; jobs run there.
BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")


def _node_resources(node_type: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in (node_type.get("resources") or {}).items()}


def autoscaler_capacity(
    config: Mapping[str, Any] | str | Path | None = None,
) -> dict[str, float] | None:
    """The resources of the head plus every worker the autoscaler may launch.

    Args:
        config: An autoscaler (cluster launcher) config, as data or a YAML path; None reads
            `~/ray_bootstrap_config.yaml` when it exists.

    Returns:
        Resource name -> total at full scale, or None when there is no autoscaler config (a
        fixed cluster: its current resources are all it has). Worker types count
        `max_workers` each, the largest nodes first, up to the config's `max_workers`.
    """
    if config is None:
        path = BOOTSTRAP_CONFIG.expanduser()
        if not path.is_file():
            return None
        config = path
    if isinstance(config, str | Path):
        config = yaml.safe_load(Path(config).expanduser().read_text()) or {}
    node_types: Mapping[str, Any] = config.get("available_node_types") or {}
    head = str(config.get("head_node_type"))
    total: dict[str, float] = {}

    def add(resources: Mapping[str, float], count: int) -> None:
        for k, v in resources.items():
            total[k] = total.get(k, 0.0) + v * count

    if head in node_types:
        add(_node_resources(node_types[head]), 1)
    workers = [
        (name, nt) for name, nt in node_types.items() if name != head and nt.get("max_workers")
    ]
    workers.sort(key=lambda item: -_node_resources(item[1]).get("CPU", 0.0))
    left = int(config.get("max_workers", sum(int(nt["max_workers"]) for _, nt in workers)))
    for _, nt in workers:
        count = min(int(nt["max_workers"]), left)
        add(_node_resources(nt), count)
        left -= count
    return total
