"""Data -> sweep -> winner -> registry -> serve -> smoke request -> report, as one job:
python -m jobs.pipeline experiment=demo   (rerun the same command to resume after a crash)
"""

import hydra
from omegaconf import DictConfig

from ray_ml._entry import run_job
from ray_ml.config import register_configs
from ray_ml.pipeline import run_pipeline

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="pipeline")
def main(cfg: DictConfig) -> None:
    run_job(cfg, run_pipeline)


if __name__ == "__main__":
    main()
