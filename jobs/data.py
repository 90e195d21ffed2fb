"""Check, split and preprocess a dataset: python -m jobs.data experiment=demo [key=value ...]."""

import hydra
from omegaconf import DictConfig

from ray_ml._entry import run_job
from ray_ml.config import register_configs
from ray_ml.data import run_data_job

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="data")
def main(cfg: DictConfig) -> None:
    run_job(cfg, run_data_job)


if __name__ == "__main__":
    main()
