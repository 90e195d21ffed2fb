"""What is served: the replicas' `ServeSpec` and the routing table (stable version, canary).

`serve_spec(cfg, token)` turns the run config into the spec every deployment receives: the typed
`serve` config itself (dataclasses pickle) plus the few values the driver derives from it (the
model name, the bundle's absolute path, the token's digest). `resolve_routing(spec)` reads the
registry aliases into a routing table, which travels between the deployments as a small JSON-able
dict on every flush.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray_ml.registry import Registry
from ray_ml.serve._validate import RequestLimits

if TYPE_CHECKING:
    from ray_ml.config import RunConfig, ServeConfig

__all__ = ["ServeSpec", "replica_price", "resolve_routing", "same_routes", "serve_spec"]

logger = logging.getLogger("ray.serve")


@dataclass(frozen=True)
class ServeSpec:
    """Everything a replica needs: the `serve` config and what the driver derived from it.

    The model served is `bundle` if set (no registry, no canary), else registry `version`, else
    registry `alias` of `model` under `registry_root`; the properties give each of them only
    when it is the one in use.

    Attributes:
        config: The run's `serve` group, with `bundle` made absolute (replicas run elsewhere).
        model: The registry model name: `serve.model`, else the run's `name`.
        token_sha256: The bearer token's SHA-256 (hex), None when auth is off. The token itself
            never leaves the driver.
        usd_per_replica_hour: One replica's resources at the `cost` catalog's prices (serving
            dollars in `/metrics`).
    """

    config: ServeConfig
    model: str
    token_sha256: str | None
    usd_per_replica_hour: float = 0.0

    def __post_init__(self) -> None:
        _ = self.limits  # RequestLimits checks the serve.max_* values (a ConfigError naming them)

    @property
    def bundle(self) -> str | None:
        return self.config.bundle

    @property
    def registry_root(self) -> str | None:
        return None if self.bundle else self.config.registry_root

    @property
    def version(self) -> str | None:
        return None if self.bundle else self.config.version

    @property
    def alias(self) -> str | None:
        return None if (self.bundle or self.config.version) else self.config.alias

    @property
    def device(self) -> str:
        return "cuda" if self.config.num_gpus_per_replica > 0 else "cpu"

    @property
    def limits(self) -> RequestLimits:
        s = self.config
        return RequestLimits(
            max_rows=s.max_rows_per_request,
            max_body_bytes=s.max_body_bytes,
            max_json_depth=s.max_json_depth,
        )

    def registry(self) -> Registry:
        """The registry the served versions come from (only when serving from one)."""
        assert self.registry_root is not None
        return Registry(self.registry_root)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able view, for logs."""
        return dataclasses.asdict(self)


def serve_spec(cfg: RunConfig, token: str | None) -> ServeSpec:
    """The spec of `cfg.serve`, carrying the SHA-256 of `token` (None: auth off), not the token."""
    s = cfg.serve
    if s.bundle is not None:
        s = dataclasses.replace(s, bundle=str(Path(s.bundle).resolve()))
    if s.prediction_log is not None and "://" not in s.prediction_log:
        # replicas run in other processes (and folders): a local log path is made absolute
        s = dataclasses.replace(s, prediction_log=str(Path(s.prediction_log).resolve()))
    return ServeSpec(
        config=s,
        model=s.model or cfg.name,
        token_sha256=hashlib.sha256(token.encode()).hexdigest() if token else None,
        usd_per_replica_hour=replica_price(cfg),
    )


def replica_price(cfg: RunConfig) -> float:
    """USD per hour of one replica's CPUs and GPUs at the `cost` catalog's prices: on
    `cost.default_node_type`, or, for GPU replicas when that type has no GPUs, on the catalog's
    first node type with GPUs (training prices its GPUs the same way only when told to)."""
    from ray_ml.cost import PriceCatalog

    s = cfg.serve
    catalog = PriceCatalog.from_config(cfg.cost)
    replica = {"CPU": s.num_cpus_per_replica, "GPU": s.num_gpus_per_replica}
    node_type = None
    if s.num_gpus_per_replica > 0 and catalog.node().node.gpus == 0:
        node_type = next(
            (n for n in catalog.node_type_names if catalog.node(n).node.gpus > 0), None
        )
        if node_type is None:  # no GPU prices at all: serving must not fail for want of them
            logger.warning(
                "ray_ml serve: the cost catalog prices no GPUs, so serving dollars count the "
                "replicas' CPUs only; add a node type with GPUs to cost.node_types"
            )
            replica["GPU"] = 0.0
    return catalog.price_of(replica, node_type=node_type)


def resolve_routing(spec: ServeSpec, revision: int = 0) -> dict[str, Any]:
    """The routing table for `spec` now: `{"revision", "stable", "canary"}`.

    `stable`/`canary` are `{"version": str, "ref": version number or bundle path}`; the canary
    (with `percent`) exists only when serving an alias with `canary_percent > 0` and the
    registry's `candidate` points at another version than the stable one.

    Raises:
        RegistryError: The alias, version or model does not exist.
    """
    if spec.bundle is not None:
        label = f"bundle:{spec.bundle.rstrip('/').rsplit('/', 1)[-1]}"
        return {
            "revision": revision,
            "stable": {"version": label, "ref": spec.bundle},
            "canary": None,
        }
    reg = spec.registry()
    ref = spec.version if spec.version is not None else spec.alias
    assert ref is not None
    stable = reg.get(spec.model, ref).version
    canary = None
    percent = spec.config.canary_percent
    if spec.version is None and percent > 0:
        aliases = reg.aliases(spec.model)
        cand = aliases.get("candidate")
        if cand is not None and cand != stable:
            canary = {"version": str(cand), "ref": cand, "percent": percent}
    return {
        "revision": revision,
        "stable": {"version": str(stable), "ref": stable},
        "canary": canary,
    }


def same_routes(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two routing tables route to the same versions (revisions aside)."""
    return bool(a["stable"] == b["stable"] and a["canary"] == b["canary"])
