"""Process bodies for the registry's concurrency tests (spawned: they must be importable).

Kept apart from the test module so a spawned child imports only `ray_ml.registry`, not torch
and the test fixtures.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ray_ml.registry import Registry


def register_one(root: str, bundle: str, name: str, barrier: Any, results: Any) -> None:
    """Register `bundle` once, starting together with the other workers."""
    reg = Registry(root, actor="worker@test")
    # Pay the bundle code's import cost (torch) before the barrier, so the registrations race.
    import ray_ml.train._bundle  # noqa: F401

    barrier.wait(timeout=120)
    results.put(reg.register(bundle, name, reason="race").version)


def flip_alias(
    root: str, name: str, alias: str, versions: list[int], times: int, barrier: Any, results: Any
) -> None:
    """Point `alias` at versions[0], versions[1], versions[0], ... `times` times."""
    reg = Registry(root, actor="flipper@test")
    barrier.wait(timeout=120)
    changed = 0
    for i in range(times):
        changed += reg.set_alias(
            name, alias, versions[i % len(versions)], reason=f"flip {i}"
        ).changed
    results.put(changed)


def poll_aliases(path: str, ready: Any, stop: Any, results: Any) -> None:
    """Read aliases.json as fast as possible; report reads, bad reads and revision regressions."""
    reads = bad = regressions = 0
    last = -1
    seen: set[int] = set()
    errors: list[str] = []
    ready.set()
    while not stop.is_set():
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            time.sleep(0.0005)
            continue
        reads += 1
        try:
            doc = json.loads(data)
            revision = int(doc["revision"])
            if not all(isinstance(v, int) for v in doc["aliases"].values()):
                raise ValueError("non-integer version")
        except (ValueError, KeyError, TypeError) as exc:
            bad += 1
            errors.append(f"{exc!r}: {data[:80]!r}")
            continue
        if revision < last:
            regressions += 1
        last = revision
        seen.add(revision)
    results.put(
        {
            "reads": reads,
            "bad": bad,
            "regressions": regressions,
            "revisions_seen": len(seen),
            "errors": errors[:3],
        }
    )
