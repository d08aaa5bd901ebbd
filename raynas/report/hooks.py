"""What feeds a :class:`~raynas.report.console.Progress` during each phase.

- :class:`SupernetProgress`: a supernet-training callback (steps, epoch, loss, samples/s);
- :class:`SearchTracker` / :class:`RetrainTracker`: count finished trials (and epochs) and the
  best score, from Tune's events (:func:`tune_callback`) or from the in-process loops;
- :func:`tune_callback`: a Tune ``Callback`` in the driver that forwards trial events to a
  tracker. Tune stores the callbacks of an experiment with it and hands the stored ones back
  when it is restored, so the callback holds only a name, and the tracker is looked up by that
  name in this process (:func:`attached`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

from raynas.report.console import Progress
from raynas.train.callbacks import Callback, RunInfo
from raynas.train.callbacks import Progress as StepProgress

__all__ = ["SupernetProgress", "SearchTracker", "RetrainTracker", "attached", "tune_callback"]


class SupernetProgress(Callback):
    """Supernet training as progress: global steps of all epochs, with epoch, loss and samples/s."""

    def __init__(self, progress: Progress):
        self.progress = progress

    def on_train_start(self, run: RunInfo) -> None:
        self.progress.begin(run.config.total_epochs * run.steps_per_epoch, "step")

    def on_progress(self, run: RunInfo, progress: StepProgress) -> None:
        self.progress.update(
            progress.step,
            f"epoch {progress.epoch + 1}/{run.config.total_epochs} loss {progress.loss:.4f} "
            f"acc {progress.accuracy:.3f} {progress.samples_per_s:,.0f} samples/s",
        )

    def on_failure(self, run: RunInfo, error: BaseException, attempt: int) -> None:
        self.progress.message(
            f"supernet: replicas failed ({type(error).__name__}); restart {attempt} from the last checkpoint"
        )


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


class _Best:
    def __init__(self, metric: str, mode: str):
        self.metric, self.sign, self.value = metric, (1.0 if mode == "max" else -1.0), None

    def add(self, value: Any) -> None:
        value = _finite(value)
        if value is not None and (self.value is None or self.sign * value > self.sign * self.value):
            self.value = value

    def __str__(self) -> str:
        return f"best {self.metric} {self.value:.4f}" if self.value is not None else ""


class SearchTracker:
    """The search phase: trials finished out of ``total`` and the best score so far."""

    def __init__(self, progress: Progress, *, total: int, metric: str, mode: str):
        self.progress, self.total = progress, total
        self.finished: set[str] = set()
        self.failed = 0
        self.best = _Best(metric, mode)
        progress.begin(total, "trial")

    def trial_done(self, trial: str, result: dict | None) -> None:
        """Trial ``trial`` ended; ``result`` is its last report (``None``: it failed)."""
        if trial in self.finished:
            return
        self.finished.add(trial)
        if result is None:
            self.failed += 1
        else:
            self.best.add(result.get(self.best.metric))
        failed = f", {self.failed} failed" if self.failed else ""
        self.progress.update(len(self.finished), f"{self.best}{failed}")

    def trial_result(self, trial: str, result: dict) -> None:
        """A trial reported (a search trial reports once, at its end)."""


class RetrainTracker:
    """The retrain phase: epochs trained out of ``trials * epochs``, trials done, best score."""

    def __init__(self, progress: Progress, *, trials: int, epochs: int, metric: str, mode: str):
        self.progress, self.trials, self.epochs = progress, trials, epochs
        self.done_epochs: dict[str, int] = {}
        self.finished: set[str] = set()
        self.best = _Best(metric, mode)
        progress.begin(trials * epochs, "epoch")

    def trial_result(self, trial: str, result: dict) -> None:
        """Trial ``trial`` finished an epoch (``result["epoch"]``). Its last epoch counts once the
        trial is done (it still measures its test accuracy), so 100% comes with every trial done."""
        epoch = int(result.get("epoch") or 0)
        if trial not in self.finished:
            self.done_epochs[trial] = min(epoch, self.epochs - 1)
        if epoch >= self.epochs:
            self.best.add(result.get(self.best.metric))
        self._show()

    def trial_done(self, trial: str, result: dict | None) -> None:
        """Trial ``trial`` ended (completed, stopped early or failed): its epochs count as done."""
        self.finished.add(trial)
        self.done_epochs[trial] = self.epochs
        if result is not None:
            self.best.add(result.get(self.best.metric))
        self._show()

    def _show(self) -> None:
        best = f", {self.best}" if self.best.value is not None else ""
        self.progress.update(sum(self.done_epochs.values()), f"trials {len(self.finished)}/{self.trials} done{best}")


_TRACKERS: dict[str, Any] = {}


@contextlib.contextmanager
def attached(name: str, tracker: Any) -> Iterator[None]:
    """Make ``tracker`` the one that :func:`tune_callback` ``(name)`` feeds, in this process."""
    _TRACKERS[name] = tracker
    try:
        yield
    finally:
        _TRACKERS.pop(name, None)


def tune_callback(name: str) -> Any:
    """A Tune ``Callback`` forwarding trial events to the tracker :func:`attached` under ``name``."""
    from ray.tune import Callback as TuneCallback
    from ray.tune.experiment import Trial

    class TrialEvents(TuneCallback):
        def __init__(self, name: str):
            self.name = name
            self._seen = False

        def __reduce__(self) -> tuple:  # stored with the experiment: only the name
            return (tune_callback, (self.name,))

        def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
            tracker = _TRACKERS.get(self.name)
            if tracker is None or self._seen:
                return
            self._seen = True  # a restored experiment: count what finished before
            for trial in trials:
                if trial.status == Trial.TERMINATED:
                    tracker.trial_done(trial.trial_id, trial.last_result or {})
                elif trial.status == Trial.ERROR:
                    tracker.trial_done(trial.trial_id, None)
                elif trial.last_result:
                    tracker.trial_result(trial.trial_id, trial.last_result)

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            if (tracker := _TRACKERS.get(self.name)) is not None:
                tracker.trial_result(trial.trial_id, result)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            if (tracker := _TRACKERS.get(self.name)) is not None:
                tracker.trial_done(trial.trial_id, trial.last_result or {})

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            if (tracker := _TRACKERS.get(self.name)) is not None:
                tracker.trial_done(trial.trial_id, None)

    return TrialEvents(name)
