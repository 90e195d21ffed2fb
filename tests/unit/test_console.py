"""The console (`ray_ml.console`): plain lines off a terminal, tqdm on one, worker output routed to
log files, progress lines from workers turned into bar updates, Ray's loggers off the console."""

from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path

import pytest

from ray_ml import console as console_mod
from ray_ml.console import Console, emit_progress

pytestmark = pytest.mark.unit


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def bars_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ML_PROGRESS", "1")


def test_off_a_terminal_a_bar_is_plain_throttled_lines(
    bars_on: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    con = Console(None, stream=out)
    clock = iter([0.0, 1.0, 20.0])
    monkeypatch.setattr(console_mod.time, "monotonic", lambda: next(clock, 21.0))
    bar = con.progress("sweep", 16, "trials")
    bar.update(1, postfix="$0.01 spent")  # t=0: printed
    bar.update(2)  # t=1: throttled
    bar.update(3, postfix="best 0.2")  # t=20: printed
    bar.close()  # the last state, once: the last line already showed it
    lines = out.getvalue().splitlines()
    assert lines == ["[sweep] 1/16 trials, $0.01 spent", "[sweep] 3/16 trials, best 0.2"]
    bar = con.progress("train", 5, "epochs")
    bar.update(1)
    bar.update(5)  # throttled (the clock stands still now)
    bar.close()  # so the end state prints here
    assert out.getvalue().splitlines()[2:] == ["[train] 1/5 epochs", "[train] 5/5 epochs"]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_on_a_terminal_a_bar_is_a_live_tqdm_bar(bars_on: None) -> None:
    out = _Terminal()
    con = Console(None, stream=out)
    with con.progress("train", 5, "epochs") as bar:
        bar.update(2, postfix="val_loss 0.3")
    text = out.getvalue()
    assert "\r" in text  # redrawn in place
    assert "[train]" in text and "2/5" in text and "val_loss 0.3" in text


def test_progress_off_prints_no_bars_but_stage_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ML_PROGRESS", "0")
    out = io.StringIO()
    con = Console(None, stream=out)
    with con.progress("sweep", 2, "trials") as bar:
        bar.update(2)
    con.say("pipeline", "stage 1/6 data")
    assert out.getvalue() == "[pipeline] stage 1/6 data\n"


def test_quiet_worker_lines_go_to_the_log_and_progress_lines_to_the_bar(
    bars_on: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = io.StringIO()
    con = Console(tmp_path, verbose=False, stream=out)
    emit_progress("train", n=3, total=10, unit="epochs", postfix="val_loss 0.25")
    marked = capsys.readouterr().out.strip()
    con._on_worker_lines(
        {
            "lines": ["Reporting training result 3: TrainingReport(...)", marked],
            "pid": 4242,
            "ip": "10.0.0.1",
            "actor_name": "RayTrainWorker",
            "is_err": False,
        }
    )
    con.close()
    log = (tmp_path / "workers.log").read_text()
    assert (
        log
        == "(RayTrainWorker pid=4242, ip=10.0.0.1) Reporting training result 3: TrainingReport(...)\n"
    )
    assert "TrainingReport" not in out.getvalue()
    assert out.getvalue().splitlines() == ["[train] 3/10 epochs, val_loss 0.25"]  # once


def test_ray_loggers_and_warnings_leave_the_console_for_driver_log(tmp_path: Path) -> None:
    err = io.StringIO()
    data_log = logging.getLogger("ray.data.test_console")
    chatty = logging.StreamHandler(sys.stderr)
    data_log.addHandler(chatty)
    data_log.propagate = False  # as Ray Data configures its own loggers
    ours = logging.getLogger("ray_ml.test_console")
    con = Console(tmp_path / "logs", verbose=False, stream=err)
    try:
        con.install()
        assert chatty not in data_log.handlers
        data_log.warning("Starting execution of Dataset x")
        logging.getLogger("ray.tune").warning("trial table")
        ours.warning("5 rows outside the expected range of `age`")
        import warnings

        warnings.warn("a deprecation", UserWarning, stacklevel=1)
    finally:
        con.close()
        for name in ("ray", "ray_ml", "py.warnings", ""):
            log = logging.getLogger(name)
            for h in list(log.handlers):
                if isinstance(h, logging.FileHandler) or getattr(h, "_ray_ml_console", False):
                    log.removeHandler(h)
                    h.close()
        logging.captureWarnings(False)
        data_log.propagate = True
    text = (tmp_path / "logs" / "driver.log").read_text()
    for line in ("Starting execution of Dataset x", "trial table", "a deprecation"):
        assert line in text
    shown = err.getvalue()
    assert "[WARNING] 5 rows outside the expected range of `age`" in shown  # ours stay
    assert "Starting execution" not in shown and "trial table" not in shown
    assert f"[logs] Ray's own output goes to {tmp_path / 'logs'}/" in shown


def test_emit_progress_is_one_marked_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    emit_progress("train", n=1, total=2)
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and line.startswith("::ray_ml.progress:: ")
    assert json.loads(line.split(" ", 1)[1]) == {"stage": "train", "n": 1, "total": 2}


def test_dollars_for_a_person() -> None:
    from ray_ml.console import usd

    assert [usd(0), usd(0.000234), usd(0.0005), usd(1.234)] == [
        "$0",
        "$0.00023",
        "$0.0005",
        "$1.23",
    ]
    assert [usd(8e-06), usd(1.2e-09), usd(0.00999)] == ["$0.000008", "$0.0000000012", "$0.01"]


def test_finish_shows_the_final_state_and_drops_late_lines_of_the_ended_run(
    bars_on: None, tmp_path: Path
) -> None:
    out = io.StringIO()
    con = Console(tmp_path, verbose=False, stream=out)
    line = "::ray_ml.progress:: " + json.dumps({"stage": "train", "n": 3, "total": 30})
    con._on_worker_lines({"lines": [line], "pid": 1, "ip": "x"})
    con.finish("train", n=24, total=30, unit="epochs", postfix="val_loss 0.08")
    con._on_worker_lines({"lines": [line], "pid": 1, "ip": "x"})  # arrives after the end
    con.close()
    assert out.getvalue().splitlines() == [
        "[train] 3/30",
        "[train] 24/30 epochs, val_loss 0.08",
    ]
