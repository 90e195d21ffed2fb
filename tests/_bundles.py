"""Real model bundles for serving tests, trained in-process in about a second (no Ray).

A small MLP fitted with plain PyTorch on the bundled breast cancer data, written with the same
`write_bundle` as training jobs. `broken=True` writes a bundle whose weights are NaN: it loads and
validates like any other, but every prediction is non-finite (a model fault, for canary tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from ray_ml.data import fit_preprocessor_table, reference_stats
from ray_ml.data._sources import bundled_contract, read_sample
from ray_ml.train import build_mlp, output_size, write_bundle

DATASET = "breast_cancer"


def rows(n: int | None = None, *, offset: int = 0) -> list[dict[str, Any]]:
    """Raw rows of the bundled dataset (label included, as in the source data)."""
    table = read_sample(f"sklearn://{DATASET}")
    if n is not None:
        table = table.slice(offset, n)
    return table.to_pylist()


def make_bundle(
    path: Path,
    *,
    seed: int = 0,
    epochs: int = 30,
    broken: bool = False,
    hidden: tuple[int, ...] = (16,),
    metrics: dict[str, Any] | None = None,
) -> Path:
    table: pa.Table = read_sample(f"sklearn://{DATASET}")
    contract = bundled_contract(DATASET)
    pre = fit_preprocessor_table(table, contract)
    config = {
        "num_features": pre.num_features,
        "num_outputs": output_size(pre.task, len(pre.classes)),
        "hidden_sizes": list(hidden),
        "dropout": 0.0,
        "norm": "none",
        "activation": "relu",
    }
    torch.manual_seed(seed)
    model = build_mlp(**config)
    x = torch.from_numpy(pre.transform(table))
    y = torch.from_numpy(pre.labels(table).astype(np.float32)).reshape(-1, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(model(x), y).backward()
        opt.step()
    model.eval()
    state = model.state_dict()
    if broken:
        state = {k: torch.full_like(v, float("nan")) for k, v in state.items()}
    return write_bundle(
        path,
        model_kind="mlp",
        model_config=config,
        state_dict=state,
        preprocessor=pre,
        contract=contract,
        reference_stats=reference_stats(table, contract),
        metrics=metrics or {},
    )
