"""The report's monitoring section, from a monitor's ledger.json and history.jsonl on disk."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ray_ml.report import Experiment, build_report, build_sections, load_experiment
from tests._report_fixture import make_experiment

pytestmark = pytest.mark.unit

NAME = "exp"
T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC).timestamp()

LEDGER: dict[str, Any] = {
    "format": "ray_ml.monitor.ledger",
    "format_version": 1,
    "name": NAME,
    "model": "churn",
    "partitions": {
        "s3://bucket/day=2026-12-01.parquet": {
            "seen_at": "2026-12-02T10:00:00+00:00",
            "rows_in": 1000,
            "rows_ok": 990,
            "rows_rejected": 10,
            "reasons": {"age:range": 7, "income:not_null": 3},
            "quarantine": "runs/exp/monitor/quarantine/p1",
        },
        "/data/day=2026-12-02.parquet": {
            "seen_at": "2026-12-02T10:02:00+00:00",
            "rows_in": 500,
            "rows_ok": 500,
            "rows_rejected": 0,
            "reasons": {},
            "quarantine": None,
        },
    },
    "triggers": [
        {
            "id": "t0001",
            "kind": "drift",
            "at": "2026-12-02T10:01:00+00:00",
            "detail": "age psi=0.31",
            "status": "promoted",
            "reason": "canary beat stable",
        },
        {
            "id": "t0002",
            "kind": "new_data",
            "at": "2026-12-02T10:02:00+00:00",
            "detail": "1 partition",
            "status": "rolled_back",
            "reason": "canary accuracy dropped",
        },
        {
            "id": "t0003",
            "kind": "schedule",
            "at": "2026-12-02T10:03:00+00:00",
            "detail": "weekly",
            "status": "pending",
            "reason": "",
        },
    ],
    "retrains": [
        {
            "trigger": "t0001",
            "sweep": "exp-retrain-t0001",
            "started_at": "2026-12-02T10:01:00+00:00",
            "ended_at": "2026-12-02T10:01:40+00:00",
            "cost_usd": 0.5,
            "budget_usd": 1.0,
            "trials": 4,
            "version": 4,
            "warm_start": 3,
            "partitions": ["s3://bucket/day=2026-12-01.parquet"],
            "resumes": 1,
            "canary": {"action": "promote", "reason": "better", "at": "2026-12-02T10:02:30Z"},
        },
        {
            "trigger": "t0002",
            "sweep": "exp-retrain-t0002",
            "started_at": "2026-12-02T10:02:00+00:00",
            "ended_at": None,
            "cost_usd": None,
            "budget_usd": 1.0,
            "trials": None,
            "version": None,
            "warm_start": 4,
            "partitions": [],
            "resumes": 0,
            "canary": None,
        },
    ],
    "spend": {"2026-11": 1.5, "2026-12": 0.75},
    "monthly_budget_usd": 5.0,
    "ticks": 4,
    "last_tick_at": "2026-12-02T10:03:00+00:00",
}


def _quality(n_labels: int, value: float | None, baseline: float = 0.9) -> dict[str, Any]:
    drop = None if value is None else baseline - value
    return {
        "n_labels": n_labels,
        "alert": drop is not None and drop > 0.05,
        "metrics": {
            "accuracy": {"value": value, "baseline": baseline, "drop": drop, "alert": False},
            "f1": {"value": 0.8, "baseline": 0.85, "drop": float("nan"), "alert": False},
        },
    }


def _tick(minute: int, **fields: Any) -> dict[str, Any]:
    at = datetime.fromtimestamp(T0 + 60 * minute, UTC).isoformat()
    return {
        "at": at,
        "time": T0 + 60 * minute,
        "reachable": True,
        "stable": "3",
        "canary": None,
        "live_quality": {},
        "drift": {},
        "serving_cost": None,
        **fields,
    }


def _cost(per_hour: float, predictions: int) -> dict[str, Any]:
    return {
        "replicas": 2,
        "usd_per_hour": per_hour,
        "usd_total": 0.1,
        "predictions": predictions,
        "usd_per_1k_predictions": None if not predictions else 0.1 / predictions * 1000,
    }


HISTORY = [
    _tick(0, live_quality={"3": _quality(50, 0.91)}, drift={"age": 0.05, "income": 0.02}),
    _tick(
        1,
        live_quality={"3": _quality(120, 0.88)},
        drift={"age": 0.31, "income": 0.04},
        serving_cost=_cost(0.2, 1000),
    ),
    _tick(
        2,
        canary="4",
        live_quality={"3": _quality(200, 0.86), "4": _quality(30, 0.93, baseline=0.92)},
        drift={"age": 0.12, "income": float("nan")},
    ),
    # No new labels for version 3: its latest accuracy stays the one of minute 2.
    _tick(
        3,
        canary="4",
        reachable=False,
        live_quality={"3": _quality(200, None), "4": _quality(60, 0.94, baseline=0.92)},
        drift={"age": 0.08, "income": 0.03},
        serving_cost=_cost(0.3, 4000),
    ),
]


def _write_monitor(
    storage: Path, ledger: str | None, history: list[str] | None, name: str = NAME
) -> Path:
    folder = storage / name / "monitor"
    folder.mkdir(parents=True, exist_ok=True)
    if ledger is not None:
        (folder / "ledger.json").write_text(ledger)
    if history is not None:
        (folder / "history.jsonl").write_text("".join(line + "\n" for line in history))
    return folder


def _experiment(
    tmp_path: Path,
    ledger: str | None = json.dumps(LEDGER),
    history: list[str] | None = None,
) -> Experiment:
    """A data-only experiment (the least `load_experiment` accepts) plus the monitor's files."""
    storage = tmp_path / "storage"
    data = storage / NAME / "data"
    data.mkdir(parents=True)
    (data / "summary.json").write_text(json.dumps({"job": "data", "name": NAME, "rows_in": 1}))
    if history is None:
        history = [json.dumps(tick) for tick in HISTORY]  # NaN as JSON's NaN, as Python writes it
    _write_monitor(storage, ledger, history)
    return load_experiment(storage, NAME)


def _section(exp: Experiment) -> Any:
    sections = {s.key: s for s in build_sections(exp)}
    assert list(sections)[-1] == "monitoring"
    return sections["monitoring"]


def test_numbers_a_user_relies_on(tmp_path: Path) -> None:
    section = _section(_experiment(tmp_path))
    assert section.available and section.title == "Monitoring"
    data = section.data
    assert (data["ticks"], data["history_lines"], data["history_skipped"]) == (4, 4, 0)
    assert (data["reachable_ticks"], data["unreachable_ticks"]) == (3, 1)
    assert (data["stable"], data["canary"], data["model"]) == ("3", "4", "churn")
    assert data["partitions_seen"] == 2
    assert (data["rows_in"], data["rows_ok"], data["rows_rejected"]) == (1500, 1490, 10)
    assert data["reasons"] == {"age:range": 7, "income:not_null": 3}
    assert data["n_triggers"] == 3 and data["n_retrains"] == 2
    assert data["trigger_statuses"] == {"promoted": 1, "rolled_back": 1, "pending": 1}
    assert data["retrain_cost_usd"] == pytest.approx(0.5)
    # "This month" is the last tick's month.
    assert data["month"] == "2026-12" and data["month_spend_usd"] == 0.75
    assert data["monthly_budget_usd"] == 5.0 and data["month_budget_used"] == pytest.approx(0.15)
    assert data["serving_cost"]["usd_per_hour"] == 0.3
    assert data["serving_cost"]["usd_per_1k_predictions"] == pytest.approx(0.025)

    quality = data["live_quality"]
    assert (quality["metric"], quality["mode"]) == ("accuracy", "max")
    versions = {v["version"]: v for v in quality["versions"]}
    assert list(versions) == ["3", "4"]
    assert versions["3"]["latest"] == 0.86 and versions["3"]["n_labels"] == 200
    assert versions["3"]["minutes"] == [0.0, 1.0, 2.0] and versions["3"]["baseline"] == 0.9
    assert versions["3"]["role"] == "stable" and versions["3"]["alert"] is False
    assert versions["4"]["latest"] == 0.94 and versions["4"]["role"] == "canary"
    assert versions["4"]["minutes"] == [2.0, 3.0] and versions["4"]["baseline"] == 0.92
    assert versions["4"]["metrics"]["f1"]["drop"] is None  # NaN in the file

    drift = {f["feature"]: f for f in data["drift"]}
    assert [f["feature"] for f in data["drift"]] == ["age", "income"]  # largest max PSI first
    assert (drift["age"]["latest_psi"], drift["age"]["max_psi"]) == (0.08, 0.31)
    assert drift["age"]["max_at"] == HISTORY[1]["at"]
    assert (drift["income"]["max_psi"], drift["income"]["ticks"]) == (0.04, 3)  # NaN skipped

    assert [t["id"] for t in data["triggers"]] == ["t0001", "t0002", "t0003"]
    first = data["retrains"][0]
    assert first["canary"] == {
        "action": "promote",
        "reason": "better",
        "at": "2026-12-02T10:02:30Z",
    }
    assert (first["trials"], first["version"], first["resumes"]) == (4, 4, 1)
    assert data["retrains"][1]["canary"] is None
    assert data["partitions"][0]["reasons"] == {"age:range": 7, "income:not_null": 3}

    assert len(section.plots) == 1
    facts = {label: (value, detail) for label, value, detail in section.facts}
    assert facts["retraining spend 2026-12"] == ("$0.75", "of $5.00 monthly budget (15.0%)")
    assert facts["serving cost"][0] == "$0.3 / hour"  # the report's usd: 3 digits under $1
    assert "$0.025 per 1,000 predictions" in facts["serving cost"][1]
    captions = [t.caption for t in section.tables]
    assert captions == [
        "Live quality per version: the latest accuracy",
        "Drift per feature (PSI of live traffic), largest seen first",
        "Retrain triggers, newest first",
        "Retrains, newest first",
        "Partitions taken in, newest first",
    ]
    assert section.tables[2].rows[0][0] == "t0003"  # newest first


def test_regression_metrics_plot_rmse(tmp_path: Path) -> None:
    reading = {
        "n_labels": 10,
        "alert": False,
        "metrics": {
            "mae": {"value": 1.0, "baseline": 0.9, "drop": -0.1, "alert": False},
            "rmse": {"value": 1.5, "baseline": 1.2, "drop": -0.3, "alert": True},
        },
    }
    history = [json.dumps(_tick(0, live_quality={"3": reading}))]
    quality = _section(_experiment(tmp_path, history=history)).data["live_quality"]
    assert (quality["metric"], quality["mode"]) == ("rmse", "min")
    assert quality["versions"][0]["latest"] == 1.5


def test_no_monitor_is_not_available(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    (storage / NAME / "data").mkdir(parents=True)
    (storage / NAME / "data" / "summary.json").write_text("{}")
    section = _section(load_experiment(storage, NAME))
    assert section.available is False
    assert "no monitor has run for this experiment" in section.why
    assert "python -m jobs.monitor" in section.why


def test_corrupt_ledger_says_so_and_keeps_the_history(tmp_path: Path) -> None:
    exp = _experiment(tmp_path, ledger="{broken")
    assert exp.monitor_ledger is None and exp.monitor_history is not None
    section = _section(exp)
    assert section.available
    assert "could not be read" in section.data["ledger_problem"]
    assert section.data["partitions_seen"] is None and section.data["triggers"] == []
    assert section.data["ticks"] == 4  # from the history
    assert {f["feature"] for f in section.data["drift"]} == {"age", "income"}
    assert any("could not be read" in note for note in section.notes)


@pytest.mark.parametrize(
    ("ledger", "problem"),
    [
        ("{broken", "could not be read"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({**LEDGER, "format": "something.else"}), "could not be read"),
    ],
)
def test_unreadable_ledger_alone_is_not_available(
    tmp_path: Path, ledger: str, problem: str
) -> None:
    storage = tmp_path / "storage"
    (storage / NAME / "data").mkdir(parents=True)
    (storage / NAME / "data" / "summary.json").write_text("{}")
    _write_monitor(storage, ledger, None)
    section = _section(load_experiment(storage, NAME))
    assert section.available is False
    assert problem in section.why and "ledger.json" in section.why


def test_bad_history_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    lines = [json.dumps(tick) for tick in HISTORY]
    lines.insert(1, "[1, 2]")
    lines.append('{"at": "2026-12-02T10:04:00+00:00", "time": 17')  # killed mid-write
    exp = _experiment(tmp_path, history=lines)
    assert exp.monitor_skipped_lines == 2
    assert any("2 unreadable line(s)" in note for note in exp.notes)
    data = _section(exp).data
    assert (data["history_lines"], data["history_skipped"]) == (4, 2)
    latest = {v["version"]: v["latest"] for v in data["live_quality"]["versions"]}
    assert latest == {"3": 0.86, "4": 0.94}


def test_full_report_has_the_section(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    make_experiment(storage, NAME)
    _write_monitor(storage, json.dumps(LEDGER), [json.dumps(tick) for tick in HISTORY])
    index = build_report(storage, NAME)
    report = json.loads((index.parent / "report.json").read_text())  # strict: no NaN
    monitoring = report["sections"]["monitoring"]
    assert monitoring["available"] is True and len(monitoring["plots"]) == 1
    assert monitoring["n_retrains"] == 2 and monitoring["month_spend_usd"] == 0.75
    assert report["inputs"]["read"]["monitor_ledger"].endswith("ledger.json")
    html = index.read_text()
    assert '<section id="monitoring"><h2>Monitoring</h2>' in html
    assert "s3://bucket/day=2026-12-01.parquet" in html
