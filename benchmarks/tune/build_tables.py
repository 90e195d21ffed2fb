"""Build the Tier B tables of issue #12 from real training, one report per fidelity step.

Two tables, each a zstd-compressed Parquet file in the format of `benchmarks/tune/tables.py`
(config columns, `step`, `val_metric`, `test_metric`, `cost_s`, `infer_ms`; both metrics are
lower-is-better losses, so the metadata says `mode=min`):

- `xgb_hist_synth60k.parquet`: XGBoost `tree_method="hist"`, binary log loss on a synthetic
  60,000-row task (`make_classification`, 20 features: 8 informative, 4 redundant, 8 noise,
  35% positives), split 60/20/20. Fidelity: boosting rounds, a step every `XGB_EVERY` rounds up
  to `XGB_ROUNDS` (step s = the model after `s * XGB_EVERY` rounds).
- `mlp_digits.parquet`: a torch MLP (ReLU, dropout, Adam with L2 weight decay), cross-entropy
  on sklearn's bundled 8x8 digits (1,797 rows, standardized on the train split), split
  60/20/20. Fidelity: epochs 1..`MLP_EPOCHS`.

Configs come from a scrambled Sobol design over a grid of levels per hyperparameter (geometric
for log-scaled ones), deduplicated in design order, so `--configs N` is the first N configs of
the full table for the same `--seed`, and `tables.py` infers each parameter's scale from its
levels. Each config trains once, single-threaded, with a hook at each step that records:

- `val_metric`, `test_metric`: the loss of the model at that step on the validation and the
  test split;
- `cost_s`: CPU seconds (`time.process_time`, one thread) from the trial's start (training data
  included) to the end of that step's *validation* evaluation, which a real trial pays to
  report; the test evaluation and the latency timing are measured and subtracted;
- `infer_ms`: wall milliseconds per 1,000 rows to predict the validation split with the model
  at that step, the median of a few repeats (`inplace_predict` from a NumPy array for XGBoost,
  so no prediction cache helps).

    python -m benchmarks.tune.build_tables --out benchmarks/tune/tables/           # both, full
    python -m benchmarks.tune.build_tables --out benchmarks/tune/tables/ --only mlp
    python -m benchmarks.tune.build_tables --out /tmp/tables --configs 20          # reduced

A reduced or re-seeded build gets a suffix (`xgb_hist_synth60k_n20.parquet`, `..._s1`), so it
never overwrites the shipped tables. Progress goes to stderr, one line per ~10% of configs.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one thread per trial, set before numpy loads

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Mapping, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks._common import environment  # noqa: E402
from benchmarks.tune.tables import RESERVED_COLUMNS, Table, load_parquet  # noqa: E402
from ray_ml.errors import ConfigError  # noqa: E402
from ray_ml.train import latency_ms_per_1k  # noqa: E402

__all__ = [
    "Dim",
    "Split",
    "build_mlp_table",
    "build_xgb_table",
    "digits_split",
    "main",
    "mlp_rows",
    "sample_configs",
    "synth_split",
    "write_table",
    "xgb_rows",
]

DATA_SEED = 0  # the datasets and splits are fixed; `--seed` moves the design and the training
XGB_ROUNDS = 150
XGB_EVERY = 5  # 30 steps: a report per boosting round would make the replay 5x longer
XGB_CONFIGS = 300
MLP_EPOCHS = 30
MLP_CONFIGS = 300
LATENCY_REPEATS = 3
LOG_EPS = 1e-15  # probabilities clipped here, so a diverged model's loss stays finite
PACKAGES = ("xgboost", "torch", "scikit-learn", "numpy", "scipy", "pyarrow")


# --------------------------------------------------------------------------- design
@dataclass(frozen=True)
class Dim:
    """One hyperparameter and its levels (the values the table may hold).

    Attributes:
        name: The column name, as the trainer's parameter is called.
        levels: The values, ascending for numeric ones.
    """

    name: str
    levels: tuple[int | float, ...]

    def __post_init__(self) -> None:
        if len(self.levels) < 2 or len(set(self.levels)) != len(self.levels):
            raise ConfigError(
                f"`{self.name}` must have at least 2 distinct levels, but got "
                f"levels={self.levels!r}. Fix: list each value once."
            )


def _geom(lo: float, hi: float, n: int) -> tuple[float, ...]:
    # 4 significant digits keep the table readable; the spacing stays geometric enough for
    # tables.py to infer a log scale (its ratio-spread test allows 3x).
    return tuple(float(f"{v:.4g}") for v in np.geomspace(lo, hi, n))


def _lin(lo: float, hi: float, n: int) -> tuple[float, ...]:
    return tuple(round(float(v), 6) for v in np.linspace(lo, hi, n))


XGB_SPACE = (
    Dim("max_depth", tuple(range(2, 11))),
    Dim("learning_rate", _geom(0.01, 0.5, 9)),
    Dim("subsample", _lin(0.5, 1.0, 6)),
    Dim("colsample_bytree", _lin(0.5, 1.0, 6)),
    Dim("min_child_weight", _geom(1.0, 50.0, 8)),
    Dim("reg_lambda", _geom(1e-3, 10.0, 9)),
    Dim("max_bin", (32, 64, 256)),
)
MLP_SPACE = (
    Dim("width", (16, 32, 64, 128, 256)),
    Dim("depth", (1, 2, 3)),
    Dim("lr", _geom(1e-4, 1e-1, 7)),
    Dim("batch_size", (16, 32, 64, 128)),
    Dim("weight_decay", _geom(1e-6, 1e-2, 9)),
    Dim("dropout", _lin(0.0, 0.5, 6)),
)


def sample_configs(space: Sequence[Dim], n: int, seed: int) -> list[dict[str, int | float]]:
    """`n` distinct configs from a scrambled Sobol design, each coordinate snapped to a level.

    The design's points are taken in order and duplicates skipped, so the first `k` configs of
    a call with `n >= k` are the configs of a call with `n = k` (a reduced table is a subset).

    Raises:
        ConfigError: `n` is not positive or exceeds the grid's size.
    """
    from scipy.stats import qmc

    grid = math.prod(len(d.levels) for d in space)
    if not 0 < n <= grid:
        raise ConfigError(
            f"`configs` must be in 1..{grid} (the grid's size), but got configs={n}. "
            f"Fix: pass `--configs` between 1 and {grid}."
        )
    seen: set[tuple[int | float, ...]] = set()
    out: list[dict[str, int | float]] = []
    m = 10
    while len(out) < n:
        # random_base2 redraws the same sequence from its start, longer: the prefix is stable.
        points = qmc.Sobol(len(space), scramble=True, seed=seed).random_base2(m)
        seen.clear()
        out.clear()
        for u in points:
            values = tuple(
                d.levels[min(int(x * len(d.levels)), len(d.levels) - 1)]
                for d, x in zip(space, u, strict=True)
            )
            if values not in seen:
                seen.add(values)
                out.append(dict(zip((d.name for d in space), values, strict=True)))
                if len(out) == n:
                    break
        m += 1
    return out


def _trial_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence((seed, index)).generate_state(1)[0] & 0x7FFFFFFF)


# ----------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Split:
    """Train, validation and test arrays (`float32` features, integer labels)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    description: str


def _split(x: np.ndarray, y: np.ndarray, description: str) -> Split:
    order = np.random.default_rng(DATA_SEED).permutation(len(y))
    a, b = int(0.6 * len(y)), int(0.8 * len(y))
    tr, va, te = order[:a], order[a:b], order[b:]
    x = x.astype(np.float32)
    return Split(x[tr], y[tr], x[va], y[va], x[te], y[te], description)


def synth_split(n_samples: int = 60_000) -> Split:
    """The XGBoost task: `make_classification` with a fixed seed, split 60/20/20."""
    from sklearn.datasets import make_classification

    kwargs: dict[str, Any] = dict(
        n_features=20,
        n_informative=8,
        n_redundant=4,
        n_repeated=0,  # the other 8 are noise
        n_clusters_per_class=2,
        weights=[0.65],
        flip_y=0.03,  # label noise keeps the best log loss well above 0
        class_sep=0.8,
        random_state=DATA_SEED,
    )
    x, y = make_classification(n_samples=n_samples, **kwargs)
    return _split(x, y, f"sklearn make_classification(n_samples={n_samples}, {_kw(kwargs)})")


def digits_split() -> Split:
    """The MLP task: sklearn's bundled digits, split 60/20/20, standardized on train."""
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    x, y = load_digits(return_X_y=True)
    s = _split(x, y, "")
    scaler = StandardScaler().fit(s.x_train)

    def f(a: np.ndarray) -> np.ndarray:
        return np.asarray(scaler.transform(a), dtype=np.float32)

    return Split(
        f(s.x_train),
        s.y_train,
        f(s.x_val),
        s.y_val,
        f(s.x_test),
        s.y_test,
        "sklearn load_digits (1797 x 64, 10 classes), StandardScaler fitted on train",
    )


def _kw(kwargs: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


# ------------------------------------------------------------------------ training
class _Clock:
    """CPU seconds since the trial's start, minus the bookkeeping excluded from its cost."""

    def __init__(self) -> None:
        self.start = time.process_time()
        self.excluded = 0.0

    def cost(self) -> float:
        return time.process_time() - self.start - self.excluded

    def exclude_since(self, t: float) -> None:
        self.excluded += time.process_time() - t


def xgb_rows(
    configs: Sequence[Mapping[str, int | float]],
    data: Split,
    *,
    seed: int,
    rounds: int = XGB_ROUNDS,
    every: int = XGB_EVERY,
    repeats: int = LATENCY_REPEATS,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Train each config once and return its rows, one per `every` boosting rounds."""
    import xgboost as xgb

    dval = xgb.DMatrix(data.x_val, label=data.y_val, nthread=1)
    dtest = xgb.DMatrix(data.x_test, label=data.y_test, nthread=1)
    rows: list[dict[str, Any]] = []

    def logloss(bst: xgb.Booster, dm: xgb.DMatrix, name: str, it: int) -> float:
        # eval_set updates the booster's prediction cache for `dm` by the new trees only, as a
        # trial reporting through `evals` would; the text carries max_digits10 digits.
        return float(bst.eval_set([(dm, name)], it).rsplit(":", 1)[1])

    class Record(xgb.callback.TrainingCallback):
        def __init__(self, config: Mapping[str, int | float], clock: _Clock) -> None:
            super().__init__()
            self.config, self.clock = config, clock

        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            done = epoch + 1
            if done % every:
                return False
            val = logloss(model, dval, "val", epoch)
            cost = self.clock.cost()
            t = time.process_time()
            test = logloss(model, dtest, "test", epoch)
            infer = latency_ms_per_1k(
                lambda: model.inplace_predict(data.x_val, iteration_range=(0, done)),
                rows=len(data.y_val),
                repeats=repeats,
            )
            rows.append(
                {
                    **self.config,
                    "step": done // every,
                    "val_metric": val,
                    "test_metric": test,
                    "cost_s": cost,
                    "infer_ms": infer,
                }
            )
            self.clock.exclude_since(t)
            return False

    for i, config in enumerate(configs):
        params = {
            "objective": "binary:logistic",
            "eval_metric": "logloss",
            "tree_method": "hist",
            "nthread": 1,
            "seed": _trial_seed(seed, i),
            "verbosity": 0,
            **config,
        }
        clock = _Clock()  # the trial starts with its training data
        dtrain = xgb.DMatrix(data.x_train, label=data.y_train, nthread=1)
        xgb.train(params, dtrain, rounds, callbacks=[Record(config, clock)], verbose_eval=False)
        if progress is not None:
            progress(i + 1)
    return rows


def mlp_rows(
    configs: Sequence[Mapping[str, int | float]],
    data: Split,
    *,
    seed: int,
    epochs: int = MLP_EPOCHS,
    repeats: int = LATENCY_REPEATS,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Train each config once and return its rows, one per epoch."""
    import torch
    from torch import nn

    torch.set_num_threads(1)
    x_tr, y_tr = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train).long()
    x_va, y_va = torch.from_numpy(data.x_val), torch.from_numpy(data.y_val).long()
    x_te, y_te = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test).long()
    n_classes = int(max(y_tr.max(), y_va.max(), y_te.max())) + 1
    log_eps = math.log(LOG_EPS)

    def loss_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        with torch.no_grad():
            logp = torch.log_softmax(model(x), dim=1)
        # A diverged model (NaN or inf logits) gets the clipped loss, not a NaN the table rejects.
        logp = torch.nan_to_num(logp, nan=log_eps).clamp(min=log_eps)
        return float(-logp.gather(1, y[:, None]).mean())

    rows: list[dict[str, Any]] = []
    for i, config in enumerate(configs):
        width, depth, batch = int(config["width"]), int(config["depth"]), int(config["batch_size"])
        torch.manual_seed(_trial_seed(seed, i))
        gen = torch.Generator().manual_seed(_trial_seed(seed, i))
        clock = _Clock()
        layers: list[nn.Module] = []
        fan_in = x_tr.shape[1]
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width), nn.ReLU(), nn.Dropout(float(config["dropout"]))]
            fan_in = width
        model = nn.Sequential(*layers, nn.Linear(fan_in, n_classes))
        opt = torch.optim.Adam(
            model.parameters(), lr=float(config["lr"]), weight_decay=float(config["weight_decay"])
        )
        for epoch in range(1, epochs + 1):
            model.train()
            order = torch.randperm(len(y_tr), generator=gen)
            for b in range(0, len(order), batch):
                idx = order[b : b + batch]
                loss = nn.functional.cross_entropy(model(x_tr[idx]), y_tr[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            model.eval()
            val = loss_of(model, x_va, y_va)  # the report's evaluation: part of the cost
            cost = clock.cost()
            t = time.process_time()
            test = loss_of(model, x_te, y_te)

            def predict(model: nn.Module = model) -> object:
                with torch.no_grad():
                    return torch.softmax(model(x_va), dim=1)

            infer = latency_ms_per_1k(predict, rows=len(y_va), repeats=repeats)
            rows.append(
                {
                    **config,
                    "step": epoch,
                    "val_metric": val,
                    "test_metric": test,
                    "cost_s": cost,
                    "infer_ms": infer,
                }
            )
            clock.exclude_since(t)
        if progress is not None:
            progress(i + 1)
    return rows


# ---------------------------------------------------------------------------- output
def write_table(
    rows: Sequence[Mapping[str, Any]], path: str | Path, metadata: Mapping[str, str]
) -> Table:
    """Write `rows` as zstd Parquet with `metadata` in the schema, then load it back.

    Returns:
        The table as `benchmarks.tune.tables.load_parquet` reads it: loading it is the check
        that the file keeps the format.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not rows:
        raise ConfigError(f"no rows for {str(path)!r}. Fix: build at least one config.")
    params = [k for k in rows[0] if k not in RESERVED_COLUMNS]
    cols = {c: [r[c] for r in rows] for c in (*params, *RESERVED_COLUMNS)}
    arrow = pa.table(cols).replace_schema_metadata(dict(metadata))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(arrow, path, compression="zstd")
    return load_parquet(path)


def _metadata(
    *,
    task: str,
    metric: str,
    fidelity: str,
    per_step: int,
    space: Sequence[Dim],
    data: Split,
    n_configs: int,
    seed: int,
    cost: str,
    infer: str,
    command: str,
    wall_s: float,
) -> dict[str, str]:
    env = environment(PACKAGES)
    return {
        "mode": "min",  # tables.py's key: both metrics are losses, lower is better
        "metric": metric,
        "direction": "lower is better",
        "task": task,
        "data": data.description,
        "split": f"60/20/20 train/val/test, permutation seed {DATA_SEED}: "
        f"{len(data.y_train)}/{len(data.y_val)}/{len(data.y_test)} rows",
        "fidelity": fidelity,
        "fidelity_per_step": str(per_step),
        "space": json.dumps({d.name: list(d.levels) for d in space}),
        "design": f"scrambled Sobol (scipy.stats.qmc, seed {seed}) snapped to the levels, "
        "duplicates skipped",
        "n_configs": str(n_configs),
        "seed": str(seed),
        "cost_s": cost,
        "infer_ms": infer,
        "builder": command,
        "versions": json.dumps(env["versions"]),
        "machine": json.dumps(env["machine"]),
        "build_date": datetime.now(UTC).isoformat(timespec="seconds"),
        "build_wall_s": f"{wall_s:.0f}",
    }


class _Progress:
    """One stderr line each time another ~10% of the configs is done."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.start, self.shown = label, total, time.monotonic(), 0

    def __call__(self, done: int) -> None:
        tenth = 10 * done // self.total
        if tenth <= self.shown and done < self.total:
            return
        self.shown = tenth
        spent = time.monotonic() - self.start
        left = spent / done * (self.total - done)
        print(
            f"[{self.label}] {done}/{self.total} configs ({100 * done // self.total}%), "
            f"{spent:.0f} s, ~{left:.0f} s left",
            file=sys.stderr,
            flush=True,
        )


def _file_name(base: str, n_configs: int, default: int, seed: int) -> str:
    return base + (f"_n{n_configs}" if n_configs != default else "") + (f"_s{seed}" if seed else "")


def build_xgb_table(
    out: str | Path,
    *,
    n_configs: int = XGB_CONFIGS,
    seed: int = 0,
    data: Split | None = None,
    rounds: int = XGB_ROUNDS,
    every: int = XGB_EVERY,
    command: str = "",
) -> Path:
    """Train the XGBoost table and write `xgb_hist_synth60k[_nN][_sS].parquet` under `out`."""
    if rounds < every or rounds % every:
        raise ConfigError(
            f"`rounds` must be a positive multiple of every={every}, but got rounds={rounds}. "
            "Fix: pick rounds = k * every."
        )
    configs = sample_configs(XGB_SPACE, n_configs, seed)
    data = data if data is not None else synth_split()
    start = time.monotonic()
    rows = xgb_rows(
        configs,
        data,
        seed=seed,
        rounds=rounds,
        every=every,
        progress=_Progress("xgb", len(configs)),
    )
    meta = _metadata(
        task="binary classification, XGBoost tree_method=hist, binary:logistic, nthread=1",
        metric="log_loss",
        fidelity="boosting rounds",
        per_step=every,
        space=XGB_SPACE,
        data=data,
        n_configs=len(configs),
        seed=seed,
        cost=f"CPU seconds (process_time, nthread=1) from the trial's start (DMatrix of the "
        f"training data) through round s*{every} and its validation log loss (eval_set, "
        "incremental); test evaluation and latency timing excluded",
        infer=f"wall ms per 1,000 rows, median of {LATENCY_REPEATS} inplace_predict calls on "
        "the validation split (NumPy float32) with iteration_range=(0, s*"
        f"{every}), one thread",
        command=command,
        wall_s=time.monotonic() - start,
    )
    path = Path(out) / (_file_name("xgb_hist_synth60k", n_configs, XGB_CONFIGS, seed) + ".parquet")
    write_table(rows, path, meta)
    return path


def build_mlp_table(
    out: str | Path,
    *,
    n_configs: int = MLP_CONFIGS,
    seed: int = 0,
    data: Split | None = None,
    epochs: int = MLP_EPOCHS,
    command: str = "",
) -> Path:
    """Train the MLP table and write `mlp_digits[_nN][_sS].parquet` under `out`."""
    configs = sample_configs(MLP_SPACE, n_configs, seed)
    data = data if data is not None else digits_split()
    start = time.monotonic()
    rows = mlp_rows(configs, data, seed=seed, epochs=epochs, progress=_Progress("mlp", n_configs))
    meta = _metadata(
        task="10-class classification, torch MLP (ReLU, dropout, Adam with L2 weight_decay), "
        "one thread",
        metric="cross_entropy",
        fidelity="epochs",
        per_step=1,
        space=MLP_SPACE,
        data=data,
        n_configs=len(configs),
        seed=seed,
        cost="CPU seconds (process_time, torch.set_num_threads(1)) from the trial's start "
        "(model and optimizer creation) through epoch s and its validation cross-entropy; "
        "test evaluation and latency timing excluded",
        infer=f"wall ms per 1,000 rows, median of {LATENCY_REPEATS} forward passes (softmax, "
        "no_grad, eval mode) over the validation split, one thread",
        command=command,
        wall_s=time.monotonic() - start,
    )
    path = Path(out) / (_file_name("mlp_digits", n_configs, MLP_CONFIGS, seed) + ".parquet")
    write_table(rows, path, meta)
    return path


# ------------------------------------------------------------------------------ main
def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/tune/tables", help="folder for the .parquet")
    ap.add_argument("--only", choices=("xgb", "mlp"), help="build one table")
    ap.add_argument(
        "--configs", type=int, help=f"configs per table (default {XGB_CONFIGS} and {MLP_CONFIGS})"
    )
    ap.add_argument("--seed", type=int, default=0, help="design and training seed")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, build the tables, print one summary line per table."""
    args = _args(argv)
    command = shlex.join(
        ["python", "-m", "benchmarks.tune.build_tables", *(sys.argv[1:] if argv is None else argv)]
    )
    try:
        for key in ("xgb", "mlp"):
            if args.only in (None, key):
                _build_one(key, args, command)
    except ConfigError as exc:  # a bad `--configs`: say so, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _build_one(key: str, args: argparse.Namespace, command: str) -> None:
    builders: dict[str, tuple[Callable[..., Path], int]] = {
        "xgb": (build_xgb_table, XGB_CONFIGS),
        "mlp": (build_mlp_table, MLP_CONFIGS),
    }
    build, default = builders[key]
    t = time.monotonic()
    path = build(
        args.out,
        n_configs=default if args.configs is None else args.configs,
        seed=args.seed,
        command=command,
    )
    table = load_parquet(path)
    print(
        f"{path}: {table.n_configs} configs x {table.max_steps} steps, best final val "
        f"{np.min(table.final_val):.4f}, {path.stat().st_size / 1e6:.2f} MB, "
        f"{time.monotonic() - t:.0f} s"
    )


if __name__ == "__main__":
    raise SystemExit(main())
