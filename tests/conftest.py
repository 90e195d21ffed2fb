"""Shared fixtures. One small local Ray per test session (2-core machines: never one per test)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Progress bars on stderr only clutter test logs.
os.environ.setdefault("RAY_ML_PROGRESS", "0")


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """A private local Ray (address="local") shared by every `ray` test of the session."""
    import torch

    from ray_ml.cluster import start_ray, stop_ray

    os.environ.pop("RAY_ADDRESS", None)
    # The dashboard serves the State API that Train V2 under Tune needs to free placement groups.
    handle = start_ray(
        num_cpus=2, num_gpus=torch.cuda.device_count(), object_store_mb=400, include_dashboard=True
    )
    yield
    stop_ray(handle)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests under tests/ray use the shared Ray; mark them so `-m "not ray"` runs the rest alone.
    for item in items:
        if "/tests/ray/" in str(item.fspath):
            item.add_marker(pytest.mark.ray)
