"""Hydra sweeper `hydra/sweeper=ray_tune`: a `-m` command line becomes ONE cost-aware Tune sweep.

    python -m jobs.train -m hydra/sweeper=ray_tune experiment=demo \\
        train.lr='tag(log,interval(1e-4,1e-1))' model.dropout='interval(0,0.5)' \\
        train.epochs='range(2,6)' model.max_depth='int(interval(2,10))' \\
        model.norm=none,batch

Sweep overrides turn into the search space, each kind read the way Hydra's own sweepers read it
(`interval` -> uniform, loguniform when tagged `log`, int when cast with `int(...)`; `range` ->
the basic sweeper's values; `choice`/`a,b` -> choice, quoted strings as plain strings; the table
is in `_overrides.py`). Plain overrides configure the run as usual (tune.*, cost.*, data.*,
config groups such as model=xgboost); a sweep over a config group is refused, since one Tune
sweep cannot switch a group per trial. Instead of Hydra's launcher running one job per
combination, the sweep runs on Ray Tune with the configured searcher, scheduler and budget, and
prints the sweep's JSON summary as the last stdout line. Lives in `hydra_plugins` so Hydra
discovers it.
"""

import json
import sys
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from hydra_plugins.ray_ml_sweeper._overrides import (
    LOG_INT_FIX,
    SweepOverrides,
    build_search_space,
    domain_from_override,
    space_from_overrides,
)

__all__ = [
    "LOG_INT_FIX",
    "RayTuneSweeper",
    "RayTuneSweeperConf",
    "SweepOverrides",
    "build_search_space",
    "domain_from_override",
    "space_from_overrides",
]


@dataclass
class RayTuneSweeperConf:
    _target_: str = "hydra_plugins.ray_ml_sweeper.ray_tune_sweeper.RayTuneSweeper"


ConfigStore.instance().store(
    group="hydra/sweeper", name="ray_tune", node=RayTuneSweeperConf, provider="ray_ml"
)


class RayTuneSweeper(Sweeper):
    """Runs the whole `-m` sweep as one Ray Tune sweep (see the module docstring)."""

    def __init__(self) -> None:
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context

    def sweep(self, arguments: list[str]) -> Any:
        from ray_ml.config import to_run_config
        from ray_ml.errors import ConfigError, RayMLError

        assert self.config is not None and self.hydra_context is not None
        loader = self.hydra_context.config_loader
        try:
            sweep = space_from_overrides(arguments, loader)  # `glob` needs the loader
            if not sweep.space["params"]:
                raise ConfigError(
                    "hydra/sweeper=ray_tune needs at least one sweep override, but got none. "
                    "Fix: add one, e.g. train.lr='interval(1e-4,1e-1)'."
                )
            cfg = loader.load_sweep_config(self.config, sweep.plain)
            with open_dict(cfg):
                del cfg["hydra"]
            run_cfg = to_run_config(OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)))
            space = build_search_space(sweep, run_cfg)
            from ray_ml.tune import run_tune_job  # imports Ray and torch: after the checks

            summary = run_tune_job(run_cfg, space=space)
        except RayMLError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            sys.exit(exc.exit_code)
        print(json.dumps(summary, default=str), flush=True)
        return summary
