"""Unit prices per CPU-hour and GPU-hour, derived from the node types in `cost.node_types`.

Clouds sell whole machines, but Tune trials hold bundles of resources ({"CPU": 2, "GPU": 1}),
so the catalog splits each machine price into unit prices:

1. **The reference CPU-hour price** (one per pricing column) comes from the default node type
   when it has no GPUs, else from the CPU-only node type with the lowest price per CPU. It is
   `node price / cpus`. With no CPU-only node type at all it is 0: the GPU nodes then carry their
   whole price on their GPUs, and a CPU-only bundle prices at $0 (`describe()` warns).
2. **A CPU-only node type** prices its CPUs at its own `price / cpus`.
3. **A GPU node type** prices its CPUs at the reference CPU-hour price and each GPU at
   `(node price - cpus * reference CPU-hour price) / gpus`, floored at 0: the GPU's price is
   what the machine costs beyond an equally large CPU machine.
4. **Per GPU type**, the GPU-hour price is the lowest over the node types with that GPU.

Resources other than CPU and GPU (memory, custom resources such as MOCK_GPU, Ray's
`accelerator_type:*` labels) are free: the machine price already pays for them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ray_ml.config import CostConfig, NodeTypeConfig, Pricing
from ray_ml.errors import ConfigError

__all__ = ["NodeTypePrices", "PriceCatalog", "UnitPrices", "as_pricing"]

_HOURS_NOTE = "USD per hour"


def as_pricing(pricing: str | Pricing) -> Pricing:
    """`pricing` as a `Pricing` member; raises `ConfigError` listing the choices."""
    try:
        return Pricing(pricing)
    except ValueError:
        choices = ", ".join(p.value for p in Pricing)
        raise ConfigError(
            f"`cost.pricing` must be one of {choices}, but got pricing={pricing!r}. "
            f"Fix: use `cost.pricing=on_demand` or `cost.pricing=spot`."
        ) from None


@dataclass(frozen=True)
class UnitPrices:
    """Unit prices on one node type under one pricing column, in USD per hour.

    Attributes:
        cpu_usd_per_hour: Price of one CPU for one hour.
        gpu_usd_per_hour: Price of one GPU for one hour; 0 on a node type without GPUs.
    """

    cpu_usd_per_hour: float
    gpu_usd_per_hour: float


@dataclass(frozen=True)
class NodeTypePrices:
    """One node type and the unit prices derived from it.

    Attributes:
        node: The node type as configured.
        on_demand: Unit prices at the on-demand column.
        spot: Unit prices at the spot column.
    """

    node: NodeTypeConfig
    on_demand: UnitPrices
    spot: UnitPrices

    def units(self, pricing: str | Pricing) -> UnitPrices:
        """The unit prices under `pricing`."""
        return self.on_demand if as_pricing(pricing) is Pricing.on_demand else self.spot


def _node_price(node: NodeTypeConfig, pricing: Pricing) -> float:
    if pricing is Pricing.on_demand:
        return node.on_demand_usd_per_hour
    return node.spot_usd_per_hour


class PriceCatalog:
    """Node types and the unit prices derived from them (the rule is in the module docstring).

    Example:
        >>> from ray_ml.config import CostConfig
        >>> catalog = PriceCatalog.from_config(CostConfig())
        >>> catalog.price_of({"CPU": 2}, "on_demand")
        0.0
    """

    def __init__(
        self,
        node_types: list[NodeTypeConfig],
        default_node_type: str,
        pricing: str | Pricing = Pricing.on_demand,
    ) -> None:
        """Derive unit prices from node types.

        Args:
            node_types: The machines, with their on-demand and spot prices.
            default_node_type: Name of the node type used when `price_of` gets none.
            pricing: The catalog's default pricing column (`cost.pricing`).

        Raises:
            ConfigError: No node types, duplicated names, or an unknown default.
        """
        # A CostConfig validated these already; a catalog built by hand gets the same checks.
        CostConfig(
            pricing=as_pricing(pricing),
            node_types=list(node_types),
            default_node_type=default_node_type,
        )
        self.pricing = as_pricing(pricing)
        self.default_node_type = default_node_type
        # Per pricing column: (reference CPU-hour price, the node type it came from or None).
        refs = {p: self._reference_cpu_price(node_types, p) for p in Pricing}
        self._reference = {p: price for p, (price, _) in refs.items()}
        self._reference_source = {p: source for p, (_, source) in refs.items()}
        self._nodes: dict[str, NodeTypePrices] = {
            n.name: NodeTypePrices(
                node=n,
                on_demand=self._derive(n, Pricing.on_demand),
                spot=self._derive(n, Pricing.spot),
            )
            for n in node_types
        }

    @classmethod
    def from_config(cls, cost_cfg: CostConfig) -> PriceCatalog:
        """Build the catalog of a validated `cost` config group.

        Args:
            cost_cfg: The `cost` group of a `RunConfig`.

        Returns:
            The catalog, with `cost.pricing` as its default pricing column.
        """
        return cls(cost_cfg.node_types, cost_cfg.default_node_type, cost_cfg.pricing)

    # ---------------------------------------------------------------------------- derivation
    def _reference_cpu_price(
        self, nodes: list[NodeTypeConfig], pricing: Pricing
    ) -> tuple[float, str | None]:
        default = next(n for n in nodes if n.name == self.default_node_type)
        if default.gpus == 0:
            source = default
        else:
            cpu_only = [n for n in nodes if n.gpus == 0]
            if not cpu_only:
                return 0.0, None
            # `min` keeps the first of equal prices, so ties go to the first listed.
            source = min(cpu_only, key=lambda n: _node_price(n, pricing) / n.cpus)
        return _node_price(source, pricing) / source.cpus, source.name

    def _derive(self, node: NodeTypeConfig, pricing: Pricing) -> UnitPrices:
        price = _node_price(node, pricing)
        if node.gpus == 0:
            return UnitPrices(cpu_usd_per_hour=price / node.cpus, gpu_usd_per_hour=0.0)
        cpu = self._reference[pricing]
        gpu = max(0.0, (price - node.cpus * cpu) / node.gpus)
        return UnitPrices(cpu_usd_per_hour=cpu, gpu_usd_per_hour=gpu)

    # -------------------------------------------------------------------------------- lookup
    @property
    def node_type_names(self) -> list[str]:
        """Node type names in config order."""
        return list(self._nodes)

    def node(self, node_type: str | None = None) -> NodeTypePrices:
        """A node type and its unit prices; None gives the default node type.

        Raises:
            ConfigError: `node_type` is not in the catalog; the message lists the names.
        """
        name = self.default_node_type if node_type is None else node_type
        try:
            return self._nodes[name]
        except KeyError:
            names = ", ".join(self._nodes)
            raise ConfigError(
                f"node type {name!r} is not in cost.node_types ({names}). Fix: use one of "
                f"these names, or add the node type to the cost config."
            ) from None

    def cpu_hour_price(self, pricing: str | Pricing | None = None) -> float:
        """The reference CPU-hour price (rule 1 of the module docstring), USD per hour."""
        return self._reference[self._pricing(pricing)]

    def gpu_hour_prices(self, pricing: str | Pricing | None = None) -> dict[str, float]:
        """USD per GPU-hour for each GPU type: the lowest over node types with that GPU."""
        p = self._pricing(pricing)
        prices: dict[str, float] = {}
        for entry in self._nodes.values():
            gpu_type = entry.node.gpu_type
            if entry.node.gpus > 0 and gpu_type is not None:
                price = entry.units(p).gpu_usd_per_hour
                prices[gpu_type] = min(price, prices.get(gpu_type, math.inf))
        return prices

    def price_of(
        self,
        resources: Mapping[str, float],
        pricing: str | Pricing | None = None,
        node_type: str | None = None,
    ) -> float:
        """USD per hour for holding a bundle of resources, at unit prices.

        Args:
            resources: Ray resources, e.g. a trial's whole placement group `{"CPU": 2, "GPU": 1}`;
                fractions are fine. Resources other than CPU and GPU are free.
            pricing: `on_demand` or `spot`; None uses the catalog's (`cost.pricing`).
            node_type: The node type the bundle runs on; None uses `cost.default_node_type`.

        Returns:
            The price in USD per hour.

        Raises:
            ConfigError: A negative amount, an unknown node type, or GPUs on a node type
                without GPUs (the fix names the GPU node types).
        """
        for name, amount in resources.items():
            if not amount >= 0:  # also refuses NaN
                raise ConfigError(
                    f"resource amounts must be >= 0, but got {name}={amount!r}. Fix: pass the "
                    "resources the trial holds, e.g. {'CPU': 2, 'GPU': 1}."
                )
        entry = self.node(node_type)
        units = entry.units(self._pricing(pricing))
        cpus = float(resources.get("CPU", 0.0))
        gpus = float(resources.get("GPU", 0.0))
        if gpus > 0 and entry.node.gpus == 0:
            gpu_nodes = [n for n, e in self._nodes.items() if e.node.gpus > 0]
            key = "cost.default_node_type" if node_type is None else "node_type"
            fix = (
                f"set `{key}` to a node type with GPUs ({', '.join(gpu_nodes)})"
                if gpu_nodes
                else "add a node type with GPUs to cost.node_types"
            )
            raise ConfigError(
                f"`{key}` must have GPUs to price a bundle holding GPU={gpus:g}, but got "
                f"{entry.node.name!r} (no GPUs). Fix: {fix}."
            )
        return cpus * units.cpu_usd_per_hour + gpus * units.gpu_usd_per_hour

    def _pricing(self, pricing: str | Pricing | None) -> Pricing:
        return self.pricing if pricing is None else as_pricing(pricing)

    # ------------------------------------------------------------------------------ describe
    @property
    def illustrative(self) -> bool:
        """True when any node type's prices are examples rather than quotes."""
        return any(e.node.illustrative for e in self._nodes.values())

    @property
    def prices_read_on(self) -> list[str]:
        """The distinct dates the prices were read on, oldest first."""
        return sorted({e.node.prices_read_on for e in self._nodes.values()})

    def describe(self) -> dict[str, Any]:
        """The prices as plain, JSON-ready data for reports and manifests.

        Returns:
            A dict with `pricing`, `illustrative`, `prices_read_on`, `default_node_type`,
            `rule` (how unit prices were derived), `cpu_usd_per_hour` and `gpu_usd_per_hour`
            (per pricing column; GPUs per GPU type), `cpu_price_from` (the node type the
            CPU-hour price came from, per pricing column), `node_types` (one row per node type with
            its machine and unit prices), `warnings`, and `note` (the label that must go with
            illustrative prices).
        """
        rows = []
        for entry in self._nodes.values():
            n = entry.node
            rows.append(
                {
                    "name": n.name,
                    "cpus": n.cpus,
                    "gpus": n.gpus,
                    "gpu_type": n.gpu_type,
                    "memory_gb": n.memory_gb,
                    "on_demand_usd_per_hour": n.on_demand_usd_per_hour,
                    "spot_usd_per_hour": n.spot_usd_per_hour,
                    "cpu_usd_per_hour": {
                        "on_demand": entry.on_demand.cpu_usd_per_hour,
                        "spot": entry.spot.cpu_usd_per_hour,
                    },
                    "gpu_usd_per_hour": {
                        "on_demand": entry.on_demand.gpu_usd_per_hour,
                        "spot": entry.spot.gpu_usd_per_hour,
                    },
                    "prices_read_on": n.prices_read_on,
                    "illustrative": n.illustrative,
                }
            )
        warnings = []
        if self._reference_source[Pricing.on_demand] is None:
            warnings.append(
                "no CPU-only node type: CPUs are priced at $0 and GPU nodes carry their whole "
                "price on their GPUs; add a CPU node type to price CPU-only trials."
            )
        for entry in self._nodes.values():
            for p in Pricing:
                if entry.node.gpus > 0 and entry.units(p).gpu_usd_per_hour == 0.0:
                    warnings.append(
                        f"{entry.node.name} ({p.value}): its CPUs at the reference CPU-hour "
                        "price cost at least the whole node, so its GPUs are priced at $0."
                    )
        read_on = ", ".join(self.prices_read_on)
        note = (
            f"ILLUSTRATIVE prices (read on {read_on}): examples, not quotes."
            if self.illustrative
            else f"Prices read on {read_on}."
        )
        return {
            "pricing": self.pricing.value,
            "illustrative": self.illustrative,
            "prices_read_on": self.prices_read_on,
            "default_node_type": self.default_node_type,
            "units": _HOURS_NOTE,
            "rule": (
                "CPU-hour = node price / cpus of the default node type if CPU-only, else of "
                "the CPU-only node type cheapest per CPU; GPU-hour = (node price - cpus * "
                "CPU-hour) / gpus, floored at 0."
            ),
            "cpu_usd_per_hour": {p.value: self._reference[p] for p in Pricing},
            "cpu_price_from": {p.value: self._reference_source[p] for p in Pricing},
            "gpu_usd_per_hour": {p.value: self.gpu_hour_prices(p) for p in Pricing},
            "node_types": rows,
            "warnings": warnings,
            "note": note,
        }

    def table(self) -> str:
        """A Markdown table of `describe()`, headed by its note (illustrative or not)."""
        d = self.describe()
        lines = [
            d["note"],
            "",
            "| node type | CPUs | GPUs | on-demand $/h | spot $/h | CPU $/h (od/spot) "
            "| GPU $/h (od/spot) | read on |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in d["node_types"]:
            gpus = f"{r['gpus']} {r['gpu_type']}" if r["gpus"] else "0"
            cpu, gpu = r["cpu_usd_per_hour"], r["gpu_usd_per_hour"]
            lines.append(
                f"| {r['name']} | {r['cpus']} | {gpus} | {r['on_demand_usd_per_hour']:.4f} "
                f"| {r['spot_usd_per_hour']:.4f} | {cpu['on_demand']:.4f} / {cpu['spot']:.4f} "
                f"| {gpu['on_demand']:.4f} / {gpu['spot']:.4f} | {r['prices_read_on']} |"
            )
        lines += [f"Warning: {w}" for w in d["warnings"]]
        return "\n".join(lines)
