"""The one JSON sanitiser and the one finite-number rule, for every package of `ray_ml`.

Imports nothing of `ray_ml` (and no ray, torch or xgboost), so any package may import it:
`config` for manifests of a run config, `train` for bundles and metrics, `tune` for results,
`report` for report.json.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from datetime import date
from enum import Enum
from pathlib import PurePath
from typing import Any

import numpy as np

__all__ = ["finite_number", "jsonable"]


def finite_number(value: Any) -> float | None:
    """`value` as a finite float; None for a missing, boolean, non-numeric or non-finite value.

    Python and numpy numbers count; strings do not (they are not numbers, even "1.5").
    """
    if value is None or isinstance(value, bool | np.bool_ | str | bytes):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return out if math.isfinite(out) else None


def jsonable(value: Any, where: str | None = None) -> Any:
    """`value` as plain JSON types, safe for `json.dumps(..., allow_nan=False)`.

    Enums become their values, numpy scalars and arrays Python numbers and lists, non-finite
    floats None (the rule of `finite_number`), paths strings, dates ISO strings, dataclasses
    dicts of their fields, mapping keys strings, tuples and sets lists.

    Args:
        value: Anything.
        where: For a file that must hold exactly what was given (a bundle): the name of
            `value` in error messages, e.g. `"metrics"`; a value of any other type then raises.
            None: any other type becomes its `str()` (a report shows what it cannot type).

    Raises:
        ValueError: `where` is given and `value` holds a type not listed above; the message
            names the key path, e.g. `metrics.per_class[2]`.
    """
    if isinstance(value, Enum):
        return jsonable(value.value, where)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return finite_number(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, _at(where, f".{k}")) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v, _at(where, f"[{i}]")) for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist(), where)
    if isinstance(value, np.generic):  # numpy strings, datetimes ...
        return jsonable(value.item(), where)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: jsonable(getattr(value, f.name), _at(where, f".{f.name}"))
            for f in dataclasses.fields(value)
        }
    if where is None:
        return str(value)
    raise ValueError(
        f"{where} is a {type(value).__name__}, which cannot be stored as JSON. Convert it to "
        "numbers, strings, lists or dicts first."
    )


def _at(where: str | None, step: str) -> str | None:
    return None if where is None else where + step
