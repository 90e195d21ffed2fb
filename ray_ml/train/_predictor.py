"""Predictions from a model bundle: raw rows in, class values or numbers out.

`Predictor` is the one inference path shared by batch inference and serving. It applies the
bundle's own `Preprocessor.transform` (so serving cannot drift from training's preprocessing)
and then the model: a torch MLP rebuilt with `build_mlp(**model_config)` and weights read with
`torch.load(..., weights_only=True)`, or an `xgboost.Booster` read from its own model format.
Nothing here imports Ray; `Predictor.__call__` follows the `map_batches` calling convention.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import torch

from ray_ml.errors import BundleError, ContractError
from ray_ml.train._bundle import Bundle, _check_booster, load_bundle
from ray_ml.train._models import build_mlp, predict_scores

if TYPE_CHECKING:
    import pandas as pd
    import xgboost

__all__ = ["Predictor", "predict_batch"]

_THRESHOLD = 0.5  # binary: class 1 when p >= 0.5, as in compute_metrics


class Predictor:
    """A loaded bundle that predicts from raw rows (the source's columns, label not needed).

    Batch inference with Ray Data, one model copy per actor::

        ds.map_batches(
            Predictor,
            fn_constructor_args=(bundle_dir,),
            fn_constructor_kwargs={"keep_columns": ["id"]},
            batch_format="pyarrow",  # or "numpy" / "pandas"
            concurrency=2,
        )

    Each output batch has `prediction` (class values or floats), `scores` for classification
    (`(n, k)` class probabilities, in `classes` order) and the `keep_columns`.

    Args:
        bundle: A bundle directory or an already loaded `Bundle`.
        device: Torch device for MLP bundles (ignored for XGBoost).
        keep_columns: Input columns copied unchanged into `__call__`'s output (e.g. row ids).

    Raises:
        BundleError: The bundle is missing, corrupt, or its weights do not fit its config.
    """

    def __init__(
        self,
        bundle: str | Path | Bundle,
        *,
        device: str = "cpu",
        keep_columns: Sequence[str] = (),
    ) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.preprocessor = self.bundle.preprocessor
        self.task = self.bundle.task
        self.classes: list[Any] = list(self.preprocessor.classes)
        self.keep_columns = list(keep_columns)
        self.device = torch.device(device)
        self._mlp: torch.nn.Module | None = None
        self._booster: xgboost.Booster | None = None
        if self.bundle.model_kind == "mlp":
            self._mlp = self._load_mlp()
        else:
            self._booster = self._load_booster()

    @classmethod
    def from_bundle(
        cls, path: str | Path | Bundle, *, device: str = "cpu", keep_columns: Sequence[str] = ()
    ) -> Predictor:
        """Load the bundle at `path` (verifying its checksums) and its model."""
        return cls(path, device=device, keep_columns=keep_columns)

    def _load_mlp(self) -> torch.nn.Module:
        b = self.bundle
        try:
            model = build_mlp(**b.model_config)
            # weights_only=True: the file may only hold tensors, never pickled code.
            state = torch.load(b.weights_path, map_location=self.device, weights_only=True)
            model.load_state_dict(state, strict=True)
        except (TypeError, ValueError, RuntimeError, OSError) as exc:
            raise BundleError(
                f"model bundle {str(b.path)!r}: the MLP cannot be rebuilt from model_config.json "
                f"and {b.weights_path.name} ({exc}). Re-export the bundle."
            ) from None
        return model.to(self.device).eval()

    def _load_booster(self) -> xgboost.Booster:
        import xgboost

        b = self.bundle
        booster = xgboost.Booster()
        try:
            booster.load_model(str(b.weights_path))
            _check_booster(booster, self.preprocessor, where=f"model bundle {str(b.path)!r}")
        except (xgboost.core.XGBoostError, ValueError) as exc:
            raise BundleError(
                f"model bundle {str(b.path)!r}: the XGBoost model cannot be used ({exc}). "
                "Re-export the bundle."
            ) from None
        return booster

    @property
    def feature_names(self) -> list[str]:
        return list(self.preprocessor.feature_names)

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        """Scores of an already preprocessed float32 matrix `(n, num_features)`.

        Returns:
            Binary: `(n,)` probability of class 1. Multiclass: `(n, k)` probabilities.
            Regression: `(n,)` predictions.
        """
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.preprocessor.num_features:
            raise ValueError(
                f"features must have shape (n, {self.preprocessor.num_features}), but got "
                f"{x.shape}."
            )
        if self._mlp is not None:
            with torch.inference_mode():
                logits = self._mlp(torch.from_numpy(x).to(self.device))
            return predict_scores(self.task, logits)
        assert self._booster is not None  # one of the two is always set in __init__
        out = np.asarray(self._booster.inplace_predict(x), dtype=np.float32)
        return out.reshape(x.shape[0], -1) if self.task == "multiclass" else out.reshape(-1)

    def predict_table(
        self, rows: pa.Table | pd.DataFrame | list[dict[str, Any]] | Any
    ) -> np.ndarray:
        """Scores of raw rows; shapes as in `predict_features`.

        Args:
            rows: An Arrow table or record batch, a pandas DataFrame, a list of row dicts or a
                dict of columns, with the contract's feature columns.
        """
        return self.predict_features(self.preprocessor.transform(rows))

    def _class_index(self, scores: np.ndarray) -> np.ndarray:
        if self.task == "binary":
            return (scores >= _THRESHOLD).astype(np.int64)
        best: np.ndarray = scores.argmax(axis=1)
        return best

    def _per_class(self, scores: np.ndarray) -> np.ndarray:
        if self.task == "binary":
            return np.stack([1.0 - scores, scores], axis=1)
        return scores

    def predict(self, rows: pa.Table | pd.DataFrame | list[dict[str, Any]] | Any) -> dict[str, Any]:
        """Predictions as JSON-ready lists.

        Returns:
            `{"predictions": [...], "scores": [...]}`: predictions are class values (from
            `classes`) or floats; scores are one list of class probabilities per row, in
            `classes` order, or None for regression.
        """
        scores = self.predict_table(rows)
        if self.task == "regression":
            return {"predictions": scores.astype(np.float64).tolist(), "scores": None}
        idx = self._class_index(scores)
        return {
            "predictions": [self.classes[i] for i in idx.tolist()],
            "scores": self._per_class(scores).astype(np.float64).tolist(),
        }

    def __call__(
        self, batch: pa.Table | dict[str, np.ndarray] | pd.DataFrame
    ) -> dict[str, np.ndarray]:
        """Ray Data `map_batches` entry point (any batch_format: pyarrow, numpy or pandas).

        Returns:
            Columns `prediction`, `scores` (classification only, `(n, k)` float32) and the
            `keep_columns` of the input.
        """
        scores = self.predict_table(batch)
        out: dict[str, np.ndarray] = {}
        if self.task == "regression":
            out["prediction"] = scores
        else:
            out["prediction"] = np.asarray(self.classes)[self._class_index(scores)]
            out["scores"] = self._per_class(scores).astype(np.float32)
        for name in self.keep_columns:
            out[name] = _column(batch, name)
        return out


def _column(batch: Any, name: str) -> np.ndarray:
    names = batch.column_names if isinstance(batch, pa.Table) else list(batch.keys())
    if name not in names:
        raise ContractError(
            f"keep_columns names {name!r}, but the batch has no such column. Columns: {names}."
        )
    if isinstance(batch, pa.Table):
        values: np.ndarray = batch.column(name).to_numpy(zero_copy_only=False)
        return values
    return np.asarray(batch[name])


def predict_batch(
    batch: pa.Table | dict[str, np.ndarray] | pd.DataFrame,
    bundle_dir: str,
    keep_columns: Sequence[str] = (),
) -> dict[str, np.ndarray]:
    """`Predictor` as a `map_batches` function, for Ray Data tasks instead of an actor pool.

    Each worker process loads the bundle once and keeps it while the bundle's files are
    unchanged (a staging bundle rewritten in place is loaded again).

    Example::

        ds.map_batches(predict_batch, fn_kwargs={"bundle_dir": path, "keep_columns": ["id"]})
    """
    return _loaded(bundle_dir, _stamp(bundle_dir), tuple(keep_columns))(batch)


def _stamp(bundle_dir: str) -> tuple[tuple[str, int], ...]:
    """The bundle's files and their modification times: a rewrite changes it."""
    root = Path(bundle_dir)
    return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in root.iterdir() if p.is_file()))


@functools.lru_cache(maxsize=4)
def _loaded(
    bundle_dir: str, stamp: tuple[tuple[str, int], ...], keep: tuple[str, ...]
) -> Predictor:
    return Predictor(bundle_dir, keep_columns=keep)
