"""The report's one JSON sanitiser: plain JSON types, with NaN and infinities as null."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from ray_ml.report._inputs import number

__all__ = ["jsonable"]


def jsonable(value: Any) -> Any:
    """`value` as plain JSON types; non-finite floats become None (the finite-number rule of
    `number`), numpy scalars their Python value, paths and anything else strings."""
    if isinstance(value, float):
        return number(value)
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return jsonable(value.item())
    if isinstance(value, (datetime,)):
        return value.isoformat()
    return str(value)
