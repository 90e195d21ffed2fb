"""What a sweep costs: a price catalog, a per-trial meter and budgets. Pure Python, no Ray.

- `PriceCatalog`: unit prices per CPU-hour and GPU-hour derived from `cost.node_types`.
- `CostMeter`: billed, algorithmic and wasted dollars per trial, with injected time.
- `Budget`: limits in dollars, GPU-hours, wall seconds and trials, and projected overspend.

Example:
    >>> from ray_ml.config import CostConfig
    >>> catalog = PriceCatalog.from_config(CostConfig())
    >>> meter = CostMeter(catalog)
    >>> meter.start("t1", {"CPU": 2}, t=0.0)
    >>> Budget(usd=1.0).exceeded(meter, now=3600.0) is None
    True
"""

from ray_ml.cost._budget import Budget
from ray_ml.cost._catalog import NodeTypePrices, PriceCatalog, UnitPrices, as_pricing
from ray_ml.cost._meter import CostMeter, CostTotals, TrialCost, TrialStatus

__all__ = [
    "Budget",
    "CostMeter",
    "CostTotals",
    "NodeTypePrices",
    "PriceCatalog",
    "TrialCost",
    "TrialStatus",
    "UnitPrices",
    "as_pricing",
]
