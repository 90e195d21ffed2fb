"""The data-quality section: rows in, rejected and why, splits and class balance."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray_ml._json import finite_number
from ray_ml.report import _plots as plots
from ray_ml.report._html import Plot, Section, Table, fmt, pct
from ray_ml.report._inputs import Experiment
from ray_ml.report._sections._common import (
    LEADERBOARD_ROWS,
    MAX_BARS,
    as_mapping,
    not_available,
    why_missing,
)


def build_data(exp: Experiment) -> Section:
    title = "Data quality"
    summary = exp.data_summary
    if summary is None:
        return not_available(
            "data",
            title,
            f"{why_missing(exp, 'data')}; run the data stage: "
            f"`python -m jobs.data name={exp.name} storage_path={exp.storage}`",
        )
    rows_in = finite_number(summary.get("rows_in"))
    reasons_raw = as_mapping(summary.get("reasons"))
    reasons = sorted(
        ((str(k), int(finite_number(v) or 0)) for k, v in reasons_raw.items()),
        key=lambda kv: (-kv[1], kv[0]),
    )
    splits: list[dict[str, Any]] = []
    for name, split in (summary.get("splits") or {}).items():
        if isinstance(split, Mapping):
            fractions = split.get("class_fraction")
            splits.append(
                {
                    "split": str(name),
                    "rows": finite_number(split.get("rows")),
                    "fraction": finite_number(split.get("fraction")),
                    "class_fraction": {str(k): finite_number(v) for k, v in fractions.items()}
                    if isinstance(fractions, Mapping)
                    else {},
                }
            )
    data: dict[str, Any] = {
        "rows_in": summary.get("rows_in"),
        "rows_ok": summary.get("rows_ok"),
        "rows_rejected": summary.get("rows_rejected"),
        "reject_rate": finite_number(summary.get("reject_rate")),
        "max_reject_rate": finite_number(summary.get("max_reject_rate")),
        "passed": summary.get("passed"),
        "fingerprint": summary.get("fingerprint"),
        "quarantine": summary.get("quarantine"),
        "features": summary.get("features"),
        "sources": summary.get("sources"),
        "reasons": [{"reason": k, "rows": v} for k, v in reasons],
        "splits": splits,
    }
    section = Section(key="data", title=title, data=data)
    passed = data["passed"]
    section.facts += [
        ("rows in", fmt(data["rows_in"]), ", ".join(map(str, data["sources"] or [])) or ""),
        ("rows ok", fmt(data["rows_ok"]), f"{fmt(data['features'])} features"),
        (
            "rows rejected",
            fmt(data["rows_rejected"]),
            f"{pct(data['reject_rate'])} (limit {pct(data['max_reject_rate'])})"
            + ("" if passed is None else "; passed" if passed else "; FAILED"),
        ),
        ("fingerprint", fmt(data["fingerprint"]), f"quarantine: {fmt(data['quarantine'])}"),
    ]
    if reasons:
        top = reasons[:MAX_BARS]
        section.plots.append(
            Plot(
                plots.reject_reasons_plot(top, int(rows_in) if rows_in else None),
                alt=f"Bar chart of the top {len(top)} reject reasons",
                caption="Rows rejected per column:rule; a row can break several rules.",
            )
        )
    else:
        section.notes.append("No rows were rejected.")
    with_classes = [s for s in splits if s["class_fraction"]]
    if with_classes:
        section.plots.append(
            Plot(
                plots.class_balance_plot(with_classes),
                alt="Stacked bars of the class shares in each split",
                caption="Share of each class in each split; stratified splits look alike.",
            )
        )
    if reasons:
        shown = reasons[:LEADERBOARD_ROWS]
        section.tables.append(
            Table(
                headers=["column:rule", "rows", "share of rows in"],
                rows=[[k, fmt(v), pct(v / rows_in) if rows_in else "—"] for k, v in shown],
                numeric=[False, True, True],
                caption="Reject reasons",
                footer=f"{len(reasons) - len(shown)} more reasons not shown"
                if len(reasons) > len(shown)
                else "",
            )
        )
    if splits:
        classes: list[str] = []
        for s in splits:
            classes += [c for c in s["class_fraction"] if c not in classes]
        section.tables.append(
            Table(
                headers=["split", "rows", "fraction", *(f"class {c}" for c in classes)],
                rows=[
                    [s["split"], fmt(s["rows"]), pct(s["fraction"])]
                    + [pct(s["class_fraction"].get(c)) for c in classes]
                    for s in splits
                ],
                numeric=[False, True, True, *([True] * len(classes))],
                caption="Splits and class balance",
            )
        )
    return section
