"""TensorBoard event files and the terminal progress line (both driver-side callbacks).

TensorBoard tags (``<out_dir>/tensorboard``, via tensorboardX):

- ``train/loss``, ``train/accuracy``, ``train/lr``, ``train/samples_per_s`` every report
  (x axis: global step);
- ``epoch/loss``, ``epoch/accuracy``, ``epoch/samples_per_s``, ``epoch/time_s`` each epoch;
- ``sampling/<key>/<candidate>``: how often each candidate was on a replica's path in the epoch,
  and ``sampling/fallbacks`` (SPOS bins that could not be hit);
- ``run/restarts`` after a failure.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import IO, Any

from raynas.train.callbacks import Callback, EpochMetrics, Progress, RunInfo

__all__ = ["TensorBoardLogger", "ProgressLine"]


class TensorBoardLogger(Callback):
    """Write training metrics as TensorBoard event files.

    Args:
        log_dir: where to write (default ``<out_dir>/tensorboard``).
        names: ``{key: candidate names}`` for readable sampling tags (default: indices).
    """

    def __init__(self, *, log_dir: str | Path | None = None, names: dict[str, list[str]] | None = None):
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.names = names or {}
        self._writer: Any = None

    def _open(self, run: RunInfo) -> Any:
        if self._writer is None:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:  # pragma: no cover - a declared dependency
                raise ImportError("TensorBoard logging needs tensorboardX: pip install tensorboardX") from None
            log_dir = self.log_dir or (run.out_dir / "tensorboard")
            log_dir.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(logdir=str(log_dir))
        return self._writer

    def on_train_start(self, run: RunInfo) -> None:
        self._open(run)

    def on_progress(self, run: RunInfo, progress: Progress) -> None:
        w = self._open(run)
        w.add_scalar("train/loss", progress.loss, progress.step)
        w.add_scalar("train/accuracy", progress.accuracy, progress.step)
        w.add_scalar("train/lr", progress.lr, progress.step)
        w.add_scalar("train/samples_per_s", progress.samples_per_s, progress.step)

    def on_epoch_end(self, run: RunInfo, metrics: EpochMetrics) -> None:
        w = self._open(run)
        e = metrics.epoch + 1
        w.add_scalar("epoch/loss", metrics.loss, e)
        w.add_scalar("epoch/accuracy", metrics.accuracy, e)
        w.add_scalar("epoch/samples_per_s", metrics.samples_per_s, e)
        w.add_scalar("epoch/time_s", metrics.time_s, e)
        w.add_scalar("epoch/lr", metrics.lr, e)
        for key, counts in metrics.counts.items():
            names = self.names.get(key) or run.candidates.get(key) or [str(i) for i in range(len(counts))]
            for name, count in zip(names, counts):
                w.add_scalar(f"sampling/{key}/{name}", count, e)
        w.add_scalar("sampling/fallbacks", metrics.fallbacks, e)
        w.flush()

    def on_failure(self, run: RunInfo, error: BaseException, attempt: int) -> None:
        w = self._open(run)
        w.add_scalar("run/restarts", attempt, attempt)
        w.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class ProgressLine(Callback):
    """A one-line progress display: epoch, step, loss, samples/s.

    On a terminal the line is redrawn in place; otherwise one line is printed per epoch.

    Args:
        stream: where to write (default ``sys.stderr``).
    """

    def __init__(self, *, stream: IO[str] | None = None):
        self.stream = stream
        self._start = time.perf_counter()

    @property
    def _out(self) -> IO[str]:
        return self.stream if self.stream is not None else sys.stderr

    def _tty(self) -> bool:
        isatty = getattr(self._out, "isatty", None)
        return bool(isatty and isatty())

    @staticmethod
    def _bar(done: int, total: int, width: int = 20) -> str:
        filled = int(width * done / max(total, 1))
        return "#" * filled + "." * (width - filled)

    def on_train_start(self, run: RunInfo) -> None:
        self._start = time.perf_counter()

    def on_progress(self, run: RunInfo, progress: Progress) -> None:
        if not self._tty():
            return
        cfg = run.config
        line = (
            f"\rsupernet epoch {progress.epoch + 1}/{cfg.total_epochs} "
            f"[{self._bar(progress.pos, progress.steps_per_epoch)}] step {progress.step} "
            f"loss {progress.loss:.4f} acc {progress.accuracy:.3f} {progress.samples_per_s:,.0f} samples/s"
        )
        self._out.write(line)
        self._out.flush()

    def on_epoch_end(self, run: RunInfo, metrics: EpochMetrics) -> None:
        prefix = "\r\x1b[K" if self._tty() else ""
        self._out.write(
            f"{prefix}supernet epoch {metrics.epoch + 1}/{run.config.total_epochs} step {metrics.step} "
            f"loss {metrics.loss:.4f} acc {metrics.accuracy:.3f} {metrics.samples_per_s:,.0f} samples/s "
            f"({time.perf_counter() - self._start:.1f}s)\n"
        )
        self._out.flush()

    def on_failure(self, run: RunInfo, error: BaseException, attempt: int) -> None:
        self._out.write(
            f"\nsupernet: replicas failed ({type(error).__name__}); restart {attempt} from the last checkpoint\n"
        )
        self._out.flush()
