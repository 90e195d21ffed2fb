"""What serving costs: replicas x their resources x the catalog's price, metered over time.

The state deployment feeds `ServingCost` every replica flush (the replica's id and the rows it
answered since its last flush); a replica counts as live while it flushed within `live_s`.
Each replica is billed for the time between its consecutive flushes (a gap longer than
`bill_gap_s` is a replica that was gone), so an autoscaled app is billed for the replicas it held,
when it held them. Pure Python: no Ray.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

__all__ = ["ServingCost"]


class ServingCost:
    """Serving dollars: per hour now, in total since the app started, per 1,000 predictions.

    Args:
        usd_per_replica_hour: One replica's resources at the catalog's unit prices
            (`PriceCatalog.price_of({"CPU": num_cpus_per_replica, "GPU": ...})`).
        live_s: A replica that has not flushed for this long no longer counts as live.
        bill_gap_s: A gap between two flushes of one replica up to this long is billed (a
            replica busy loading a model flushes late, but is held all the while); a longer
            gap is a replica that was gone.
        clock: Seconds, monotonic (tests pass their own).

    Raises:
        ValueError: A negative or non-finite price, or a non-positive `live_s`.
    """

    def __init__(
        self,
        usd_per_replica_hour: float,
        live_s: float = 2.0,
        bill_gap_s: float = 60.0,
        clock: Any = time.monotonic,
    ) -> None:
        if not (math.isfinite(usd_per_replica_hour) and usd_per_replica_hour >= 0):
            raise ValueError(
                "usd_per_replica_hour must be a finite number >= 0, but got "
                f"usd_per_replica_hour={usd_per_replica_hour!r}."
            )
        if not live_s > 0:
            raise ValueError(f"live_s must be positive, but got live_s={live_s!r}.")
        self.usd_per_replica_hour = float(usd_per_replica_hour)
        self.live_s = float(live_s)
        self.bill_gap_s = max(float(bill_gap_s), self.live_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}  # replica id -> last flush
        self._usd = 0.0  # billed up to each replica's last flush
        self._rows = 0

    def observe(self, replica_id: str, rows: int = 0) -> None:
        """One flush of replica `replica_id`, which answered `rows` rows since its last one."""
        with self._lock:
            now = self._clock()
            rid = str(replica_id)
            last = self._seen.get(rid)
            if last is not None and now - last <= self.bill_gap_s:
                # Held since its last flush; after a longer gap it restarts from now.
                self._usd += self.usd_per_replica_hour * (now - last) / 3600
            self._seen[rid] = now
            self._rows += max(0, int(rows))

    def snapshot(self) -> dict[str, Any]:
        """`{"replicas", "usd_per_replica_hour", "usd_per_hour", "usd_total", "predictions",
        "usd_per_1k_predictions"}` now (the last is None before any prediction)."""
        with self._lock:
            now = self._clock()
            live = [t for t in self._seen.values() if now - t <= self.live_s]
            # Live replicas are held up to now; a stopped one was billed up to its last flush.
            usd = self._usd + sum(self.usd_per_replica_hour * (now - t) / 3600 for t in live)
            rows = self._rows
            return {
                "replicas": len(live),
                "usd_per_replica_hour": self.usd_per_replica_hour,
                "usd_per_hour": len(live) * self.usd_per_replica_hour,
                "usd_total": usd,
                "predictions": rows,
                "usd_per_1k_predictions": usd / rows * 1000.0 if rows else None,
            }
