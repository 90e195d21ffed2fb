"""The console a person reads: stage lines, one progress bar per long stage, the JSON summary.

Quiet by default (what `run_job` and the `ray-ml` CLI set up):

* **stderr** gets our stage lines (`[pipeline] ...`, `[sweep] ...`), ray_ml's own warnings and
  errors, and one live progress bar per long stage: the sweep (trials done / running / pruned,
  best so far, dollars spent of the budget, ETA) and training (epochs with the metric). On a
  terminal a bar is a `tqdm` bar; when stderr is not a terminal (CI, `ray job submit` logs) it is
  a plain line at most every `PLAIN_EVERY_S` seconds and one at its end, with no control codes.
* **stdout** gets the one JSON summary line, last.
* Everything else goes to files under `<storage>/<name>/logs/`, named in one line at start:
  `driver.log` (Python logging of this process: Ray's, Tune's, Train's, Serve's loggers and
  Python warnings) and `workers.log` (every Ray worker's stdout and stderr, as Ray would have
  printed it, prefixed with the task or actor and its pid).

`verbose=true` (or `ray-ml -v`) brings Ray's output back to the console as Ray prints it (the
log files are still written). `RAY_ML_PROGRESS=0` turns the bars off, stage lines stay.

Workers reach the driver's bars through their stdout: `emit_progress` prints one marked JSON
line, which Ray forwards to the driver like any worker output; the driver's handler turns it
into a bar update instead of a log line. That works wherever worker output reaches the driver
(an embedded Ray, a remote head through `ray job submit`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "Console",
    "Progress",
    "configure_console",
    "current_console",
    "emit_progress",
    "progress_enabled",
    "usd",
]

PLAIN_EVERY_S = 10.0  # a plain (non-terminal) bar prints at most this often
_LATE_S = 3.0  # after `finish`, progress lines of the ended run may still arrive this long
_MARK = "::ray_ml.progress:: "  # a worker line that is a progress update, not output
_RAY_LOGGERS = ("ray", "py.warnings")  # loggers that go to driver.log when quiet


def progress_enabled() -> bool:
    """False when `RAY_ML_PROGRESS=0` (tests, and jobs whose output is a log file anyway)."""
    return os.environ.get("RAY_ML_PROGRESS", "1") != "0"


def emit_progress(stage: str, **fields: Any) -> None:
    """From a worker (or the driver): one progress update for the driver's `stage` bar.

    Args:
        stage: The bar's name, e.g. `train`.
        **fields: `n` (done so far), `total`, and `postfix` (a short text, e.g. the metric).
    """
    print(_MARK + json.dumps({"stage": stage, **fields}, default=str), flush=True)


class Progress:
    """One stage's bar: `tqdm` on a terminal, plain throttled lines otherwise."""

    def __init__(self, console: Console, tag: str, total: int | None, unit: str) -> None:
        self._console = console
        self.tag = tag
        self.total = total
        self.unit = unit
        self.n = 0
        self.postfix = ""
        self._printed_at = -math.inf  # the first update prints at once
        self._said = ""
        self._bar: Any = None
        self._closed = False
        if console.bars and console.is_terminal:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                desc=f"[{tag}]",
                unit=unit,
                file=console.stream,
                dynamic_ncols=True,
                leave=True,
            )

    def update(self, n: int | None = None, total: int | None = None, postfix: str = "") -> None:
        """Set the count to `n` (and `total`), with a short `postfix` such as the best metric."""
        if self._closed:
            return
        if total is not None:
            self.total = total
        if n is not None:
            self.n = n
        if postfix:
            self.postfix = postfix
        if self._bar is not None:
            if total is not None:
                self._bar.total = total
            self._bar.n = self.n
            self._bar.set_postfix_str(self.postfix, refresh=False)
            self._bar.refresh()
            return
        now = time.monotonic()
        if self._console.bars and now - self._printed_at >= PLAIN_EVERY_S:
            self._printed_at = now
            self._say_line()

    def close(self) -> None:
        """End the bar; a plain bar prints its last state once."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.n = self.n
            self._bar.set_postfix_str(self.postfix, refresh=False)
            self._bar.close()
        elif self._console.bars and self.n:
            self._say_line()
        self._console._bars.pop(self.tag, None)

    def _say_line(self) -> None:
        line = self._line()
        if line != self._said:  # the end state once, not again if the last line showed it
            self._said = line
            self._console.say(self.tag, line)

    def _line(self) -> str:
        of = f"/{self.total}" if self.total else ""
        unit = f" {self.unit}" if self.unit else ""
        tail = f", {self.postfix}" if self.postfix else ""
        return f"{self.n}{of}{unit}{tail}"

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Console:
    """Where a job's output goes; see the module docstring.

    Args:
        log_dir: Folder for `driver.log` and `workers.log`; None keeps everything on the
            console (a library call, a test).
        verbose: Ray's own output on the console too.
        stream: The human channel (stderr).
    """

    def __init__(
        self, log_dir: str | Path | None = None, verbose: bool = True, stream: TextIO | None = None
    ) -> None:
        self.log_dir = Path(log_dir).resolve() if log_dir is not None else None
        self.verbose = verbose or self.log_dir is None
        self.stream = stream or sys.stderr
        self.bars = progress_enabled()
        self._bars: dict[str, Progress] = {}
        self._finished: dict[str, float] = {}  # tag -> when its run ended (`finish`)
        self._lock = threading.Lock()
        self._workers_file: TextIO | None = None
        self._file_handler: logging.Handler | None = None

    @property
    def quiet(self) -> bool:
        return not self.verbose

    @property
    def is_terminal(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    # ------------------------------------------------------------------------------ lines
    def say(self, tag: str, msg: str) -> None:
        """One stage line, `[tag] msg`, on the human channel (above any live bar)."""
        line = f"[{tag}] {msg}"
        live = [p._bar for p in self._bars.values() if p._bar is not None]
        if live:
            live[0].write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def progress(self, tag: str, total: int | None = None, unit: str = "") -> Progress:
        """A bar for one stage (closing it ends it); one per tag at a time."""
        old = self._bars.get(tag)
        if old is not None:
            old.close()
        bar = Progress(self, tag, total, unit)
        self._bars[tag] = bar
        return bar

    def finish(self, tag: str, **final: Any) -> None:
        """End `tag`'s bar at its `final` state (`n`, `total`, `postfix`), known to the driver.

        Workers' progress lines reach the driver a moment late; ones for the finished run that
        arrive in the next few seconds are dropped instead of opening a new bar.
        """
        if self.bars and final.get("n") is not None:
            bar = self._bars.get(tag) or self.progress(
                tag, final.get("total"), str(final.get("unit", ""))
            )
            bar.unit = str(final.get("unit") or bar.unit)
            bar.update(final.get("n"), final.get("total"), str(final.get("postfix", "")))
        ended = self._bars.get(tag)
        if ended is not None:
            ended.close()
        self._finished[tag] = time.monotonic()

    # --------------------------------------------------------------------------- routing
    def install(self) -> None:
        """Send Python logging of Ray and warnings to `driver.log` (quiet) and name the files."""
        if self.log_dir is None:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.log_dir / "driver.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.INFO)  # Ray Data logs every operator's metrics at DEBUG
        self._file_handler = handler
        logging.captureWarnings(True)
        ours = logging.getLogger("ray_ml")
        ours.addHandler(handler)
        if not any(getattr(h, "_ray_ml_console", False) for h in ours.handlers):
            # ray_ml's own warnings and errors are for the person at the console.
            shown = logging.StreamHandler(self.stream)
            shown.setLevel(logging.WARNING)
            shown.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
            shown._ray_ml_console = True  # type: ignore[attr-defined]
            ours.addHandler(shown)
        ours.propagate = False
        self.route_loggers()
        where = "copied to the console too" if self.verbose else "-v or verbose=true shows it"
        self.say("logs", f"Ray's own output goes to {self.log_dir}/ ({where})")

    def route_loggers(self) -> None:
        """Ray's loggers (and the root's) write to `driver.log`, not the console; idempotent.

        Ray, Ray Data and Ray Serve attach their own stream handlers when first imported or
        started, and Hydra gives the root logger one on stdout, so this runs again after
        `import ray`, after `ray.init` and after Serve starts. ray_ml's own logger keeps its
        console handler for warnings and errors.
        """
        handler = self._file_handler
        if handler is None:
            return
        tops = [logging.getLogger(), *(logging.getLogger(n) for n in _RAY_LOGGERS)]
        children = [
            logging.getLogger(n)
            for n in sorted(logging.root.manager.loggerDict)
            if n.split(".")[0] == "ray" and "." in n
        ]
        for log in tops + children:
            if self.quiet:
                for h in list(log.handlers):
                    if _is_console_handler(h):
                        log.removeHandler(h)
            top = log in tops
            if (top or not log.propagate) and handler not in log.handlers:
                log.addHandler(handler)
            if top and log is not logging.getLogger():
                log.propagate = False

    def attach_ray(self) -> None:
        """After `ray.init`: worker output to `workers.log` (quiet), progress lines to bars."""
        try:
            from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatch
        except ImportError:  # a Ray without the dispatcher: its output stays on the console
            return
        # Ray's own handler prints worker lines to the console; it is registered by
        # `ray.init(log_to_driver=True)` under this name (ray/_private/worker.py). Ours takes
        # its place, and hands it the lines that are not progress updates when verbose.
        dispatch.remove_handler("ray_print_logs")
        dispatch.remove_handler("ray_ml_logs")
        dispatch.add_handler("ray_ml_logs", self._on_worker_lines)
        ray_worker = sys.modules.get("ray._private.worker")
        if ray_worker is not None and hasattr(ray_worker, "print_to_stdstream"):
            # The driver's error listener (raylet messages: "worker died", "task retried")
            # calls this module function directly, not through the dispatcher.
            global _RAY_PRINT
            if _RAY_PRINT is None:
                _RAY_PRINT = ray_worker.print_to_stdstream
            setattr(ray_worker, "print_to_stdstream", _route_ray_print)  # noqa: B010
        self.route_loggers()

    def _on_worker_lines(self, data: dict[str, Any]) -> None:
        lines = [str(line) for line in data.get("lines", [])]
        shown = [line for line in lines if _MARK not in line]
        for line in lines:
            if _MARK in line:
                self._on_progress(line.split(_MARK, 1)[1])
        if not shown:
            return
        if self.verbose and _RAY_PRINT is not None:
            _RAY_PRINT({**data, "lines": shown}, ignore_prefix=False)
        if self.log_dir is None:
            return
        who = data.get("actor_name") or data.get("task_name") or ""
        prefix = f"({who} pid={data.get('pid')}, ip={data.get('ip')})"
        with self._lock:
            if self._workers_file is None:
                self._workers_file = open(  # noqa: SIM115 - kept open for the job's life
                    self.log_dir / "workers.log", "a", encoding="utf-8"
                )
            for line in shown:
                self._workers_file.write(f"{prefix} {line}\n")
            self._workers_file.flush()

    def _on_progress(self, payload: str) -> None:
        try:
            update = json.loads(payload)
        except json.JSONDecodeError:
            return
        stage = str(update.get("stage", "work"))
        if time.monotonic() - self._finished.get(stage, -math.inf) < _LATE_S:
            return  # a late line of a run that already ended
        bar = self._bars.get(stage)
        if bar is None:
            bar = self.progress(stage, update.get("total"), str(update.get("unit", "")))
        bar.update(update.get("n"), update.get("total"), str(update.get("postfix", "")))

    @contextmanager
    def quiet_stdout(self) -> Iterator[None]:
        """While a Ray library prints for people (Tune's tables and boxes): to `driver.log`.

        Verbose, or without a log folder, the prints stay on stdout.
        """
        handler = self._file_handler
        if self.verbose or not isinstance(handler, logging.FileHandler):
            yield
            return
        # The log handler's own file object: one writer, in order with the logging.
        with redirect_stdout(handler.stream):
            yield

    def close(self) -> None:
        """End every bar and close the log files."""
        for bar in list(self._bars.values()):
            bar.close()
        with self._lock:
            if self._workers_file is not None:
                self._workers_file.close()
                self._workers_file = None


def _is_console_handler(h: logging.Handler) -> bool:
    return (
        isinstance(h, logging.StreamHandler)
        and not isinstance(h, logging.FileHandler)
        and getattr(h, "stream", None) in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)
    )


_CURRENT: Console | None = None
_RAY_PRINT: Callable[..., None] | None = None  # Ray's own printer of worker lines


def _route_ray_print(data: dict[str, Any], ignore_prefix: bool = False) -> None:
    current_console()._on_worker_lines(data)


def configure_console(log_dir: str | Path | None, verbose: bool = False) -> Console:
    """Set up this process's console (once per job, at its entrypoint) and return it."""
    global _CURRENT
    if _CURRENT is not None:
        _CURRENT.close()
    _CURRENT = Console(log_dir, verbose=verbose)
    _CURRENT.install()
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():  # joined before the config was known
        _CURRENT.attach_ray()
    return _CURRENT


def current_console() -> Console:
    """The job's console; without `configure_console`, a verbose one that routes nothing."""
    global _CURRENT
    if _CURRENT is None:
        _CURRENT = Console(None, verbose=True)
    return _CURRENT


def usd(value: float) -> str:
    """Dollars for a person: cents above a cent, two significant figures below."""
    if value == 0:
        return "$0"
    if abs(value) >= 0.01:
        return f"${value:.2f}"
    # Positional, never an exponent: "$0.000008", not "$8e-06".
    decimals = 1 - math.floor(math.log10(abs(value)))
    return f"${value:.{decimals}f}".rstrip("0")
