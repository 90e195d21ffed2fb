"""The monitor's ledger: what it has seen and done, one JSON file that survives a kill.

`<storage_path>/<name>/monitor/ledger.json` holds the data partitions seen (with their contract
check), the alert cursors (so an alert triggers once), every trigger and what became of it,
every retrain with its dollars and canary decision, and the retraining spend per month. It is
rewritten atomically (a temporary file, then a rename) after every change, before the work the
change announces: a monitor killed mid-retrain finds the retrain `retraining` on restart and
resumes it instead of starting another. `history.jsonl` next to it gets one line per tick (live
quality, drift per feature, serving cost) for the report.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ray_ml._json import jsonable
from ray_ml.errors import RayMLError

__all__ = ["LEDGER_FORMAT", "TRIGGER_STATUSES", "MonitorLedger", "month_of", "now_iso"]

LEDGER_FORMAT = "ray_ml.monitor.ledger"
_VERSION = 1
# pending -> retraining -> canary -> promoted | rolled_back; or skipped, failed, no_winner;
# `registered` when the app runs no canary (the candidate waits for a person).
TRIGGER_STATUSES = (
    "pending",
    "retraining",
    "canary",
    "registered",
    "promoted",
    "rolled_back",
    "skipped",
    "failed",
    "no_winner",
)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def month_of(iso: str) -> str:
    """`YYYY-MM` of an ISO time (the month a dollar is booked in)."""
    return iso[:7]


class MonitorLedger:
    """The ledger file of one experiment's monitor (see the module docstring).

    Args:
        folder: `<storage_path>/<name>/monitor`.
        name: The experiment.
        model: The registry model the monitor retrains.
        monthly_budget_usd: Recorded for the report.

    Raises:
        RayMLError: The ledger exists but is not a ledger (the message names the file).
    """

    def __init__(self, folder: Path, name: str, model: str, monthly_budget_usd: float) -> None:
        self.folder = Path(folder)
        self.path = self.folder / "ledger.json"
        self.history_path = self.folder / "history.jsonl"
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
            except ValueError as exc:
                raise RayMLError(
                    f"the monitor ledger {self.path} is not valid JSON ({exc}). Fix: restore it "
                    "from a backup, or move it away to start the monitor afresh."
                ) from None
            if not isinstance(data, dict) or data.get("format") != LEDGER_FORMAT:
                raise RayMLError(
                    f"{self.path} is not a monitor ledger (format {LEDGER_FORMAT!r}). Fix: move "
                    "it away, or point storage_path/name at the monitor's own folder."
                )
            self.data: dict[str, Any] = data
        else:
            self.data = {
                "format": LEDGER_FORMAT,
                "format_version": _VERSION,
                "id": uuid.uuid4().hex[:6],  # names this ledger's retrain runs
                "name": name,
                "model": model,
                "started_at": now_iso(),
                "partitions": {},
                "cursors": {"quality": 0.0, "drift": 0.0},
                "triggers": [],
                "retrains": [],
                "spend": {},
                "ticks": 0,
                "last_tick_at": None,
            }
        self.data["monthly_budget_usd"] = float(monthly_budget_usd)

    # -- persistence ------------------------------------------------------------------------------
    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(jsonable(self.data), indent=2))
        tmp.replace(self.path)

    def append_history(self, entry: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.history_path.open("a") as f:
            f.write(json.dumps(jsonable(entry)) + "\n")

    # -- partitions -------------------------------------------------------------------------------
    @property
    def partitions(self) -> dict[str, dict[str, Any]]:
        parts: dict[str, dict[str, Any]] = self.data["partitions"]
        return parts

    def add_partition(self, path: str, entry: dict[str, Any]) -> None:
        self.partitions[path] = {"seen_at": now_iso(), **entry}

    def rows_since_last_retrain(self) -> int:
        """Rows that passed the contract in partitions seen after the last retrain started
        (baseline partitions, those the served model was trained on, never count)."""
        last = self.last_retrain()
        since = last["started_at"] if last else ""
        return sum(
            int(p.get("rows_ok") or 0)
            for p in self.partitions.values()
            if not p.get("baseline") and p["seen_at"] > since
        )

    # -- triggers and retrains --------------------------------------------------------------------
    @property
    def triggers(self) -> list[dict[str, Any]]:
        triggers: list[dict[str, Any]] = self.data["triggers"]
        return triggers

    @property
    def retrains(self) -> list[dict[str, Any]]:
        retrains: list[dict[str, Any]] = self.data["retrains"]
        return retrains

    def add_trigger(self, kind: str, detail: str) -> dict[str, Any]:
        trigger = {
            "id": f"t{len(self.triggers) + 1:04d}",
            "kind": kind,
            "at": now_iso(),
            "detail": detail,
            "status": "pending",
            "reason": "",
        }
        self.triggers.append(trigger)
        return trigger

    def trigger(self, trigger_id: str) -> dict[str, Any]:
        for t in self.triggers:
            if t["id"] == trigger_id:
                return t
        raise KeyError(trigger_id)

    def set_status(self, trigger_id: str, status: str, reason: str = "") -> None:
        assert status in TRIGGER_STATUSES, status
        t = self.trigger(trigger_id)
        t["status"] = status
        if reason:
            t["reason"] = reason

    def in_flight(self) -> dict[str, Any] | None:
        """The trigger whose retrain or canary is not decided yet (at most one)."""
        for t in self.triggers:
            if t["status"] in ("retraining", "canary"):
                return t
        return None

    def retrain_of(self, trigger_id: str) -> dict[str, Any] | None:
        for r in self.retrains:
            if r["trigger"] == trigger_id:
                return r
        return None

    def last_retrain(self) -> dict[str, Any] | None:
        return self.retrains[-1] if self.retrains else None

    # -- money ------------------------------------------------------------------------------------
    def spent(self, month: str) -> float:
        return float(self.data["spend"].get(month, 0.0))

    def book(self, usd: float, at: str) -> None:
        month = month_of(at)
        self.data["spend"][month] = round(self.spent(month) + float(usd), 6)

    def tick_done(self) -> None:
        self.data["ticks"] = int(self.data["ticks"]) + 1
        self.data["last_tick_at"] = now_iso()
