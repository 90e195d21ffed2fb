"""Search spaces: YAML -> checked `SearchSpace` -> Tune domains -> trial configs. No Ray cluster."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from ray import tune
from ray.tune.search.sample import Categorical, Float, Integer

from ray_ml.config import CONF_DIR, ModelKind, NormKind, RunConfig, load_config
from ray_ml.errors import ConfigError
from ray_ml.tune import (
    DomainKind,
    SearchSpace,
    apply_params,
    available_spaces,
    load_space,
    tunable_keys,
)

pytestmark = pytest.mark.unit


def _space(params: dict[str, Any], **top: Any) -> SearchSpace:
    return SearchSpace.from_dict({"params": params, **top}, name="t")


def _error(params: dict[str, Any], **top: Any) -> str:
    with pytest.raises(ConfigError) as info:
        _space(params, **top)
    return str(info.value)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(textwrap.dedent(text))
    return path


# ------------------------------------------------------------------------------ shipped spaces
def test_shipped_spaces_exist_for_every_model_kind() -> None:
    assert set(available_spaces()) >= {kind.value for kind in ModelKind}


@pytest.mark.parametrize("kind", [k.value for k in ModelKind])
def test_default_space_loads_against_its_models_config(kind: str) -> None:
    cfg = load_config("tune", [f"model={kind}"])
    assert cfg.tune.space == kind  # tune.space follows model.kind
    space = load_space(cfg.tune.space, base=cfg)
    assert space.source == CONF_DIR / "tune" / "space" / f"{kind}.yaml"
    assert all(key.split(".")[0] in {"train", "model"} for key in space.keys)
    assert space.grid_size == 1  # shipped spaces work with TPE, which cannot search a grid


def test_mlp_space_becomes_tune_domains() -> None:
    domains = load_space("mlp").to_tune()
    lr = domains["train.lr"]
    assert isinstance(lr, Float) and type(lr.get_sampler()).__name__ == "_LogUniform"
    assert (lr.lower, lr.upper) == (1e-4, 1e-1)
    assert isinstance(lr.lower, float)  # `1.0e-4` in YAML is a float
    assert isinstance(domains["model.dropout"], Float)
    assert isinstance(domains["train.batch_size"], Categorical)
    assert domains["train.batch_size"].categories == [32, 64, 128]
    # Lists travel as JSON strings so every searcher sees plain categories.
    assert domains["model.hidden_sizes"].categories == ["[64]", "[128, 64]", "[256, 128]"]
    assert domains["model.norm"].categories == ["none", "batch", "layer"]


def test_xgboost_int_domain_includes_its_upper_bound() -> None:
    depth = load_space("xgboost").to_tune()["model.max_depth"]
    assert isinstance(depth, Integer)
    assert (depth.lower, depth.upper) == (2, 11)  # Tune's randint excludes its upper bound


@pytest.mark.parametrize("name", ["mlp", "xgboost"])
def test_every_sample_applies_to_a_valid_config(name: str) -> None:
    base = load_config("tune", [f"model={name}"])
    domains = load_space(name).to_tune()
    samples = {key: domain.sample(size=25, random_state=0) for key, domain in domains.items()}
    for i in range(25):
        cfg = apply_params(base, {key: values[i] for key, values in samples.items()})
        assert isinstance(cfg, RunConfig)
        assert isinstance(cfg.train.lr, float) and isinstance(cfg.model.max_depth, int)
        assert isinstance(cfg.model.hidden_sizes, list)


# ---------------------------------------------------------------------------------- parsing
def test_yaml_numbers_without_a_dot_are_floats(tmp_path: Path) -> None:
    # PyYAML reads `1e-4` as the string "1e-4"; the space reads it as a number.
    path = _write(
        tmp_path,
        """
        params:
          train.lr: {loguniform: [1e-4, 1.0e-1]}
          train.weight_decay: {choice: [0, 1e-4, 1.0e-3]}
        """,
    )
    assert yaml.safe_load(path.read_text())["params"]["train.lr"]["loguniform"][0] == "1e-4"
    space = load_space(path)
    assert space.name == "space"
    assert space.params["train.lr"].low == 1e-4
    assert isinstance(space.params["train.lr"].low, float)
    assert space.params["train.weight_decay"].values == (0.0, 1e-4, 1e-3)
    assert all(isinstance(v, float) for v in space.params["train.weight_decay"].values)


def test_every_domain_kind() -> None:
    space = _space(
        {
            "model.dropout": {"uniform": [0.0, 0.5]},
            "model.eta": {"quniform": [0.05, 0.5, 0.05]},
            "train.lr": {"loguniform": [1e-4, 1e-1]},
            "model.min_child_weight": {"qloguniform": [0.1, 10, 0.1]},
            "model.max_depth": {"int": [2, 10]},
            "train.batch_size": {"choice": [32, 64]},
            "model.norm": {"grid": ["none", "layer"]},
            "train.optimizer": {"grid": ["adamw", "sgd"]},
            "seed": {"grid": [0, 1, 2]},
        }
    )
    kinds = {key: p.kind for key, p in space.params.items()}
    assert kinds["model.max_depth"] is DomainKind.integer
    assert space.params["model.norm"].values == (NormKind.none, NormKind.layer)
    domains = space.to_tune()
    assert domains["model.norm"] == tune.grid_search(["none", "layer"])
    assert domains["seed"] == {"grid_search": [0, 1, 2]}
    assert domains["model.eta"].sample(random_state=0) % 0.05 == pytest.approx(0.0, abs=1e-9)
    assert space.grid_size == 2 * 2 * 3


def test_to_dict_round_trips() -> None:
    for name in available_spaces():
        space = load_space(name)
        again = SearchSpace.from_dict(space.to_dict(), name=name)
        assert again.params == space.params
        assert yaml.safe_load(yaml.safe_dump(space.to_dict())) == space.to_dict()


# ------------------------------------------------------------------------------- bad spaces
def test_unknown_key_names_it_and_lists_valid_keys() -> None:
    msg = _error({"model.dropuot": {"uniform": [0.0, 0.5]}})
    assert "`model.dropuot`" in msg
    assert "Did you mean `model.dropout`?" in msg
    assert "model.hidden_sizes" in msg and "model.max_depth" in msg  # the valid keys
    msg = _error({"lr": {"uniform": [0.0, 0.5]}})
    assert "`lr`" in msg and "Did you mean `train.lr`?" in msg


def test_untunable_keys_are_refused() -> None:
    assert "not tunable" in _error({"tune.num_samples": {"choice": [1, 2]}})
    assert "not tunable" in _error({"cluster.num_cpus": {"choice": [1, 2]}})
    assert "`scaling.resources_per_worker`" in _error(
        {"scaling.resources_per_worker": {"choice": [1]}}
    )
    assert set(tunable_keys()) >= {"train.lr", "model.hidden_sizes", "seed"}
    assert not any(k.startswith(("tune.", "cost.", "serve.", "cluster.")) for k in tunable_keys())


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"model.dropout": {"uniform": [0.5, 0.1]}}, "low < high"),
        ({"model.dropout": {"uniform": [0.1]}}, "list of 2 numbers"),
        ({"model.dropout": {"uniform": ["a", 0.5]}}, "finite number"),
        ({"train.lr": {"loguniform": [0.0, 0.1]}}, "low > 0"),
        ({"model.eta": {"quniform": [0.1, 0.5, 0]}}, "q > 0"),
        ({"model.max_depth": {"int": [2.5, 10]}}, "whole number"),
        ({"model.max_depth": {"int": [10, 2]}}, "low <= high"),
        ({"model.max_depth": {"uniform": [2, 10]}}, "integer field"),
        ({"model.norm": {"uniform": [0, 1]}}, "cannot sample"),
        ({"model.norm": {"choice": ["none", "group"]}}, "group"),
        ({"model.norm": {"choice": []}}, "non-empty list"),
        ({"train.batch_size": {"choice": [32, 32]}}, "twice"),
        ({"train.batch_size": {"choice": [32, "big"]}}, "type int"),
        ({"model.hidden_sizes": {"choice": [[64], 64]}}, "type list[int]"),
        ({"model.dropout": {"normal": [0, 1]}}, "unknown"),
        ({"model.dropout": {"unifrom": [0, 1]}}, "Did you mean `uniform`?"),
        ({"model.dropout": [0.1, 0.2]}, "must map to one domain"),
    ],
)
def test_malformed_domains_name_the_key(params: dict[str, Any], expected: str) -> None:
    msg = _error(params)
    assert f"`{next(iter(params))}`" in msg
    assert expected in msg
    assert "Fix" in msg


def test_bounds_the_schema_refuses_fail_on_load() -> None:
    # ModelConfig.dropout must be < 1: the upper bound is refused before any trial runs.
    msg = _error({"model.dropout": {"uniform": [0.0, 1.0]}})
    assert "`model.dropout`=1.0 (its upper bound)" in msg
    assert "must be in [0.0, 1.0)" in msg and "Fix:" in msg
    msg = _error({"train.lr": {"choice": [0.01, -1]}})
    assert "`train.lr`=-1.0 (its choice value)" in msg


def test_cross_field_checks_run_against_the_base_config() -> None:
    params = {"scaling.num_workers": {"int": [1, 4]}}
    assert _space(params).params  # schema defaults: no CPU limit on the embedded Ray
    base = load_config("tune", ["cluster.num_cpus=2", "scaling.num_workers=1"])
    with pytest.raises(ConfigError, match=r"`scaling.num_workers`=4.*`cluster.num_cpus`"):
        SearchSpace.from_dict({"params": params}, base=base)


def test_file_level_errors(tmp_path: Path) -> None:
    assert "`conditional`" in _error({"train.lr": {"uniform": [0.1, 0.2]}}, conditional={"a": 1})
    assert _space({"train.lr": {"uniform": [0.1, 0.2]}}, conditional={}).params
    assert "'parms'" in _error({"train.lr": {"uniform": [0.1, 0.2]}}, parms={})
    with pytest.raises(ConfigError, match="non-empty mapping"):
        SearchSpace.from_dict({"params": {}})
    with pytest.raises(ConfigError, match=r"space='nope'.*mlp, xgboost"):
        load_space("nope")
    with pytest.raises(ConfigError, match="not found"):
        load_space(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_space(_write(tmp_path, "params: {train.lr: [\n"))
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_space(_write(tmp_path, "- a\n- b\n"))


# ------------------------------------------------------------------------------ apply_params
def test_apply_params_returns_a_validated_copy() -> None:
    base = RunConfig()
    cfg = apply_params(
        base,
        {
            "train.lr": np.float64(0.01),
            "train.batch_size": np.int64(128),
            "model.hidden_sizes": "[128, 64]",  # as `to_tune` encodes it
            "model.norm": "layer",
            "seed": 7,
        },
    )
    assert cfg.train.lr == 0.01 and type(cfg.train.lr) is float
    assert cfg.train.batch_size == 128 and type(cfg.train.batch_size) is int
    assert cfg.model.hidden_sizes == [128, 64]
    assert cfg.model.norm is NormKind.layer
    assert cfg.seed == 7
    assert base == RunConfig()  # the base is untouched
    assert cfg.data.sources is not base.data.sources  # and shares no lists with the copy


def test_apply_params_fails_clearly_on_out_of_range_values() -> None:
    with pytest.raises(ConfigError) as info:
        apply_params(RunConfig(), {"train.lr": -3.0, "train.epochs": 2})
    msg = str(info.value)
    assert msg.startswith("trial params {'train.lr': -3.0, 'train.epochs': 2} give an invalid")
    assert "`train.lr` must be positive, but got lr=-3.0" in msg and "Fix:" in msg
    # Cross-field checks of RunConfig run too.
    with pytest.raises(ConfigError, match="`cluster.num_gpus`"):
        apply_params(RunConfig(), {"scaling.use_gpu": True, "scaling.gpus_per_worker": 1.0})


def test_apply_params_refuses_unknown_keys_and_wrong_types() -> None:
    with pytest.raises(ConfigError, match=r"`train.epoch`.*Did you mean `train.epochs`"):
        apply_params(RunConfig(), {"train.epoch": 3})
    with pytest.raises(ConfigError, match=r"`train.epochs` must be of type int.*2.5"):
        apply_params(RunConfig(), {"train.epochs": 2.5})
    with pytest.raises(ConfigError, match=r"`model.norm` must be one of none, batch, layer"):
        apply_params(RunConfig(), {"model.norm": "group"})


def test_loading_a_space_imports_no_ray() -> None:
    code = (
        "import sys; from ray_ml.tune import load_space; load_space('mlp'); "
        "assert 'ray' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
