"""The experiment directory on a full disk, then read-only: one line, exit code 2, the last good
state intact; ``--resume`` finishes once space (or write access) is back.

As root (``id -u`` = 0) the directory is a small tmpfs the test mounts: 64 KiB holds the space
phase's files but not the first supernet checkpoint; then it is remounted larger, and read-only
(``chmod`` does not stop root). Otherwise the same faults come from a file-size limit
(``RLIMIT_FSIZE``: writes past it fail with ``EFBIG``) and ``chmod -R a-w``. The run is ``--local``
(no Ray): every file of the experiment directory is written by the driver the same way.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import stat
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.experiment.cli_helpers import cli_args, env, sets

pytestmark = pytest.mark.slow

ROOT = os.geteuid() == 0
SMALL = 64 * 1024  # bytes: the space phase's files fit, the first supernet checkpoint does not


class Storage:
    """The experiment storage and its faults (a tmpfs as root, else an rlimit and chmod)."""

    def __init__(self, path: Path):
        self.path = path
        self.mounted = False
        self.limit: int | None = None

    def full(self) -> None:
        if ROOT:
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL}", "tmpfs", str(self.path)], check=True)
            self.mounted = True
        else:
            self.limit = SMALL // 2

    def space_back(self) -> None:
        if ROOT:
            subprocess.run(["mount", "-o", "remount,size=64m", str(self.path)], check=True)
        self.limit = None

    def read_only(self) -> None:
        if ROOT:
            subprocess.run(["mount", "-o", "remount,ro", str(self.path)], check=True)
        else:
            for p in [self.path, *self.path.rglob("*")]:
                p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))

    def writable(self) -> None:
        if ROOT:
            subprocess.run(["mount", "-o", "remount,rw", str(self.path)], check=True)
        else:
            for p in [self.path, *self.path.rglob("*")]:
                p.chmod(p.stat().st_mode | stat.S_IWUSR)

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False)

    def run(self, *args: str) -> subprocess.CompletedProcess:
        limit = self.limit

        def limited() -> None:
            if limit is not None:
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        return subprocess.run(cli_args(*args), capture_output=True, text=True, timeout=600, env=env(),
                              preexec_fn=limited)  # fmt: skip


def _error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and lines[-1].startswith("raynas: error: "), result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return lines[-1]


def _leftovers(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if ".tmp-" in p.name]


def test_full_disk_then_read_only_then_resumed(tmp_path):
    storage = Storage(tmp_path / "store")
    storage.path.mkdir()
    root = storage.path / "faults"
    try:
        # 1. a full disk at the first supernet checkpoint
        storage.full()
        result = storage.run("search", "--local", *sets(storage.path, "faults"))
        line = _error_line(result)
        assert "cannot write supernet checkpoint" in line and "epoch-0001.pt" in line, line
        assert ("disk full" in line) if ROOT else ("File too large" in line), line
        assert json.loads((root / "state.json").read_text())["done"].keys() == {"space"}
        assert not list((root / "supernet" / "checkpoints").glob("*.pt")) and _leftovers(root) == []

        # 2. space is back: the supernet phase finishes; then the directory turns read-only
        storage.space_back()
        result = storage.run("search", "--local", "--resume", str(root), "--until", "supernet")
        assert result.returncode == 0, result.stderr[-3000:]
        state_before = (root / "state.json").read_bytes()
        checkpoint_before = (root / "supernet" / "checkpoints" / "last.pt").read_bytes()
        storage.read_only()
        line = _error_line(storage.run("search", "--local", "--resume", str(root)))
        assert ("Read-only file system" if ROOT else "Permission denied") in line, line
        assert (root / "state.json").read_bytes() == state_before  # the last good state, untouched
        assert (root / "supernet" / "checkpoints" / "last.pt").read_bytes() == checkpoint_before

        # 3. writable again: --resume finishes every phase, nothing lost
        storage.writable()
        result = storage.run("search", "--local", "--resume", str(root))
        assert result.returncode == 0, result.stderr[-3000:]
        assert set(json.loads((root / "state.json").read_text())["done"]) == {"space", "supernet", "search", "retrain"}
        search = pq.read_table(root / "results" / "search.parquet").to_pylist()
        assert len(search) == len({r["trial_id"] for r in search}) == 6
        assert len(pq.read_table(root / "results" / "retrain.parquet")) == 2
        assert _leftovers(root) == []
    finally:
        storage.close()
