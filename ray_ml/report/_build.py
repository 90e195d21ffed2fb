"""`build_report`: one experiment's artefacts -> `index.html` (plots inline) + `report.json`.

Each section is computed once as plain numbers (`Section.data`, written to report.json) and the
page's cards, tables and plots are drawn from those same numbers, so the two files cannot
disagree. A section whose inputs are missing says "not available" and why; it never fails the
report. The sections live in `ray_ml.report._sections`, one module each.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from ray_ml._json import jsonable
from ray_ml.report._html import Section, render_page
from ray_ml.report._inputs import Experiment, load_experiment
from ray_ml.report._sections import SECTIONS

__all__ = ["build_report", "build_sections"]


def build_sections(exp: Experiment) -> list[Section]:
    """Every section of the report, in page order.

    Args:
        exp: What `load_experiment` found.
    """
    return [build(exp) for build in SECTIONS]


def build_report(storage_path: str | Path, name: str, out_dir: str | Path | None = None) -> Path:
    """Write one experiment's report: `index.html` (plots inline) and `report.json`.

    Sections: headline figures, leaderboard, Pareto front of quality vs cost, learning curves,
    spend over time against the budget, cost per trial (useful vs waste, spot vs on-demand),
    data quality and, when the model was served, drift. A section whose inputs are missing says
    "not available" and why. The page needs no network: CSS is inline and plots are `data:`
    PNGs. report.json holds every number the page shows (NaN as null).

    Args:
        storage_path: The jobs' `storage_path` (e.g. `runs`).
        name: The experiment name (the jobs' `name`).
        out_dir: Where to write; default `<storage_path>/<name>/report`.

    Returns:
        The path of `index.html`.

    Raises:
        RayMLError: Neither a sweep nor a data summary exists for `name` under
            `storage_path`; the message names the folders looked in and the job to run.

    Example:
        >>> build_report("runs", "demo")  # doctest: +SKIP
        PosixPath('/.../runs/demo/report/index.html')
    """
    t0 = time.perf_counter()
    exp = load_experiment(storage_path, name)
    sections = build_sections(exp)
    out = Path(out_dir) if out_dir is not None else exp.storage / exp.name / "report"
    out.mkdir(parents=True, exist_ok=True)
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    build_s = round(time.perf_counter() - t0, 2)  # reading and plotting; writing is quick
    report = {
        "name": exp.name,
        "storage_path": str(exp.storage),
        "generated_at": generated,
        "build_s": build_s,
        "metric": exp.metric,
        "mode": exp.mode,
        "inputs": {"read": exp.sources, "not_available": exp.problems},
        "notes": exp.notes,
        "sections": {
            s.key: {
                "title": s.title,
                "available": s.available,
                "why": s.why or None,
                "plots": [p.alt for p in s.plots],
                **s.data,
            }
            for s in sections
        },
    }
    (out / "report.json").write_text(json.dumps(jsonable(report), indent=2, allow_nan=False) + "\n")
    meta = [
        f"storage {exp.storage} · metric {exp.metric} ({exp.mode}) · generated {generated} "
        f"in {build_s} s"
    ]
    page = render_page(
        f"Experiment report: {exp.name}", meta, sections, exp.sources, exp.problems, exp.notes
    )
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
