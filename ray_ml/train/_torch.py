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

import functools
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ray_ml.config import LRSchedule, MixedPrecision, Optimizer, SortMode, TrainConfig
from ray_ml.train._loop_common import (
    LATENCY_ROWS,
    LoopSpec,
    latency_ms_per_1k,
    maybe_chaos_kill,
    validation_part,
)
from ray_ml.train._metrics import MetricAccumulator
from ray_ml.train._models import build_mlp, loss_fn, output_size, predict_scores
from ray_ml.train._session import LoopSession, TrainSession, rank0_checkpoint

__all__ = [
    "ShardCache",
    "load_torch_checkpoint",
    "torch_train_loop",
    "torch_train_loop_per_worker",
]

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
        "hidden_sizes": list(m.hidden_sizes),
        "dropout": float(m.dropout),
        "norm": m.norm.value,
        "activation": m.activation.value,
    }


def _optimizer(model: torch.nn.Module, t: TrainConfig) -> torch.optim.Optimizer:
    if t.optimizer == Optimizer.sgd:
        return torch.optim.SGD(
            model.parameters(), lr=t.lr, momentum=0.9, weight_decay=t.weight_decay
        )
    return torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)


def _scheduler(
    opt: torch.optim.Optimizer, t: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    warmup = int(t.warmup_fraction * total_steps)
    if t.lr_schedule == LRSchedule.cosine:

        def cosine(step: int) -> float:
            if step < warmup:
                return (step + 1) / max(warmup, 1)
            progress = (step - warmup) / max(total_steps - warmup, 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

        return torch.optim.lr_scheduler.LambdaLR(opt, cosine)
    if t.lr_schedule == LRSchedule.onecycle:
        return torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=t.lr,
            total_steps=max(total_steps, 1),
            pct_start=max(t.warmup_fraction, 0.05),
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
    shard: Any, prep: Any, device: torch.device, t: TrainConfig, shuffle_seed: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches from Ray Data's streaming iterator, preprocessed and moved to `device`."""
    for batch in shard.iter_batches(
        batch_size=t.batch_size,
        batch_format="pyarrow",
        prefetch_batches=t.prefetch_batches,
        local_shuffle_buffer_size=t.local_shuffle_buffer or None,
        local_shuffle_seed=shuffle_seed if t.local_shuffle_buffer else None,
    ):
        x = torch.from_numpy(prep.transform(batch))
        y = torch.from_numpy(prep.labels(batch))
        if t.pin_memory and device.type == "cuda":
            x, y = x.pin_memory(), y.pin_memory()
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def _fits_cpu_cache(spec: LoopSpec, world: int, num_features: int) -> bool:
    """Whether a worker's preprocessed train shard fits `train.cpu_cache_mb`."""
    rows = math.ceil(spec.train_rows / max(world, 1))
    width = num_features * 4 + 8  # float32 features, an int64 label at most
    return rows * width <= spec.train.cpu_cache_mb * 2**20


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
    session: LoopSession,
) -> dict[str, Any]:
    rank, world = session.rank, session.world
    prep = spec.preprocessing()
    shard = session.shard("validation")
    acc = MetricAccumulator()
    loss_sum, n = 0.0, 0
    model.eval()
    with torch.no_grad():
        for batch in shard.iter_batches(
            batch_size=max(spec.train.batch_size, 1024), batch_format="pyarrow"
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
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    progress = {**progress, "numpy_rng": [kind, np.asarray(keys).tolist(), pos, has_gauss, cached]}
    (directory / PROGRESS_FILE).write_text(json.dumps(progress))


def _latency_input(spec: LoopSpec, session: LoopSession, device: torch.device) -> torch.Tensor:
    """A fixed batch of `LATENCY_ROWS` preprocessed validation rows (tiled when fewer)."""
    prep = spec.preprocessing()
    for batch in session.shard("validation").iter_batches(
        batch_size=LATENCY_ROWS, batch_format="pyarrow"
    ):
        x = prep.transform(batch)
        reps = -(-LATENCY_ROWS // max(len(x), 1))
        return torch.from_numpy(np.tile(x, (reps, 1))[:LATENCY_ROWS]).to(device)
    return torch.zeros((LATENCY_ROWS, prep.num_features), device=device)


def _latency_ms(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Inference ms per `LATENCY_ROWS` rows through the model as it stands (eval mode)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        ms = latency_ms_per_1k(lambda: _predict_on_host(model, x))
    model.train(was_training)
    return ms


def _predict_on_host(model: torch.nn.Module, x: torch.Tensor) -> Any:
    out = model(x)
    return out.cpu()  # the copy to the host is part of serving a prediction


def torch_train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point: `TorchTrainer(torch_train_loop_per_worker, train_loop_config={"spec": spec})`."""
    spec: LoopSpec = config["spec"]
    torch_train_loop(spec, TrainSession(total=spec.train.epochs))


def torch_train_loop(spec: LoopSpec, session: LoopSession) -> None:
    """Train the MLP of `spec` in `session` (a Ray Train worker or a Tune trial's process)."""
    cpu0 = time.process_time()  # a reused trial process has run other trials before
    t = spec.train
    rank, world = session.rank, session.world
    device = session.device()
    prep = spec.preprocessing()

    torch.manual_seed(spec.seed)  # identical initial weights on every rank
    model_kwargs = _model_kwargs(spec)
    model = session.prepare_model(build_mlp(**model_kwargs))
    opt = _optimizer(model, t)
    steps_per_epoch = max(1, math.ceil(spec.train_rows / world / t.batch_size))
    sched = _scheduler(opt, t, steps_per_epoch * t.epochs)
    weights = (
        torch.tensor(spec.class_weights, dtype=torch.float32, device=device)
        if spec.class_weights
        else None
    )
    loss = loss_fn(spec.task, weights)
    mode_max = t.early_stopping_mode == SortMode.max
    watch = t.early_stopping_metric
    use_bf16 = t.mixed_precision == MixedPrecision.bf16 and device.type == "cuda"

    start_epoch, bad_epochs = 0, 0
    best: float | None = None
    history: list[dict[str, Any]] = []
    best_state: dict[str, torch.Tensor] | None = None
    with session.checkpoint_dir() as d:
        resumed = d is not None
        if resumed:
            state = torch.load(Path(d) / STATE_FILE, map_location=device, weights_only=True)
            progress = json.loads((Path(d) / PROGRESS_FILE).read_text())
    if resumed:
        _unwrap(model).load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None and state["scheduler"]:
            sched.load_state_dict(state["scheduler"])
        best_state = state["best_model"]
        start_epoch = progress["epoch"] + 1
        best, bad_epochs, history = progress["best"], progress["bad_epochs"], progress["history"]
        if progress.get("stopped_early"):
            start_epoch = t.epochs

    train_shard = session.shard("train")
    latency_x = _latency_input(spec, session, device) if rank == 0 else None
    cache = None
    if t.gpu_cache and device.type == "cuda" and start_epoch < t.epochs:
        cache = ShardCache.build(train_shard, prep, device, _cache_budget(device))
    elif (
        device.type == "cpu"
        and start_epoch < t.epochs
        and _fits_cpu_cache(spec, world, prep.num_features)
    ):
        # Decided from the split's row count, the same on every rank: a rank that cached and
        # one that streams would iterate the shared split a different number of times.
        cache = ShardCache.build(train_shard, prep, device, budget_bytes=2**62)
    for epoch in range(start_epoch, t.epochs):
        t0 = time.perf_counter()
        torch.manual_seed(spec.seed * 1_000_003 + epoch * 1009 + rank)  # dropout: replayable
        model.train()
        loss_sum_t, seen = torch.zeros((), device=device), 0
        batches = (
            cache.batches(t.batch_size, spec.seed * 7919 + epoch * 31 + rank)
            if cache is not None
            else _streamed(train_shard, prep, device, t, spec.seed + epoch)
        )
        for x, y in batches:
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                out = model(x)
            batch_loss = loss(out.float(), y)
            opt.zero_grad(set_to_none=True)
            batch_loss.backward()
            if t.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
            opt.step()
            if sched is not None:
                sched.step()
            # Summed on the device: a float() per batch would force a host sync every step.
            loss_sum_t = loss_sum_t + batch_loss.detach() * len(y)
            seen += len(y)
        metrics: dict[str, Any] = {
            "epoch": epoch,
            "start_epoch": start_epoch,  # > 0 when this run resumed from a checkpoint
            "train_loss": float(loss_sum_t) / max(seen, 1),
            "train_rows": seen,
        }
        metrics.update(_evaluate(model, spec, loss, device, session))
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
        patience = t.early_stopping_patience
        stop = patience > 0 and bad_epochs >= patience
        history.append({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        last = stop or epoch == t.epochs - 1
        # `training_done`: the run ended on its own terms (all epochs, or early stopping); a
        # trial whose last report lacks it was stopped from outside (a scheduler, a budget).
        metrics.update({"best": best, "stopped_early": stop, "training_done": last})
        metrics["cpu_s"] = time.process_time() - cpu0  # this worker's CPU time in the loop
        if latency_x is not None:
            metrics["latency_ms"] = _latency_ms(model, latency_x)
        if last or (epoch + 1) % t.checkpoint_every_epochs == 0:
            progress = {
                "epoch": epoch,
                "best": best,
                "bad_epochs": bad_epochs,
                "history": history,
                "stopped_early": stop,
                "model_kwargs": model_kwargs,
            }
            save = functools.partial(
                _save, model=model, opt=opt, sched=sched, best_state=best_state, progress=progress
            )
            with rank0_checkpoint(session, save) as d:
                session.report(metrics, d)
        else:
            session.report(metrics)
        maybe_chaos_kill(spec, epoch, rank, session.settle_s)
        if stop:
            break


def load_torch_checkpoint(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(best model state dict, progress) from a checkpoint directory written by the loop."""
    d = Path(directory)
    state = torch.load(d / STATE_FILE, map_location="cpu", weights_only=True)
    return state["best_model"], json.loads((d / PROGRESS_FILE).read_text())
