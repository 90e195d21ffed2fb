"""GPU ingest on one Ray Train worker: streaming batches vs the GPU shard cache vs a plain loop.

Called by `python -m benchmarks.bench_train --gpu` on a CUDA machine (the lent H100). Each
variant warms up first (CUDA and cuBLAS initialisation would otherwise make the first variant
look 2-3x slower, see RAY_NOTES.md); time-to-first-batch is reported separately from samples/s.

Variants, same MLP, same rows, batch 8192:
- `plain_cpu_batches`: plain PyTorch loop gathering CPU batches and copying them to the GPU;
- `plain_on_gpu`: plain loop with all data already on the GPU (the ceiling);
- `ray_streaming`: Ray Train worker, `get_dataset_shard` batches through the preprocessor;
- `ray_gpu_cache`: Ray Train worker with `ShardCache` (the default when the shard fits).
Targets: ray_streaming >= 1.1x plain_cpu_batches; ray_gpu_cache >= 0.95x plain_on_gpu.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

BATCH = 8192
EPOCHS = 3  # epoch 0 warm-up


def _model(num_features: int, device: Any) -> Any:
    from ray_ml.train import build_mlp

    return build_mlp(num_features, 1, [1024, 1024], dropout=0.0, norm="none", activation="relu").to(
        device
    )


def _train(model: Any, batches: Any) -> tuple[int, float | None]:
    import torch

    from ray_ml.train import loss_fn

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss = loss_fn("binary")
    n, first = 0, None
    t0 = time.perf_counter()
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        loss(model(x), y).backward()
        opt.step()
        if first is None:
            torch.cuda.synchronize()
            first = time.perf_counter() - t0
        n += len(y)
    torch.cuda.synchronize()
    return n, first


def _plain(table: pa.Table, prep: Any, on_gpu: bool) -> dict[str, Any]:
    import torch

    device = torch.device("cuda")
    x_all = torch.from_numpy(prep.transform(table))
    y_all = torch.from_numpy(prep.labels(table))
    if on_gpu:
        x_all, y_all = x_all.to(device), y_all.to(device)
    model = _model(prep.num_features, device)
    rates = []
    for epoch in range(EPOCHS):
        perm = torch.randperm(len(y_all), device=y_all.device)
        batches = (
            (x_all[i].to(device, non_blocking=True), y_all[i].to(device, non_blocking=True))
            for i in perm.split(BATCH)
        )
        t0 = time.perf_counter()
        n, _ = _train(model, batches)
        if epoch:
            rates.append(n / (time.perf_counter() - t0))
    return {"samples_per_s": sum(rates) / len(rates)}


def _ray_loop(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    from ray_ml.data import Preprocessor
    from ray_ml.train._torch import ShardCache, _cache_budget, _streamed

    prep = Preprocessor.from_dict(config["prep"])
    device = ray.train.torch.get_device()
    model = _model(prep.num_features, device)
    shard = ray.train.get_dataset_shard("train")
    t_setup = time.perf_counter()
    cache = (
        ShardCache.build(shard, prep, device, _cache_budget(device)) if config["cache"] else None
    )
    cache_s = time.perf_counter() - t_setup
    rates, firsts = [], []
    for epoch in range(EPOCHS):
        batches = (
            cache.batches(BATCH, epoch)
            if cache
            else _streamed(
                shard,
                prep,
                device,
                {"batch_size": BATCH, "prefetch_batches": 4, "pin_memory": True},
                epoch,
            )
        )
        t0 = time.perf_counter()
        n, first = _train(model, batches)
        firsts.append(first)
        if epoch:
            rates.append(n / (time.perf_counter() - t0))
    with tempfile.TemporaryDirectory() as d:
        Path(d, "r.json").write_text(
            json.dumps(
                {
                    "samples_per_s": sum(rates) / len(rates),
                    "time_to_first_batch_s": firsts,
                    "cache_build_s": cache_s,
                    "cached": cache is not None,
                }
            )
        )
        ray.train.report({}, checkpoint=ray.train.Checkpoint.from_directory(d))


def _ray(table: pa.Table, prep: Any, cache: bool) -> dict[str, Any]:
    import ray.data
    import ray.train
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(
        _ray_loop,
        train_loop_config={"prep": prep.to_dict(), "cache": cache},
        scaling_config=ray.train.ScalingConfig(
            num_workers=1, use_gpu=True, resources_per_worker={"CPU": 4, "GPU": 1}
        ),
        run_config=ray.train.RunConfig(
            name=f"bench-ingest-{time.time_ns()}", storage_path=tempfile.mkdtemp()
        ),
        datasets={"train": ray.data.from_arrow(table).materialize()},
    )
    with trainer.fit().checkpoint.as_directory() as d:
        return json.loads(Path(d, "r.json").read_text())


def run_gpu_ingest(table: pa.Table, prep: Any) -> dict[str, Any]:
    """All four variants; ratios against the two plain loops."""
    _plain(table.slice(0, BATCH * 4), prep, on_gpu=True)  # warm-up: CUDA context, cuBLAS
    out = {
        "plain_cpu_batches": _plain(table, prep, on_gpu=False),
        "plain_on_gpu": _plain(table, prep, on_gpu=True),
        "ray_streaming": _ray(table, prep, cache=False),
        "ray_gpu_cache": _ray(table, prep, cache=True),
    }
    out["streaming_over_plain_cpu_batches"] = (
        out["ray_streaming"]["samples_per_s"] / out["plain_cpu_batches"]["samples_per_s"]
    )
    out["cache_over_plain_on_gpu"] = (
        out["ray_gpu_cache"]["samples_per_s"] / out["plain_on_gpu"]["samples_per_s"]
    )
    return out
