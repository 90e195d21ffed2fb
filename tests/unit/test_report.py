"""`ray_ml.report.build_report` on a synthetic experiment folder, and on a real one if present."""

from __future__ import annotations

import base64
import io
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from ray_ml.errors import RayMLError
from ray_ml.report import billed_curve, build_report, fmt, load_experiment, pareto_front_2d, usd
from tests._report_fixture import DRIFT_FEATURES, REASONS, TRIALS, XSS, make_experiment
from tests.conftest import REPO

pytestmark = pytest.mark.unit

IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
REAL_SWEEP = Path("/tmp/rm/sweep2")
REAL_DATA_SUMMARY = REPO / "runs" / "demo" / "data" / "summary.json"


def _build(tmp_path: Path, **kwargs: Any) -> tuple[dict[str, Any], str, dict[str, Any]]:
    expected = make_experiment(tmp_path / "storage", **kwargs)
    index = build_report(tmp_path / "storage", expected["name"])
    report = json.loads((index.parent / "report.json").read_text())
    return expected, index.read_text(), report


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """One full synthetic report shared by the read-only checks (each build takes ~1 s)."""
    return _build(tmp_path_factory.mktemp("report"))


def test_writes_index_and_json_in_default_place(tmp_path: Path) -> None:
    make_experiment(tmp_path, "exp")
    index = build_report(tmp_path, "exp")
    assert index == (tmp_path / "exp" / "report" / "index.html").resolve()
    assert index.is_file() and (index.parent / "report.json").is_file()


def test_out_dir_is_honoured(tmp_path: Path) -> None:
    make_experiment(tmp_path / "s", "exp")
    index = build_report(tmp_path / "s", "exp", out_dir=tmp_path / "elsewhere")
    assert index == tmp_path / "elsewhere" / "index.html"
    assert (tmp_path / "elsewhere" / "report.json").is_file()


def test_one_valid_png_per_plot(built: tuple[dict[str, Any], str, dict[str, Any]]) -> None:
    expected, html, report = built
    images = IMG.findall(html)
    plotted = {k: len(s["plots"]) for k, s in report["sections"].items() if s["plots"]}
    assert plotted == expected["plots"]
    assert len(images) == sum(expected["plots"].values()) == html.count("<img ")
    for data in images:
        png = base64.b64decode(data, validate=True)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(io.BytesIO(png)) as im:
            im.verify()
        with Image.open(io.BytesIO(png)) as im:
            width, height = im.size
            assert im.format == "PNG"
            assert 600 <= width <= 2000 and 150 <= height <= 2000, im.size
            assert len(set(im.convert("L").getdata())) > 2  # something was drawn


def test_page_is_self_contained(built: tuple[dict[str, Any], str, dict[str, Any]]) -> None:
    _, html, _ = built
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html and 'src="http' not in html
    assert html.count("<script>") == 1  # the load counter only
    assert 'document.title = "report-ok:" + ok' in html


def test_numbers_match_the_inputs(built: tuple[dict[str, Any], str, dict[str, Any]]) -> None:
    expected, _, report = built
    sections = report["sections"]
    head = sections["headline"]
    assert head["cost_usd"] == pytest.approx(expected["total_usd"])
    assert head["budget_usd"] == expected["budget_usd"]
    assert head["budget_used"] == pytest.approx(expected["total_usd"] / expected["budget_usd"])
    assert head["waste_usd"] == pytest.approx(expected["waste_usd"])
    assert head["best"]["trial_id"] == expected["best_trial"]
    assert head["best"]["value"] == expected["best_value"]
    assert head["trials"] == expected["trials"] and head["pruned"] == expected["pruned"]
    assert head["prices"] == {
        "illustrative": True,
        "read_on": ["2026-11-01"],
        "pricing": "on_demand",
    }
    assert head["winner_metrics"]["test"] == {"accuracy": 0.9}  # NaN and lists left out

    board = sections["leaderboard"]
    assert board["total"] == len(TRIALS)
    assert [r["value"] for r in board["rows"]] == sorted(t["curve"][-1] for t in TRIALS)
    assert board["rows"][0]["trial_id"] == expected["best_trial"]

    pareto = sections["pareto"]
    assert len(pareto["points"]) == len(TRIALS)
    assert [p["trial_id"] for p in pareto["front"]] == ["a1b2c_00004", "a1b2c_00002"]
    assert pareto["winner"] == expected["best_trial"]

    curves = {c["trial_id"]: c for c in sections["learning_curves"]["curves"]}
    assert set(curves) == {t["trial_id"] for t in TRIALS}  # the stale folder is left out
    for t in TRIALS:
        assert curves[t["trial_id"]]["values"] == t["curve"]
        assert curves[t["trial_id"]]["iterations"] == list(range(1, len(t["curve"]) + 1))
    assert sections["learning_curves"]["log_y"] is True

    spend = sections["spend"]
    assert spend["total_usd"] == pytest.approx(expected["total_usd"])
    assert spend["curve"][0] == [0.0, 0.0]
    assert spend["budget_usd"] == expected["budget_usd"] and spend["budget_reached_at_s"] is None
    dollars = [d for _, d in spend["curve"]]
    assert dollars == sorted(dollars)

    costs = sections["cost_breakdown"]
    assert costs["total_billed_usd"] == pytest.approx(expected["total_usd"])
    assert costs["total_waste_usd"] == pytest.approx(expected["waste_usd"])
    assert costs["spot_trials"] == 1 and costs["on_demand_trials"] == 4
    spot = next(r for r in costs["rows"] if r["pricing"] == "spot")
    assert spot["waste_usd"] == 0.004 and spot["useful_usd"] == pytest.approx(0.006)

    data = sections["data"]
    assert (data["rows_in"], data["rows_ok"], data["rows_rejected"]) == (1000, 989, 11)
    assert {r["reason"]: r["rows"] for r in data["reasons"]} == REASONS
    assert data["reasons"][0] == {"reason": "age:range", "rows": 7}
    assert [s["split"] for s in data["splits"]] == ["train", "validation", "test"]
    assert data["splits"][0]["class_fraction"] == {"0": 0.37, "1": 0.63}

    drift = sections["drift"]
    assert {f["feature"]: f["psi"] for f in drift["features"]} == {
        k: v["psi"] for k, v in DRIFT_FEATURES.items()
    }
    assert drift["drifted"] == ["age"] and drift["threshold"] == 0.2
    assert len(sections["drift"]["plots"]) == 1


def test_report_json_is_strict_json(built: tuple[dict[str, Any], str, dict[str, Any]]) -> None:
    _, _, report = built

    def walk(value: Any) -> None:
        if isinstance(value, float):
            assert math.isfinite(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(report)
    assert report["metric"] == "val_loss" and report["mode"] == "min"
    assert any("unreadable line" in n for n in report["notes"])
    assert any("zzzzz_00000" in n for n in report["notes"])


def test_values_are_escaped(built: tuple[dict[str, Any], str, dict[str, Any]]) -> None:
    _, html, report = built
    assert XSS not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    rows = {r["trial_id"]: r for r in report["sections"]["leaderboard"]["rows"]}
    assert rows["a1b2c_00001"]["config"]["model.norm"] == XSS  # JSON keeps the raw value


def test_struct_leaderboard_layout_gives_the_same_numbers(tmp_path: Path) -> None:
    _, _, flat = _build(tmp_path / "flat")
    _, _, struct = _build(tmp_path / "struct", layout="struct")
    for key in ("headline", "pareto", "cost_breakdown"):
        a, b = flat["sections"][key], struct["sections"][key]
        assert a["available"] and b["available"]
    rows = [
        [(r["trial_id"], r["value"], r["config"]) for r in rep["sections"]["leaderboard"]["rows"]]
        for rep in (flat, struct)
    ]
    assert rows[0] == rows[1]
    assert flat["sections"]["pareto"]["front"] == struct["sections"]["pareto"]["front"]


def test_missing_drift_says_not_available(tmp_path: Path) -> None:
    expected, html, report = _build(tmp_path, drift=False)
    drift = report["sections"]["drift"]
    assert drift["available"] is False and "drift.json does not exist" in drift["why"]
    assert "Not available:" in html
    assert len(IMG.findall(html)) == sum(expected["plots"].values())
    assert report["sections"]["headline"]["available"] is True


def test_sweep_only_and_data_only(tmp_path: Path) -> None:
    _, _, sweep_only = _build(tmp_path / "a", data=False, drift=False)
    assert sweep_only["sections"]["data"]["available"] is False
    assert "python -m jobs.data name=exp" in sweep_only["sections"]["data"]["why"]

    storage = tmp_path / "b"
    make_experiment(storage, "exp", drift=False)
    shutil.rmtree(storage / "exp-sweep")
    shutil.rmtree(storage / "tune")
    report = json.loads((build_report(storage, "exp").parent / "report.json").read_text())
    sections = report["sections"]
    assert sections["data"]["available"] is True
    for key in ("headline", "leaderboard", "pareto", "learning_curves", "spend"):
        assert sections[key]["available"] is False, key
    assert "python -m jobs.tune name=exp" in sections["headline"]["why"]


def test_corrupt_inputs_do_not_crash(tmp_path: Path) -> None:
    storage = tmp_path / "s"
    make_experiment(storage, "exp")
    (storage / "exp-sweep" / "leaderboard.parquet").write_bytes(b"not parquet")
    (storage / "exp-sweep" / "sweep_state.json").write_text("{broken")
    (storage / "exp" / "serve" / "drift.json").write_text("[1, 2]")
    report = json.loads((build_report(storage, "exp").parent / "report.json").read_text())
    missing = report["inputs"]["not_available"]
    assert "could not be read" in missing["leaderboard"]
    assert "could not be read" in missing["costs"]
    assert "not a JSON object" in missing["drift"]
    sections = report["sections"]
    assert sections["leaderboard"]["available"] is False
    assert sections["headline"]["cost_usd"] == pytest.approx(0.038)  # from the summary
    assert sections["spend"]["source"].startswith("reported by trials")  # events fallback
    assert sections["learning_curves"]["available"] is True


def test_nothing_at_all_raises_naming_the_folder(tmp_path: Path) -> None:
    with pytest.raises(RayMLError) as info:
        build_report(tmp_path, "ghost")
    message = str(info.value)
    assert str(tmp_path.resolve() / "ghost-sweep") in message
    assert str(tmp_path.resolve() / "ghost" / "data") in message
    assert "python -m jobs.tune name=ghost" in message
    assert not (tmp_path / "ghost").exists()  # nothing written


def test_metric_from_summary_when_leaderboard_has_no_metadata(tmp_path: Path) -> None:
    make_experiment(tmp_path, "exp")
    (tmp_path / "exp-sweep" / "leaderboard.parquet").unlink()
    summary = json.loads((tmp_path / "exp-sweep" / "summary.json").read_text())
    summary["best"] = {"trial_id": "x", "config": {}, "val_auc": 0.9, "rule": "best (max)"}
    (tmp_path / "exp-sweep" / "summary.json").write_text(json.dumps(summary))
    exp = load_experiment(tmp_path, "exp")
    assert (exp.metric, exp.mode) == ("val_auc", "max")


def test_billed_curve_is_exact_and_piecewise_linear() -> None:
    costs = [
        {"started_at": 100.0, "ended_at": 110.0, "billed_usd": 1.0},
        {"started_at": 105.0, "ended_at": 115.0, "billed_usd": 2.0},
        {"started_at": 120.0, "ended_at": None, "held_s": 0.0, "billed_usd": 0.5},
    ]
    t0, points = billed_curve(costs, prior_usd=0.25)
    assert t0 == 100.0
    got = dict(points)
    assert got[5.0] == pytest.approx(0.25 + 0.5)
    assert got[10.0] == pytest.approx(0.25 + 1.0 + 1.0)
    assert got[15.0] == pytest.approx(3.25)
    assert points[-1] == (20.0, pytest.approx(3.75))  # a zero-length trial is a jump


def test_pareto_front_2d_both_modes() -> None:
    pts = [
        {"trial_id": "a", "cost_usd": 1.0, "value": 0.5},
        {"trial_id": "b", "cost_usd": 2.0, "value": 0.4},
        {"trial_id": "c", "cost_usd": 3.0, "value": 0.45},
        {"trial_id": "d", "cost_usd": 4.0, "value": 0.3},
    ]
    assert [p["trial_id"] for p in pareto_front_2d(pts, "min")] == ["a", "b", "d"]
    assert [p["trial_id"] for p in pareto_front_2d(pts, "max")] == ["a"]


def test_formats() -> None:
    assert usd(0.000445) == "$0.000445" and usd(0.038) == "$0.038" and usd(12.5) == "$12.50"
    assert usd(0.0) == "$0" and usd(None) == "—" and usd(float("nan")) == "—"
    assert fmt(None) == "—" and fmt(True) == "yes" and fmt(1234) == "1,234"
    assert fmt(0.123456) == "0.1235" and fmt(2.0) == "2" and fmt(float("inf")) == "—"


@pytest.mark.skipif(not REAL_SWEEP.is_dir(), reason=f"no real sweep at {REAL_SWEEP}")
def test_real_sweep_parses(tmp_path: Path) -> None:
    storage = tmp_path / "real"
    shutil.copytree(REAL_SWEEP / "demo-sweep", storage / "demo-sweep")
    if (REAL_SWEEP / "tune" / "demo-sweep").is_dir():
        shutil.copytree(
            REAL_SWEEP / "tune" / "demo-sweep",
            storage / "tune" / "demo-sweep",
            ignore=shutil.ignore_patterns("*.pkl", "events.out.*", "checkpoint_*"),
        )
    if REAL_DATA_SUMMARY.is_file():
        (storage / "demo" / "data").mkdir(parents=True)
        shutil.copy(REAL_DATA_SUMMARY, storage / "demo" / "data" / "summary.json")
    index = build_report(storage, "demo")
    report = json.loads((index.parent / "report.json").read_text())
    summary = json.loads((REAL_SWEEP / "demo-sweep" / "summary.json").read_text())
    sections = report["sections"]
    for key in ("headline", "leaderboard", "pareto", "cost_breakdown", "spend"):
        assert sections[key]["available"], (key, sections[key]["why"])
    assert sections["headline"]["cost_usd"] == summary["cost_usd"]
    assert sections["headline"]["best"]["trial_id"] == summary["best"]["trial_id"]
    assert sections["headline"]["trials"] == summary["trials"]
    billed = sections["cost_breakdown"]["total_billed_usd"]
    assert billed == pytest.approx(summary["cost_usd"], abs=1e-6)
    assert sections["data"]["available"] is REAL_DATA_SUMMARY.is_file()
    images = IMG.findall(index.read_text())
    assert len(images) == sum(len(s["plots"]) for s in sections.values()) >= 4
