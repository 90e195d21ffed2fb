"""Hydra sweep overrides -> ray_ml search-space entries, override by override, against Hydra's own
sweepers: the basic sweeper's expansion for discrete sweeps, Optuna's distributions for intervals."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hydra import initialize_config_dir
from hydra.core.config_loader import ConfigLoader
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, QuotedString

from hydra_plugins.ray_ml_sweeper.ray_tune_sweeper import (
    LOG_INT_FIX,
    build_search_space,
    domain_from_override,
    space_from_overrides,
)
from ray_ml.config import CONF_DIR, RunConfig
from ray_ml.errors import ConfigError

pytestmark = pytest.mark.unit


def _parse(line: str, config_loader: ConfigLoader | None = None) -> Override:
    (override,) = OverridesParser.create(config_loader=config_loader).parse_overrides([line])
    return override


def _typed(value: Any) -> Any:
    # `1 == 1.0` and `{"int": [1]} == {"int": [1.0]}`: compare the types too.
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


# (override as typed on the command line, the expected space entry); the comment names the
# reference: Hydra's basic sweeper (BS), Optuna's create_optuna_distribution_from_override (OP),
# Nevergrad's create_nevergrad_parameter_from_override (NG).
TABLE = [
    # choices: categorical in OP and NG; the values BS runs
    ("model.norm=none,batch", {"choice": ["none", "batch"]}),
    ("train.batch_size=choice(32,64,128)", {"choice": [32, 64, 128]}),
    ("model.activation='relu',\"gelu\"", {"choice": ["relu", "gelu"]}),  # quoted: plain str
    ("model.activation=choice('relu','silu')", {"choice": ["relu", "silu"]}),
    ("model.hidden_sizes=[64],[128,64]", {"choice": [[64], [128, 64]]}),  # lists stay lists
    ("model.hidden_sizes=['a b'],[2]", {"choice": [["a b"], [2]]}),  # quoted inside a list
    ("x=1,null", {"choice": [1, None]}),
    ("x=true,false", {"choice": [True, False]}),
    ("x={a:1},{a:'b'}", {"choice": [{"a": 1}, {"a": "b"}]}),
    ("x=1e-3,1e-2", {"choice": [0.001, 0.01]}),
    ("x=str(choice(1,2))", {"choice": ["1", "2"]}),  # a cast applies to every value
    ("x=sort(3,1,2)", {"choice": [1, 2, 3]}),
    ("x=shuffle(choice(a,b))", {"choice": ["a", "b"]}),  # no order in a sampled choice
    # ranges: the values BS runs, `stop` excluded; step 1 over ints is the `int` kind
    ("train.epochs=range(2,6)", {"int": [2, 5]}),
    ("train.epochs=shuffle(range(1,4))", {"int": [1, 3]}),
    ("train.epochs=int(range(1,4))", {"int": [1, 3]}),
    ("train.epochs=range(1,10,3)", {"choice": [1, 4, 7]}),
    ("train.epochs=range(5,1,-1)", {"choice": [5, 4, 3, 2]}),
    ("model.dropout=range(0,1,0.25)", {"choice": [0.0, 0.25, 0.5, 0.75]}),
    ("model.dropout=float(range(1,4))", {"choice": [1.0, 2.0, 3.0]}),
    ("model.dropout=range(0.5,2)", {"choice": [0.5, 1.5]}),
    # intervals: OP's FloatDistribution / IntDistribution (both bounds included)
    ("model.dropout=interval(0,0.5)", {"uniform": [0.0, 0.5]}),
    ("model.eta=interval(1,5)", {"uniform": [1.0, 5.0]}),  # uncast interval() is float
    ("model.max_depth=int(interval(1,5))", {"int": [1, 5]}),
    ("train.lr=tag(log,interval(1e-4,1e-1))", {"loguniform": [0.0001, 0.1]}),
    ("train.lr=tag(mine,interval(0.1,0.2))", {"uniform": [0.1, 0.2]}),  # other tags: ignored
    # OP: IntDistribution(log=True); ray_ml's closest kind (see _overrides.py)
    ("model.min_child_weight=tag(log,int(interval(1,1024)))", {"qloguniform": [1, 1024, 1]}),
]


@pytest.mark.parametrize(("line", "expected"), TABLE, ids=[line for line, _ in TABLE])
def test_each_sweep_override_becomes_the_entry_hydras_sweepers_would_use(
    line: str, expected: dict[str, list[Any]]
) -> None:
    got = domain_from_override(_parse(line))
    assert _typed(got) == _typed(expected)
    assert "QuotedString" not in repr(got)


# Not `str(choice(1,2))`: the basic sweeper runs `x=1`, which reads back as the int 1 (its cast is
# lost in the string round trip), while Optuna and Nevergrad keep the str "1", as ray_ml does.
DISCRETE = [(ln, exp) for ln, exp in TABLE if "interval" not in ln and "str(" not in ln]


@pytest.mark.parametrize(("line", "expected"), DISCRETE, ids=[line for line, _ in DISCRETE])
def test_discrete_entries_hold_exactly_the_values_the_basic_sweeper_runs(
    line: str, expected: dict[str, list[Any]]
) -> None:
    override = _parse(line)
    # The basic sweeper runs one job per `key=<string>`; each job reads that string back.
    key = override.get_key_element()
    ran = [_parse(f"{key}={s}").value() for s in override.sweep_string_iterator()]
    ((kind, args),) = domain_from_override(override).items()
    values = list(range(args[0], args[1] + 1)) if kind == "int" else args
    assert sorted(map(repr, _typed(values))) == sorted(map(repr, _typed(ran)))


@pytest.fixture
def conf_loader(hydra_restore_singletons: None) -> Iterator[ConfigLoader]:
    # hydra_restore_singletons: initialize_config_dir sets Hydra's version base for the session.
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield GlobalHydra.instance().config_loader()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("model=glob(*)", ["mlp", "xgboost"]),
        ("data=glob(*,exclude=[synthetic,d*])", ["breast_cancer", "iris", "wine"]),
        ("tune=glob([h*])", ["hyperband"]),
    ],
)
def test_glob_expands_over_the_config_groups_options_like_the_basic_sweeper(
    conf_loader: ConfigLoader, line: str, expected: list[str]
) -> None:
    override = _parse(line, conf_loader)
    # Hydra's own expansion; the typed `schema` node ray_ml registers (once any test has
    # called register_configs) is no choice, and the sweeper leaves it out.
    hydras = [o for o in override.sweep_string_iterator() if o != "schema"]
    assert hydras == expected
    assert domain_from_override(override) == {"choice": expected}


@pytest.mark.parametrize("line", ["model=glob(*)", "model=mlp,xgboost", "data=choice(iris,wine)"])
def test_a_sweep_over_a_config_group_is_refused_naming_the_override_and_the_fix(
    conf_loader: ConfigLoader, line: str
) -> None:
    with pytest.raises(ConfigError, match="config group") as info:
        space_from_overrides([line, "train.lr=interval(0.1,0.2)"], conf_loader)
    assert repr(line) in str(info.value) and "Fix:" in str(info.value)
    assert "hydra/sweeper=ray_tune" in str(info.value)


def test_the_command_line_splits_into_the_space_and_the_plain_overrides(
    conf_loader: ConfigLoader,
) -> None:
    sweep = space_from_overrides(
        [
            "model=xgboost",  # a plain group choice configures the run
            "model.max_depth=int(interval(2,8))",
            "~tracking",
            "+seed=range(0,3)",
            "tune.budget_usd=0.5",
            "train.lr='0.1','0.2'",  # quoted: strings, which the float field converts
        ],
        conf_loader,
    )
    assert sweep.plain == ["model=xgboost", "~tracking", "tune.budget_usd=0.5"]
    assert sweep.space == {
        "params": {
            "model.max_depth": {"int": [2, 8]},
            "seed": {"int": [0, 2]},
            "train.lr": {"choice": ["0.1", "0.2"]},
        }
    }
    assert sweep.lines["seed"] == "+seed=range(0,3)"
    assert not any(isinstance(v, QuotedString) for v in sweep.space["params"]["train.lr"]["choice"])


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("train.epochs=range(5,5)", r"'train.epochs=range\(5,5\)' gives no values.*Fix:"),
        ("model=glob(*)", r"'model=glob\(\*\)'.*without a config loader.*Fix:"),
        ("train.lr=0.1", r"'train.lr=0.1' is not a sweep.*Fix:"),
    ],
)
def test_untranslatable_overrides_fail_naming_the_override_and_the_fix(
    line: str, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        domain_from_override(_parse(line))


def test_a_glob_matching_nothing_lists_the_groups_options(conf_loader: ConfigLoader) -> None:
    with pytest.raises(ConfigError, match=r"no option of the config group `model`.*mlp, xgboost"):
        domain_from_override(_parse("model=glob(cnn*)", conf_loader))


def test_the_translated_entries_load_as_a_ray_ml_space_with_the_fields_types() -> None:
    sweep = space_from_overrides(
        [
            "train.lr=tag(log,interval(1e-4,1e-1))",
            "model.dropout=interval(0,0.5)",
            "model.max_depth=int(interval(2,10))",
            "train.epochs=range(2,6)",
            "train.batch_size=range(32,129,32)",
            "model.hidden_sizes=[64],[128,64]",
            "model.norm='none',batch",
            "model.min_child_weight=tag(log,int(interval(1,64)))",
        ]
    )
    p = build_search_space(sweep, RunConfig()).params
    assert (p["model.max_depth"].low, p["model.max_depth"].high) == (2, 10)
    assert type(p["model.max_depth"].low) is int
    assert p["train.batch_size"].values == (32, 64, 96, 128)
    assert p["model.hidden_sizes"].values == ([64], [128, 64])
    assert [v.value for v in p["model.norm"].values] == ["none", "batch"]  # str -> the enum
    assert (p["model.min_child_weight"].kind.value, p["model.min_child_weight"].q) == (
        "qloguniform",
        1.0,
    )


def test_a_log_int_interval_on_an_integer_field_is_refused_with_the_hydra_fix() -> None:
    # ray_ml spaces have no integer log-uniform kind (see _overrides.py).
    line = "train.batch_size=tag(log,int(interval(16,512)))"
    with pytest.raises(ConfigError, match="integer field") as info:
        build_search_space(space_from_overrides([line]), RunConfig())
    assert str(info.value).startswith(f"sweep override {line!r}")
    assert str(info.value).endswith(LOG_INT_FIX)


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("data.max_reject_rate=interval(0,0.1)", "not tunable: every trial trains on the one"),
        ("train.lrr=interval(0.1,0.2)", "Did you mean `train.lr`"),
        ("model.norm=none,batchnorm", "must be one of none, batch, layer"),
    ],
)
def test_an_entry_the_space_refuses_is_reported_with_its_override(line: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        build_search_space(space_from_overrides([line, "seed=range(0,3)"]), RunConfig())
    assert str(info.value).startswith(f"sweep override {line!r} gives the space entry")
