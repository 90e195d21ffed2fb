"""Typed run configs: one dataclass per Hydra group, the `conf/` loader and helpers.

Imports no ray, torch or xgboost, so configs load and validate anywhere.

Example:
    >>> from ray_ml.config import load_config
    >>> cfg = load_config("train", ["experiment=demo"])
    >>> cfg.train.epochs
    10
"""

from ray_ml.config._load import CONF_DIR, load_config, run_config_to_dict, to_run_config
from ray_ml.config._schema import (
    Activation,
    ClassWeighting,
    ClusterConfig,
    CostConfig,
    DataConfig,
    EncodeStrategy,
    ImputeStrategy,
    LRSchedule,
    MergeMode,
    MixedPrecision,
    ModelConfig,
    ModelKind,
    MonitorConfig,
    MonitorTrigger,
    NodeTypeConfig,
    NormKind,
    Optimizer,
    PlacementStrategy,
    Pricing,
    Resample,
    RunConfig,
    ScaleStrategy,
    ScalingConfig,
    Scheduler,
    Searcher,
    ServeConfig,
    ServeIngress,
    SortMode,
    TrackingConfig,
    TrackingKind,
    TrainConfig,
    TuneConfig,
    WinnerRule,
    register_configs,
)

__all__ = [
    "CONF_DIR",
    "Activation",
    "ClassWeighting",
    "ClusterConfig",
    "CostConfig",
    "DataConfig",
    "EncodeStrategy",
    "ImputeStrategy",
    "LRSchedule",
    "MergeMode",
    "MixedPrecision",
    "ServeIngress",
    "ModelConfig",
    "ModelKind",
    "NodeTypeConfig",
    "NormKind",
    "Optimizer",
    "PlacementStrategy",
    "Pricing",
    "Resample",
    "RunConfig",
    "ScaleStrategy",
    "ScalingConfig",
    "Scheduler",
    "Searcher",
    "ServeConfig",
    "SortMode",
    "MonitorConfig",
    "MonitorTrigger",
    "TrackingConfig",
    "TrackingKind",
    "TrainConfig",
    "TuneConfig",
    "WinnerRule",
    "load_config",
    "register_configs",
    "run_config_to_dict",
    "to_run_config",
]
