"""The report's sections, one module each; `SECTIONS` lists their builders in page order.

Each builder takes the `Experiment` and returns one `Section` whose `data` holds every number it
shows (written to report.json) and whose cards, tables and plots are drawn from those numbers.
"""

from collections.abc import Callable

from ray_ml.report._html import Section
from ray_ml.report._inputs import Experiment
from ray_ml.report._sections._costs import build_costs
from ray_ml.report._sections._curves import build_curves
from ray_ml.report._sections._data import build_data
from ray_ml.report._sections._drift import build_drift
from ray_ml.report._sections._headline import build_headline
from ray_ml.report._sections._leaderboard import build_leaderboard
from ray_ml.report._sections._monitoring import build_monitoring
from ray_ml.report._sections._pareto import build_pareto, pareto_front_2d
from ray_ml.report._sections._spend import billed_curve, build_spend

__all__ = ["SECTIONS", "billed_curve", "pareto_front_2d"]

SECTIONS: tuple[Callable[[Experiment], Section], ...] = (
    build_headline,
    build_leaderboard,
    build_pareto,
    build_curves,
    build_spend,
    build_costs,
    build_data,
    build_drift,
    build_monitoring,
)
