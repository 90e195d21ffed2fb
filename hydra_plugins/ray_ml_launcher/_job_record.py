"""What Hydra's `run_job` records for a job, done for a job that runs somewhere else.

Hydra's basic launcher calls `hydra.core.utils.run_job`, which, around the task function, gives
the job its output dir (`hydra.sweep.dir`/`hydra.sweep.subdir`), writes `.hydra/config.yaml`,
`hydra.yaml` and `overrides.yaml` there, and fills the `JobReturn`: `cfg` is the task's config
without the `hydra` node, `hydra_cfg` the `hydra` node alone (with `job.id`, `job.num` and
`runtime.output_dir` set), `overrides` the job's overrides. `job_record` and `write_job_files`
do the same on the launching machine, without running anything.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

__all__ = ["job_record", "write_job_files"]


def job_record(sweep_config: DictConfig) -> JobReturn:
    """The job's `JobReturn` as `run_job` fills it before the task runs (status still UNKNOWN).

    Args:
        sweep_config: The job's config from `load_sweep_config`, with `hydra.job.id` and
            `hydra.job.num` set; not modified.

    Returns:
        The record; `working_dir` is the job's output dir (absolute), created.
    """
    config = copy.deepcopy(sweep_config)
    saved = HydraConfig.instance().cfg
    try:
        HydraConfig.instance().set_config(config)  # `${hydra:...}` in the subdir reads it
        output_dir = os.path.abspath(
            os.path.join(
                str(OmegaConf.select(config, "hydra.sweep.dir")),
                str(OmegaConf.select(config, "hydra.sweep.subdir")),
            )
        )
        with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
            config.hydra.runtime.output_dir = output_dir
        HydraConfig.instance().set_config(config)
        hydra_cfg = copy.deepcopy(HydraConfig.instance().cfg)
    finally:
        HydraConfig.instance().cfg = saved
    task_cfg = copy.deepcopy(config)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    overrides = OmegaConf.to_container(config.hydra.overrides.task)
    assert isinstance(overrides, list)
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    return JobReturn(
        overrides=[str(o) for o in overrides],
        cfg=task_cfg,
        hydra_cfg=hydra_cfg,  # type: ignore[arg-type]  # HydraConfig.cfg is a DictConfig
        working_dir=output_dir,
        task_name=str(config.hydra.job.name),
    )


def write_job_files(record: JobReturn) -> None:
    """`.hydra/config.yaml`, `hydra.yaml` and `overrides.yaml` in the job's output dir, as
    `run_job` writes them (none when `hydra.output_subdir` is null)."""
    assert record.hydra_cfg is not None and record.working_dir is not None
    subdir = record.hydra_cfg.hydra.output_subdir
    if subdir is None:
        return
    hydra_dir = Path(record.working_dir) / str(subdir)
    hydra_dir.mkdir(parents=True, exist_ok=True)
    for name, node in [
        ("config.yaml", record.cfg),
        ("hydra.yaml", record.hydra_cfg),
        ("overrides.yaml", OmegaConf.create(list(record.overrides or []))),
    ]:
        (hydra_dir / name).write_text(OmegaConf.to_yaml(node), encoding="utf-8")
