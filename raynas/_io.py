"""Atomic file writes: a temporary name in the same folder, then a rename.

An interrupted run never leaves a half-written result file behind.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "write_atomic",
    "write_json_atomic",
    "write_text_atomic",
    "write_yaml_atomic",
    "write_parquet_atomic",
    "write_torch_atomic",
]


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)``, then rename the temporary file onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _synced(write: Callable[[Any], None], mode: str) -> Callable[[Path], None]:
    """A writer that opens the temporary file, calls ``write(file)``, then flushes and fsyncs."""

    def run(tmp: Path) -> None:
        with open(tmp, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())

    return run


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write text atomically (flushed and fsynced before the rename)."""
    return write_atomic(path, _synced(lambda f: f.write(text), "w"))


def write_torch_atomic(path: str | os.PathLike, payload: Any) -> Path:
    """``torch.save`` atomically (flushed and fsynced before the rename)."""
    import torch

    return write_atomic(path, _synced(lambda f: torch.save(payload, f), "wb"))


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON (indented, sorted keys) atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_yaml_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write YAML (block style, keys in the given order) atomically."""
    import yaml

    return write_text_atomic(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def write_parquet_atomic(path: str | os.PathLike, rows: Sequence[dict], columns: Sequence[str]) -> Path:
    """Write ``rows`` as a Parquet table with ``columns`` first (in order) atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    extra = sorted({k for row in rows for k in row} - set(columns))
    names = list(columns) + extra
    table = pa.table({name: [row.get(name) for row in rows] for name in names})
    return write_atomic(path, lambda tmp: pq.write_table(table, tmp))
