"""Loading the routed model versions: the model loader that `build_app` injects into replicas.

A `ModelLoader` turns one route of the routing table into a `Slot` (predictor, request validator
and drift reference) and gives the state deployment the stable version's reference statistics.
`BundleLoader`, the default, reads bundles from the registry (or one bundle folder) with their
checksums verified; a test or a different model store passes its own loader to `build_app`.
Loaders travel to the replicas by pickle, so they must be importable module-level classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ray_ml.serve._routing import ServeSpec
from ray_ml.serve._validate import RequestValidator

__all__ = ["BundleLoader", "ModelLoader", "Slot"]


@dataclass
class Slot:
    """One loaded model version: its predictor, validator and drift reference, and for live
    quality its contract (task and classes; None: no feedback for it) and its test metrics."""

    version: str
    predictor: Any
    validator: RequestValidator
    reference: dict[str, Any]
    contract: Any = None
    baseline: dict[str, Any] = field(default_factory=dict)


class ModelLoader(Protocol):
    """What the deployments load model versions with (see `BundleLoader`)."""

    def load(self, spec: ServeSpec, route: Mapping[str, Any]) -> Slot:
        """Load one routed version (`{"version", "ref"}` of the routing table)."""
        ...

    def reference(self, spec: ServeSpec, ref: Any) -> dict[str, Any]:
        """The reference statistics (the drift baseline) of the version `ref` names."""
        ...


@dataclass(frozen=True)
class BundleLoader:
    """Loads model bundles from the spec's registry, or its one bundle folder.

    `ray_ml.train` is imported on first use: it pulls in torch, which importing `ray_ml.serve`
    (the CLI, `serve_config`, `serve_token`) should not.
    """

    def load(self, spec: ServeSpec, route: Mapping[str, Any]) -> Slot:
        """The routed version's bundle (checksums verified), predictor and validator."""
        from ray_ml.train import Predictor, load_bundle

        bundle = load_bundle(_bundle_dir(spec, route["ref"]))
        return Slot(
            version=route["version"],
            predictor=Predictor(bundle, device=spec.device),
            validator=RequestValidator(bundle.contract, spec.limits),
            reference=dict(bundle.reference_stats),
            contract=bundle.contract,
            baseline=dict(bundle.metrics.get("test") or {}),
        )

    def reference(self, spec: ServeSpec, ref: Any) -> dict[str, Any]:
        """The bundle's reference statistics (the drift baseline)."""
        from ray_ml.train import load_bundle

        return dict(load_bundle(_bundle_dir(spec, ref)).reference_stats)


def _bundle_dir(spec: ServeSpec, ref: Any) -> str:
    if spec.bundle is not None:
        return str(ref)
    return spec.registry().bundle_path(spec.model, int(ref))
