"""Hydra sweep overrides as a ray_ml search space, read the way Hydra's own sweepers read them.

Each sweep override becomes one entry of the space format of `ray_ml/tune/_space.py`:

| override                           | space entry                      | reference                          |
|------------------------------------|----------------------------------|------------------------------------|
| `a,b` or `choice(a,b)`             | `{choice: [a, b]}`               | Optuna/Nevergrad: categorical      |
| `glob(m*,exclude=x)` (a group)     | `{choice: [matching options]}`   | basic sweeper: `Glob.filter`       |
| `range(2,6)` (int, step 1)         | `{int: [2, 5]}`                  | basic sweeper: stop excluded       |
| `range(1,10,3)`, `range(0,1,0.25)` | `{choice: [1, 4, 7]}`            | basic sweeper, Nevergrad: values   |
| `interval(0,0.5)`                  | `{uniform: [0.0, 0.5]}`          | Optuna: FloatDistribution          |
| `int(interval(1,5))`               | `{int: [1, 5]}`                  | Optuna: IntDistribution, both in   |
| `tag(log,interval(1e-4,0.1))`      | `{loguniform: [0.0001, 0.1]}`    | Optuna: FloatDistribution(log)     |
| `tag(log,int(interval(1,1024)))`   | `{qloguniform: [1, 1024, 1]}`    | Optuna: IntDistribution(log), below|

Values are plain Python: a quoted string is a `str` (as `Override.value()` gives it), lists and
dicts stay lists and dicts (a choice of `model.hidden_sizes` is a choice of lists). `shuffle(...)`
changes nothing: a searcher samples a choice in no order. `range` with step 1 over ints is the
`int` kind, the same values as the basic sweeper's expansion, but ordered for model-based
searchers; any other `range` is a choice of exactly the values the basic sweeper would run.

ray_ml spaces have no integer log-uniform kind (Tune's `lograndint`), and this plugin adds none
to ray_ml. The closest kind is `qloguniform` with q=1: log-uniform samples rounded to whole
numbers, which Tune returns as floats (`37.0`). On a float field that is exactly what Hydra's
`int(...)` would store; an integer field refuses it (the space loader lets no float kind sample an
int field), and the sweeper then names the override and the fix (see `LOG_INT_FIX`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hydra.core.config_loader import ConfigLoader
from hydra.core.object_type import ObjectType
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    QuotedString,
    RangeSweep,
)

from ray_ml.errors import ConfigError

if TYPE_CHECKING:
    from ray_ml.config import RunConfig
    from ray_ml.tune import SearchSpace

__all__ = [
    "LOG_INT_FIX",
    "SweepOverrides",
    "build_search_space",
    "domain_from_override",
    "space_from_overrides",
]

LOG_INT_FIX = (
    "ray_ml search spaces have no integer log-uniform kind, so `tag(log,int(interval(a,b)))` "
    "becomes `qloguniform` [a, b, 1], which only float fields accept. Fix: sample uniform "
    "integers with `int(interval(a,b))`, or list log-spaced values, e.g. `choice(16,32,64,128)`."
)


_SCHEMA_NODE = "schema"

def _plain(value: Any) -> Any:
    # What `Override.value()` does for a single value: quoted strings become plain `str`.
    if isinstance(value, QuotedString):
        return value.text
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value


def domain_from_override(override: Override) -> dict[str, list[Any]]:
    """The search-space entry for one sweep override, e.g. `{"loguniform": [0.0001, 0.1]}`.

    Args:
        override: A sweep override from `OverridesParser.parse_overrides`; a `glob` needs the
            parser to have been created with the config loader (its options are the group's).

    Raises:
        ConfigError: The override is not a sweep, a `range` gives no values, a `glob` matches no
            option or has no config loader; the message names the override and the fix.
    """
    line = override.input_line
    value = override.value()
    if isinstance(value, IntervalSweep):
        start, end = value.start, value.end
        is_int = isinstance(start, int) and isinstance(end, int)  # int(interval(...)) casts both
        if "log" in value.tags:
            return {"qloguniform": [start, end, 1]} if is_int else {"loguniform": [start, end]}
        return {"int": [start, end]} if is_int else {"uniform": [start, end]}
    if isinstance(value, RangeSweep):
        values = list(value.range())
        if not values:
            raise ConfigError(
                f"sweep override {line!r} gives no values: Hydra's range, like Python's, stops "
                f"before `stop`, but got start={value.start}, stop={value.stop}, "
                f"step={value.step}. Fix: e.g. `{override.get_key_element()}=range(1,5)`."
            )
        if value.step == 1 and all(isinstance(v, int) for v in values):
            return {"int": [values[0], values[-1]]}
        return {"choice": values}
    if isinstance(value, ChoiceSweep):
        return {"choice": [_plain(v) for v in value.list]}
    if override.is_choice_sweep():  # glob(...): the matching options of the config group
        if override.config_loader is None:
            raise ConfigError(
                f"sweep override {line!r}: `glob` matches the options of a config group, but "
                "the overrides were parsed without a config loader. Fix: parse them with "
                "`OverridesParser.create(config_loader=...)`."
            )
        # `GROUP/schema` is the typed schema ray_ml registers in Hydra's ConfigStore (see
        # `ray_ml.config.register_configs`), not a choice a user sweeps over.
        options = [o for o in override.sweep_string_iterator() if o != _SCHEMA_NODE]
        if not options:
            group = override.key_or_group
            known = [
                o
                for o in override.config_loader.get_group_options(group, ObjectType.CONFIG)
                if o != _SCHEMA_NODE
            ]
            raise ConfigError(
                f"sweep override {line!r} matches no option of the config group `{group}` "
                f"(its options: {', '.join(known) if known else 'none: is it a group?'}). "
                "Fix: use a pattern that matches one of them."
            )
        return {"choice": options}
    raise ConfigError(
        f"override {line!r} is not a sweep. Fix: pass it as a plain override; only sweeps "
        "(choice, glob, range, interval) become search-space entries."
    )


@dataclass(frozen=True)
class SweepOverrides:
    """A `-m` command line split into a search space and the plain overrides.

    Attributes:
        space: `{"params": {key: {kind: args}}}`, the data `SearchSpace.from_dict` reads.
        plain: The other overrides, as typed; they configure the run.
        lines: Tuned key -> the override it came from, for messages.
    """

    space: dict[str, Any]
    plain: list[str] = field(default_factory=list)
    lines: dict[str, str] = field(default_factory=dict)


def space_from_overrides(
    arguments: list[str], config_loader: ConfigLoader | None = None
) -> SweepOverrides:
    """Split Hydra overrides into a search space (the sweeps) and the plain overrides.

    Args:
        arguments: The command line's overrides, e.g. `["train.lr=interval(1e-4,0.1)"]`.
        config_loader: The app's config loader: `glob` needs it, and with it a sweep over a
            config group is refused (a trial sets values, it cannot switch a group's option).

    Raises:
        ConfigError: A sweep that has no search-space entry (see `domain_from_override`), or
            one over a config group; the message names the override and the fix.
    """
    overrides = OverridesParser.create(config_loader=config_loader).parse_overrides(arguments)
    params: dict[str, Any] = {}
    plain: list[str] = []
    lines: dict[str, str] = {}
    for override in overrides:
        line = str(override.input_line)
        if not override.is_sweep_override():
            plain.append(line)
            continue
        key = override.key_or_group
        domain = domain_from_override(override)
        if config_loader is not None and config_loader.get_group_options(key, ObjectType.CONFIG):
            raise ConfigError(
                f"sweep override {line!r} picks options of the config group `{key}`, but "
                "hydra/sweeper=ray_tune runs one Tune sweep whose trials set config values; "
                "a trial cannot switch a group's option. Fix: sweep a value instead (e.g. "
                f"`{key}.FIELD=choice(...)`), or run one sweep per option with Hydra's basic "
                f"sweeper: drop hydra/sweeper=ray_tune and keep `-m {line}` (with "
                "hydra/launcher=ray_jobs they run on a cluster)."
            )
        params[key] = domain
        lines[key] = line
    return SweepOverrides(space={"params": params}, plain=plain, lines=lines)


def build_search_space(sweep: SweepOverrides, base: RunConfig) -> SearchSpace:
    """The checked search space; an entry the space refuses is reported with its override.

    Raises:
        ConfigError: The space loader's message (unknown key, `data.*` key, wrong type, bound
            the schema refuses), prefixed with the override it came from.
    """
    from ray_ml.tune import SearchSpace  # here: the plugin module must import fast for Hydra

    for key, domain in sweep.space["params"].items():
        try:  # one entry at a time, so that the message can name the override
            SearchSpace.from_dict({"params": {key: domain}}, name="hydra", base=base)
        except ConfigError as exc:
            hint = f" {LOG_INT_FIX}" if "qloguniform" in domain else ""
            raise ConfigError(
                f"sweep override {sweep.lines[key]!r} gives the space entry "
                f"`{key}: {domain}`, which ray_ml refuses: {exc}{hint}"
            ) from None
    return SearchSpace.from_dict(sweep.space, name="hydra", base=base)
