"""Hydra sweeper `hydra/sweeper=ray_tune`: a `-m` command line becomes ONE cost-aware Tune sweep.

    python -m jobs.train -m hydra/sweeper=ray_tune experiment=demo \\
        train.lr='tag(log,interval(1e-4,1e-1))' model.dropout='interval(0,0.5)' \\
        train.epochs='range(2,6)' model.kind='choice(mlp,xgboost)'

Sweep overrides turn into the search space (`interval` -> uniform, or loguniform when tagged
`log`; `range` -> int over the range; `choice` -> choice); plain overrides configure the run as
usual (tune.*, cost.*, data.*). Instead of Hydra's launcher running one job per combination, the
sweep runs on Ray Tune with the configured searcher, scheduler and budget, and prints the
sweep's JSON summary as the last stdout line. Lives in `hydra_plugins` so Hydra discovers it.
"""

import json
import sys
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict


@dataclass
class RayTuneSweeperConf:
    _target_: str = "hydra_plugins.ray_ml_sweeper.ray_tune_sweeper.RayTuneSweeper"


ConfigStore.instance().store(
    group="hydra/sweeper", name="ray_tune", node=RayTuneSweeperConf, provider="ray_ml"
)


def space_from_overrides(arguments: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Split Hydra overrides into a search-space mapping and the plain overrides."""
    params: dict[str, Any] = {}
    plain: list[str] = []
    for override in OverridesParser.create().parse_overrides(arguments):
        if not override.is_sweep_override():
            plain.append(override.input_line)
            continue
        value = override.value()
        key = override.key_or_group
        if isinstance(value, IntervalSweep):
            kind = "loguniform" if "log" in value.tags else "uniform"
            params[key] = {kind: [float(value.start), float(value.end)]}
        elif isinstance(value, RangeSweep):
            if value.step == 1 and isinstance(value.start, int) and isinstance(value.stop, int):
                params[key] = {"int": [value.start, value.stop - 1]}  # Hydra's range excludes stop
            else:
                params[key] = {"choice": list(value.range())}
        elif isinstance(value, ChoiceSweep):
            params[key] = {"choice": list(value.list)}
        else:  # pragma: no cover - Hydra has no other sweep kinds
            raise ValueError(
                f"override {override.input_line!r}: unsupported sweep {type(value).__name__}"
            )
    return {"params": params}, plain


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
        from ray_ml.errors import RayMLError
        from ray_ml.tune import SearchSpace, run_tune_job

        assert self.config is not None and self.hydra_context is not None
        data, plain = space_from_overrides(arguments)
        if not data["params"]:
            raise ValueError(
                "hydra/sweeper=ray_tune needs at least one sweep override, e.g. train.lr='interval(1e-4,1e-1)'."
            )
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, plain)
        with open_dict(cfg):
            del cfg["hydra"]
        try:
            run_cfg = to_run_config(OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)))
            space = SearchSpace.from_dict(data, name="hydra", base=run_cfg)
            summary = run_tune_job(run_cfg, space=space)
        except RayMLError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            sys.exit(exc.exit_code)
        print(json.dumps(summary, default=str), flush=True)
        return summary
