from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _shared_ray(ray_session: None) -> Iterator[None]:
    yield
