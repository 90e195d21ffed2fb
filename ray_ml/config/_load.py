"""Turn Hydra configs into a validated `RunConfig`, and `RunConfig` back into plain data.

Hydra mains call `to_run_config(cfg)` once at the entrypoint; tests and the `ray-ml` CLI call
`load_config(...)`, which composes with Hydra's compose API. Both raise `ConfigError` naming the
full key, the bad value and the fix, never an OmegaConf or Hydra traceback.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    InterpolationResolutionError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

from ray_ml._json import jsonable
from ray_ml.config._schema import RunConfig, register_configs
from ray_ml.errors import ConfigError

__all__ = ["CONF_DIR", "load_config", "run_config_to_dict", "to_run_config"]

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"

_FIX = "Fix the override or YAML."


def to_run_config(cfg: DictConfig) -> RunConfig:
    """Convert a composed Hydra config into a validated `RunConfig`.

    Args:
        cfg: The config Hydra composed, typed by the `run_schema` primary schema (an untyped
            config is merged onto the schema first, so it gets the same checks).

    Returns:
        The `RunConfig`, with every `__post_init__` check passed.

    Raises:
        ConfigError: A key is unknown, missing, of the wrong type or out of range; the message
            names the full key, the value and the fix.
    """
    try:
        typed: DictConfig | ListConfig = cfg
        if OmegaConf.get_type(cfg) is not RunConfig:
            typed = OmegaConf.merge(OmegaConf.structured(RunConfig), cfg)
        # `+key=value` can add keys to a typed config; `to_object` would then set them as stray
        # attributes and the setting would do nothing. Say so instead.
        unknown = _unknown_keys(OmegaConf.to_container(typed, resolve=False), RunConfig, "")
        if unknown:
            raise _unknown_key_error(unknown[0], reason="added with `+`")
        run = OmegaConf.to_object(typed)
    except ConfigError:
        raise
    except OmegaConfBaseException as exc:
        raise _translate_omegaconf(exc) from None
    if not isinstance(run, RunConfig):  # only if the caller built a config of another type
        raise ConfigError(
            f"config has type {type(run).__name__}, not RunConfig. Fix: list `run_schema` first "
            "in the primary config's defaults."
        )
    return run


def load_config(
    config_name: str = "train",
    overrides: list[str] | None = None,
    *,
    config_dir: str | Path | None = None,
) -> RunConfig:
    """Compose a primary config with Hydra's compose API and validate it.

    Safe to call many times in one process: any GlobalHydra left initialized (by an earlier call
    or a notebook) is cleared first, and the one this call creates is cleared on return.

    Args:
        config_name: Primary config in the config folder, e.g. `train`, `tune`, `serve`.
        overrides: Hydra command-line overrides, e.g. `["experiment=demo", "train.lr=0.01"]`.
        config_dir: Folder to compose from; defaults to the repository's `conf/`.

    Returns:
        The validated `RunConfig`.

    Raises:
        ConfigError: Composition failed (unknown key or group option, wrong type, malformed
            override) or validation failed; the message names the key, the value and the fix.
    """
    register_configs()
    overrides = list(overrides or [])
    conf_dir = Path(config_dir).resolve() if config_dir is not None else CONF_DIR
    if not (conf_dir / f"{config_name}.yaml").is_file():
        available = sorted(p.stem for p in conf_dir.glob("*.yaml"))
        raise ConfigError(
            f"primary config {config_name!r} not found in {conf_dir}. Fix: use one of "
            f"{', '.join(available) or '(none found)'}."
        )
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir)):
            cfg = compose(config_name=config_name, overrides=overrides)
    except MissingConfigException as exc:
        raise _translate_missing(exc) from None
    except HydraException as exc:
        raise _translate_hydra(exc) from None
    except OmegaConfBaseException as exc:
        raise _translate_omegaconf(exc) from None
    finally:
        GlobalHydra.instance().clear()
    return to_run_config(cfg)


def run_config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """Plain, JSON-ready data for manifests: nested dicts and lists, enums as their values.

    Args:
        cfg: A validated run config.

    Returns:
        A dict with the same keys as the dataclasses (`ray_ml._json.jsonable` of `cfg`).
    """
    plain: dict[str, Any] = jsonable(cfg)
    return plain


# ------------------------------------------------------------------------- error translation
def _full_key(exc: BaseException) -> str | None:
    key = getattr(exc, "full_key", None)
    return str(key) if key else None


def _first_line(exc: BaseException) -> str:
    # OmegaConf appends "full_key: ...", "object_type=..." lines; the first line is the reason.
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _field_types(schema: Any) -> dict[str, Any]:
    if not (dataclasses.is_dataclass(schema) and isinstance(schema, type)):
        return {}
    hints = typing.get_type_hints(schema)
    return {f.name: hints[f.name] for f in dataclasses.fields(schema)}


def _element_schema(tp: Any) -> Any:
    # `list[NodeTypeConfig]` -> NodeTypeConfig; other types pass through.
    return typing.get_args(tp)[0] if typing.get_origin(tp) is list else tp


def _unknown_keys(node: Any, schema: Any, prefix: str) -> list[str]:
    types = _field_types(schema)
    if not types or not isinstance(node, dict):
        return []
    found: list[str] = []
    for key, value in node.items():
        full = f"{prefix}{key}"
        if key not in types:
            found.append(full)
        elif isinstance(value, dict):
            found += _unknown_keys(value, types[key], f"{full}.")
        elif isinstance(value, list):
            element = _element_schema(types[key])
            for i, item in enumerate(value):
                found += _unknown_keys(item, element, f"{full}[{i}].")
    return found


def _schema_at(full_key: str) -> Any:
    """The dataclass that holds `full_key`'s leaf, or None (e.g. under a plain dict field)."""
    node: Any = RunConfig
    for part in full_key.split(".")[:-1]:
        node = _element_schema(_field_types(node).get(re.sub(r"\[.*\]$", "", part)))
    return node if _field_types(node) else None


def _unknown_key_error(full_key: str, reason: str = "") -> ConfigError:
    schema = _schema_at(full_key)
    parent, _, leaf = full_key.rpartition(".")
    if schema is None:  # a free-form dict such as `scaling.resources_per_worker`
        return ConfigError(
            f"config key `{full_key}` does not exist yet. Fix: add it with a leading `+`, e.g. "
            f"`+{full_key}=1`."
        )
    names = list(_field_types(schema))
    where = f" ({reason})" if reason else ""
    close = difflib.get_close_matches(re.sub(r"\[.*\]$", "", leaf), names, n=1)
    hint = (
        f"Did you mean `{parent + '.' if parent else ''}{close[0]}`?"
        if close
        else f"Valid keys: {', '.join(names)}."
    )
    return ConfigError(
        f"config key `{full_key}` is not a field of {schema.__name__}{where}. {hint} "
        "Fix the spelling in the override or YAML."
    )


def _translate_omegaconf(exc: OmegaConfBaseException, where: str = "") -> ConfigError:
    """`where` names the YAML being merged when the error came from one."""
    key = _full_key(exc) or "?"
    reason = _first_line(exc).rstrip(".")
    if isinstance(exc, ConfigKeyError | ConfigAttributeError):
        return _unknown_key_error(key, reason=f"in {where}" if where else "")
    label = f"config key `{key}`" + (f" (in {where})" if where else "")
    if isinstance(exc, MissingMandatoryValue):
        return ConfigError(
            f"{label} has no value (`???`). Fix: set `{key}` in the YAML or on the command line."
        )
    if isinstance(exc, InterpolationResolutionError):
        return ConfigError(f"{label}: interpolation failed: {reason}. {_FIX}")
    if isinstance(exc, ValidationError):
        return ConfigError(f"{label}: {_describe_validation(reason)}. {_FIX}")
    return ConfigError(f"{label}: {reason}. {_FIX}")


def _describe_validation(reason: str) -> str:
    # "Value 'abc' of type 'str' could not be converted to Float" -> "value 'abc' is not a float"
    m = re.match(r"Value '(.*)' of type '(\w+)' could not be converted to (\w+)", reason)
    if m:
        value, _, target = m.groups()
        article = "an" if target.lower()[0] in "aeiou" else "a"
        return f"value '{value}' is not {article} {target.lower()}"
    return reason[0].lower() + reason[1:] if reason else reason


def _translate_missing(exc: MissingConfigException) -> ConfigError:
    missing = exc.missing_cfg_file or ""
    group, _, option = missing.rpartition("/")
    if group and exc.options:
        options = sorted(exc.options)
        return ConfigError(
            f"config group `{group}` has no option {option!r}. Fix: use one of "
            f"{', '.join(options)}, e.g. `{group}={options[0]}`."
        )
    return ConfigError(f"{_first_line(exc)} {_FIX}")


def _translate_hydra(exc: HydraException) -> ConfigError:
    if isinstance(exc, OverrideParseException):
        detail = " ".join(str(exc).split())
        return ConfigError(
            f"override {exc.override!r} is malformed ({detail}). Fix: write overrides as "
            "key=value, e.g. `train.lr=0.01`, and quote values with special characters."
        )
    # Hydra re-raises YAML merge errors without `from`, as "In 'data/x': ...": the OmegaConf
    # error is then only the implicit context.
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OmegaConfBaseException):
        m = re.match(r"In '([^']+)'", str(exc))
        return _translate_omegaconf(cause, where=f"{m.group(1)}.yaml" if m else "")
    return ConfigError(f"{' '.join(str(exc).split())} {_FIX}")
