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
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from raynas._io import write_json_atomic

__all__ = ["PHASES", "ExperimentDir", "ExperimentDirError"]

PHASES = ("space", "supernet", "search", "retrain")


class ExperimentDirError(ValueError):
    """A directory is missing, or is not a raynas experiment."""


class ExperimentDir:
    """Paths and phase bookkeeping of one experiment directory.

    Args:
        root: the directory (created on the first write, not here).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @classmethod
    def existing(cls, root: str | Path) -> ExperimentDir:
        """An experiment directory that must already exist (for ``--resume``, ``eval``, ...).

        Raises:
            ExperimentDirError: the directory does not exist or holds no ``config.yaml``.
        """
        path = Path(root)
        if not path.is_dir():
            raise ExperimentDirError(f"experiment directory {str(path)!r} does not exist")
        if not (path / "config.yaml").is_file():
            raise ExperimentDirError(f"{str(path)!r} is not a raynas experiment directory (no config.yaml)")
        return cls(path)

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
