"""Send what Ray and Tune print to a log file, so that the console shows raynas' own lines.

Ray and Tune write from C++ and from Python, in the driver and in the processes it starts, some
of it before any Python logging is set up. So the redirection is at the file-descriptor level:
file descriptors 1 and 2 point at the log file (processes started meanwhile inherit that), and
raynas writes to a copy of the original standard error: its progress lines, and the warnings of its
own loggers (``raynas.*``: a placement wait, a lost node), which the log file gets too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, TextIO

__all__ = ["capture_output"]


def _tee(source: int, log: BinaryIO, echo: int) -> None:
    """Copy the pipe ``source`` to ``log`` and to the file descriptor ``echo`` until it closes."""
    with os.fdopen(source, "rb", buffering=0) as pipe:
        while chunk := pipe.read(65536):
            log.write(chunk)
            log.flush()
            with contextlib.suppress(OSError):
                os.write(echo, chunk)
    log.close()
    os.close(echo)


@contextlib.contextmanager
def capture_output(log_path: str | os.PathLike, *, echo: bool = False) -> Iterator[TextIO]:
    """Redirect standard output and error (file descriptors 1 and 2) into ``log_path`` (appended).

    Args:
        log_path: the log file (its folder is created).
        echo: also copy everything to the original standard error (``raynas search -v``).

    Yields:
        A text stream on the original standard error, for raynas' own lines (a terminal stays one).
    """
    path = Path(log_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    log = open(path, "ab")  # closed below, or by the tee thread that owns it
    if echo:
        read_end, write_end = os.pipe()
        # a daemon: processes started meanwhile (Ray's) may hold the pipe open after we are done
        threading.Thread(target=_tee, args=(read_end, log, os.dup(saved_err)), daemon=True).start()
        target = write_end
    else:
        target = log.fileno()
    os.dup2(target, 1)
    os.dup2(target, 2)
    console = os.fdopen(os.dup(saved_err), "w", buffering=1)
    # raynas' own warnings stay on the console (and, propagated, reach whatever else logs them)
    own = logging.StreamHandler(console)
    own.setLevel(logging.WARNING)
    own.setFormatter(logging.Formatter("[raynas] %(message)s"))
    logging.getLogger("raynas").addHandler(own)
    try:
        yield console
    finally:
        logging.getLogger("raynas").removeHandler(own)
        sys.stdout.flush()
        sys.stderr.flush()
        console.close()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        os.close(saved_out)
        os.close(saved_err)
        if echo:
            os.close(write_end)
        else:
            log.close()
