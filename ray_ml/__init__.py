"""ray_ml: train, tune (cost-aware) and serve models at scale on Ray."""

from ray_ml.errors import ConfigError, ContractError, RayMLError, RejectRateExceeded, SourceError

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ContractError",
    "RayMLError",
    "RejectRateExceeded",
    "SourceError",
    "__version__",
]
