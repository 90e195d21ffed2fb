"""A cost-aware sweep, then the winner retrained and registered: python -m jobs.tune experiment=demo."""

import hydra
from omegaconf import DictConfig

from ray_ml._entry import run_job
from ray_ml.config import register_configs
from ray_ml.tune import run_tune_job

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="tune")
def main(cfg: DictConfig) -> None:
    run_job(cfg, run_tune_job)


if __name__ == "__main__":
    main()
