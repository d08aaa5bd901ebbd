"""The experiment directory ``<storage>/<name>/`` and which phases it has finished.

Layout::

    search_space.json      phase "space"
    config.yaml            the resolved config
    supernet/              supernet checkpoints (phase "supernet")
    tune_search/           the Tune experiment of phase "search"
    tune_retrain/          the Tune experiment of phase "retrain"
    results/search.parquet results/retrain.parquet
    best_architecture.json
    tensorboard/
    state.json             finished phases (what --resume skips)
    report.html            the run's report: plots of every phase (written after every run)
    ray.log                what Ray and Tune printed (``raynas search``; ``-v`` shows it too)

The directory may live on a shared filesystem, or at a URI that pyarrow understands
(``s3://bucket/prefix/name``, ``gs://...``, ``file://...``). For a URI the driver works in a local
staging folder, pushes it to the URI after every phase (``state.json`` last, so the URI never
claims a phase whose files it lacks), and pulls it back to resume; the Tune experiments are
written by Tune straight to the URI.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from raynas._io import write_json_atomic
from searchers.errors import RaynasError

__all__ = ["PHASES", "ExperimentDir", "ExperimentDirError", "is_uri"]

PHASES = ("space", "supernet", "search", "retrain")


class ExperimentDirError(RaynasError, ValueError):
    """A directory is missing, or is not a raynas experiment."""


def is_uri(location: str | os.PathLike) -> bool:
    """Whether ``location`` is a URI (``scheme://...``) rather than a local or shared path."""
    return "://" in str(location)


def _staging_dir(uri: str) -> Path:
    base = os.environ.get("RAYNAS_STAGING_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "raynas", "staging")
    digest = hashlib.sha1(uri.encode()).hexdigest()[:12]
    return Path(base) / f"{uri.rstrip('/').rsplit('/', 1)[-1]}-{digest}"


class ExperimentDir:
    """Paths and phase bookkeeping of one experiment directory.

    Args:
        location: a local or shared path, or a URI (then the files are staged locally and
            pushed with :meth:`push`). Nothing is created here.
    """

    def __init__(self, location: str | os.PathLike):
        self.remote: str | None = str(location).rstrip("/") if is_uri(location) else None
        self.root = _staging_dir(self.remote) if self.remote else Path(location)

    @property
    def location(self) -> str:
        """Where the experiment lives: the URI, or the local path."""
        return self.remote or str(self.root)

    @property
    def tune_storage(self) -> str:
        """Tune's ``storage_path`` for this experiment's Tune experiments."""
        return self.remote or str(self.root)

    def _remote_fs(self) -> tuple[Any, str]:
        import pyarrow.fs

        try:
            return pyarrow.fs.FileSystem.from_uri(self.remote)
        except Exception as exc:  # pyarrow raises several kinds for a URI it cannot use
            raise ExperimentDirError(f"experiment.storage URI {self.remote!r} is not usable: {exc}") from None

    def exists(self) -> bool:
        """Whether an experiment was already started here (it has a config or a state file)."""
        if self.remote is None:
            return self.config.exists() or self.state_file.exists()
        import pyarrow.fs

        fs, path = self._remote_fs()
        infos = fs.get_file_info([f"{path}/config.yaml", f"{path}/state.json"])
        return any(i.type != pyarrow.fs.FileType.NotFound for i in infos)

    def pull(self) -> None:
        """Copy the experiment from its URI into the staging folder (Tune folders stay remote)."""
        if self.remote is None:
            return
        import pyarrow.fs

        fs, path = self._remote_fs()
        self.root.mkdir(parents=True, exist_ok=True)
        for info in fs.get_file_info(pyarrow.fs.FileSelector(path)):
            name = info.base_name
            if name.startswith("tune_"):
                continue
            if info.type == pyarrow.fs.FileType.Directory:
                (self.root / name).mkdir(parents=True, exist_ok=True)
            pyarrow.fs.copy_files(info.path, str(self.root / name), source_filesystem=fs)

    def push(self) -> None:
        """Copy the staging folder to the URI (``state.json`` last); nothing for a local path."""
        if self.remote is None or not self.root.is_dir():
            return
        import pyarrow.fs

        fs, path = self._remote_fs()
        fs.create_dir(path, recursive=True)
        entries = sorted(p for p in self.root.iterdir() if not p.name.startswith(("tune_", ".")))
        for entry in [e for e in entries if e.name != "state.json"] + [e for e in entries if e.name == "state.json"]:
            if entry.is_dir():  # copy_files does not create a top folder that holds only files
                fs.create_dir(f"{path}/{entry.name}", recursive=True)
            pyarrow.fs.copy_files(str(entry), f"{path}/{entry.name}", destination_filesystem=fs)

    @classmethod
    def existing(cls, location: str | os.PathLike) -> ExperimentDir:
        """An experiment directory that must already exist (for ``--resume``, ``eval``, ...).

        A URI is pulled into its staging folder first.

        Raises:
            ExperimentDirError: the directory does not exist or holds no ``config.yaml``.
        """
        xdir = cls(location)
        if xdir.remote is not None:
            if not xdir.exists():
                raise ExperimentDirError(f"experiment directory {xdir.remote!r} does not exist")
            xdir.pull()
        if not xdir.root.is_dir():
            raise ExperimentDirError(f"experiment directory {str(xdir.root)!r} does not exist")
        if not xdir.config.is_file():
            raise ExperimentDirError(f"{xdir.location!r} is not a raynas experiment directory (no config.yaml)")
        return xdir

    search_space = property(lambda self: self.root / "search_space.json")
    config = property(lambda self: self.root / "config.yaml")
    supernet = property(lambda self: self.root / "supernet")
    tune_search = property(lambda self: self.root / "tune_search")
    tune_retrain = property(lambda self: self.root / "tune_retrain")
    results = property(lambda self: self.root / "results")
    search_results = property(lambda self: self.root / "results" / "search.parquet")
    retrain_results = property(lambda self: self.root / "results" / "retrain.parquet")
    best_architecture = property(lambda self: self.root / "best_architecture.json")
    tensorboard = property(lambda self: self.root / "tensorboard")
    state_file = property(lambda self: self.root / "state.json")
    ray_log = property(lambda self: self.root / "ray.log")
    report_html = property(lambda self: self.root / "report.html")

    def state(self) -> dict[str, Any]:
        """``{"done": {phase: info}}`` (empty for a new directory)."""
        if not self.state_file.is_file():
            return {"done": {}}
        return json.loads(self.state_file.read_text())

    def done(self, phase: str) -> bool:
        """Whether ``phase`` has finished."""
        return phase in self.state()["done"]

    def mark_done(self, phase: str, info: dict[str, Any] | None = None) -> None:
        """Record that ``phase`` finished (atomically), with a JSON-able summary."""
        state = self.state()
        state["done"][phase] = info or {}
        write_json_atomic(self.state_file, state)

    def read_search_space(self) -> dict:
        """The stored search space."""
        return json.loads(self.search_space.read_text())
