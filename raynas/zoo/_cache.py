"""A small on-disk cache for generated built-in datasets (written atomically)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from raynas._io import write_atomic

__all__ = ["cache_dir", "cached_arrays"]


def cache_dir() -> Path:
    """``$RAYNAS_CACHE_DIR``, else ``$XDG_CACHE_HOME/raynas``, else ``~/.cache/raynas``."""
    env = os.environ.get("RAYNAS_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "raynas"


def cached_arrays(name: str, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Load ``name.npz`` from the cache, or build the arrays and store them (temp file + rename)."""
    path = cache_dir() / f"{name}.npz"
    if path.is_file():
        try:
            with np.load(path) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError):
            pass  # a corrupt cache entry is rebuilt below
    arrays = build()
    try:
        def save(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        write_atomic(path, save)
    except OSError:
        pass  # a read-only cache only costs the rebuild next time
    return arrays
