"""The drift section: PSI and chi-square p-value per feature of the served model."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ray_ml._json import finite_number
from ray_ml.report import _plots as plots
from ray_ml.report._html import Plot, Section, Table, fmt
from ray_ml.report._inputs import Experiment
from ray_ml.report._sections._common import (
    MAX_BARS,
    MAX_TABLE_ROWS,
    as_mapping,
    not_available,
    why_missing,
)


def build_drift(exp: Experiment) -> Section:
    title = "Drift"
    drift = exp.drift
    if drift is None:
        return not_available(
            "drift", title, f"{why_missing(exp, 'drift')} (the model was not served yet)"
        )
    raw = as_mapping(drift.get("features"))
    features: list[dict[str, Any]] = [
        {
            "feature": str(name),
            "psi": finite_number(f.get("psi")),
            "p_value": finite_number(f.get("p_value")),
            "drifted": bool(f.get("drifted")),
            "rows": f.get("rows"),
        }
        for name, f in raw.items()
        if isinstance(f, Mapping)
    ]
    features.sort(key=lambda f: (f["psi"] is None, -(f["psi"] or 0.0), f["feature"]))
    threshold = finite_number(drift.get("threshold"))
    drifted = drift.get("drifted")
    if not isinstance(drifted, list):
        drifted = [f["feature"] for f in features if f["drifted"]]
    alerts = drift.get("alerts")
    alerts = alerts if isinstance(alerts, list) else []
    judged = [f for f in features if f["psi"] is not None]
    data: dict[str, Any] = {
        "window_rows": drift.get("window_rows"),
        "threshold": threshold,
        "p_threshold": finite_number(drift.get("p_threshold")),
        "max_psi": finite_number(drift.get("max_psi")),
        "drifted": [str(d) for d in drifted],
        "features": features,
        "alerts": alerts,
    }
    section = Section(key="drift", title=title, data=data)
    section.facts += [
        ("live rows in window", fmt(data["window_rows"]), ""),
        (
            "PSI threshold",
            fmt(threshold),
            f"and p-value under {fmt(data['p_threshold'])}" if data["p_threshold"] else "",
        ),
        ("max PSI", fmt(data["max_psi"]), ""),
        (
            "drifted features",
            f"{len(data['drifted'])} of {len(features)}",
            ", ".join(data["drifted"][:8]) + (" ..." if len(data["drifted"]) > 8 else ""),
        ),
    ]
    if judged:
        top = judged[:MAX_BARS]
        section.plots.append(
            Plot(
                plots.drift_plot(top, threshold),
                alt=f"Bar chart of PSI for {len(top)} features with the threshold line",
                caption=(
                    "Population stability index of the live window against the training data, "
                    "highest first. A feature counts as drifted only when its PSI is over the "
                    "threshold and the chi-square test agrees."
                    + (
                        f" {len(judged) - len(top)} more features not shown."
                        if len(judged) > len(top)
                        else ""
                    )
                ),
            )
        )
    else:
        section.notes.append("No feature has enough live rows to be judged yet.")
    shown = features[:MAX_TABLE_ROWS]
    section.tables.append(
        Table(
            headers=["feature", "PSI", "p-value", "drifted", "rows"],
            rows=[
                [f["feature"], fmt(f["psi"]), fmt(f["p_value"]), fmt(f["drifted"]), fmt(f["rows"])]
                for f in shown
            ],
            numeric=[False, True, True, False, True],
            caption="Per feature (not judged: too few live rows)",
            footer=f"{len(features) - len(shown)} more features not shown"
            if len(features) > len(shown)
            else "",
        )
    )
    for alert in alerts:
        text = alert if isinstance(alert, str) else json.dumps(alert, default=str)
        section.notes.append(f"Alert: {text}")
    return section
