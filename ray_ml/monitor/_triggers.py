"""What retrains: the Serve app's alerts, new data and a schedule, read into trigger conditions.

Pure functions of the app's own JSON (`GET /v1/models`, `GET /v1/drift`) and the ledger's
counts, so each rule is tested without Ray. Alerts are edge-triggered: the app appends one when
a version starts alerting (quality) or a feature's PSI crosses the threshold (drift), each with
its time; a cursor per kind (the newest alert time acted on) makes each alert trigger once, even
across a monitor restart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Condition", "new_data_condition", "schedule_condition", "serve_conditions"]


@dataclass(frozen=True)
class Condition:
    """One reason to retrain.

    Attributes:
        kind: `quality`, `drift`, `new_data`, `schedule` or `retry` (of a failed retrain).
        detail: One line with the numbers behind it.
        edge: An alert (acted on once: recorded as skipped when it cannot act) rather than a
            standing condition (checked again next tick).
        retry_of: For `retry`: the trigger whose failed retrain this tries again.
    """

    kind: str
    detail: str
    edge: bool
    retry_of: str | None = None


def serve_conditions(
    models: Mapping[str, Any] | None,
    drift: Mapping[str, Any] | None,
    cursors: Mapping[str, float],
    enabled: Sequence[str],
) -> tuple[list[Condition], dict[str, float]]:
    """The app's alerts newer than `cursors`, and the cursors moved past every alert seen.

    Args:
        models: `GET /v1/models` (None when the app did not answer).
        drift: `GET /v1/drift` (None when the app did not answer).
        cursors: `{"quality": time, "drift": time}` of the newest alerts already acted on.
        enabled: `monitor.triggers`; alerts of other kinds move the cursor but trigger nothing
            (turning a trigger on later does not replay old alerts).

    Returns:
        (conditions, new cursors). A quality alert counts only for the version served as
        stable when it was read (a canary's alerts are the canary judge's business).
    """
    out: list[Condition] = []
    new = {"quality": float(cursors.get("quality", 0.0)), "drift": float(cursors.get("drift", 0.0))}
    if models is not None:
        stable = str(models.get("stable"))
        fresh = [a for a in models.get("quality_alerts") or () if float(a["time"]) > new["quality"]]
        if fresh:
            new["quality"] = max(float(a["time"]) for a in fresh)
        mine = [a for a in fresh if str(a.get("version")) == stable]
        if mine and "quality" in enabled:
            a = mine[-1]
            worst = ", ".join(
                f"{name} {m['value']:.4g} vs test {m['baseline']:.4g}"
                for name, m in (a.get("metrics") or {}).items()
                if m.get("value") is not None and m.get("baseline") is not None
            )
            out.append(Condition("quality", f"version {stable} live quality: {worst}", True))
    if drift is not None:
        fresh = [a for a in drift.get("alerts") or () if float(a["time"]) > new["drift"]]
        if fresh:
            new["drift"] = max(float(a["time"]) for a in fresh)
            if "drift" in enabled:
                psi: dict[str, float] = {}
                for a in fresh:
                    psi[str(a["feature"])] = max(psi.get(str(a["feature"]), 0.0), float(a["psi"]))
                text = ", ".join(f"{f} PSI {v:.3f}" for f, v in sorted(psi.items()))
                reference = drift.get("reference_version")
                out.append(Condition("drift", f"drift against version {reference}: {text}", True))
    return out, new


def new_data_condition(rows: int, threshold: int, enabled: Sequence[str]) -> Condition | None:
    """`rows` passed the contract in partitions landed since the last retrain."""
    if "new_data" not in enabled or rows < threshold:
        return None
    return Condition(
        "new_data",
        f"{rows} new rows passed the contract (monitor.new_data_rows={threshold})",
        False,
    )


def schedule_condition(
    since_s: float, every_s: float | None, enabled: Sequence[str]
) -> Condition | None:
    """`since_s` seconds have passed since the last retrain (or the monitor's start)."""
    if "schedule" not in enabled or every_s is None or since_s < every_s:
        return None
    return Condition(
        "schedule",
        f"{since_s:.0f} s since the last retrain (monitor.schedule_s={every_s:g})",
        False,
    )
