"""The data stage of every job: check -> split -> fit preprocessing -> fingerprint."""

from __future__ import annotations

import json
import re
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
    "source_name",
    "run_data_job",
    "write_data_artifacts",
]


INFER_SAMPLE_ROWS = 100_000


def source_name(uri: str) -> str:
    """A run or dataset name from a source: its file's stem (`data/churn.csv.gz` -> `churn`)."""
    stem = Path(uri.rstrip("/*")).name.split(".")[0]
    return re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-") or "data"


def resolve_contract(
    sources: list[str],
    contract_path: str | None,
    *,
    label: str | None = None,
    infer_to: str | Path | None = None,
) -> Contract:
    """The contract file if given, else the one shipped with a bundled/synthetic source, else
    one inferred from a sample of the first source (when `infer_to` names where to write it).

    Args:
        sources: The data sources.
        contract_path: `data.contract`.
        label: `data.label`: the label column; checked against a given contract's label.
        infer_to: Where an inferred contract is written (and announced in one console line);
            None: no inference, a source without a contract is an error.

    Raises:
        ConfigError: No contract and no inference, or `label` is not the contract's label.
    """
    contract = Contract.load(contract_path) if contract_path else None
    for uri in sources if contract is None else ():
        contract = source_contract(uri)
        if contract is not None:
            break
    if contract is None and infer_to is not None:
        contract = _infer(sources, label, Path(infer_to))
    if contract is None:
        raise ConfigError(
            f"data.contract is not set and the sources {sources} ship no contract. Write one "
            "with `ray-ml data infer SOURCE > contract.yaml`, review it, and set "
            "data.contract=contract.yaml."
        )
    if label is not None and label != contract.label:
        raise ConfigError(
            f"data.label={label!r}, but the contract's label is {contract.label!r}. Fix: drop "
            f"data.label, or set it to {contract.label!r}, or use a contract for {label!r}."
        )
    return contract


def _infer(sources: list[str], label: str | None, path: Path) -> Contract:
    from ray_ml.console import current_console
    from ray_ml.data._contract import infer_contract
    from ray_ml.data._sources import read_sample

    sample = read_sample(sources[0], rows=INFER_SAMPLE_ROWS)
    if label is not None and label not in sample.column_names:
        raise ConfigError(
            f"data.label={label!r} is not a column of {sources[0]}. Columns: "
            f"{sample.column_names}. Fix: set data.label to one of them."
        )
    contract = infer_contract(sample, name=source_name(sources[0]), label=label)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        contract.to_yaml(
            f"# Inferred from {sample.num_rows} rows of {sources[0]} by the data stage.\n"
            "# Review it, then pass it as data.contract=PATH to make it the rule.\n"
        )
    )
    ids = [c.name for c in contract.columns if c.role.value == "id"]
    features = [c for c in contract.columns if c.role.value != "id" and c.name != contract.label]
    kinds = ", ".join(
        f"{sum(1 for c in features if c.type.value == k)} {k}"
        for k in ("int", "float", "category", "string", "bool")
        if any(c.type.value == k for c in features)
    )
    current_console().say(
        "data",
        f"contract inferred from {sample.num_rows} rows: label {contract.label!r} "
        f"({contract.task.value}), {len(features)} features ({kinds})"
        + (f", ids {ids}" if ids else "")
        + f" -> {path}",
    )
    return contract


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
    contract = resolve_contract(
        list(cfg.sources),
        cfg.contract,
        label=cfg.label,
        infer_to=Path(run_dir) / "contract.yaml",
    )
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
