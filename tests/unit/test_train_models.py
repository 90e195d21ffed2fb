"""build_mlp, losses, scores and class weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

from ray_ml.errors import ConfigError
from ray_ml.train import (
    build_mlp,
    class_weights_balanced,
    loss_fn,
    output_size,
    predict_scores,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("norm", ["none", "batch", "layer"])
@pytest.mark.parametrize("activation", ["relu", "gelu", "silu"])
def test_mlp_shapes_for_every_norm_and_activation(norm: str, activation: str) -> None:
    torch.manual_seed(0)
    model = build_mlp(7, 3, [16, 8], dropout=0.2, norm=norm, activation=activation)
    out = model(torch.randn(5, 7))
    assert out.shape == (5, 3)
    out.sum().backward()  # trainable end to end
    block = model.hidden_0
    assert isinstance(block, nn.Sequential)
    assert isinstance(block.linear, nn.Linear)
    assert isinstance(block.act, {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}[activation])
    if norm == "none":
        assert "norm" not in dict(block.named_children())
    else:
        assert isinstance(block.norm, nn.BatchNorm1d if norm == "batch" else nn.LayerNorm)
    names = [n for n, _ in block.named_children()]
    assert names == ["linear", *(["norm"] if norm != "none" else []), "act", "dropout"]
    assert isinstance(model.output, nn.Linear) and model.output.out_features == 3


def test_mlp_without_hidden_layers_is_linear() -> None:
    model = build_mlp(4, 1, [])
    assert list(model.state_dict()) == ["output.weight", "output.bias"]


def test_state_dict_keys_do_not_depend_on_dropout() -> None:
    a = build_mlp(4, 2, [8, 8], dropout=0.0)
    b = build_mlp(4, 2, [8, 8], dropout=0.5)
    assert list(a.state_dict()) == list(b.state_dict())
    b.load_state_dict(a.state_dict())


def test_str_enums_are_accepted() -> None:
    from enum import StrEnum

    class Norm(StrEnum):
        layer = "layer"

    assert isinstance(build_mlp(3, 1, [4], norm=Norm.layer).hidden_0.norm, nn.LayerNorm)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_features": 0}, "num_features"),
        ({"num_outputs": 0}, "num_outputs"),
        ({"hidden_sizes": [8, 0]}, "model.hidden_sizes"),
        ({"dropout": 1.0}, "model.dropout"),
        ({"norm": "group"}, "model.norm must be one of"),
        ({"activation": "tanh"}, "model.activation must be one of"),
    ],
)
def test_build_mlp_rejects_bad_args(kwargs: dict, match: str) -> None:
    args = {"num_features": 4, "num_outputs": 1, "hidden_sizes": [8], **kwargs}
    with pytest.raises(ConfigError, match=match):
        build_mlp(**args)


def test_output_size() -> None:
    assert output_size("binary", 2) == 1
    assert output_size("regression", 0) == 1
    assert output_size("multiclass", 5) == 5
    with pytest.raises(ValueError, match="at least 2 classes"):
        output_size("multiclass", 1)
    with pytest.raises(ValueError, match="task must be one of"):
        output_size("ranking", 2)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.float32, torch.bool])
@pytest.mark.parametrize("logit_shape", [(6,), (6, 1)])
def test_binary_loss_accepts_label_dtypes(dtype: torch.dtype, logit_shape: tuple) -> None:
    torch.manual_seed(0)
    logits = torch.randn(*logit_shape, requires_grad=True)
    y = torch.tensor([0, 1, 1, 0, 1, 0]).to(dtype)
    weights = [0.75, 1.5]
    loss = loss_fn("binary", torch.tensor(weights))(logits, y)
    expected = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([2.0]))(
        logits.detach().reshape(-1), torch.tensor([0, 1, 1, 0, 1, 0], dtype=torch.float32)
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert logits.grad is not None


def test_binary_loss_without_weights() -> None:
    logits, y = torch.randn(8), torch.randint(0, 2, (8,))
    assert loss_fn("binary")(logits, y).item() == pytest.approx(
        nn.functional.binary_cross_entropy_with_logits(logits, y.float()).item()
    )


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8])
def test_multiclass_loss_accepts_integer_labels(dtype: torch.dtype) -> None:
    logits = torch.randn(10, 3)
    y = torch.randint(0, 3, (10,))
    w = torch.tensor([1.0, 2.0, 0.5])
    loss = loss_fn("multiclass", w)(logits, y.to(dtype))
    assert loss.item() == pytest.approx(nn.functional.cross_entropy(logits, y, weight=w).item())


@pytest.mark.parametrize("logit_shape", [(6,), (6, 1)])
def test_regression_loss(logit_shape: tuple) -> None:
    pred = torch.randn(*logit_shape)
    y = torch.randn(6, dtype=torch.float64)
    loss = loss_fn("regression")(pred, y)
    assert loss.item() == pytest.approx(
        ((pred.reshape(-1) - y.float()) ** 2).mean().item(), rel=1e-6
    )


def test_loss_weights_travel_with_the_module() -> None:
    loss = loss_fn("multiclass", [1.0, 2.0, 3.0])
    assert torch.equal(loss.state_dict()["weight"], torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(
        loss_fn("binary", [1.0, 3.0]).state_dict()["pos_weight"], torch.tensor([3.0])
    )


@pytest.mark.parametrize(
    ("task", "weights", "match"),
    [
        ("regression", [1.0, 1.0], "classification only"),
        ("binary", [1.0, 1.0, 1.0], "needs 2 class weights"),
        ("binary", [0.0, 1.0], "finite and > 0"),
    ],
)
def test_loss_rejects_bad_weights(task: str, weights: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        loss_fn(task, torch.tensor(weights))


def test_predict_scores() -> None:
    z = torch.tensor([[0.0], [2.0]])
    np.testing.assert_allclose(
        predict_scores("binary", z), 1 / (1 + np.exp(-np.array([0.0, 2.0]))), rtol=1e-6
    )
    zk = torch.randn(4, 3)
    p = predict_scores("multiclass", zk)
    assert p.shape == (4, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(predict_scores("regression", z), np.array([0.0, 2.0], np.float32))
    with pytest.raises(ValueError, match=r"\(n, k\)"):
        predict_scores("multiclass", torch.randn(4))
    with pytest.raises(ValueError, match=r"\(n,\) or \(n, 1\)"):
        predict_scores("binary", torch.randn(4, 2))


@pytest.mark.parametrize("counts", [[10, 90], [5, 5], [3, 50, 7, 140]])
def test_balanced_weights_match_sklearn(counts: list[int]) -> None:
    y = np.repeat(np.arange(len(counts)), counts)
    expected = compute_class_weight("balanced", classes=np.arange(len(counts)), y=y)
    np.testing.assert_allclose(class_weights_balanced(counts), expected)


def test_balanced_weights_reject_empty_class() -> None:
    with pytest.raises(ValueError, match="class index 1 has no rows"):
        class_weights_balanced([10, 0, 5])
    with pytest.raises(ValueError, match="at least 2 classes"):
        class_weights_balanced([10])
