"""Typed schemas for every Hydra config group, and the top-level `RunConfig`.

One dataclass per group (`data`, `model`, `train`, `scaling`, `tune`, `cost`, `serve`,
`cluster`, `tracking`). The YAML files under `conf/` fill these schemas, so a misspelled key or a
value of the wrong type fails at composition, and `OmegaConf.to_object` runs every
`__post_init__` below, so an out-of-range value fails before any Ray work starts.

Choices are `StrEnum`s because OmegaConf 2.3 has no `Literal`. OmegaConf converts a string to an
enum member by *name*, so every member's name equals its value.

This module imports no ray, torch or xgboost: the schemas must load on a machine without them and
pickle cheaply to Ray workers.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore

from ray_ml.errors import ConfigError

__all__ = [
    "Activation",
    "ClassWeighting",
    "ClusterConfig",
    "CostConfig",
    "DataConfig",
    "EncodeStrategy",
    "ImputeStrategy",
    "LRSchedule",
    "MergeMode",
    "MixedPrecision",
    "ServeIngress",
    "ModelConfig",
    "ModelKind",
    "NodeTypeConfig",
    "NormKind",
    "Optimizer",
    "PlacementStrategy",
    "Pricing",
    "Resample",
    "RunConfig",
    "ScaleStrategy",
    "ScalingConfig",
    "Scheduler",
    "Searcher",
    "ServeConfig",
    "SortMode",
    "MonitorConfig",
    "MonitorTrigger",
    "TrackingConfig",
    "TrackingKind",
    "TrainConfig",
    "TuneConfig",
    "WinnerRule",
    "register_configs",
]

# Names end up as folder names under `storage_path`, so no separators and no `.`/`..`.
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_ENV_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ISO_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TREE_METHODS = ("hist", "approx", "exact", "auto")
# numpy's legacy and new generators both accept seeds in [0, 2**32).
_MAX_SEED = 2**32


# --------------------------------------------------------------------------------------- enums
class MergeMode(StrEnum):
    """How several `data.sources` become one table."""

    union = "union"  # stack rows; every source has the same columns
    # Shadows `str.join` on members; OmegaConf converts strings to members by name, so the name
    # must be the value. Nothing calls `.join` on a MergeMode.
    join = "join"  # type: ignore[assignment]  # inner-join on `data.join_key`


class ImputeStrategy(StrEnum):
    """How missing numeric values are filled."""

    mean = "mean"
    zero = "zero"


class ScaleStrategy(StrEnum):
    """How numeric features are scaled."""

    standard = "standard"
    minmax = "minmax"
    none = "none"


class EncodeStrategy(StrEnum):
    """How categorical features are encoded."""

    onehot = "onehot"
    ordinal = "ordinal"


class ModelKind(StrEnum):
    """Which model family `model` configures."""

    mlp = "mlp"
    xgboost = "xgboost"


class NormKind(StrEnum):
    """Normalization layer after each hidden layer of the MLP."""

    none = "none"
    batch = "batch"
    layer = "layer"


class Activation(StrEnum):
    """Activation function of the MLP's hidden layers."""

    relu = "relu"
    gelu = "gelu"
    silu = "silu"


class Optimizer(StrEnum):
    """Torch optimizer."""

    adamw = "adamw"
    sgd = "sgd"


class LRSchedule(StrEnum):
    """Learning-rate schedule over the whole run (after warm-up)."""

    none = "none"
    cosine = "cosine"
    onecycle = "onecycle"


class MixedPrecision(StrEnum):
    """Autocast dtype for the forward pass."""

    none = "none"
    bf16 = "bf16"  # no loss scaling needed, and CPUs with AVX512-BF16/AMX run it too


class ServeIngress(StrEnum):
    """How HTTP reaches the serving replicas (Ray Serve 2.60; measured in bench_serve)."""

    haproxy = "haproxy"  # HAProxy on serve.port, straight onto the replicas' own HTTP servers
    proxy = "proxy"  # Serve's Python proxy on serve.port, then a handle call to a replica


class ClassWeighting(StrEnum):
    """Per-class loss weights for imbalanced classification."""

    none = "none"
    balanced = "balanced"  # weight = n_rows / (n_classes * n_rows_of_class)


class Resample(StrEnum):
    """Resampling of the training split for imbalanced classification."""

    none = "none"
    oversample = "oversample"


class PlacementStrategy(StrEnum):
    """Ray placement-group strategy for a run's workers."""

    PACK = "PACK"
    SPREAD = "SPREAD"
    STRICT_PACK = "STRICT_PACK"
    STRICT_SPREAD = "STRICT_SPREAD"


class Searcher(StrEnum):
    """How Tune proposes trial configs."""

    random = "random"
    grid = "grid"
    optuna_tpe = "optuna_tpe"
    optuna_nsga2 = "optuna_nsga2"  # multi-objective: metric and cost
    cost_aware = "cost_aware"


class Scheduler(StrEnum):
    """How Tune stops unpromising trials early."""

    asha = "asha"
    hyperband = "hyperband"
    median = "median"
    fifo = "fifo"  # no early stopping


class SortMode(StrEnum):
    """Whether a metric is better when smaller (`min`) or larger (`max`)."""

    min = "min"
    max = "max"


class WinnerRule(StrEnum):
    """How a sweep picks its winning trial."""

    best = "best"  # best metric
    cheapest_within_eps = "cheapest_within_eps"  # cheapest trial within `winner_eps` of best
    best_under_latency = "best_under_latency"  # best trial whose latency <= `latency_bound_ms`


class Pricing(StrEnum):
    """Which price column of `cost.node_types` the cost meter uses."""

    on_demand = "on_demand"
    spot = "spot"


class TrackingKind(StrEnum):
    """Where a sweep's trials and winner are logged besides the sweep folder."""

    none = "none"
    mlflow = "mlflow"


# ---------------------------------------------------------------------------------- validation
def _fail(key: str, value: Any, must: str, fix: str) -> ConfigError:
    leaf = key.rsplit(".", 1)[-1]
    return ConfigError(f"`{key}` {must}, but got {leaf}={value!r}. Fix: {fix}")


class _Validated:
    """Mixin with range checks that raise `ConfigError` naming the full key, value and fix.

    `_group` is the key of the group in `RunConfig` (a plain class attribute, so not a field).
    """

    _group = ""

    def _key(self, name: str) -> str:
        return f"{self._group}.{name}" if self._group else name

    def _example(self, name: str) -> Any:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.name == name and f.default is not dataclasses.MISSING:
                return f.default
        return None

    def _require(self, ok: bool, name: str, must: str, fix: str | None = None) -> None:
        if ok:
            return
        key = self._key(name)
        if fix is None:
            example = self._example(name)
            fix = f"give `{key}` a value that is {must.removeprefix('must be ')}"
            if example is not None:
                fix += f", e.g. `{key}={example}` (the default)"
            fix += "."
        raise _fail(key, getattr(self, name), must, fix)

    def _at_least(self, name: str, low: float, fix: str | None = None) -> None:
        self._require(getattr(self, name) >= low, name, f"must be >= {low}", fix)

    def _positive(self, name: str, fix: str | None = None) -> None:
        self._require(getattr(self, name) > 0, name, "must be positive", fix)

    def _optional_at_least(self, name: str, low: float) -> None:
        value = getattr(self, name)
        self._require(
            value is None or value >= low,
            name,
            f"must be null or >= {low}",
            f"set `{self._key(name)}=null` or a value >= {low}.",
        )

    def _optional_positive(self, name: str) -> None:
        value = getattr(self, name)
        self._require(
            value is None or value > 0,
            name,
            "must be null or positive",
            f"set `{self._key(name)}=null` (no limit) or a positive value.",
        )

    def _in_range(self, name: str, low: float, high: float, *, high_inclusive: bool = True) -> None:
        value = getattr(self, name)
        ok = low <= value <= high if high_inclusive else low <= value < high
        bracket = "]" if high_inclusive else ")"
        self._require(ok, name, f"must be in [{low}, {high}{bracket}")

    def _name_like(self, name: str, *, optional: bool = False) -> None:
        value = getattr(self, name)
        if optional and value is None:
            return
        self._require(
            isinstance(value, str)
            and _NAME_RE.match(value) is not None
            and value not in {".", ".."},
            name,
            "must match ^[A-Za-z0-9_.-]+$ (it becomes a folder or file name) and not be '.' or '..'",
            f"use letters, digits, '_', '.' and '-' only, e.g. "
            f"`{self._key(name)}={self._example(name) or 'my_run'}`.",
        )

    def _non_empty(self, name: str) -> None:
        value = getattr(self, name)
        self._require(
            isinstance(value, str) and value.strip() != "",
            name,
            "must be a non-empty string",
            f"set `{self._key(name)}` to a non-empty value.",
        )


# ------------------------------------------------------------------------------------- groups
@dataclass
class DataConfig(_Validated):
    """Where the rows come from, how they are checked, split and preprocessed.

    Attributes:
        sources: Paths, globs or URIs of parquet/csv/jsonl files, `sklearn://NAME` (a bundled
            scikit-learn data set) or `synthetic://classification?rows=..&features=..`.
        merge: `union` stacks the sources' rows; `join` inner-joins them on `join_key`.
        join_key: Column to join on; required when `merge=join` and only then.
        contract: Path of a contract YAML; null uses the contract bundled with an sklearn://
            source, or else infers one from a sample of the sources (written to the run's
            `data/contract.yaml`; `ray_ml.data.infer_contract`).
        label: The label column, for a contract inferred from the sources (null: a column
            named like a label, else the last one); must match the contract's label if set.
        quarantine_dir: Folder for rejected rows; null keeps them out of the run but unsaved.
        max_reject_rate: Largest fraction of rows validation may reject before the run fails.
        val_fraction: Fraction of rows held out for validation.
        test_fraction: Fraction of rows held out for the final test.
        stratify: Keep class proportions equal across splits (classification only).
        kfold: Number of cross-validation folds; 0 turns k-fold off.
        impute: How missing numeric values are filled.
        scale: How numeric features are scaled.
        encode: How categorical features are encoded.
        max_categories: Categories kept per column; rarer ones share one "other" bucket.
        num_blocks: Blocks to repartition the Ray Dataset into; null lets Ray Data decide.
    """

    _group = "data"

    sources: list[str] = field(default_factory=lambda: ["sklearn://breast_cancer"])
    merge: MergeMode = MergeMode.union
    join_key: str | None = None
    contract: str | None = None
    label: str | None = None
    quarantine_dir: str | None = None
    max_reject_rate: float = 0.05
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    stratify: bool = True
    kfold: int = 0
    impute: ImputeStrategy = ImputeStrategy.mean
    scale: ScaleStrategy = ScaleStrategy.standard
    encode: EncodeStrategy = EncodeStrategy.onehot
    max_categories: int = 50
    num_blocks: int | None = None

    def __post_init__(self) -> None:
        self._require(
            len(self.sources) > 0 and all(isinstance(s, str) and s.strip() for s in self.sources),
            "sources",
            "must be a non-empty list of non-empty strings",
            "list at least one source, e.g. `data.sources=[sklearn://breast_cancer]`.",
        )
        if self.merge is MergeMode.join:
            self._require(
                self.join_key is not None and self.join_key.strip() != "",
                "join_key",
                "is required when data.merge=join",
                "set `data.join_key=COLUMN` to the column shared by every source.",
            )
            self._require(
                len(self.sources) >= 2,
                "sources",
                "must list at least two sources when data.merge=join",
                "add the sources to join, or set `data.merge=union`.",
            )
        else:
            self._require(
                self.join_key is None,
                "join_key",
                "is only used when data.merge=join",
                "set `data.merge=join` to join on it, or `data.join_key=null`.",
            )
        self._in_range("max_reject_rate", 0.0, 1.0)
        self._in_range("val_fraction", 0.0, 1.0, high_inclusive=False)
        self._in_range("test_fraction", 0.0, 1.0, high_inclusive=False)
        self._require(
            self.val_fraction + self.test_fraction < 1.0,
            "test_fraction",
            f"plus data.val_fraction={self.val_fraction} must be < 1 to leave training rows",
            "lower `data.val_fraction` or `data.test_fraction`, e.g. 0.15 each.",
        )
        self._require(
            self.kfold == 0 or self.kfold >= 2,
            "kfold",
            "must be 0 (off) or >= 2",
            "set `data.kfold=0` to turn k-fold off or `data.kfold=5` for five folds.",
        )
        self._at_least("max_categories", 1)
        self._optional_at_least("num_blocks", 1)


@dataclass
class ModelConfig(_Validated):
    """The model family and its hyperparameters; fields of the other family are ignored.

    Attributes:
        kind: `mlp` (torch, trained with Ray Train's TorchTrainer) or `xgboost`.
        hidden_sizes: MLP hidden-layer widths; empty gives a linear model.
        dropout: MLP dropout probability after each hidden layer.
        norm: MLP normalization layer after each hidden layer.
        activation: MLP activation function.
        max_depth: XGBoost maximum tree depth.
        eta: XGBoost learning rate (shrinkage).
        num_boost_round: XGBoost boosting rounds (the upper bound with early stopping).
        subsample: XGBoost row subsampling ratio per tree.
        colsample_bytree: XGBoost column subsampling ratio per tree.
        min_child_weight: XGBoost minimum hessian sum in a leaf.
        reg_lambda: XGBoost L2 regularization on leaf weights.
        checkpoint_every_rounds: XGBoost reports (to Train/Tune) and checkpoints every this many
            boosting rounds, and at the end; each report is a synchronisation point.
        early_stopping_rounds: XGBoost rounds without validation improvement before stopping;
            0 turns early stopping off.
        tree_method: XGBoost tree construction algorithm: hist, approx, exact or auto. GPU use
            comes from `scaling.use_gpu`, not from here.
    """

    _group = "model"

    kind: ModelKind = ModelKind.mlp
    # MLP
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 32])
    dropout: float = 0.1
    norm: NormKind = NormKind.none
    activation: Activation = Activation.relu
    # XGBoost
    max_depth: int = 6
    eta: float = 0.3
    num_boost_round: int = 100
    subsample: float = 1.0
    colsample_bytree: float = 1.0
    min_child_weight: float = 1.0
    reg_lambda: float = 1.0
    early_stopping_rounds: int = 10
    checkpoint_every_rounds: int = 10
    tree_method: str = "hist"

    def __post_init__(self) -> None:
        self._require(
            all(h >= 1 for h in self.hidden_sizes),
            "hidden_sizes",
            "must contain only widths >= 1",
            "use positive widths, e.g. `model.hidden_sizes=[64,32]`, or [] for a linear model.",
        )
        self._in_range("dropout", 0.0, 1.0, high_inclusive=False)
        self._at_least("max_depth", 1)
        self._require(0.0 < self.eta <= 1.0, "eta", "must be in (0, 1]")
        self._at_least("num_boost_round", 1)
        self._require(0.0 < self.subsample <= 1.0, "subsample", "must be in (0, 1]")
        self._require(0.0 < self.colsample_bytree <= 1.0, "colsample_bytree", "must be in (0, 1]")
        self._at_least("min_child_weight", 0.0)
        self._at_least("reg_lambda", 0.0)
        self._at_least("early_stopping_rounds", 0)
        self._at_least("checkpoint_every_rounds", 1)
        self._require(
            self.tree_method in _TREE_METHODS,
            "tree_method",
            f"must be one of {', '.join(_TREE_METHODS)}",
            "set `model.tree_method=hist` (fast on CPU and GPU).",
        )


@dataclass
class TrainConfig(_Validated):
    """How one training run goes (MLP fields apply to torch; the rest to both families).

    Attributes:
        epochs: Passes over the training split (XGBoost uses `model.num_boost_round`).
        batch_size: Rows per batch on each worker.
        lr: Peak learning rate.
        weight_decay: Decoupled weight decay (AdamW) or L2 penalty (SGD).
        optimizer: Torch optimizer.
        lr_schedule: Learning-rate schedule after warm-up.
        warmup_fraction: Fraction of all steps spent ramping the learning rate up linearly.
        grad_clip: Max global gradient norm; 0 turns clipping off.
        early_stopping_patience: Epochs without improvement of `early_stopping_metric` before
            stopping; 0 turns early stopping off.
        early_stopping_metric: Reported metric that early stopping watches.
        early_stopping_mode: Whether that metric is better when `min` or `max`.
        mixed_precision: Autocast dtype; `none` trains in float32.
        checkpoint_every_epochs: Epochs between checkpoints (the last epoch always checkpoints).
        max_failures: Worker-group restarts allowed after a failure; -1 means unlimited.
        prefetch_batches: Batches Ray Data prepares ahead of the training loop.
        local_shuffle_buffer: Rows in each worker's local shuffle buffer; 0 turns it off.
        pin_memory: Pin host batches so copies to the GPU can overlap compute.
        gpu_cache: On a GPU, stream each worker's shard into GPU memory once and permute it
            there every epoch, when it fits in half the free GPU memory (else stream as usual);
            ignored on CPU workers.
        cpu_cache_mb: On CPU workers, hold each worker's preprocessed shard in memory after
            one pass and permute it every epoch, when it takes at most this many MiB (its rows
            x (features + label) x 4-8 bytes; else stream every epoch); 0 always streams.
        class_weighting: Per-class loss weights for imbalanced classification.
        resample: Oversample minority classes in the training split.
        resume: Continue from the latest checkpoint of a run with the same `name`, if any.
        chaos_kill_at_epoch: Fault injection for recovery drills: SIGKILL one training worker
            once, right after this epoch's checkpoint (-1 = off).
    """

    _group = "train"

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: Optimizer = Optimizer.adamw
    lr_schedule: LRSchedule = LRSchedule.none
    warmup_fraction: float = 0.0
    grad_clip: float = 0.0
    early_stopping_patience: int = 0
    early_stopping_metric: str = "val_loss"
    early_stopping_mode: SortMode = SortMode.min
    mixed_precision: MixedPrecision = MixedPrecision.none
    checkpoint_every_epochs: int = 1
    max_failures: int = 0
    prefetch_batches: int = 1
    local_shuffle_buffer: int = 0
    pin_memory: bool = False
    gpu_cache: bool = True
    cpu_cache_mb: int = 512
    class_weighting: ClassWeighting = ClassWeighting.none
    resample: Resample = Resample.none
    resume: bool = True
    chaos_kill_at_epoch: int = -1

    def __post_init__(self) -> None:
        self._at_least("epochs", 1)
        self._at_least("chaos_kill_at_epoch", -1)
        self._at_least("batch_size", 1)
        self._positive("lr")
        self._at_least("weight_decay", 0.0)
        self._in_range("warmup_fraction", 0.0, 1.0, high_inclusive=False)
        self._at_least("grad_clip", 0.0)
        self._at_least("early_stopping_patience", 0)
        self._non_empty("early_stopping_metric")
        self._at_least("checkpoint_every_epochs", 1)
        self._at_least(
            "max_failures", -1, "set `train.max_failures=0` (no retries) or -1 (unlimited)."
        )
        self._at_least("prefetch_batches", 0)
        self._at_least("local_shuffle_buffer", 0)
        self._at_least("cpu_cache_mb", 0)
        # Both correct the same imbalance; together they over-weight the minority classes.
        self._require(
            not (
                self.class_weighting is ClassWeighting.balanced
                and self.resample is Resample.oversample
            ),
            "resample",
            "must be none when train.class_weighting=balanced (both correct class imbalance)",
            "choose one: `train.resample=none` or `train.class_weighting=none`.",
        )


@dataclass
class ScalingConfig(_Validated):
    """How many Ray Train workers a run uses and what each one reserves.

    Attributes:
        num_workers: Training workers (data-parallel ranks).
        use_gpu: Give each worker `gpus_per_worker` GPUs.
        cpus_per_worker: CPUs reserved per worker.
        gpus_per_worker: GPUs reserved per worker; must be > 0 exactly when `use_gpu`.
        resources_per_worker: Extra custom Ray resources per worker, e.g. `{MOCK_GPU: 1}`.
        placement_strategy: Ray placement-group strategy for the workers.
    """

    _group = "scaling"

    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    resources_per_worker: dict[str, float] = field(default_factory=dict)
    placement_strategy: PlacementStrategy = PlacementStrategy.PACK

    def __post_init__(self) -> None:
        self._at_least("num_workers", 1)
        self._positive("cpus_per_worker")
        self._at_least("gpus_per_worker", 0.0)
        if self.use_gpu:
            self._require(
                self.gpus_per_worker > 0,
                "gpus_per_worker",
                "must be positive when scaling.use_gpu=true",
                "set `scaling.gpus_per_worker=1` (or a fraction to share a GPU).",
            )
        else:
            self._require(
                self.gpus_per_worker == 0,
                "gpus_per_worker",
                "must be 0 when scaling.use_gpu=false",
                "set `scaling.use_gpu=true` to train on GPUs, or `scaling.gpus_per_worker=0`.",
            )
        for resource, amount in self.resources_per_worker.items():
            self._require(
                resource not in {"CPU", "GPU"},
                "resources_per_worker",
                f"must not contain {resource!r}",
                "use `scaling.cpus_per_worker` / `scaling.gpus_per_worker` instead.",
            )
            self._require(
                amount >= 0,
                "resources_per_worker",
                f"must map each resource to an amount >= 0 ({resource}={amount})",
                f"set `scaling.resources_per_worker.{resource}` to a non-negative amount.",
            )


@dataclass
class TuneConfig(_Validated):
    """A hyperparameter sweep: search space, searcher, scheduler, budgets and winner rule.

    Attributes:
        space: Name of the search-space YAML under `conf/tune/space/` (without `.yaml`).
        searcher: How trial configs are proposed.
        scheduler: How unpromising trials are stopped early.
        num_samples: Trials to run (for `grid`: repeats of the whole grid).
        max_concurrent_trials: Trials running at once; 0 derives it from cluster capacity.
        metric: Reported metric the sweep optimizes.
        mode: Whether `metric` is better when `min` or `max`.
        grace_period: Epochs every trial runs before a scheduler may stop it.
        reduction_factor: ASHA/HyperBand halving rate.
        max_t: Most epochs any trial runs under the scheduler.
        budget_usd: Stop starting trials once the estimated spend reaches this; null: no limit.
        budget_gpu_hours: The same budget in GPU hours; null: no limit.
        budget_wall_s: The same budget in wall-clock seconds; null: no limit.
        budget_trials: The same budget in finished trials; null: no limit.
        winner_rule: How the winning trial is chosen.
        winner_eps: For `cheapest_within_eps`: absolute tolerance in `metric` units from the
            best trial.
        latency_bound_ms: For `best_under_latency`: the bound on a trial's inference latency,
            in ms per 1,000 rows (measured on validation rows after training).
        trial_workers: Train workers per trial; null: one when the training split has at most
            `ONE_WORKER_ROWS` rows (DDP over several workers gains nothing on data one worker
            holds, and a one-worker trial trains in its own process), else `scaling.num_workers`.
        reuse_actors: Reuse trial actors between trials (faster start, shared process state);
            null: on for trials that train in their own process (one worker), off for trials
            that host a Ray Train run.
        resume: Resume an interrupted sweep of the same `name` instead of starting afresh.
    """

    _group = "tune"

    space: str = "mlp"
    searcher: Searcher = Searcher.random
    scheduler: Scheduler = Scheduler.asha
    num_samples: int = 8
    max_concurrent_trials: int = 0
    metric: str = "val_loss"
    mode: SortMode = SortMode.min
    grace_period: int = 1
    reduction_factor: int = 3
    max_t: int = 10
    budget_usd: float | None = None
    budget_gpu_hours: float | None = None
    budget_wall_s: float | None = None
    budget_trials: int | None = None
    winner_rule: WinnerRule = WinnerRule.best
    winner_eps: float = 0.01
    latency_bound_ms: float | None = None
    trial_workers: int | None = None
    reuse_actors: bool | None = None
    # Off by default: silently continuing an old sweep after its search space changed mixes
    # two experiments in one result table.
    resume: bool = False

    def __post_init__(self) -> None:
        self._name_like("space")
        self._at_least("num_samples", 1)
        self._at_least("max_concurrent_trials", 0)
        self._non_empty("metric")
        self._at_least("grace_period", 1)
        self._at_least("reduction_factor", 2)
        self._at_least("max_t", 1)
        self._require(
            self.grace_period <= self.max_t,
            "grace_period",
            f"must be <= tune.max_t={self.max_t}",
            "lower `tune.grace_period` or raise `tune.max_t`.",
        )
        self._optional_positive("budget_usd")
        self._optional_positive("budget_gpu_hours")
        self._optional_positive("budget_wall_s")
        self._optional_at_least("budget_trials", 1)
        self._at_least("winner_eps", 0.0)
        self._optional_positive("latency_bound_ms")
        self._optional_at_least("trial_workers", 1)
        if self.winner_rule is WinnerRule.best_under_latency:
            self._require(
                self.latency_bound_ms is not None,
                "latency_bound_ms",
                "is required when tune.winner_rule=best_under_latency",
                "set `tune.latency_bound_ms=50` (p95 per request), or another winner_rule.",
            )


@dataclass
class NodeTypeConfig(_Validated):
    """One machine type and its hourly prices.

    Attributes:
        name: Node type name, e.g. `g5.xlarge`; unique within `cost.node_types`.
        cpus: vCPUs.
        memory_gb: Memory in GB.
        on_demand_usd_per_hour: On-demand price in USD per hour.
        spot_usd_per_hour: Spot price in USD per hour; at most the on-demand price.
        prices_read_on: ISO date (YYYY-MM-DD) on which the prices were read.
        gpus: GPUs.
        gpu_type: GPU model, e.g. `A10G`; required exactly when `gpus > 0`.
        illustrative: The prices are examples, not quotes; reports say so.
    """

    name: str
    cpus: int
    memory_gb: float
    on_demand_usd_per_hour: float
    spot_usd_per_hour: float
    prices_read_on: str
    gpus: int = 0
    gpu_type: str | None = None
    illustrative: bool = True

    def _key(self, name: str) -> str:
        # Entries are validated on their own, so name the entry rather than its list index.
        return f"cost.node_types[name={self.name}].{name}"

    def __post_init__(self) -> None:
        self._non_empty("name")
        self._at_least("cpus", 1)
        self._positive("memory_gb")
        self._at_least("on_demand_usd_per_hour", 0.0)
        self._at_least("spot_usd_per_hour", 0.0)
        self._require(
            self.spot_usd_per_hour <= self.on_demand_usd_per_hour,
            "spot_usd_per_hour",
            f"must be <= on_demand_usd_per_hour={self.on_demand_usd_per_hour}",
            "check the two prices are not swapped.",
        )
        self._at_least("gpus", 0)
        self._require(
            (self.gpus > 0) == (self.gpu_type is not None and self.gpu_type.strip() != ""),
            "gpu_type",
            f"must be set exactly when gpus > 0 (gpus={self.gpus})",
            "set `gpu_type` (e.g. A10G) for GPU nodes and `gpu_type: null` for CPU nodes.",
        )
        ok = _ISO_DATE_RE.match(self.prices_read_on) is not None
        if ok:
            try:
                date.fromisoformat(self.prices_read_on)
            except ValueError:
                ok = False
        self._require(
            ok,
            "prices_read_on",
            "must be an ISO date YYYY-MM-DD",
            'write the date the prices were read, quoted, e.g. prices_read_on: "2026-11-26".',
        )


def _local_node_types() -> list[NodeTypeConfig]:
    # A free laptop: running with the schema defaults costs nothing and claims nothing.
    return [
        NodeTypeConfig(
            name="local",
            cpus=2,
            memory_gb=8.0,
            on_demand_usd_per_hour=0.0,
            spot_usd_per_hour=0.0,
            prices_read_on="2026-11-26",
        )
    ]


@dataclass
class CostConfig(_Validated):
    """Machine prices for the cost meter, budgets and cost-aware search.

    Attributes:
        pricing: Which price column the meter uses.
        node_types: The machines runs may be priced on.
        default_node_type: Name of the node type runs are priced on unless told otherwise.
    """

    _group = "cost"

    pricing: Pricing = Pricing.on_demand
    node_types: list[NodeTypeConfig] = field(default_factory=_local_node_types)
    default_node_type: str = "local"

    def __post_init__(self) -> None:
        names = [n.name for n in self.node_types]
        self._require(
            len(names) > 0,
            "node_types",
            "must list at least one node type",
            "add a node type (name, cpus, memory_gb, prices, prices_read_on).",
        )
        duplicates = sorted({n for n in names if names.count(n) > 1})
        self._require(
            not duplicates,
            "node_types",
            f"must have unique names (duplicated: {', '.join(duplicates)})",
            "rename or remove the duplicated entries.",
        )
        self._require(
            self.default_node_type in names,
            "default_node_type",
            f"must name one of cost.node_types ({', '.join(names)})",
            f"set `cost.default_node_type` to one of: {', '.join(names)}.",
        )


@dataclass
class ServeConfig(_Validated):
    """The HTTP inference service: which model, how many replicas, limits, canary and drift.

    The model served is `bundle` if set, else registry `version`, else registry `alias`.

    Attributes:
        host: Interface the HTTP proxy binds to; 127.0.0.1 keeps it off the network.
        port: HTTP port.
        alias: Registry alias to serve, e.g. `production`.
        version: Registry version to serve; wins over `alias`.
        bundle: Path of a model bundle to serve directly; wins over the registry.
        num_replicas: Replicas when `autoscaling` is off.
        autoscaling: Scale replicas between `min_replicas` and `max_replicas`.
        min_replicas: Fewest replicas under autoscaling (0 scales to zero).
        max_replicas: Most replicas under autoscaling.
        target_ongoing_requests: Autoscaling target of in-flight requests per replica.
        num_cpus_per_replica: CPUs reserved per replica.
        num_gpus_per_replica: GPUs reserved per replica.
        max_batch_size: Most requests the replica batches into one model call.
        max_batch_rows: Most rows in one model call: a batch is sent once its requests reach
            `max_batch_size` or their rows reach this (Serve's `batch_size_fn`); a request
            with more rows is predicted on its own.
        batch_wait_timeout_s: Longest a request waits for a batch to fill.
        token_env: Environment variable holding the bearer token; unset disables auth.
        max_rows_per_request: Most rows accepted in one request.
        max_body_bytes: Largest request body accepted.
        max_json_depth: Deepest JSON nesting accepted.
        canary_percent: Percent of traffic routed to a canary version; 0 turns canaries off.
        canary_min_requests: Canary requests seen before it may be promoted or rolled back.
        canary_max_error_rate: Canary error rate above which it is rolled back.
        canary_max_latency_ratio: Canary-to-stable p95 latency ratio above which it is rolled
            back.
        drift_window: Requests per window of the feature-drift monitor.
        drift_psi_threshold: Population stability index above which a feature drifts.
        registry_root: Folder of the model registry.
        model: Registry model name; null uses the run's `name`.
        app_name: Ray Serve application name.
        max_ongoing_requests: Requests a replica accepts at once (at least `max_batch_size`
            for batching to fill).
        poll_s: Seconds between checks of the registry aliases (a `production` or
            `candidate` change is served within this delay, without a redeploy).
        keep_serving: The pipeline job keeps serving after its report until Ctrl-C (on an
            embedded Ray; on a cluster the app outlives the job anyway).
        ingress: `haproxy` (HAProxy on `port`, balancing onto the replicas' own HTTP servers:
            no Python proxy hop) or `proxy` (Serve's Python proxy). Ray Serve reads this when
            its processes start, so it applies to the Ray a serving job starts itself; a
            cluster's head and workers set it in their own environment (`cluster/`).
        prediction_log: Where each answered request's rows, predictions, model version,
            latency and request id are logged, as Parquet partitions
            (`predictions/date=YYYY-MM-DD/part-*.parquet`) under this folder or `pyarrow.fs`
            URI (`s3://...`); written off the request path. null turns the log off.
        prediction_log_sample: Fraction of each request's rows the log keeps (0 < f <= 1).
        feedback_window: Labelled rows per served version over which live quality
            (`POST /v1/feedback`) is computed: the newest ones.
        quality_tolerance: How far a live metric may fall below the bundle's test metric
            (absolute; accuracy, F1, ROC-AUC drop, MAE and RMSE rise) before a quality alert.
        quality_min_labels: Labelled rows a version needs before it can raise a quality alert.
        max_feedback_labels: Most labels one `POST /v1/feedback` may carry (more is a 413).
        canary_min_labels: Feedback labels both the canary and the stable version need (on
            requests answered since the canary started) before the canary is judged; 0 judges
            on errors and latency alone once `canary_min_requests` are in, and on live quality
            too when both already have `quality_min_labels` labels.
        access_log: Serve's own access-log line for every request in the replica's log
            (off by default: it costs every request time, and `/metrics` counts requests).
        canary_max_quality_drop: How much worse than the stable version the canary's live
            primary metric (accuracy; RMSE for regression) may be, on the same window, before
            it is rolled back.
    """

    _group = "serve"

    host: str = "127.0.0.1"
    port: int = 8000
    alias: str | None = "production"
    version: str | None = None
    bundle: str | None = None
    num_replicas: int = 1
    autoscaling: bool = False
    min_replicas: int = 1
    max_replicas: int = 2
    target_ongoing_requests: float = 2.0
    num_cpus_per_replica: float = 1.0
    num_gpus_per_replica: float = 0.0
    max_batch_size: int = 32
    max_batch_rows: int = 1024
    batch_wait_timeout_s: float = 0.002
    token_env: str = "RAY_ML_SERVE_TOKEN"
    max_rows_per_request: int = 1024
    max_body_bytes: int = 4 * 1024 * 1024
    max_json_depth: int = 10
    canary_percent: float = 0.0
    canary_min_requests: int = 100
    canary_max_error_rate: float = 0.01
    canary_max_latency_ratio: float = 1.5
    drift_window: int = 1000
    drift_psi_threshold: float = 0.2
    registry_root: str = "runs/registry"
    model: str | None = None
    app_name: str = "ray-ml"
    max_ongoing_requests: int = 64
    poll_s: float = 1.0
    keep_serving: bool = False
    ingress: ServeIngress = ServeIngress.haproxy
    prediction_log: str | None = None
    prediction_log_sample: float = 1.0
    feedback_window: int = 1000
    quality_tolerance: float = 0.05
    quality_min_labels: int = 50
    max_feedback_labels: int = 10_000
    canary_min_labels: int = 0
    canary_max_quality_drop: float = 0.02
    access_log: bool = False

    def __post_init__(self) -> None:
        self._non_empty("host")
        self._name_like("model", optional=True)
        self._name_like("app_name")
        self._at_least("max_ongoing_requests", 1)
        self._positive("poll_s")
        self._in_range("port", 1, 65535)
        self._name_like("alias", optional=True)
        if self.version is not None:
            self._non_empty("version")
        if self.bundle is not None:
            self._non_empty("bundle")
        self._require(
            not (self.version is not None and self.bundle is not None),
            "bundle",
            f"must be null when serve.version is set (version={self.version!r})",
            "pin the model one way: `serve.bundle=PATH` or `serve.version=N`, not both.",
        )
        self._require(
            any(x is not None for x in (self.alias, self.version, self.bundle)),
            "alias",
            "must be set when serve.version and serve.bundle are null (nothing to serve)",
            "set `serve.alias=production`, `serve.version=N` or `serve.bundle=PATH`.",
        )
        self._at_least("num_replicas", 1)
        self._at_least("min_replicas", 0)
        self._at_least("max_replicas", 1)
        self._require(
            self.min_replicas <= self.max_replicas,
            "min_replicas",
            f"must be <= serve.max_replicas={self.max_replicas}",
            "lower `serve.min_replicas` or raise `serve.max_replicas`.",
        )
        self._positive("target_ongoing_requests")
        self._at_least("num_cpus_per_replica", 0.0)
        self._at_least("num_gpus_per_replica", 0.0)
        self._at_least("max_batch_size", 1)
        self._at_least("max_batch_rows", 1)
        self._at_least("batch_wait_timeout_s", 0.0)
        self._require(
            _ENV_VAR_RE.match(self.token_env) is not None,
            "token_env",
            "must be an environment variable name",
            "use letters, digits and '_', e.g. `serve.token_env=RAY_ML_SERVE_TOKEN`.",
        )
        self._at_least("max_rows_per_request", 1)
        self._at_least("max_body_bytes", 1024)
        self._at_least("max_json_depth", 1)
        self._in_range("canary_percent", 0.0, 100.0)
        self._at_least("canary_min_requests", 1)
        self._in_range("canary_max_error_rate", 0.0, 1.0)
        self._positive("canary_max_latency_ratio")
        self._at_least("drift_window", 10)
        self._positive("drift_psi_threshold")
        self._non_empty("registry_root")
        if self.prediction_log is not None:
            self._non_empty("prediction_log")
        self._require(
            0.0 < self.prediction_log_sample <= 1.0,
            "prediction_log_sample",
            "must be in (0, 1]",
            "log every row with `serve.prediction_log_sample=1.0`, or turn the log off with "
            "`serve.prediction_log=null`.",
        )
        self._at_least("feedback_window", 1)
        self._at_least("quality_tolerance", 0.0)
        self._at_least("quality_min_labels", 1)
        self._at_least("max_feedback_labels", 1)
        self._at_least("canary_min_labels", 0)
        self._at_least("canary_max_quality_drop", 0.0)


@dataclass
class ClusterConfig(_Validated):
    """How a job gets a Ray cluster.

    Attributes:
        address: null starts an embedded local Ray unless RAY_ADDRESS is set; anything else
            (`auto`, `HOST:PORT`, `ray://HOST:10001`) joins that cluster.
        num_cpus: CPUs of the embedded Ray; null uses every core. Ignored when joining.
        num_gpus: GPUs of the embedded Ray. Ignored when joining.
        object_store_mb: Object store size of the embedded Ray. Ignored when joining.
        include_dashboard: Start the Ray dashboard with the embedded Ray.
        dashboard_port: Dashboard port; null uses Ray's default (8265).
        temp_dir: Ray's session folder; null uses Ray's default (/tmp/ray).
        autoscaling_config: The cluster's autoscaler YAML (what `ray up` reads), from which a
            sweep sizes its concurrency to what the cluster can scale to; null reads
            `~/ray_bootstrap_config.yaml` where it exists (the head of a `ray up` cluster).
    """

    _group = "cluster"

    address: str | None = None
    num_cpus: int | None = None
    num_gpus: int = 0
    object_store_mb: int = 1024
    include_dashboard: bool = False
    dashboard_port: int | None = None
    temp_dir: str | None = None
    autoscaling_config: str | None = None

    def __post_init__(self) -> None:
        if self.address is not None:
            self._non_empty("address")
        if self.autoscaling_config is not None:
            self._non_empty("autoscaling_config")
        self._optional_at_least("num_cpus", 1)
        self._at_least("num_gpus", 0)
        # Ray refuses object stores below 75 MiB; 100 leaves room for a few batches.
        self._at_least("object_store_mb", 100)
        self._require(
            self.dashboard_port is None or 1 <= self.dashboard_port <= 65535,
            "dashboard_port",
            "must be null or in [1, 65535]",
            "set `cluster.dashboard_port=null` (Ray's default 8265) or a free port.",
        )
        if self.temp_dir is not None:
            self._non_empty("temp_dir")


@dataclass
class TrackingConfig(_Validated):
    """Experiment tracking of sweeps (off by default).

    With `kind=mlflow` every trial becomes an MLflow run (its params and every reported metric,
    `cost_usd` included) and the sweep adds one summary run with the winner and its bundle.

    Attributes:
        kind: `none`, or `mlflow` (needs the `mlflow-skinny` package).
        uri: Where to log: a folder (relative to the working directory) holds a local store
            (`mlflow.db` and `artifacts/`); an `http(s)://`, `sqlite:///`, `postgresql://`,
            `databricks` ... URI goes to MLflow unchanged.
        experiment: MLflow experiment name; null uses the run's `name`.
        log_bundle: Copy the winner's bundle into the summary run's artifacts (under `bundle/`).
    """

    _group = "tracking"

    kind: TrackingKind = TrackingKind.none
    uri: str = "${storage_path}/mlflow"
    experiment: str | None = None
    log_bundle: bool = True

    def __post_init__(self) -> None:
        self._non_empty("uri")
        self._require(
            self.experiment is None
            or (isinstance(self.experiment, str) and self.experiment.strip() != ""),
            "experiment",
            "must be null (the run's `name`) or a non-empty string",
            "set `tracking.experiment=null` or a name, e.g. `tracking.experiment=my_sweeps`.",
        )


class MonitorTrigger(StrEnum):
    drift = "drift"  # a drift alert of the Serve app
    quality = "quality"  # a live-quality alert of the Serve app
    new_data = "new_data"  # `monitor.new_data_rows` rows landed since the last retrain
    schedule = "schedule"  # `monitor.schedule_s` seconds since the last retrain


@dataclass
class MonitorConfig(_Validated):
    """The loop after serving: watch the app and the data, retrain, canary (`jobs.monitor`).

    Attributes:
        serve_url: The Serve app's base URL; null: `http://{serve.host}:{serve.port}`.
        poll_s: Seconds between two ticks (one look at the app, the data and the canary).
        max_ticks: Stop after this many ticks; null runs until Ctrl-C (`1`: one tick, for cron
            or a Ray job on a schedule).
        triggers: What retrains: `drift`, `quality`, `new_data`, `schedule` (the last only with
            `schedule_s`).
        new_data_rows: Rows that passed the contract in partitions landed since the last
            retrain before `new_data` triggers.
        schedule_s: Retrain at least this often (seconds); null: no schedule.
        retrain_budget_usd: Budget of one retrain's sweep (`tune.budget_usd` of the retrain).
        monthly_budget_usd: Most retraining dollars per calendar month (UTC); a trigger that
            finds it spent is skipped, and said so in the ledger.
        retrain_num_samples: Trials of a retrain's sweep; null: `tune.num_samples`.
        warm_start: The previous sweep's best configs tried first (0: none).
        train_partitions: Train on the newest this many partitions of the file sources; null:
            on all of them.
        canary_timeout_s: A candidate the app's canary judge has not decided on this long
            after its registration (no traffic, no feedback) is taken back (its `candidate`
            alias removed, the reason in the audit log), so later triggers can act.
        retry_failed: A retrain that fails (an error, or given up after repeated kills) is
            tried again up to this many times for its trigger (0: never); an alert that was
            acted on once does not come back by itself, so without a retry the stale model
            would stay.
        retry_after_s: Seconds after a failed attempt ended before the next one starts.
    """

    _group = "monitor"

    serve_url: str | None = None
    poll_s: float = 30.0
    max_ticks: int | None = None
    triggers: list[MonitorTrigger] = field(
        default_factory=lambda: [
            MonitorTrigger.drift,
            MonitorTrigger.quality,
            MonitorTrigger.new_data,
            MonitorTrigger.schedule,
        ]
    )
    new_data_rows: int = 1000
    schedule_s: float | None = None
    retrain_budget_usd: float = 1.0
    monthly_budget_usd: float = 20.0
    retrain_num_samples: int | None = None
    warm_start: int = 3
    train_partitions: int | None = None
    canary_timeout_s: float = 3600.0
    retry_failed: int = 2
    retry_after_s: float = 900.0

    def __post_init__(self) -> None:
        if self.serve_url is not None:
            self._require(
                isinstance(self.serve_url, str)
                and self.serve_url.startswith(("http://", "https://")),
                "serve_url",
                "must be null or an http(s):// URL",
                "set `monitor.serve_url=http://HOST:PORT` (the Serve app), or null.",
            )
        self._positive("poll_s")
        self._optional_at_least("max_ticks", 1)
        self._at_least("new_data_rows", 1)
        self._optional_positive("schedule_s")
        self._positive("retrain_budget_usd")
        self._at_least("monthly_budget_usd", 0.0)
        self._optional_at_least("retrain_num_samples", 1)
        self._at_least("warm_start", 0)
        self._optional_at_least("train_partitions", 1)
        self._positive("canary_timeout_s")
        self._at_least("retry_failed", 0)
        self._positive("retry_after_s")


# --------------------------------------------------------------------------------------- run
@dataclass
class RunConfig(_Validated):
    """Everything one job needs: the primary config every `conf/*.yaml` fills.

    Attributes:
        name: Experiment name; outputs go to `<storage_path>/.../<name>`.
        seed: Seed for splits, initialization and search.
        storage_path: Folder of run outputs; a relative path is resolved by the caller.
        data: Data group.
        model: Model group.
        train: Training group.
        scaling: Worker scaling group.
        tune: Sweep group.
        cost: Prices group.
        serve: Serving group.
        cluster: Ray cluster group.
        tracking: Experiment-tracking group.
        monitor: The loop after serving (`python -m jobs.monitor`).
        verbose: Ray's, Tune's and Train's own output on the console too (by default it goes
            to `<storage_path>/<name>/logs/` only; `ray_ml.console`).
    """

    name: str = "default"
    seed: int = 0
    storage_path: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    verbose: bool = False

    def __post_init__(self) -> None:
        self._name_like("name")
        self._require(
            0 <= self.seed < _MAX_SEED,
            "seed",
            f"must be in [0, {_MAX_SEED})",
            "set `seed` to a non-negative 32-bit integer, e.g. `seed=0`.",
        )
        self._non_empty("storage_path")
        # A composed config has `${storage_path}` resolved by OmegaConf; one built in Python
        # (tests, notebooks) gets the same value here.
        if "${storage_path}" in self.tracking.uri:
            uri = self.tracking.uri.replace("${storage_path}", self.storage_path)
            self.tracking = dataclasses.replace(self.tracking, uri=uri)
        scaling, cluster = self.scaling, self.cluster
        # The embedded Ray has exactly the resources the config gives it, so a run that needs
        # more would wait forever for workers; a joined cluster may autoscale, so skip it there.
        if cluster.address is None:
            gpus_needed = scaling.num_workers * scaling.gpus_per_worker
            if scaling.use_gpu and cluster.num_gpus < gpus_needed:
                raise _fail(
                    "cluster.num_gpus",
                    cluster.num_gpus,
                    "must be >= scaling.num_workers * scaling.gpus_per_worker "
                    f"= {gpus_needed:g} on the embedded Ray",
                    f"set `cluster.num_gpus={math.ceil(gpus_needed)}` (e.g. `cluster=local_gpu`)"
                    ", lower `scaling.num_workers`, or use `scaling=cpu`.",
                )
            cpus_needed = scaling.num_workers * scaling.cpus_per_worker
            if cluster.num_cpus is not None and cluster.num_cpus < cpus_needed:
                raise _fail(
                    "cluster.num_cpus",
                    cluster.num_cpus,
                    "must be >= scaling.num_workers * scaling.cpus_per_worker "
                    f"= {cpus_needed:g} on the embedded Ray",
                    f"set `cluster.num_cpus={math.ceil(cpus_needed)}` or `cluster.num_cpus=null`"
                    " (every core), or lower `scaling.num_workers`.",
                )


# ------------------------------------------------------------------------------ config store
_GROUPS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "scaling": ScalingConfig,
    "tune": TuneConfig,
    "cost": CostConfig,
    "serve": ServeConfig,
    "cluster": ClusterConfig,
    "tracking": TrackingConfig,
    "monitor": MonitorConfig,
}


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore; calling it again changes nothing.

    `run_schema` is the primary schema: every `conf/*.yaml` lists it first in its defaults, so
    the group YAMLs merge into typed nodes and a misspelled key or a wrong type fails
    composition. Each group's schema is also stored as the option `schema` of that group
    (`model=schema` selects the dataclass defaults).
    """
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    for group, schema in _GROUPS.items():
        cs.store(group=group, name="schema", node=schema)
