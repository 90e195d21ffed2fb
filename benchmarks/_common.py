"""What every benchmark records next to its numbers: the machine and the package versions."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any


def environment(packages: tuple[str, ...]) -> dict[str, Any]:
    """`{"machine": {...}, "versions": {package: version or None}}` for a results JSON."""

    def version(p: str) -> str | None:
        try:
            return metadata.version(p)
        except metadata.PackageNotFoundError:
            return None

    return {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "versions": {p: version(p) for p in packages},
    }
