"""Running the real ``raynas`` CLI in a subprocess, and a tiny experiment's settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

#: a tiny experiment: seconds per phase, every phase exercised
TINY = [
    "supernet.epochs=1",
    "supernet.replicas=1",
    "supernet.progress=false",
    "search.num_samples=6",
    "search.max_concurrent=2",
    "search.bn_batches=2",
    "search.searcher_kwargs={population_size: 4, sample_size: 2}",
    "retrain.top_k=2",
    "retrain.epochs=2",
]


def cli_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "raynas.cli", *args]


def sets(storage: Path, name: str = "tiny", extra: list[str] | tuple = ()) -> list[str]:
    out = []
    for item in [f"experiment.storage={storage}", f"experiment.name={name}", *TINY, *extra]:
        out += ["--set", item]
    return out


#: the checkout under test: first on the subprocesses' path (raynas, and plug-ins under tests/)
REPO = Path(__file__).resolve().parents[2]


def env(**extra: str) -> dict:
    """The subprocess environment; a ``PYTHONPATH`` in ``extra`` is put in front of the checkout."""
    e = dict(os.environ)
    paths = [extra.pop("PYTHONPATH", None), str(REPO), e.get("PYTHONPATH")]
    e.update(extra)
    e["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    e.setdefault("RAY_AUTH_MODE", "token")
    e["PYTHONUNBUFFERED"] = "1"
    return e


def run_cli(*args: str, timeout: float = 600, cwd: str | None = None, **extra_env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        cli_args(*args), capture_output=True, text=True, timeout=timeout, env=env(**extra_env), cwd=cwd
    )


def kill_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGKILL-free first (SIGTERM), then SIGKILL the process group started for ``proc``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)


def kill_now(proc: subprocess.Popen) -> None:
    """SIGKILL the process group started for ``proc`` (the driver and the Ray it started) at once,
    as a lost driver node would; wait until the driver is gone."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended (code {proc.returncode}) before {what}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")
