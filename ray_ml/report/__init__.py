"""Experiment reports: one self-contained HTML page with embedded plots, and the same numbers as
JSON.

`build_report(storage_path, name)` reads what the jobs left under `storage_path` for experiment
`name` (the data summary, the sweep's summary, leaderboard and cost records, Tune's per-trial
results and, once served, the drift report) and writes `<storage_path>/<name>/report/index.html`
and `report.json`. Needs matplotlib and pyarrow; imports no Ray.

Example:
    >>> from ray_ml.report import build_report
    >>> build_report("runs", "demo")  # doctest: +SKIP
    PosixPath('/.../runs/demo/report/index.html')
"""

from ray_ml.report._build import build_report, build_sections
from ray_ml.report._html import fmt, pct, usd
from ray_ml.report._inputs import Experiment, Trial, load_experiment
from ray_ml.report._sections import billed_curve, pareto_front_2d

__all__ = [
    "Experiment",
    "Trial",
    "billed_curve",
    "build_report",
    "build_sections",
    "fmt",
    "load_experiment",
    "pareto_front_2d",
    "pct",
    "usd",
]
