"""Every shipped config composes and validates; bad input fails with a message naming the key."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
import typing
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from ray_ml.config import (
    CONF_DIR,
    ClassWeighting,
    ClusterConfig,
    CostConfig,
    DataConfig,
    MergeMode,
    ModelConfig,
    ModelKind,
    NodeTypeConfig,
    Resample,
    RunConfig,
    ScalingConfig,
    ServeConfig,
    TrainConfig,
    TuneConfig,
    WinnerRule,
    load_config,
    register_configs,
    run_config_to_dict,
    to_run_config,
)
from ray_ml.errors import ConfigError

pytestmark = pytest.mark.unit

GROUPS = [
    "data",
    "model",
    "train",
    "scaling",
    "tune",
    "cost",
    "serve",
    "cluster",
    "tracking",
    "monitor",
]
OVERLAYS = ["experiment", "debug"]
PRIMARIES = sorted(p.stem for p in CONF_DIR.glob("*.yaml"))
# Options that are only valid together with another choice; composing them alone must fail.
COMPANIONS = {"scaling=gpu": ["cluster=local_gpu"]}


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


GROUP_OPTIONS = [f"{g}={o}" for g in GROUPS for o in _options(g)]
EXPERIMENTS = _options("experiment")
DEBUGS = _options("debug")


def test_conf_layout_is_complete() -> None:
    assert {"train", "tune", "serve", "pipeline", "data"} <= set(PRIMARIES)
    for group in GROUPS + OVERLAYS:
        assert _options(group), f"conf/{group}/ has no options"
    # The group folders are exactly RunConfig's group fields (plus Hydra's and the overlays).
    folders = {p.name for p in CONF_DIR.iterdir() if p.is_dir()} - {"local"}
    assert folders == set(GROUPS) | set(OVERLAYS) | {"hydra"}


# ------------------------------------------------------------------------- shipped configs
@pytest.mark.parametrize("primary", PRIMARIES)
def test_primary_composes_and_validates(primary: str) -> None:
    cfg = load_config(primary)
    assert isinstance(cfg, RunConfig)
    assert cfg.name == "default"


@pytest.mark.parametrize("primary", PRIMARIES)
def test_primary_defaults_list_every_group(primary: str) -> None:
    defaults = yaml.safe_load((CONF_DIR / f"{primary}.yaml").read_text())["defaults"]
    assert defaults[0] == "run_schema"
    chosen = {k for entry in defaults if isinstance(entry, dict) for k in entry}
    assert set(GROUPS) | set(OVERLAYS) | {"hydra"} <= chosen
    # Overlays come after every group so that they win; debug is last of all.
    keys = [next(iter(e)) if isinstance(e, dict) else e for e in defaults]
    assert keys.index("experiment") > max(keys.index(g) for g in GROUPS)
    assert keys[-1] == "debug"


@pytest.mark.parametrize("override", GROUP_OPTIONS)
def test_every_group_option_composes(override: str) -> None:
    group, option = override.split("=")
    cfg = load_config("train", [override, *COMPANIONS.get(override, [])])
    node = getattr(cfg, group)
    assert type(node).__name__.lower().startswith(group)
    if group == "model":
        assert cfg.model.kind is ModelKind(option)


@pytest.mark.parametrize("override", sorted(COMPANIONS))
def test_option_without_its_companion_fails(override: str) -> None:
    with pytest.raises(ConfigError, match="cluster.num_gpus"):
        load_config("train", [override])


@pytest.mark.parametrize("group", GROUPS)
def test_group_schema_option_gives_dataclass_defaults(group: str) -> None:
    cfg = load_config("train", [f"{group}=schema"])
    assert getattr(cfg, group) == getattr(RunConfig(), group)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("debug", [None, *DEBUGS])
@pytest.mark.parametrize("primary", PRIMARIES)
def test_every_overlay_composes(primary: str, experiment: str, debug: str | None) -> None:
    overrides = [f"experiment={experiment}"] + ([f"debug={debug}"] if debug else [])
    cfg = load_config(primary, overrides)
    assert cfg.name == experiment


@pytest.mark.parametrize("debug", DEBUGS)
def test_debug_overlay_makes_the_run_tiny(debug: str) -> None:
    cfg = load_config("train", ["experiment=synthetic_imbalanced", f"debug={debug}"])
    assert cfg.train.epochs == 1
    assert cfg.scaling.num_workers == 1
    assert cfg.tune.num_samples <= 2
    assert cfg.model.num_boost_round <= 5
    assert cfg.cluster.object_store_mb <= 300
    assert not cfg.train.resume


def test_experiments_override_groups_and_primary() -> None:
    cfg = load_config("train", ["experiment=synthetic_imbalanced"])
    assert cfg.model.kind is ModelKind.xgboost
    assert cfg.data.sources[0].startswith("synthetic://classification?")
    assert cfg.tune.space == "xgboost"  # tune.space follows the model
    assert cfg.train.class_weighting is ClassWeighting.balanced
    # Command-line overrides still win over an experiment.
    assert load_config("train", ["experiment=demo", "name=mine"]).name == "mine"


def test_every_yaml_header_names_its_command() -> None:
    for path in sorted(CONF_DIR.rglob("*.yaml")):
        if "local" in path.relative_to(CONF_DIR).parts:
            continue
        header = []
        for line in path.read_text().splitlines():
            if not line.startswith("#"):
                break
            header.append(line)
        assert any("python -m jobs." in line for line in header), f"{path}: no command in header"


def test_overlays_are_global_packages() -> None:
    for group in OVERLAYS:
        for option in _options(group):
            first = (CONF_DIR / group / f"{option}.yaml").read_text().splitlines()[0]
            assert first == "# @package _global_", f"{group}/{option}.yaml"


@pytest.fixture
def clean_hydra() -> Iterator[None]:
    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()


@pytest.mark.usefixtures("clean_hydra")
def test_hydra_writes_under_storage_path_and_keeps_cwd() -> None:
    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("train", return_hydra_config=True)
    hydra_cfg = OmegaConf.to_container(cfg.hydra, resolve=False)
    assert isinstance(hydra_cfg, dict)
    assert hydra_cfg["run"]["dir"].startswith("${storage_path}/hydra/${name}/")
    assert hydra_cfg["sweep"]["dir"].startswith("${storage_path}/hydra/${name}/")
    assert hydra_cfg["job"]["chdir"] is False


# --------------------------------------------------------------------------------- bad input
def _message(overrides: list[str], config_dir: Path | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config("train", overrides, config_dir=config_dir)
    return str(info.value)


def test_misspelled_override_key_names_the_key_and_the_fix() -> None:
    msg = _message(["train.epoch=3"])
    assert "`train.epoch`" in msg
    assert "train.epochs" in msg  # did you mean
    assert "Fix" in msg


def test_added_unknown_key_is_refused() -> None:
    # `+key=value` would otherwise become a stray attribute that nothing reads.
    assert "`train.epoch`" in _message(["+train.epoch=3"])


def test_wrong_type_names_key_and_value() -> None:
    msg = _message(["train.lr=abc"])
    assert "`train.lr`" in msg
    assert "abc" in msg
    assert "float" in msg


def test_out_of_range_names_key_value_and_fix() -> None:
    msg = _message(["data.max_reject_rate=2"])
    assert "`data.max_reject_rate`" in msg
    assert "max_reject_rate=2" in msg
    assert "Fix:" in msg


def test_unknown_group_option_names_group_and_options() -> None:
    msg = _message(["model=nope"])
    assert "`model`" in msg
    assert "nope" in msg
    assert "mlp" in msg and "xgboost" in msg


def test_invalid_enum_value_lists_choices() -> None:
    msg = _message(["model.kind=forest"])
    assert "`model.kind`" in msg and "forest" in msg and "xgboost" in msg


def test_malformed_override_is_a_config_error() -> None:
    assert "train.lr==" in _message(["train.lr=="])


def test_unknown_primary_config_lists_the_primaries() -> None:
    with pytest.raises(ConfigError, match="pipeline"):
        load_config("nope")


def test_join_needs_a_join_key() -> None:
    assert "`data.join_key`" in _message(["data.merge=join"])
    two = "data.sources=[a.parquet,b.parquet]"
    cfg = load_config("train", ["data.merge=join", "data.join_key=id", two])
    assert cfg.data.merge is MergeMode.join
    assert "`data.join_key`" in _message(["data.join_key=id", two])  # key without merge=join
    assert "`data.sources`" in _message(["data.merge=join", "data.join_key=id"])  # one source


def test_yaml_typos_name_key_and_file(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    (conf / "data" / "typo.yaml").write_text("# python -m jobs.train data=typo\nsourcs: [a]\n")
    (conf / "train" / "badtype.yaml").write_text("lr: fast\n")
    (conf / "experiment" / "typo.yaml").write_text("# @package _global_\ntrain:\n  epoch: 3\n")
    msg = _message(["data=typo"], conf)
    assert "`data.sourcs`" in msg and "data/typo.yaml" in msg and "data.sources" in msg
    msg = _message(["train=badtype"], conf)
    assert "`train.lr`" in msg and "fast" in msg and "train/badtype.yaml" in msg
    assert "`train.epoch`" in _message(["experiment=typo"], conf)


def test_missing_value_names_the_key(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    (conf / "cost" / "partial.yaml").write_text(
        "default_node_type: a\nnode_types:\n  - name: a\n    cpus: 1\n"
    )
    assert "`cost.node_types[0].memory_gb`" in _message(["cost=partial"], conf)


def test_cross_field_checks() -> None:
    assert "`cluster.num_cpus`" in _message(["cluster.num_cpus=1"])  # 2 workers x 1 CPU
    # A joined cluster may autoscale, so the embedded-Ray capacity checks do not apply.
    cfg = load_config("train", ["scaling=gpu", "cluster.address=auto"])
    assert cfg.scaling.use_gpu


# The checks each dataclass runs on its own, with the key the message must name.
BAD_VALUES: list[tuple[Callable[[], object], str]] = [
    (lambda: TrainConfig(lr=-3), "`train.lr` must be positive, but got lr=-3"),
    (lambda: TrainConfig(epochs=0), "`train.epochs`"),
    (lambda: TrainConfig(max_failures=-2), "`train.max_failures`"),
    (
        lambda: TrainConfig(class_weighting=ClassWeighting.balanced, resample=Resample.oversample),
        "`train.resample`",
    ),
    (lambda: DataConfig(val_fraction=0.5, test_fraction=0.5), "`data.test_fraction`"),
    (lambda: DataConfig(kfold=1), "`data.kfold`"),
    (lambda: DataConfig(sources=[]), "`data.sources`"),
    (lambda: DataConfig(num_blocks=0), "`data.num_blocks`"),
    (lambda: ModelConfig(dropout=1.0), "`model.dropout`"),
    (lambda: ModelConfig(hidden_sizes=[8, 0]), "`model.hidden_sizes`"),
    (lambda: ModelConfig(tree_method="gpu_hist"), "`model.tree_method`"),
    (lambda: ModelConfig(eta=0.0), "`model.eta`"),
    (lambda: ScalingConfig(use_gpu=True), "`scaling.gpus_per_worker`"),
    (lambda: ScalingConfig(gpus_per_worker=1.0), "`scaling.gpus_per_worker`"),
    (lambda: ScalingConfig(resources_per_worker={"GPU": 1.0}), "`scaling.resources_per_worker`"),
    (lambda: TuneConfig(grace_period=5, max_t=2), "`tune.grace_period`"),
    (lambda: TuneConfig(reduction_factor=1), "`tune.reduction_factor`"),
    (lambda: TuneConfig(budget_usd=0.0), "`tune.budget_usd`"),
    (lambda: TuneConfig(space="../x"), "`tune.space`"),
    (
        lambda: TuneConfig(winner_rule=WinnerRule.best_under_latency),
        "`tune.latency_bound_ms`",
    ),
    (lambda: _node(spot_usd_per_hour=2.0), "spot_usd_per_hour"),
    (lambda: _node(prices_read_on="2026-13-01"), "prices_read_on"),
    (lambda: _node(prices_read_on="26 Nov 2026"), "prices_read_on"),
    (lambda: _node(gpus=1), "gpu_type"),
    (lambda: CostConfig(default_node_type="nope"), "`cost.default_node_type`"),
    (lambda: CostConfig(node_types=[_node(), _node()]), "`cost.node_types`"),
    (lambda: ServeConfig(port=0), "`serve.port`"),
    (lambda: ServeConfig(min_replicas=3, max_replicas=2), "`serve.min_replicas`"),
    (lambda: ServeConfig(alias=None), "`serve.alias`"),
    (lambda: ServeConfig(version="3", bundle="b"), "`serve.bundle`"),
    (lambda: ServeConfig(token_env="MY-TOKEN"), "`serve.token_env`"),
    (lambda: ServeConfig(canary_percent=101.0), "`serve.canary_percent`"),
    (lambda: ServeConfig(max_body_bytes=10), "`serve.max_body_bytes`"),
    (lambda: ServeConfig(drift_window=5), "`serve.drift_window`"),
    (lambda: ServeConfig(prediction_log_sample=0.0), "`serve.prediction_log_sample`"),
    (lambda: ServeConfig(prediction_log_sample=1.5), "`serve.prediction_log_sample`"),
    (lambda: ServeConfig(prediction_log=""), "`serve.prediction_log`"),
    (lambda: ServeConfig(quality_tolerance=-0.1), "`serve.quality_tolerance`"),
    (lambda: ServeConfig(quality_min_labels=0), "`serve.quality_min_labels`"),
    (lambda: ServeConfig(max_feedback_labels=0), "`serve.max_feedback_labels`"),
    (lambda: ClusterConfig(object_store_mb=50), "`cluster.object_store_mb`"),
    (lambda: ClusterConfig(dashboard_port=70000), "`cluster.dashboard_port`"),
    (lambda: ClusterConfig(num_cpus=0), "`cluster.num_cpus`"),
    (lambda: RunConfig(name=".."), "`name`"),
    (lambda: RunConfig(name="a/b"), "`name`"),
    (lambda: RunConfig(seed=-1), "`seed`"),
]


def _node(**changes: object) -> NodeTypeConfig:
    fields: dict[str, object] = {
        "name": "n",
        "cpus": 4,
        "memory_gb": 16.0,
        "on_demand_usd_per_hour": 1.0,
        "spot_usd_per_hour": 0.5,
        "prices_read_on": "2026-11-26",
    }
    fields.update(changes)
    return NodeTypeConfig(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("build", "expected"), BAD_VALUES)
def test_dataclass_validation_names_key_value_and_fix(
    build: Callable[[], object], expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        build()
    assert expected in str(info.value)
    assert "but got" in str(info.value) and "Fix:" in str(info.value)


# ------------------------------------------------------------------------ types and plumbing
def test_choices_come_back_as_enum_members() -> None:
    cfg = load_config("train", ["experiment=demo"])
    assert cfg.model.kind is ModelKind.mlp
    assert cfg.data.merge is MergeMode.union
    # Every Enum-typed field of every group holds a member, not a plain string.
    for group in GROUPS:
        node = getattr(cfg, group)
        hints = typing.get_type_hints(type(node))
        for name, hint in hints.items():
            if isinstance(hint, type) and issubclass(hint, Enum):
                value = getattr(node, name)
                assert type(value) is hint, f"{group}.{name} is {type(value).__name__}"
    assert isinstance(cfg.cost.node_types[0], NodeTypeConfig)
    assert isinstance(cfg.train.lr, float)


def test_run_config_pickles() -> None:
    cfg = load_config("train", ["experiment=synthetic_imbalanced"])
    clone = pickle.loads(pickle.dumps(cfg))
    assert clone == cfg
    assert clone.model.kind is ModelKind.xgboost


def test_run_config_to_dict_is_plain_json() -> None:
    cfg = load_config("train")
    data = run_config_to_dict(cfg)
    assert data["model"]["kind"] == "mlp"
    assert data["scaling"]["placement_strategy"] == "PACK"
    assert data["cost"]["node_types"][0]["name"] == cfg.cost.node_types[0].name
    assert json.loads(json.dumps(data)) == data
    assert set(data) == {f for f in vars(cfg)}


def test_to_run_config_types_an_untyped_config() -> None:
    # PyYAML reads 1e-3 as a string; the float field turns it into a number.
    cfg = to_run_config(OmegaConf.create({"train": {"lr": "1e-3"}}))
    assert cfg.train.lr == pytest.approx(1e-3)
    with pytest.raises(ConfigError, match=r"`train\.lr`.*'abc'"):
        to_run_config(OmegaConf.create({"train": {"lr": "abc"}}))
    with pytest.raises(ConfigError, match=r"`train\.epoch`"):
        to_run_config(OmegaConf.create({"train": {"epoch": 3}}))


@pytest.mark.usefixtures("clean_hydra")
def test_load_config_survives_repeated_calls_and_leftover_hydra() -> None:
    assert load_config("train").name == load_config("tune").name
    with pytest.raises(ConfigError):
        load_config("train", ["model=nope"])
    # A GlobalHydra left initialized (a notebook, an earlier crash) is not in the way.
    initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR))
    assert GlobalHydra.instance().is_initialized()
    assert load_config("serve", ["serve.port=9000"]).serve.port == 9000
    assert not GlobalHydra.instance().is_initialized()


def test_register_configs_is_idempotent() -> None:
    register_configs()
    register_configs()
    repo = ConfigStore.instance().repo
    assert "run_schema.yaml" in repo
    for group in GROUPS:
        assert list(repo[group]) == ["schema.yaml"]


def test_config_package_imports_no_heavy_frameworks() -> None:
    code = (
        "import sys, ray_ml.config; "
        "heavy = [m for m in ('ray', 'torch', 'xgboost') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
