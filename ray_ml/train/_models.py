"""The torch MLP, its loss per task and the mapping from logits to scores.

`build_mlp` takes only JSON-friendly arguments so that a bundle can store them as
`model_config.json` and rebuild the exact module with `build_mlp(**model_config)` before loading
the weights. Module names are fixed (`hidden_0.linear.weight`, ..., `output.weight`) so that a state
dict does not depend on the dropout rate or on the order of construction.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ray_ml.errors import ConfigError

__all__ = [
    "ACTIVATIONS",
    "NORMS",
    "build_mlp",
    "class_weights_balanced",
    "loss_fn",
    "output_size",
    "predict_scores",
]

NORMS = ("none", "batch", "layer")
ACTIVATIONS = ("relu", "gelu", "silu")
_TASKS = ("binary", "multiclass", "regression")


def _check_task(task: str) -> str:
    task = str(task)
    if task not in _TASKS:
        raise ValueError(f"task must be one of {list(_TASKS)}, but got task={task!r}.")
    return task


def build_mlp(
    num_features: int,
    num_outputs: int,
    hidden_sizes: Sequence[int] = (),
    dropout: float = 0.0,
    norm: str = "none",
    activation: str = "relu",
) -> nn.Sequential:
    """A feed-forward network: `[Linear -> Norm -> Activation -> Dropout] * len(hidden_sizes)`,
    then a linear output layer (logits; no activation).

    Args:
        num_features: Input width (`Preprocessor.num_features`).
        num_outputs: Output width (`output_size(task, num_classes)`).
        hidden_sizes: Hidden-layer widths; empty gives a linear model.
        dropout: Dropout probability after each hidden layer, in [0, 1).
        norm: `none`, `batch` (BatchNorm1d) or `layer` (LayerNorm); str enums are accepted.
        activation: `relu`, `gelu` or `silu`; str enums are accepted.

    Returns:
        An `nn.Sequential` of named blocks `hidden_0`, `hidden_1`, ... and `output`.

    Raises:
        ConfigError: An argument is out of range or not one of the choices.
    """
    norm, activation = str(norm), str(activation)
    if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
        raise ConfigError(
            f"num_features must be an integer >= 1, but got num_features={num_features!r}. "
            "Check that the preprocessor produced at least one feature column."
        )
    if isinstance(num_outputs, bool) or not isinstance(num_outputs, int) or num_outputs < 1:
        raise ConfigError(
            f"num_outputs must be an integer >= 1, but got num_outputs={num_outputs!r}. "
            "Use output_size(task, num_classes)."
        )
    sizes = list(hidden_sizes)
    if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in sizes):
        raise ConfigError(
            f"model.hidden_sizes must contain only integer widths >= 1, but got "
            f"hidden_sizes={sizes}. Use e.g. `model.hidden_sizes=[64,32]`, or [] for a linear model."
        )
    if not 0.0 <= float(dropout) < 1.0:
        raise ConfigError(
            f"model.dropout must be in [0, 1), but got dropout={dropout!r}. Use e.g. 0.1, or 0 "
            "to turn dropout off."
        )
    if norm not in NORMS:
        raise ConfigError(f"model.norm must be one of {list(NORMS)}, but got norm={norm!r}.")
    if activation not in ACTIVATIONS:
        raise ConfigError(
            f"model.activation must be one of {list(ACTIVATIONS)}, but got "
            f"activation={activation!r}."
        )
    blocks: OrderedDict[str, nn.Module] = OrderedDict()
    width = num_features
    for i, h in enumerate(sizes):
        layers: OrderedDict[str, nn.Module] = OrderedDict(linear=nn.Linear(width, h))
        if norm == "batch":
            layers["norm"] = nn.BatchNorm1d(h)
        elif norm == "layer":
            layers["norm"] = nn.LayerNorm(h)
        layers["act"] = _activation(activation)
        # Always present (p=0 is the identity) so module names never depend on the rate.
        layers["dropout"] = nn.Dropout(float(dropout))
        blocks[f"hidden_{i}"] = nn.Sequential(layers)
        width = h
    blocks["output"] = nn.Linear(width, num_outputs)
    return nn.Sequential(blocks)


def _activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "gelu":
        return nn.GELU()
    return nn.SiLU()


def output_size(task: str, num_classes: int) -> int:
    """Width of the output layer: 1 for binary (one logit) and regression, k for multiclass.

    Raises:
        ValueError: Unknown task, or fewer than 2 classes for multiclass.
    """
    task = _check_task(task)
    if task != "multiclass":
        return 1
    if num_classes < 2:
        raise ValueError(
            f"task=multiclass needs at least 2 classes, but got num_classes={num_classes}. "
            "Check the label column's categories in the data contract."
        )
    return int(num_classes)


class _BinaryLoss(nn.Module):
    """BCE-with-logits that accepts (n,) or (n, 1) logits and int/bool/float 0-1 targets."""

    pos_weight: torch.Tensor | None

    def __init__(self, pos_weight: torch.Tensor | None) -> None:
        super().__init__()
        # A buffer follows `.to(device)` together with the model.
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        target = y.to(logits.dtype).reshape(logits.shape)
        return nn.functional.binary_cross_entropy_with_logits(
            logits, target, pos_weight=self.pos_weight
        )


class _MulticlassLoss(nn.Module):
    """Cross entropy on (n, k) logits; targets are class indices of any integer (or float) dtype."""

    weight: torch.Tensor | None

    def __init__(self, weight: torch.Tensor | None) -> None:
        super().__init__()
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits, y.reshape(-1).long(), weight=self.weight)


class _RegressionLoss(nn.Module):
    """Mean squared error on (n,) or (n, 1) predictions."""

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(logits, y.to(logits.dtype).reshape(logits.shape))


def loss_fn(task: str, class_weights: torch.Tensor | Sequence[float] | None = None) -> nn.Module:
    """The training loss of a task, as a module called as `loss(logits, y)`.

    Targets are converted inside the loss, so `y` can come straight from the data loader:
    binary 0/1 as int, bool or float; multiclass indices of any integer dtype; regression floats.
    Being a module, the loss moves its weights with `.to(device)`.

    Args:
        task: `binary` (BCE with logits), `multiclass` (cross entropy) or `regression` (MSE).
        class_weights: Per-class weights in class-index order (e.g. from
            `class_weights_balanced`). Binary: length 2, applied as `pos_weight = w1 / w0`
            (BCE's positive-class weighting; equal to weighting both classes up to a constant
            factor). Multiclass: length k. Must be None for regression.

    Raises:
        ValueError: Unknown task, weights for regression, wrong weight length or non-positive
            weights.
    """
    task = _check_task(task)
    w: torch.Tensor | None = None
    if class_weights is not None:
        if task == "regression":
            raise ValueError(
                "class_weights apply to classification only, but task=regression. Set "
                "`train.class_weighting=none`."
            )
        w = torch.as_tensor(class_weights, dtype=torch.float32).reshape(-1).clone()
        if not bool(torch.all(w > 0)) or not bool(torch.all(torch.isfinite(w))):
            raise ValueError(f"class_weights must be finite and > 0, but got {w.tolist()}.")
        if task == "binary" and w.numel() != 2:
            raise ValueError(
                f"task=binary needs 2 class weights [w0, w1], but got {w.numel()}: {w.tolist()}."
            )
    if task == "binary":
        return _BinaryLoss(None if w is None else (w[1] / w[0]).reshape(1))
    if task == "multiclass":
        return _MulticlassLoss(w)
    return _RegressionLoss()


def predict_scores(task: str, logits: torch.Tensor) -> np.ndarray:
    """Logits -> scores on the CPU: binary `(n,)` sigmoid probability of class 1, multiclass
    `(n, k)` softmax probabilities, regression `(n,)` raw predictions (float32).

    Raises:
        ValueError: Unknown task, or logits of the wrong shape for the task.
    """
    task = _check_task(task)
    with torch.no_grad():
        z = logits.detach().float()
        if task == "multiclass":
            if z.ndim != 2:
                raise ValueError(f"multiclass logits must be (n, k), but got {tuple(z.shape)}.")
            out = torch.softmax(z, dim=1)
        else:
            if z.ndim == 2 and z.shape[1] == 1:
                z = z[:, 0]
            if z.ndim != 1:
                raise ValueError(
                    f"{task} logits must be (n,) or (n, 1), but got {tuple(logits.shape)}."
                )
            out = torch.sigmoid(z) if task == "binary" else z
        return out.cpu().numpy()


def class_weights_balanced(counts: Sequence[int]) -> list[float]:
    """scikit-learn's "balanced" class weights: `n / (k * count_i)` for class i.

    Args:
        counts: Rows per class in class-index order (of the training split).

    Raises:
        ValueError: Fewer than 2 classes, or a class with no rows (its weight is undefined).
    """
    c = [int(x) for x in counts]
    if len(c) < 2:
        raise ValueError(f"class weights need at least 2 classes, but got counts={c}.")
    empty = [i for i, x in enumerate(c) if x <= 0]
    if empty:
        raise ValueError(
            f"class index {empty[0]} has no rows in the training split (counts={c}), so its "
            "balanced weight is undefined. Use a stratified split, more data, or "
            "`train.class_weighting=none`."
        )
    n, k = sum(c), len(c)
    return [n / (k * x) for x in c]
