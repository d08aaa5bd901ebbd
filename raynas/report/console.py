"""What a run shows while it works: phase headers, one progress bar per phase, bounded lines.

On a terminal each phase gets a live `tqdm <https://tqdm.github.io>`_ bar (position, rate, ETA
and the phase's own figures); anywhere else (CI, ``ray job submit`` logs, a pipe) the same figures
come as at most :attr:`ConsoleProgress.steps` lines per phase, one each time another
``1/steps`` of the phase is done.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

__all__ = ["Progress", "ConsoleProgress", "format_info", "format_seconds"]

#: the line format of a progress report where there is no terminal (tqdm's ``format_meter`` fields)
LINE_FORMAT = "{desc} {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%) [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


class Progress:
    """What the experiment runner reports while it runs; every hook does nothing by default."""

    def phase_start(self, phase: str, index: int, count: int) -> None:
        """Phase ``index`` (1-based) of ``count`` begins."""

    def phase_skipped(self, phase: str, index: int, count: int) -> None:
        """Phase ``index`` finished in an earlier run and is skipped."""

    def phase_end(self, phase: str, index: int, count: int, info: dict[str, Any], wall_s: float) -> None:
        """Phase ``index`` finished; ``info`` is what ``state.json`` records for it."""

    def begin(self, total: int, unit: str) -> None:
        """The current phase has ``total`` units of work (steps, trials, epochs); may be called again."""

    def update(self, done: int, status: str = "") -> None:
        """``done`` units of the current phase are finished; ``status`` is shown next to the count."""

    def message(self, text: str) -> None:
        """A line of its own (a warning, a retried replica ...)."""

    def close(self) -> None:
        """Release the terminal (called when the run ends, also on an error)."""


def format_seconds(seconds: float) -> str:
    """``72.4`` -> ``"1m 12s"``; under a minute ``"9.9s"``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def format_info(info: dict[str, Any]) -> str:
    """A phase's ``state.json`` entry as ``"epochs 100, steps 2,800, ..."`` (paths left out)."""
    return ", ".join(
        f"{key.replace('_', ' ')} {_value(value)}"
        for key, value in info.items()
        if value is not None and key not in ("checkpoint", "wall_s")
    )


class ConsoleProgress(Progress):
    """Phase headers and progress for a person: a tqdm bar per phase on a terminal, else lines.

    Args:
        stream: where to write (default ``sys.stderr``); a terminal gets live bars.
        write: write lines through this instead (then there are never bars); e.g. a ``log``
            function.
        steps: lines per phase without a terminal (one each ``1/steps`` of the phase).
        prefix: put before every line that is not a bar.
    """

    def __init__(
        self,
        *,
        stream: TextIO | None = None,
        write: Callable[[str], None] | None = None,
        steps: int = 10,
        prefix: str = "[raynas] ",
    ):
        self.stream = stream
        self._write = write
        self.steps = max(1, int(steps))
        self.prefix = "" if write is not None else prefix
        self._phase = ""
        self._bar: Any = None
        self._total = 0
        self._unit = ""
        self._first: tuple[float, int] | None = None
        self._printed = 0
        self._started = 0.0

    @property
    def tty(self) -> bool:
        """Whether live bars are drawn (a terminal, and no ``write`` function)."""
        stream = self.stream or sys.stderr
        return self._write is None and bool(getattr(stream, "isatty", lambda: False)())

    def _line(self, text: str) -> None:
        if self._write is not None:
            self._write(text)
            return
        stream = self.stream or sys.stderr
        if self._bar is not None:
            self._bar.clear()
        stream.write(f"{self.prefix}{text}\n")
        stream.flush()
        if self._bar is not None:
            self._bar.refresh()

    def phase_start(self, phase: str, index: int, count: int) -> None:
        self._close_bar()
        self._phase, self._total, self._first, self._printed = phase, 0, None, 0
        self._started = time.perf_counter()
        self._line(f"[{index}/{count}] {phase} ...")

    def phase_skipped(self, phase: str, index: int, count: int) -> None:
        self._line(f"[{index}/{count}] {phase}: done earlier, skipped")

    def phase_end(self, phase: str, index: int, count: int, info: dict[str, Any], wall_s: float) -> None:
        self._close_bar()
        details = format_info(info)
        self._line(f"[{index}/{count}] {phase} done in {format_seconds(wall_s)}" + (f": {details}" if details else ""))

    def begin(self, total: int, unit: str) -> None:
        self._total, self._unit = max(int(total), 0), unit
        if self.tty and self._bar is None and self._total > 0:
            from tqdm import tqdm

            self._bar = tqdm(
                total=self._total,
                desc=self._phase,
                unit=unit,
                file=self.stream or sys.stderr,
                dynamic_ncols=True,
                mininterval=0.2,
                leave=False,
            )
        elif self._bar is not None:
            self._bar.total = self._total

    def update(self, done: int, status: str = "") -> None:
        if self._total <= 0:
            return
        done = min(int(done), self._total)
        if self._bar is not None:
            self._bar.set_postfix_str(status, refresh=False)
            self._bar.update(done - self._bar.n)
            return
        now = time.perf_counter()
        if self._first is None:
            self._first = (now, done)
        step = done * self.steps // self._total
        if step <= self._printed or (done == self._first[1] and done < self._total):
            return  # nothing new since the last line, or resumed work not yet moving
        self._printed = step
        self._line(self._meter(done, now, status))

    def _meter(self, done: int, now: float, status: str) -> str:
        from tqdm import tqdm

        start, initial = self._first or (now, 0)
        return tqdm.format_meter(
            done,
            self._total,
            now - start,
            prefix=self._phase,
            unit=self._unit,
            initial=initial,
            postfix=status or None,
            bar_format=LINE_FORMAT.replace("{unit}", f"{self._unit}s"),
        ).strip()

    def message(self, text: str) -> None:
        self._line(text)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        self._close_bar()
