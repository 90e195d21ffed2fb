"""The loop after serving: watch the app and the data, retrain on a trigger, canary.

`run_monitor_job(cfg)` is `python -m jobs.monitor` (and `ray-ml monitor`); `Monitor(cfg,
token).tick()` is one pass. `_ledger` keeps what it saw and did (one JSON file that survives a
kill), `_triggers` turns the app's alerts and the data into reasons to retrain, `_monitor` acts.
"""

from ray_ml.monitor._ledger import LEDGER_FORMAT, TRIGGER_STATUSES, MonitorLedger
from ray_ml.monitor._monitor import Monitor, run_monitor, run_monitor_job
from ray_ml.monitor._triggers import (
    Condition,
    new_data_condition,
    schedule_condition,
    serve_conditions,
)

__all__ = [
    "LEDGER_FORMAT",
    "TRIGGER_STATUSES",
    "Condition",
    "Monitor",
    "MonitorLedger",
    "new_data_condition",
    "run_monitor",
    "run_monitor_job",
    "schedule_condition",
    "serve_conditions",
]
