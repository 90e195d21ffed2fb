"""One way to map a pure `pyarrow.Table -> pyarrow.Table` function over a Ray Dataset.

Every distributed step of the data layer (check, statistics, split assignment, selection) is a
pure function of one block plus some arguments; this wrapper fixes the options they all share:
whole blocks as batches (no re-chunking), Arrow format, zero-copy input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa

if TYPE_CHECKING:
    import ray.data

__all__ = ["map_blocks"]


def map_blocks(
    ds: ray.data.Dataset, fn: Callable[..., pa.Table], *args: Any, batch_size: int | None = None
) -> ray.data.Dataset:
    """`ds.map_batches(fn, fn_args=args)` over whole blocks in Arrow format."""
    return ds.map_batches(
        cast(Any, fn),  # Ray's stub does not model fn_args: fn's extra parameters are fine
        fn_args=args,
        batch_format="pyarrow",
        batch_size=batch_size,
        zero_copy_batch=True,
    )
