"""Where a training loop runs: a Ray Train worker, or a Tune trial's own process.

The PyTorch and XGBoost loops are written once against `LoopSession`; two implementations run
them:

- `TrainSession`: inside a Ray Train worker (`TorchTrainer` / `XGBoostTrainer`), for runs with
  several workers (DDP, distributed XGBoost) and for `jobs.train`.
- `TrialSession`: inside a Tune trial's own process, for a trial whose config fits one worker.
  It needs no Train controller, no worker group, no DDP set-up and no dataset split: on this
  2-core box those cost 15-25 s per trial, against 0.3 s for an epoch on 569 rows. It reports to
  Tune directly, with real Tune checkpoints, so Tune itself restores a trial after a failure and
  pauses and resumes HyperBand's trials.

Both report the same metrics; a session adds nothing but the checkpoint plumbing.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from ray_ml.console import emit_progress, progress_enabled

__all__ = ["LoopSession", "TrainSession", "TrialSession"]


class LoopSession(Protocol):
    """What a training loop needs from the process it runs in."""

    rank: int
    world: int
    # How long a fault-injection drill waits after a checkpointed report before it kills the
    # process (None: Ray Train's default, a few health-check polls).
    settle_s: float | None

    def device(self) -> Any:
        """The torch device this worker trains on."""

    def prepare_model(self, model: Any) -> Any:
        """The model moved to the device (and wrapped in DDP with several workers)."""

    def shard(self, name: str) -> Any:
        """This worker's part of dataset `name` (anything with `iter_batches`)."""

    def checkpoint_dir(self) -> Any:
        """A context manager yielding the directory of the checkpoint to resume from, or None."""

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
        """Report one iteration's metrics, with a checkpoint directory from rank 0."""


def progress_fields(metrics: dict[str, Any], total: int | None, unit: str) -> dict[str, Any]:
    """The `train` progress bar's update for one report's metrics."""
    step = metrics.get("epoch", metrics.get("round"))
    shown = [
        f"{k} {metrics[k]:.4g}"
        for k in ("train_loss", "val_loss")
        if isinstance(metrics.get(k), int | float)
    ]
    return {
        "n": int(step) + 1 if isinstance(step, int | float) else None,
        "total": total,
        "unit": unit,
        "postfix": ", ".join(shown),
    }


class TrainSession:
    """A Ray Train worker (every call goes to `ray.train`).

    Args:
        total: Epochs (or boosting rounds) the run makes in all; rank 0 sends the driver's
            `train` progress bar one update per report (`ray_ml.console.emit_progress`).
        unit: What one report counts, for the bar.
    """

    settle_s: float | None = None

    def __init__(self, total: int | None = None, unit: str = "epochs") -> None:
        import ray.train

        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.total = total
        self.unit = unit

    def device(self) -> Any:
        import ray.train.torch

        return ray.train.torch.get_device()

    def prepare_model(self, model: Any) -> Any:
        import ray.train.torch

        return ray.train.torch.prepare_model(model)

    def shard(self, name: str) -> Any:
        import ray.train

        return ray.train.get_dataset_shard(name)

    def checkpoint_dir(self) -> Any:
        import ray.train

        return _as_directory(ray.train.get_checkpoint())

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
        import ray.train

        ckpt = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=ckpt)
        if self.rank == 0 and progress_enabled():
            emit_progress("train", **progress_fields(metrics, self.total, self.unit))


class TrialSession:
    """A Tune trial's own process, one worker: datasets whole, reports straight to Tune.

    Args:
        datasets: Dataset name -> a (materialized) Ray Dataset; iterating one starts no task.
        use_gpu: Train on the GPU Tune gave the trial.
        extra: Called at every report; its metrics (the trial's dollars so far, say) are added.
    """

    rank = 0
    world = 1
    settle_s: float | None = 0.5  # tune.report returned: Tune has the result and its checkpoint

    def __init__(
        self,
        datasets: dict[str, Any],
        use_gpu: bool = False,
        extra: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self._datasets = datasets
        self._use_gpu = use_gpu
        self._extra = extra

    def device(self) -> Any:
        import torch

        return torch.device("cuda" if self._use_gpu and torch.cuda.is_available() else "cpu")

    def prepare_model(self, model: Any) -> Any:
        return model.to(self.device())

    def shard(self, name: str) -> Any:
        return self._datasets[name]

    def checkpoint_dir(self) -> Any:
        from ray import tune

        return _as_directory(tune.get_checkpoint())

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
        from ray import tune

        out = {**metrics, **(self._extra() if self._extra else {})}
        ckpt = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        tune.report(out, checkpoint=ckpt)


@contextmanager
def _as_directory(ckpt: Any) -> Iterator[str | None]:
    """A Train or Tune checkpoint as a local directory, or None when there is none."""
    if ckpt is None:
        yield None
        return
    with ckpt.as_directory() as d:
        yield d


@contextmanager
def rank0_checkpoint(session: LoopSession, save: Callable[[Path], None]) -> Iterator[str | None]:
    """A temporary checkpoint directory written by `save` on rank 0 (None on other ranks)."""
    with tempfile.TemporaryDirectory() as tmp:
        if session.rank == 0:
            save(Path(tmp))
            yield tmp
        else:
            yield None
