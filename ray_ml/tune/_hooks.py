"""Tune's side of the books: a callback, a stopper, a scheduler and a search gate.

Each one forwards what Tune does to `SweepBooks` and nothing else; the rules live there.

- `BooksCallback`: trial starts, results, checkpoints, recoveries and ends.
- `BudgetStopper`: stops a trial at a report its next interval would overspend, and the sweep
  when the budget is reached.
- `RecordingScheduler`: wraps Tune's scheduler and records its STOP/PAUSE decisions, so a
  pruned trial is known as pruned, and a paused one is not billed while it waits.
- `BudgetGate`: wraps the search algorithm; it hands Tune a new trial only when the budget can
  carry it to its first report.

Tune pickles the scheduler and the search algorithm into `tuner.pkl` when the sweep starts, and
`Tuner.restore` unpickles them (callbacks and stopper too) for a resumed driver. So none of
these pickles the books (`__getstate__` drops them), and `attach_books` gives the restored
objects the new driver's books.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.train.constants import CHECKPOINT_DIR_NAME
from ray.tune import Callback, Stopper
from ray.tune.result import RESULT_DUPLICATE, SHOULD_CHECKPOINT
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import SearchAlgorithm

from ray_ml.console import Progress, current_console, usd
from ray_ml.cost import TrialStatus
from ray_ml.tune._books import SweepBooks

__all__ = ["BooksCallback", "BudgetGate", "BudgetStopper", "RecordingScheduler", "attach_books"]


# The books of the sweep this driver runs. Ray 2.60 also restores the stopper from Tune's own
# experiment state (`TuneController.resume` updates its `__dict__` from it), where no one can
# attach anything: an unpickled hook falls back to these.
_CURRENT: SweepBooks | None = None


class _Unpickled:
    """Holds the books without pickling them."""

    _books: SweepBooks | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_books"] = None
        if "_bar" in state:
            state["_bar"] = None  # a live terminal bar belongs to this driver only
        return state

    @property
    def books(self) -> SweepBooks:
        books = self._books or _CURRENT
        if books is None:
            raise RuntimeError("no books attached: call attach_books(...) after Tuner.restore")
        return books


class BooksCallback(_Unpickled, Callback):
    """Feeds trial events to the books and the sweep's progress bar (`ray_ml.console`)."""

    def __init__(
        self,
        books: SweepBooks,
        progress: bool = True,
        *,
        metric: str | None = None,
        mode: str = "min",
        total: int | None = None,
    ) -> None:
        self._books = books
        self._progress_on = progress
        self._metric = metric
        self._mode = mode
        self._total = total
        self._bar: Progress | None = None

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.books.on_start(trial.trial_id, trial.config)
        self._progress(trials)

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.books.on_recover(trial.trial_id)

    def on_checkpoint(
        self, iteration: int, trials: list[Any], trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        self.books.on_checkpoint(trial.trial_id, getattr(checkpoint, "path", None))

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        # A report with a checkpoint was persisted by the trial before the result was sent, but
        # Tune registers it (`on_checkpoint`) only after a `save` round trip, which a stop of
        # the sweep in the same step (the budget) throws away: the books take it from here.
        name = result.get(CHECKPOINT_DIR_NAME)
        storage = getattr(trial, "storage", None)
        if name and result.get(SHOULD_CHECKPOINT) and storage is not None:
            path = Path(storage.trial_fs_path, name).as_posix()  # `checkpoint_fs_path`
            self.books.on_checkpoint(trial.trial_id, path)
        self._progress(trials)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.books.on_end(trial.trial_id, error=False)
        self._progress(trials)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.books.on_end(trial.trial_id, error=True)
        self._progress(trials)

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self.books.save()  # throttled: running trials' spend reaches the state file

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self._progress(trials)
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _progress(self, trials: list[Any]) -> None:
        """The sweep's bar: trials done of all, pruned, running, best so far, spend vs budget."""
        if not self._progress_on:
            return
        if self._bar is None:
            self._bar = current_console().progress("sweep", self._total, "trials")
        books = self.books
        statuses = [books.status_of(t) for t in books.facts]
        done = sum(1 for s in statuses if s not in (TrialStatus.running, TrialStatus.paused))
        pruned = sum(1 for s in statuses if s is TrialStatus.pruned)
        running = sum(1 for t in trials if t.status == "RUNNING")
        spent = books.meter.committed()
        cap = f" of {usd(books.budget.usd)}" if books.budget.usd is not None else ""
        parts = [f"{pruned} pruned", f"{running} running"]
        seen = [
            f.metrics[self._metric]
            for f in books.facts.values()
            if self._metric is not None and self._metric in f.metrics
        ]
        if seen:
            best = min(seen) if self._mode == "min" else max(seen)
            parts.append(f"best {self._metric} {best:.4g}")
        parts.append(f"{usd(spent)}{cap} spent")
        self._bar.update(done, postfix=", ".join(parts))


class BudgetStopper(_Unpickled, Stopper):
    """Tune's stopper: sees every result first (before the scheduler and the callbacks)."""

    def __init__(self, books: SweepBooks) -> None:
        self._books = books

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        if result.get(RESULT_DUPLICATE) or result.get("done"):
            # The last report again, sent when the trial's function returns: Ray 2.60's
            # controller swaps it for the trial's last result with `done=True` before calling
            # the stopper (a trial's own reports carry `done=False`).
            return False
        self.books.on_result(trial_id, result)
        return self.books.stop_at_report(trial_id)

    def stop_all(self) -> bool:
        return self.books.stop_all() is not None

    @property
    def reason(self) -> str | None:
        return self.books.stop_reason


class RecordingScheduler(_Unpickled, TrialScheduler):
    """Tune's scheduler, with its decisions written into the books."""

    def __init__(self, inner: TrialScheduler, books: SweepBooks) -> None:
        self.inner = inner
        self._books = books

    @property
    def metric(self) -> Any:
        return self.inner.metric

    @property
    def supports_buffered_results(self) -> bool:
        return bool(self.inner.supports_buffered_results)

    def set_search_properties(self, metric: Any, mode: Any, **spec: Any) -> bool:
        return self.inner.set_search_properties(metric, mode, **spec)

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self.inner.on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self.inner.on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        decision = self.inner.on_trial_result(tune_controller, trial, result)
        if decision in (TrialScheduler.STOP, TrialScheduler.PAUSE):
            self.books.on_decision(trial.trial_id, decision)
        return decision

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        self.inner.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self.inner.on_trial_remove(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        return self.inner.choose_trial_to_run(tune_controller)

    def debug_string(self) -> str:
        return self.inner.debug_string()

    def save(self, checkpoint_path: str) -> None:
        self.inner.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.inner.restore(checkpoint_path)


class BudgetGate(_Unpickled, SearchAlgorithm):
    """The search algorithm, asked for a new trial only when the budget can carry one.

    Concurrency stays with the inner algorithm (`BasicVariantGenerator(max_concurrent=...)` or
    a `ConcurrencyLimiter`), whose state Tune saves and restores with the experiment.

    Args:
        inner: Tune's search algorithm (a `BasicVariantGenerator`, or a `SearchGenerator`).
        books: The sweep's books.
    """

    def __init__(self, inner: SearchAlgorithm, books: SweepBooks) -> None:
        self.inner = inner
        self._books = books
        self._created: set[str] = set()
        self._finished = False

    @property
    def metric(self) -> Any:
        return self.inner.metric

    @property
    def total_samples(self) -> int:
        return int(self.inner.total_samples)

    def set_search_properties(
        self, metric: Any, mode: Any, config: dict[str, Any], **spec: Any
    ) -> bool:
        return self.inner.set_search_properties(metric, mode, config, **spec)

    def add_configurations(self, experiments: Any) -> None:
        self.inner.add_configurations(experiments)

    def _unstarted(self) -> int:
        return sum(1 for t in self._created if t not in self.books.facts)

    def _any_live(self) -> bool:
        return self._unstarted() > 0 or any(f.ended is None for f in self.books.facts.values())

    def next_trial(self) -> Any:
        if self._finished:
            return None
        why = self.books.may_start(pending=self._unstarted())
        if why is not None:
            if not self._any_live():
                if self.books.stop_reason is None and self.books.has_estimate():
                    # Nothing runs and the budget cannot carry a new trial: the search is over.
                    self.books.finish_search(why)
                if self.books.stop_reason is not None:
                    self._finished = True
            return None
        trial = self.inner.next_trial()
        if trial is not None:
            self._created.add(trial.trial_id)
        return trial

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self.inner.on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        self.inner.on_trial_complete(trial_id, result=result, error=error)

    def is_finished(self) -> bool:
        return self._finished or self.inner.is_finished()

    def set_finished(self) -> None:
        self._finished = True
        self.inner.set_finished()

    def has_checkpoint(self, dirpath: str) -> bool:
        return self.inner.has_checkpoint(dirpath)

    def save_to_dir(self, dirpath: str, **kwargs: Any) -> None:
        self.inner.save_to_dir(dirpath, **kwargs)

    def restore_from_dir(self, dirpath: str) -> None:
        self.inner.restore_from_dir(dirpath)


def attach_books(books: SweepBooks, *objects: Any) -> None:
    """Give restored hooks (unpickled from `tuner.pkl` or Tune's state) this driver's books."""
    global _CURRENT
    _CURRENT = books
    for obj in objects:
        if isinstance(obj, _Unpickled):
            obj._books = books
