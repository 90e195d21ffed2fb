"""The PyTorch per-worker loop run by Ray Train's TorchTrainer (DDP: gloo on CPU, NCCL on GPU).

Data comes from `ray.train.get_dataset_shard` as Arrow batches of raw (checked) rows and goes
through the run's `Preprocessor` inside the worker: the same function serving uses. Each epoch
ends with a validation pass whose predictions are gathered from every worker (metrics over the
whole validation set), an early-stopping decision every rank agrees on, and a checkpoint.

A checkpoint holds the model, optimizer, scheduler, RNG states, epoch, best weights so far and
the metric history. Dropout and shuffling are seeded from (seed, epoch, rank), so a run resumed
from epoch k replays epochs k+1.. exactly as the uninterrupted run would.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ray_ml.train._loop_common import LoopSpec, maybe_chaos_kill, validation_part
from ray_ml.train._metrics import MetricAccumulator
from ray_ml.train._models import build_mlp, loss_fn, output_size, predict_scores

__all__ = ["ShardCache", "load_torch_checkpoint", "torch_train_loop_per_worker"]

STATE_FILE = "state.pt"
PROGRESS_FILE = "progress.json"
# Scalar validation metrics reported each epoch (the full dict, per class, is for the bundle).
_REPORTED = (
    "accuracy",
    "f1",
    "f1_macro",
    "roc_auc",
    "pr_auc",
    "log_loss",
    "mse",
    "rmse",
    "mae",
    "r2",
)


def _model_kwargs(spec: LoopSpec) -> dict[str, Any]:
    prep = spec.preprocessing()
    m = spec.model
    return {
        "num_features": prep.num_features,
        "num_outputs": output_size(spec.task, len(spec.classes)),
        "hidden_sizes": list(m["hidden_sizes"]),
        "dropout": float(m["dropout"]),
        "norm": str(m["norm"]),
        "activation": str(m["activation"]),
    }


def _optimizer(model: torch.nn.Module, t: dict[str, Any]) -> torch.optim.Optimizer:
    if t["optimizer"] == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=t["lr"], momentum=0.9, weight_decay=t["weight_decay"]
        )
    return torch.optim.AdamW(model.parameters(), lr=t["lr"], weight_decay=t["weight_decay"])


def _scheduler(
    opt: torch.optim.Optimizer, t: dict[str, Any], total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    warmup = int(t.get("warmup_fraction", 0.0) * total_steps)
    if t["lr_schedule"] == "cosine":

        def cosine(step: int) -> float:
            if step < warmup:
                return (step + 1) / max(warmup, 1)
            progress = (step - warmup) / max(total_steps - warmup, 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

        return torch.optim.lr_scheduler.LambdaLR(opt, cosine)
    if t["lr_schedule"] == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=t["lr"],
            total_steps=max(total_steps, 1),
            pct_start=max(t.get("warmup_fraction", 0.0), 0.05),
        )
    return None


class ShardCache:
    """A worker's whole train shard as device tensors, permuted on the device every epoch.

    On an H100 this ran 2.2x a loop copying CPU batches, equal to data already on the GPU
    (see RAY_NOTES.md): after the first pass, no host work or copies remain in the loop.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    @classmethod
    def build(
        cls, shard: Any, prep: Any, device: torch.device, budget_bytes: int, batch_size: int = 65536
    ) -> ShardCache | None:
        """Stream `shard` through `prep` into `device` memory; None if it exceeds the budget."""
        xs: list[torch.Tensor] = []
        ys: list[torch.Tensor] = []
        used = 0
        for batch in shard.iter_batches(batch_size=batch_size, batch_format="pyarrow"):
            x = torch.from_numpy(prep.transform(batch))
            y = torch.from_numpy(prep.labels(batch))
            used += x.numel() * x.element_size() + y.numel() * y.element_size()
            if used > budget_bytes:
                return None  # does not fit: the caller streams instead
            xs.append(x.to(device, non_blocking=True))
            ys.append(y.to(device, non_blocking=True))
        if not ys:
            return None
        return cls(torch.cat(xs), torch.cat(ys))

    def batches(self, batch_size: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator(device=self.y.device).manual_seed(seed)
        order = torch.randperm(len(self.y), device=self.y.device, generator=generator)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            yield self.x[idx], self.y[idx]


def _streamed(
    shard: Any, prep: Any, device: torch.device, t: dict[str, Any], shuffle_seed: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches from Ray Data's streaming iterator, preprocessed and moved to `device`."""
    for batch in shard.iter_batches(
        batch_size=t["batch_size"],
        batch_format="pyarrow",
        prefetch_batches=t.get("prefetch_batches", 1),
        local_shuffle_buffer_size=t.get("local_shuffle_buffer") or None,
        local_shuffle_seed=shuffle_seed if t.get("local_shuffle_buffer") else None,
    ):
        x = torch.from_numpy(prep.transform(batch))
        y = torch.from_numpy(prep.labels(batch))
        if t.get("pin_memory") and device.type == "cuda":
            x, y = x.pin_memory(), y.pin_memory()
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def _cache_budget(device: torch.device) -> int:
    if device.type != "cuda":
        return 0
    free, _total = torch.cuda.mem_get_info(device)
    return int(free * 0.5)  # leave room for activations, gradients and optimizer state


def _gather(
    acc: MetricAccumulator, loss_sum: float, count: int
) -> tuple[MetricAccumulator, float, int]:
    """All-gather (y, scores) and loss sums from every worker (no-op on one worker)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return acc, loss_sum, count
    parts: list[Any] = [None] * dist.get_world_size()
    y, s = acc.to_arrays()
    dist.all_gather_object(parts, (y, s, loss_sum, count))
    merged = MetricAccumulator()
    total_loss, total_n = 0.0, 0
    for py, ps, pl, pn in parts:  # rank order: identical on every rank
        if len(py):
            merged.add(py, ps)
        total_loss += pl
        total_n += pn
    return merged, total_loss, total_n


def _evaluate(
    model: torch.nn.Module,
    spec: LoopSpec,
    loss: torch.nn.Module,
    device: torch.device,
    rank: int,
    world: int,
) -> dict[str, Any]:
    import ray.train

    prep = spec.preprocessing()
    shard = ray.train.get_dataset_shard("validation")
    acc = MetricAccumulator()
    loss_sum, n = 0.0, 0
    model.eval()
    with torch.no_grad():
        for batch in shard.iter_batches(
            batch_size=max(spec.train["batch_size"], 1024), batch_format="pyarrow"
        ):
            part = validation_part(batch, rank, world)
            if part.num_rows == 0:
                continue
            x = torch.from_numpy(prep.transform(part)).to(device)
            y_np = prep.labels(part)
            logits = model(x).float()
            y = torch.from_numpy(y_np).to(device)
            loss_sum += float(loss(logits, y)) * part.num_rows
            n += part.num_rows
            acc.add(y_np, predict_scores(spec.task, logits.cpu()))
    acc, loss_sum, n = _gather(acc, loss_sum, n)
    metrics: dict[str, Any] = {"val_loss": loss_sum / max(n, 1), "val_rows": n}
    if n:
        full = acc.compute(spec.task, spec.classes)
        metrics.update(
            {f"val_{k}": full[k] for k in _REPORTED if k in full and full[k] is not None}
        )
    return metrics


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside DDP (what checkpoints and bundles store)."""
    inner = getattr(model, "module", model)
    return inner if isinstance(inner, torch.nn.Module) else model


def _save(
    directory: Path,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    sched: Any,
    best_state: dict[str, torch.Tensor] | None,
    progress: dict[str, Any],
) -> None:
    module = _unwrap(model)
    state = {
        "model": module.state_dict(),
        "best_model": best_state if best_state is not None else module.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict() if sched is not None else {},
        "torch_rng": torch.get_rng_state(),
    }
    torch.save(state, directory / STATE_FILE)
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    progress = {**progress, "numpy_rng": [kind, np.asarray(keys).tolist(), pos, has_gauss, cached]}
    (directory / PROGRESS_FILE).write_text(json.dumps(progress))


def torch_train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point: `TorchTrainer(torch_train_loop_per_worker, train_loop_config=spec)`."""
    import ray.train
    import ray.train.torch

    spec = LoopSpec.from_dict(config)
    t = spec.train
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    prep = spec.preprocessing()

    torch.manual_seed(spec.seed)  # identical initial weights on every rank
    model_kwargs = _model_kwargs(spec)
    model = ray.train.torch.prepare_model(build_mlp(**model_kwargs))
    opt = _optimizer(model, t)
    steps_per_epoch = max(1, math.ceil(spec.train_rows / world / t["batch_size"]))
    sched = _scheduler(opt, t, steps_per_epoch * t["epochs"])
    weights = (
        torch.tensor(spec.class_weights, dtype=torch.float32, device=device)
        if spec.class_weights
        else None
    )
    loss = loss_fn(spec.task, weights)
    mode_max = t.get("early_stopping_mode", "min") == "max"
    watch = t.get("early_stopping_metric", "val_loss")
    use_bf16 = t.get("mixed_precision") == "bf16" and device.type == "cuda"

    start_epoch, bad_epochs = 0, 0
    best: float | None = None
    history: list[dict[str, Any]] = []
    best_state: dict[str, torch.Tensor] | None = None
    ckpt = ray.train.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            state = torch.load(Path(d) / STATE_FILE, map_location=device, weights_only=True)
            progress = json.loads((Path(d) / PROGRESS_FILE).read_text())
        _unwrap(model).load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None and state["scheduler"]:
            sched.load_state_dict(state["scheduler"])
        best_state = state["best_model"]
        start_epoch = progress["epoch"] + 1
        best, bad_epochs, history = progress["best"], progress["bad_epochs"], progress["history"]
        if progress.get("stopped_early"):
            start_epoch = t["epochs"]

    train_shard = ray.train.get_dataset_shard("train")
    cache = None
    if t.get("gpu_cache") and device.type == "cuda" and start_epoch < t["epochs"]:
        cache = ShardCache.build(train_shard, prep, device, _cache_budget(device))
    for epoch in range(start_epoch, t["epochs"]):
        t0 = time.perf_counter()
        torch.manual_seed(spec.seed * 1_000_003 + epoch * 1009 + rank)  # dropout: replayable
        model.train()
        loss_sum, seen = 0.0, 0
        batches = (
            cache.batches(t["batch_size"], spec.seed * 7919 + epoch * 31 + rank)
            if cache is not None
            else _streamed(train_shard, prep, device, t, spec.seed + epoch)
        )
        for x, y in batches:
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                out = model(x)
            batch_loss = loss(out.float(), y)
            opt.zero_grad(set_to_none=True)
            batch_loss.backward()
            if t.get("grad_clip", 0) > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), t["grad_clip"])
            opt.step()
            if sched is not None:
                sched.step()
            loss_sum += float(batch_loss.detach()) * len(y)
            seen += len(y)
        metrics: dict[str, Any] = {
            "epoch": epoch,
            "start_epoch": start_epoch,  # > 0 when this run resumed from a checkpoint
            "train_loss": loss_sum / max(seen, 1),
            "train_rows": seen,
        }
        metrics.update(_evaluate(model, spec, loss, device, rank, world))
        metrics["epoch_s"] = time.perf_counter() - t0
        value = metrics.get(watch)
        improved = value is not None and (
            best is None or (value > best if mode_max else value < best)
        )
        if improved:
            best, bad_epochs = value, 0
            best_state = {k: v.detach().clone() for k, v in _unwrap(model).state_dict().items()}
        else:
            bad_epochs += 1
        patience = t.get("early_stopping_patience", 0)
        stop = patience > 0 and bad_epochs >= patience
        history.append({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        metrics.update({"best": best, "stopped_early": stop})
        last = stop or epoch == t["epochs"] - 1
        if last or (epoch + 1) % t.get("checkpoint_every_epochs", 1) == 0:
            with tempfile.TemporaryDirectory() as tmp:
                if rank == 0:
                    progress = {
                        "epoch": epoch,
                        "best": best,
                        "bad_epochs": bad_epochs,
                        "history": history,
                        "stopped_early": stop,
                        "model_kwargs": model_kwargs,
                    }
                    _save(Path(tmp), model, opt, sched, best_state, progress)
                checkpoint = ray.train.Checkpoint.from_directory(tmp) if rank == 0 else None
                ray.train.report(metrics, checkpoint=checkpoint)
        else:
            ray.train.report(metrics)
        maybe_chaos_kill(spec, epoch, rank)
        if stop:
            break


def load_torch_checkpoint(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(best model state dict, progress) from a checkpoint directory written by the loop."""
    d = Path(directory)
    state = torch.load(d / STATE_FILE, map_location="cpu", weights_only=True)
    return state["best_model"], json.loads((d / PROGRESS_FILE).read_text())
