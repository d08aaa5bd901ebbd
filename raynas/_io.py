"""Atomic file writes (a temporary name in the same folder, then a rename) and the one reader of JSON / YAML files.

An interrupted run never leaves a half-written result file behind; a file a user hands in that is
missing, unparsable or of the wrong top-level type gives one line naming the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from searchers.errors import ConfigError

__all__ = [
    "read_json",
    "read_yaml",
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
    """``torch.save`` atomically (flushed and fsynced before the rename).

    The payload is serialised in memory first and written as bytes, so a full or read-only disk
    is the ``OSError`` the file system gave, with its errno (torch's own writer reports a failed
    write as a ``RuntimeError``, "unexpected pos ...").
    """
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return write_atomic(path, _synced(lambda f: f.write(buffer.getbuffer()), "wb"))


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


def _read_structured(
    path: str | os.PathLike,
    *,
    fmt: str,
    what: str,
    expect: type | tuple[type, ...],
    expect_text: str,
    error: type[Exception],
    missing_error: type[Exception],
) -> Any:
    p = Path(path)
    if not p.is_file():
        raise missing_error(f"{what} file {str(p)!r} does not exist")
    text = p.read_text()
    if fmt == "JSON":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise error(f"{what} file {str(p)!r} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise error(f"{what} file {str(p)!r} is not valid YAML: {getattr(exc, 'problem', exc)}{where}") from None
    if not isinstance(data, expect):
        raise error(f"{what} file {str(p)!r} must hold {expect_text}, got {type(data).__name__}")
    return data


def read_json(
    path: str | os.PathLike,
    *,
    what: str,
    expect: type | tuple[type, ...] = dict,
    expect_text: str = "a JSON object",
    error: type[Exception] = ConfigError,
    missing_error: type[Exception] = FileNotFoundError,
) -> Any:
    """Read a JSON file a user hands in; every failure is one line naming the file.

    Args:
        path: the file.
        what: what the file holds, for the messages (``"architecture"`` -> "architecture file ...").
        expect: the allowed top-level type(s).
        expect_text: how the messages name ``expect``.
        error: raised when the file is not JSON or holds the wrong type.
        missing_error: raised when the file does not exist.

    Raises:
        missing_error: no such file.
        error: not valid JSON (with the line number), or the top level is not ``expect``.
    """
    return _read_structured(
        path, fmt="JSON", what=what, expect=expect, expect_text=expect_text, error=error, missing_error=missing_error
    )


def read_yaml(
    path: str | os.PathLike,
    *,
    what: str,
    expect_text: str = "a mapping",
    error: type[Exception] = ConfigError,
    missing_error: type[Exception] = FileNotFoundError,
) -> dict:
    """Read a YAML file holding a mapping (an empty file is ``{}``); failures as :func:`read_json`'s."""
    data = _read_structured(
        path,
        fmt="YAML",
        what=what,
        expect=(dict, type(None)),
        expect_text=expect_text,
        error=error,
        missing_error=missing_error,
    )
    return data or {}
