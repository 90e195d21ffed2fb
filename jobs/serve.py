"""Serve a registered model over HTTP until Ctrl-C: python -m jobs.serve [serve.alias=production]

Prints `{"event": "ready", "url": ...}` once the app answers, then the job summary on exit.
"""

import hydra
from omegaconf import DictConfig

from ray_ml._entry import run_job
from ray_ml.config import register_configs
from ray_ml.serve import run_serve_job

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="serve")
def main(cfg: DictConfig) -> None:
    run_job(cfg, run_serve_job)


if __name__ == "__main__":
    main()
