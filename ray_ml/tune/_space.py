"""Search spaces written in YAML, checked against the config schema, turned into Tune domains.

This module is the one place where a search space becomes `ray.tune` domains. A space lives in
`conf/tune/space/NAME.yaml` (`tune.space=NAME` picks it):

```yaml
params:
  train.lr: {loguniform: [1.0e-4, 1.0e-1]}
  train.batch_size: {choice: [32, 64, 128]}
  model.hidden_sizes: {choice: [[64], [128, 64]]}
  model.max_depth: {int: [2, 10]}   # both bounds included
conditional: {}                     # reserved; must be empty for now
```

Keys are dotted paths into the `model`, `train` and `scaling` groups of `RunConfig` (plus the
top-level `seed`); `data.*` and a few train keys are refused, because every trial trains on the
one dataset the sweep prepares (see `_FIXED_KEYS`). Domain kinds, with their YAML arguments:

| kind          | arguments        | Tune domain                    | samples                    |
|---------------|------------------|--------------------------------|----------------------------|
| `uniform`     | [low, high]      | `tune.uniform`                 | float in [low, high)       |
| `quniform`    | [low, high, q]   | `tune.quniform`                | multiple of q              |
| `loguniform`  | [low, high]      | `tune.loguniform`              | float, log-uniform, low > 0|
| `qloguniform` | [low, high, q]   | `tune.qloguniform`             | multiple of q              |
| `int`         | [low, high]      | `tune.randint(low, high + 1)`  | int in [low, high], both in|
| `choice`      | [v1, v2, ...]    | `tune.choice`                  | one of the values          |
| `grid`        | [v1, v2, ...]    | `tune.grid_search`             | every value, in every repeat|

Values are converted to the field's type on load, so `1e-3` (a string to PyYAML, which needs a
dot in `1.0e-3`) is a float, and `none` for an enum field is its member. Every bound and choice
is applied to a base config on load (`RunConfig()` unless given), so a range the schema would
refuse fails before the sweep starts, naming the key and the value.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import json
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

import yaml

from ray_ml.config import CONF_DIR, RunConfig
from ray_ml.errors import ConfigError

__all__ = [
    "DomainKind",
    "Param",
    "SearchSpace",
    "apply_params",
    "available_spaces",
    "load_space",
    "tunable_keys",
]

SPACE_DIR = CONF_DIR / "tune" / "space"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
# A trial changes how one model is trained; the data, the sweep, prices, service and cluster
# stay fixed. Every trial trains on the one dataset the sweep prepared (checked, split and
# preprocessed once), so `data.*` keys, and the train keys that reshape the rows (`resample`),
# would be silently ignored or change nothing but the bill: they are refused, saying so.
_TUNABLE_GROUPS = ("model", "train", "scaling")
_TUNABLE_TOP = ("seed",)
_FIXED_KEYS = {
    "train.resample": "oversampling reshapes the training rows, which the sweep prepares once",
    "train.resume": "every trial resumes its own run; the sweep decides",
    "train.max_failures": "Tune restarts failed trials (`train.max_failures` sets its count)",
    "train.chaos_kill_at_epoch": "a fault-injection drill, not a hyperparameter",
}
_TOP_KEYS = ("params", "conditional")


class DomainKind(StrEnum):
    """How a parameter is sampled; the values are the YAML keys."""

    uniform = "uniform"
    quniform = "quniform"
    loguniform = "loguniform"
    qloguniform = "qloguniform"
    integer = "int"  # both bounds included
    choice = "choice"
    grid = "grid"


_RANGE_KINDS = {
    DomainKind.uniform: 2,
    DomainKind.quniform: 3,
    DomainKind.loguniform: 2,
    DomainKind.qloguniform: 3,
    DomainKind.integer: 2,
}
_FLOAT_KINDS = frozenset(_RANGE_KINDS) - {DomainKind.integer}
_LOG_KINDS = frozenset({DomainKind.loguniform, DomainKind.qloguniform})


# ---------------------------------------------------------------------------- schema lookup
@dataclass(frozen=True)
class _Field:
    key: str
    path: tuple[str, ...]  # ("model", "dropout") or ("seed",)
    tp: Any  # the base type, Optional stripped
    optional: bool

    @property
    def is_list(self) -> bool:
        return typing.get_origin(self.tp) is list

    @property
    def is_float(self) -> bool:
        return self.tp is float

    @property
    def is_numeric(self) -> bool:
        return self.tp in (int, float)

    def type_name(self) -> str:
        name = getattr(self.tp, "__name__", str(self.tp))
        if self.is_list:
            name = str(self.tp).replace("typing.", "")
        return f"{name} | None" if self.optional else name


def _hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _split_optional(tp: Any) -> tuple[Any, bool]:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _tunable(tp: Any) -> bool:
    # Dict fields (e.g. scaling.resources_per_worker) and nested dataclasses are not leaves.
    base, _ = _split_optional(tp)
    return typing.get_origin(base) is not dict and not dataclasses.is_dataclass(base)


def _schema_fields() -> dict[str, _Field]:
    out: dict[str, _Field] = {}
    run_hints = _hints(RunConfig)
    for name in _TUNABLE_TOP:
        tp, optional = _split_optional(run_hints[name])
        out[name] = _Field(name, (name,), tp, optional)
    for group in _TUNABLE_GROUPS:
        for name, hint in _hints(run_hints[group]).items():
            if _tunable(hint) and f"{group}.{name}" not in _FIXED_KEYS:
                tp, optional = _split_optional(hint)
                key = f"{group}.{name}"
                out[key] = _Field(key, (group, name), tp, optional)
    return out


_FIELDS = _schema_fields()


def tunable_keys() -> list[str]:
    """Every key a search space may set, e.g. `train.lr`, in schema order."""
    return list(_FIELDS)


def _resolve(key: Any, where: str) -> _Field:
    if isinstance(key, str) and key in _FIELDS:
        return _FIELDS[key]
    group, _, leaf = str(key).partition(".")
    run_groups = {f.name for f in dataclasses.fields(RunConfig)}
    if key in _FIXED_KEYS:
        raise ConfigError(
            f"{where}key `{key}` is not tunable: {_FIXED_KEYS[key]}. Fix: set it once for the "
            f"whole sweep (e.g. `{key}=...` on the command line) and remove it from the space."
        )
    if group == "data":
        raise ConfigError(
            f"{where}key `{key}` is not tunable: every trial trains on the one dataset the sweep "
            "prepares (checked, split and preprocessed once), so a trial cannot change `data.*`. "
            f"Fix: remove `{key}` from the space and set it for the whole sweep, or run one "
            "sweep per data setting (e.g. a Hydra multirun over it)."
        )
    if group in _TUNABLE_GROUPS:
        valid = [k for k in _FIELDS if k.startswith(f"{group}.")]
        close = difflib.get_close_matches(str(key), valid, n=1)
        hint = f"Did you mean `{close[0]}`? " if close else ""
        schema = typing.get_type_hints(RunConfig)[group].__name__
        raise ConfigError(
            f"{where}key `{key}` is not a tunable field of {schema}. {hint}Valid keys: "
            f"{', '.join(valid)}."
        )
    if group in run_groups and group not in _TUNABLE_TOP:
        raise ConfigError(
            f"{where}key `{key}` is not tunable: a trial cannot change `{group}` (the sweep, "
            f"prices, service, cluster and run identity stay fixed). Fix: tune keys under "
            f"{', '.join(g + '.' for g in _TUNABLE_GROUPS)} or {', '.join(_TUNABLE_TOP)}."
        )
    # `lr` -> `train.lr`: a missing group is the likeliest slip.
    leaf_matches = [k for k in _FIELDS if k.rsplit(".", 1)[-1] == str(key).rsplit(".", 1)[-1]]
    close = leaf_matches or difflib.get_close_matches(str(key), list(_FIELDS), n=1)
    hint = f"Did you mean `{close[0]}`? " if close else ""
    raise ConfigError(
        f"{where}key `{key}` is not a config key. {hint}Keys are dotted paths `GROUP.FIELD` "
        f"with GROUP one of {', '.join(_TUNABLE_GROUPS)}, or {', '.join(_TUNABLE_TOP)}; valid "
        f"keys: {', '.join(_FIELDS)}."
    )


# ------------------------------------------------------------------------------ conversion
def _unwrap(value: Any) -> Any:
    # numpy scalars from Tune's samplers (np.int64, np.float64, np.bool_) -> Python scalars.
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, str | bytes | list | tuple | dict):
        try:
            return item()
        except (TypeError, ValueError):
            return value
    return value


def _convert(f: _Field, value: Any, where: str) -> Any:
    """`value` as the field's type (enum members for enum fields), or ConfigError."""
    value = _unwrap(value)
    if value is None:
        if f.optional:
            return None
        raise _type_error(f, value, where)
    return _convert_to(f, f.tp, value, where)


def _convert_to(f: _Field, tp: Any, value: Any, where: str) -> Any:
    value = _unwrap(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, str):
            # PyYAML reads `1e-3` (no dot) as a string.
            try:
                value = float(value)
            except ValueError:
                raise _type_error(f, value, where) from None
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif isinstance(tp, type) and issubclass(tp, Enum):
        try:
            return tp(value)
        except ValueError:
            choices = ", ".join(str(m.value) for m in tp)
            raise ConfigError(
                f"{where}`{f.key}` must be one of {choices}, but got {value!r}. Fix: use one "
                "of those values."
            ) from None
    elif typing.get_origin(tp) is list:
        if isinstance(value, str):
            # `to_tune` encodes list choices as JSON strings: see `SearchSpace.to_tune`.
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise _type_error(f, value, where) from None
        if isinstance(value, list | tuple):
            (elem,) = typing.get_args(tp)
            return [_convert_to(f, elem, v, where) for v in value]
    raise _type_error(f, value, where)


def _type_error(f: _Field, value: Any, where: str) -> ConfigError:
    return ConfigError(
        f"{where}`{f.key}` must be of type {f.type_name()}, but got {value!r} "
        f"({type(value).__name__}). Fix: give `{f.key}` values of that type."
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------------- params
@dataclass(frozen=True)
class Param:
    """One tuned key and how it is sampled.

    Attributes:
        key: Dotted config key, e.g. `train.lr`.
        kind: How it is sampled.
        low: Lower bound of a range kind; None for `choice` and `grid`.
        high: Upper bound of a range kind (included for `int`); None for `choice` and `grid`.
        q: Quantum of `quniform`/`qloguniform`; None otherwise.
        values: The values of `choice`/`grid`, converted to the field's type; empty otherwise.
    """

    key: str
    kind: DomainKind
    low: float | int | None = None
    high: float | int | None = None
    q: float | None = None
    values: tuple[Any, ...] = ()

    def to_tune(self) -> Any:
        """The Tune domain (or grid-search spec) for this parameter."""
        from ray import tune  # here, not at import: loading and checking a space needs no Ray

        if self.kind in _RANGE_KINDS:
            low, high, q = self._bounds()
            if self.kind is DomainKind.uniform:
                return tune.uniform(low, high)
            if self.kind is DomainKind.quniform:
                return tune.quniform(low, high, q)
            if self.kind is DomainKind.loguniform:
                return tune.loguniform(low, high)
            if self.kind is DomainKind.qloguniform:
                return tune.qloguniform(low, high, q)
            # Tune's upper bound is exclusive, the YAML's inclusive.
            return tune.randint(int(low), int(high) + 1)
        categories = [_encode(v) for v in self.values]
        if self.kind is DomainKind.choice:
            return tune.choice(categories)
        return tune.grid_search(categories)

    def contains(self, value: Any) -> bool:
        """Whether `value` (as `to_tune` encodes it, e.g. from a leaderboard) is in the domain."""
        if self.kind in _RANGE_KINDS:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return False
            low, high, _ = self._bounds()
            if self.kind is DomainKind.integer and float(value) != int(value):
                return False
            return bool(low <= value <= high)
        return any(value == c and type(value) is type(c) for c in map(_encode, self.values))

    def _bounds(self) -> tuple[float, float, float]:
        # `SearchSpace.from_dict` always sets them; a hand-built Param may not have.
        needs_q = _RANGE_KINDS[self.kind] == 3
        if self.low is None or self.high is None or (needs_q and self.q is None):
            args = "low, high and q" if needs_q else "low and high"
            raise ConfigError(
                f"`{self.key}`: a `{self.kind.value}` Param needs {args}, but got low="
                f"{self.low!r}, high={self.high!r}, q={self.q!r}. Fix: build spaces with "
                "`SearchSpace.from_dict` or `load_space`."
            )
        return self.low, self.high, self.q or 0.0

    def to_dict(self) -> dict[str, list[Any]]:
        """The YAML form, e.g. `{"loguniform": [0.0001, 0.1]}`."""
        if self.kind in _RANGE_KINDS:
            args = [self.low, self.high] + ([self.q] if self.q is not None else [])
            return {self.kind.value: args}
        return {self.kind.value: [_plain(v) for v in self.values]}

    def extremes(self) -> list[tuple[str, Any]]:
        """The values a trial may take at the edges: both bounds, or every listed value."""
        if self.kind in _RANGE_KINDS:
            return [("lower bound", self.low), ("upper bound", self.high)]
        return [(f"{self.kind.value} value", v) for v in self.values]


def _encode(value: Any) -> Any:
    # Searchers such as Optuna want categories of None, bool, int, float or str; a list
    # (e.g. hidden sizes) travels as JSON and `apply_params` decodes it by the field's type.
    plain = _plain(value)
    return json.dumps(plain) if isinstance(plain, list) else plain


def _number(f: _Field, kind: DomainKind, value: Any, what: str, where: str) -> float | int:
    value = _unwrap(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):  # not a number: reported just below
            value = float(value)  # `1e-3` without a dot is a string to PyYAML
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(
            f"{where}`{f.key}`: the {what} of `{kind.value}` must be a finite number, but got "
            f"{value!r}. Fix: write numbers, e.g. `{{{kind.value}: {_EXAMPLES[kind]}}}`."
        )
    if kind is DomainKind.integer:
        if not float(value).is_integer():
            raise ConfigError(
                f"{where}`{f.key}`: the {what} of `int` must be a whole number, but got "
                f"{value!r}. Fix: use whole bounds, e.g. `{{int: [2, 10]}}`, or `uniform`."
            )
        return int(value)
    return float(value)


_EXAMPLES = {
    DomainKind.uniform: "[0.0, 0.5]",
    DomainKind.quniform: "[0.0, 0.5, 0.05]",
    DomainKind.loguniform: "[1.0e-4, 1.0e-1]",
    DomainKind.qloguniform: "[1.0e-4, 1.0e-1, 1.0e-5]",
    DomainKind.integer: "[2, 10]",
    DomainKind.choice: "[32, 64, 128]",
    DomainKind.grid: "[32, 64, 128]",
}


def _parse_param(key: Any, spec: Any, where: str) -> Param:
    f = _resolve(key, where)
    kinds = ", ".join(k.value for k in DomainKind)
    if not (isinstance(spec, Mapping) and len(spec) == 1):
        raise ConfigError(
            f"{where}`{f.key}` must map to one domain such as `{{uniform: [0.0, 0.5]}}`, but "
            f"got {spec!r}. Fix: write `{f.key}: {{KIND: ARGS}}` with KIND one of {kinds}."
        )
    ((raw_kind, args),) = spec.items()
    try:
        kind = DomainKind(raw_kind)
    except ValueError:
        close = difflib.get_close_matches(str(raw_kind), [k.value for k in DomainKind], n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        raise ConfigError(
            f"{where}`{f.key}`: domain kind {raw_kind!r} is unknown.{hint} Fix: use one of {kinds}."
        ) from None
    example = _EXAMPLES[kind]
    if kind in _RANGE_KINDS:
        n = _RANGE_KINDS[kind]
        if not (isinstance(args, list) and len(args) == n):
            raise ConfigError(
                f"{where}`{f.key}`: `{kind.value}` takes a list of {n} numbers "
                f"({'[low, high, q]' if n == 3 else '[low, high]'}), but got {args!r}. Fix: "
                f"e.g. `{{{kind.value}: {example}}}`."
            )
        if not f.is_numeric:
            raise ConfigError(
                f"{where}`{f.key}` is of type {f.type_name()}, so `{kind.value}` cannot sample "
                f"it. Fix: use `choice` or `grid` with the values to try."
            )
        if f.tp is int and kind in _FLOAT_KINDS:
            raise ConfigError(
                f"{where}`{f.key}` is an integer field, but `{kind.value}` samples floats. "
                f"Fix: use `{{int: [LOW, HIGH]}}` (both bounds included) or `choice`."
            )
        low = _number(f, kind, args[0], "lower bound", where)
        high = _number(f, kind, args[1], "upper bound", where)
        q = _number(f, kind, args[2], "quantum q", where) if n == 3 else None
        ok = low <= high if kind is DomainKind.integer else low < high
        if not ok:
            rel = "<=" if kind is DomainKind.integer else "<"
            raise ConfigError(
                f"{where}`{f.key}`: `{kind.value}` needs low {rel} high, but got "
                f"low={low!r}, high={high!r}. Fix: swap or widen the bounds."
            )
        if kind in _LOG_KINDS and low <= 0:
            raise ConfigError(
                f"{where}`{f.key}`: `{kind.value}` needs low > 0 (a log scale), but got "
                f"low={low!r}. Fix: use a small positive lower bound, e.g. 1.0e-6, or "
                "`uniform`."
            )
        if q is not None and q <= 0:
            raise ConfigError(
                f"{where}`{f.key}`: `{kind.value}` needs q > 0, but got q={q!r}. Fix: use a "
                "positive quantum."
            )
        return Param(key=f.key, kind=kind, low=low, high=high, q=q)
    if not (isinstance(args, list) and args):
        raise ConfigError(
            f"{where}`{f.key}`: `{kind.value}` takes a non-empty list of values, but got "
            f"{args!r}. Fix: e.g. `{{{kind.value}: {example}}}`."
        )
    values = tuple(_convert(f, v, where) for v in args)
    seen: list[Any] = []
    for v in values:
        if v in seen:
            raise ConfigError(
                f"{where}`{f.key}`: `{kind.value}` lists {_plain(v)!r} twice. Fix: list each "
                "value once (repeats skew `choice` and duplicate `grid` trials)."
            )
        seen.append(v)
    return Param(key=f.key, kind=kind, values=values)


# ---------------------------------------------------------------------------- search space
@dataclass(frozen=True)
class SearchSpace:
    """A validated search space.

    Attributes:
        name: The space's name (its file name without `.yaml`).
        params: The tuned keys in file order.
        source: The file it was read from; None when built from a dict.
    """

    name: str
    params: dict[str, Param] = field(default_factory=dict)
    source: Path | None = None

    @classmethod
    def from_dict(
        cls,
        data: Any,
        name: str = "inline",
        *,
        source: Path | None = None,
        base: RunConfig | None = None,
    ) -> SearchSpace:
        """Parse and check a space given as data (the YAML file's contents).

        Args:
            data: A mapping with `params` (dotted key -> `{kind: args}`) and optionally an
                empty `conditional`.
            name: Name for messages and `tune.space`.
            source: File the data came from, for messages.
            base: Config every bound and choice is applied to; None uses `RunConfig()`.

        Returns:
            The space.

        Raises:
            ConfigError: An unknown or untunable key (the message lists the valid keys), an
                unknown domain kind, malformed or out-of-range bounds, or values of the wrong
                type; each message names the space, the key and the fix.
        """
        where = f"search space {name!r}" + (f" ({source})" if source else "") + ": "
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"{where}the file must be a mapping with a `params` key, but got "
                f"{type(data).__name__}. Fix: start the file with `params:`."
            )
        unknown = [k for k in data if k not in _TOP_KEYS]
        if unknown:
            raise ConfigError(
                f"{where}top-level key(s) {', '.join(map(repr, unknown))} are unknown. Fix: "
                f"use only {', '.join(_TOP_KEYS)}."
            )
        conditional = data.get("conditional") or {}
        if conditional:
            raise ConfigError(
                f"{where}`conditional` parameters are not supported yet, but got "
                f"{conditional!r}. Fix: set `conditional: {{}}` and use one space per variant "
                "(e.g. one per model kind)."
            )
        raw = data.get("params")
        if not (isinstance(raw, Mapping) and raw):
            raise ConfigError(
                f"{where}`params` must be a non-empty mapping of config keys to domains, but "
                f"got {raw!r}. Fix: e.g. `params: {{train.lr: {{loguniform: [1.0e-4, 1.0e-1]}}}}`."
            )
        params = {}
        for key, spec in raw.items():
            param = _parse_param(key, spec, where)
            params[param.key] = param
        space = cls(name=name, params=params, source=source)
        space.validate(base if base is not None else RunConfig())
        return space

    def validate(self, base: RunConfig) -> None:
        """Check that every bound and choice, set alone on `base`, gives a valid config.

        Raises:
            ConfigError: Naming the space, the key, the value (which bound or choice) and the
                schema's own message and fix.
        """
        label = f"search space {self.name!r}" + (f" ({self.source})" if self.source else "")
        for param in self.params.values():
            for what, value in param.extremes():
                try:
                    _apply(base, {param.key: value})
                except ConfigError as exc:
                    raise ConfigError(
                        f"{label}: `{param.key}`={_plain(value)!r} (its {what}) gives an "
                        f"invalid config: {exc}"
                    ) from None

    def to_tune(self) -> dict[str, Any]:
        """The `param_space` for `tune.Tuner`: one Tune domain per dotted key.

        Lists among `choice`/`grid` values (e.g. `model.hidden_sizes`) become JSON strings
        such as `"[128, 64]"` so every searcher sees plain categories; `apply_params` turns
        them back into lists.
        """
        return {key: param.to_tune() for key, param in self.params.items()}

    @property
    def grid_size(self) -> int:
        """Trials in one pass over the grid: the product of the `grid` lengths (1 if none).

        Tune runs `tune.num_samples` passes, so a sweep has `grid_size * num_samples` trials.
        """
        return math.prod(len(p.values) for p in self.params.values() if p.kind is DomainKind.grid)

    @property
    def keys(self) -> list[str]:
        """The tuned keys in file order."""
        return list(self.params)

    def to_dict(self) -> dict[str, Any]:
        """Plain data in the YAML format; `SearchSpace.from_dict` reads it back."""
        return {
            "params": {key: param.to_dict() for key, param in self.params.items()},
            "conditional": {},
        }


def available_spaces() -> list[str]:
    """Names of the spaces shipped in `conf/tune/space/`."""
    return sorted(p.stem for p in SPACE_DIR.glob("*.yaml"))


def load_space(name_or_path: str | Path, *, base: RunConfig | None = None) -> SearchSpace:
    """Read and check a search space.

    Args:
        name_or_path: A name (`mlp` reads `conf/tune/space/mlp.yaml`, as `tune.space=mlp`) or
            the path of a YAML file.
        base: Config every bound and choice is applied to; None uses `RunConfig()`. Pass the
            sweep's config so cross-field checks (e.g. workers vs `cluster.num_cpus`) run too.

    Returns:
        The space.

    Raises:
        ConfigError: The space does not exist (the message lists the shipped ones), is not
            valid YAML, or fails a check of `SearchSpace.from_dict`.
    """
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith((".yaml", ".yml")) or "/" in text:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(
                f"search space file {str(path)!r} not found. Fix: check the path, or use a "
                f"shipped space by name: {', '.join(available_spaces())}."
            )
    else:
        if _NAME_RE.match(text) is None or text in {".", ".."}:
            raise ConfigError(
                f"`tune.space` must be a name like `mlp` or a path to a YAML file, but got "
                f"space={text!r}. Fix: use one of {', '.join(available_spaces())}."
            )
        path = SPACE_DIR / f"{text}.yaml"
        if not path.is_file():
            raise ConfigError(
                f"`tune.space` names no search space, but got space={text!r} (no {path}). "
                f"Fix: use one of {', '.join(available_spaces())}, or add {path.name} there."
            )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(
            f"search space {str(path)!r} is not valid YAML: {detail}. Fix the file."
        ) from None
    return SearchSpace.from_dict(data, name=path.stem, source=path, base=base)


# --------------------------------------------------------------------------------- apply
def apply_params(run_cfg: RunConfig, params: Mapping[str, Any]) -> RunConfig:
    """A copy of `run_cfg` with dotted keys set, validated again.

    Values are converted to each field's type first (numpy scalars, JSON-encoded lists from
    `SearchSpace.to_tune`, enum values as strings), then each changed group is rebuilt with
    `dataclasses.replace`, which runs its `__post_init__`, and so is the `RunConfig`.

    Args:
        run_cfg: The base config; not modified.
        params: Dotted key -> value, e.g. a Tune trial's config `{"train.lr": 0.01}`.

    Returns:
        The new config.

    Raises:
        ConfigError: An unknown key or a wrong type (naming the key), or a value the schema
            refuses; the message names the trial's params and the schema's fix.
    """
    try:
        return _apply(run_cfg, params)
    except _SchemaRefused as exc:
        shown = {k: _plain(_unwrap(v)) for k, v in params.items()}
        raise ConfigError(f"trial params {shown} give an invalid config: {exc}") from None


class _SchemaRefused(ConfigError):
    """A converted value that a dataclass's `__post_init__` refused."""


def _apply(run_cfg: RunConfig, params: Mapping[str, Any]) -> RunConfig:
    top: dict[str, Any] = {}
    groups: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        f = _resolve(key, "")
        converted = _convert(f, value, "")
        if len(f.path) == 1:
            top[f.path[0]] = converted
        else:
            groups.setdefault(f.path[0], {})[f.path[1]] = converted
    new = copy.deepcopy(run_cfg)  # unchanged groups must not share lists with the base
    try:
        changes: dict[str, Any] = dict(top)
        for group, fields in groups.items():
            changes[group] = dataclasses.replace(getattr(new, group), **fields)
        return dataclasses.replace(new, **changes)
    except ConfigError as exc:
        raise _SchemaRefused(str(exc)) from None
