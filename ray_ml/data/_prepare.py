"""The data stage of every job: check -> split -> fit preprocessing -> fingerprint."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray_ml.data._contract import Contract
from ray_ml.data._fingerprint import fingerprint
from ray_ml.data._preprocess import Preprocessor, fit_preprocessor
from ray_ml.data._sources import source_contract
from ray_ml.data._split import Splits, split_dataset
from ray_ml.data._validate import ValidationReport, check_sources
from ray_ml.errors import ConfigError

if TYPE_CHECKING:
    from ray_ml.config import DataConfig, RunConfig

__all__ = [
    "PreparedData",
    "prepare_data",
    "preprocessing_kwargs",
    "resolve_contract",
    "run_data_job",
    "write_data_artifacts",
]


def resolve_contract(sources: list[str], contract_path: str | None) -> Contract:
    """The contract file if given, else the one shipped with a bundled/synthetic source."""
    if contract_path:
        return Contract.load(contract_path)
    for uri in sources:
        contract = source_contract(uri)
        if contract is not None:
            return contract
    raise ConfigError(
        f"data.contract is not set and the sources {sources} ship no contract. Write one with "
        "`ray-ml data infer SOURCE > contract.yaml`, review it, and set data.contract=contract.yaml."
    )


@dataclass
class PreparedData:
    """Everything training needs from the data stage."""

    contract: Contract
    report: ValidationReport
    splits: Splits
    preprocessor: Preprocessor
    fingerprint: str

    def summary(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            **self.report.to_dict(),
            "splits": self.splits.plan.summary(),
            "features": self.preprocessor.num_features,
        }


def prepare_data(cfg: DataConfig, seed: int, run_dir: str | Path) -> PreparedData:
    """Run the data stage on the current Ray cluster.

    Args:
        cfg: The `data` config group.
        seed: Split seed (the run's seed).
        run_dir: Where the quarantine goes when `cfg.quarantine_dir` is not set.
    """
    contract = resolve_contract(list(cfg.sources), cfg.contract)
    quarantine = cfg.quarantine_dir or str(Path(run_dir) / "quarantine")
    checked = check_sources(
        list(cfg.sources),
        contract,
        merge=_value(cfg.merge),
        join_key=cfg.join_key,
        quarantine_dir=quarantine,
        max_reject_rate=cfg.max_reject_rate,
        num_blocks=cfg.num_blocks,
    )
    splits = split_dataset(
        checked.dataset,
        contract,
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction,
        seed=seed,
        stratify=cfg.stratify,
        kfold=cfg.kfold,
    )
    prep_cfg = preprocessing_kwargs(cfg)
    preprocessor = fit_preprocessor(splits.train, contract, **prep_cfg)  # train split only
    split_cfg = {
        "val": cfg.val_fraction,
        "test": cfg.test_fraction,
        "stratify": cfg.stratify,
        "kfold": cfg.kfold,
        "seed": seed,
    }
    fp = fingerprint(checked.report.digest, contract, {**prep_cfg, "split": split_cfg})
    return PreparedData(contract, checked.report, splits, preprocessor, fp)


def preprocessing_kwargs(cfg: DataConfig) -> dict[str, Any]:
    """The `fit_preprocessor` settings of a `data` config group (also refits per k-fold fold)."""
    return {
        "impute": _value(cfg.impute),
        "scale": _value(cfg.scale),
        "encode": _value(cfg.encode),
        "max_categories": cfg.max_categories,
    }


def _value(x: Any) -> Any:
    return getattr(x, "value", x)


def run_data_job(cfg: RunConfig) -> dict[str, Any]:
    """The `jobs.data` stage on its own: check, split and fit; writes the run's data artefacts.

    Writes `<storage_path>/<name>/data/` with `summary.json`, `preprocessor.json` and
    `contract.yaml`, the quarantine next to them, and returns the summary.
    """
    import time

    from ray_ml.cluster import start_ray, stop_ray

    t0 = time.perf_counter()
    run_dir = Path(cfg.storage_path).resolve() / cfg.name / "data"
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = start_ray(cfg.cluster)
    try:
        prepared = prepare_data(cfg.data, cfg.seed, run_dir)
    finally:
        stop_ray(handle)
    return write_data_artifacts(cfg, prepared, run_dir, time.perf_counter() - t0)


def write_data_artifacts(
    cfg: RunConfig, prepared: PreparedData, run_dir: Path, wall_s: float
) -> dict[str, Any]:
    """Write `summary.json`, `preprocessor.json` and `contract.yaml` to `run_dir`; return the summary."""
    summary = {
        "job": "data",
        "name": cfg.name,
        **prepared.summary(),
        "wall_s": round(wall_s, 3),
    }
    prepared.preprocessor.save(run_dir / "preprocessor.json")
    prepared.contract.save(run_dir / "contract.yaml")
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
