"""Watch a served model, retrain on a trigger, canary the winner:
python -m jobs.monitor experiment=demo   (one tick and exit: monitor.max_ticks=1)
"""

import hydra
from omegaconf import DictConfig

from ray_ml._entry import run_job
from ray_ml.config import register_configs
from ray_ml.monitor import run_monitor_job

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="monitor")
def main(cfg: DictConfig) -> None:
    run_job(cfg, run_monitor_job)


if __name__ == "__main__":
    main()
