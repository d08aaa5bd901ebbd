"""Supernet checkpoints: one format for local and Ray mode, written atomically.

A checkpoint is a ``torch.save`` dict::

    {"format": "raynas.supernet/1",
     "model": state_dict, "optimizer": state_dict, "scaler": state_dict | None,
     "rank_states": [{"mutator": state_dict, "torch_rng": tensor, "cuda_rng": tensor | None}, ...],
     "epoch": completed epochs, "step": global step, "replicas": R,
     "config": SupernetConfig.to_dict(), "history": [per-epoch metrics],
     "sample_counts": {key: [count per candidate]},
     "architecture": exported architecture of a learnable mutator (darts, enas, proxylessnas) | None}

Every tensor is on the CPU, so a checkpoint written on a GPU loads anywhere. ``rank_states`` has
one entry per replica (the mutator holds its RNG), so a resumed run draws the same paths as an
uninterrupted one. A checkpoint from a run with a different number of replicas loads too: ranks
without an entry continue rank 0's path stream (``shared``) or start their own (``independent``).

Checkpoints are data, not code: one holds only tensors, numbers, strings, ``None`` and lists /
tuples / dicts of them (:func:`save_checkpoint` refuses anything else, naming the key), and every
checkpoint raynas reads goes through :func:`read_data`, ``torch.load(..., weights_only=True)``. A
file that would build other objects (a pickle with code in it, from a shared bucket) is refused
with one line (:class:`UnsafeCheckpointError`) and nothing in it runs. A truncated or corrupt
``last.pt`` falls back to the newest readable ``epoch-NNNN.pt`` beside it with a warning line; any
other unreadable file fails with one line naming it (:class:`CorruptCheckpointError`).
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from raynas._io import write_atomic
from searchers.errors import CheckpointError  # one class for every raynas checkpoint error

__all__ = [
    "FORMAT",
    "CheckpointError",
    "UnsafeCheckpointError",
    "CorruptCheckpointError",
    "read_data",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "checkpoint_dir",
    "to_cpu",
    "final_architecture",
]

_log = logging.getLogger(__name__)

FORMAT = "raynas.supernet/1"
LAST = "last.pt"
_EPOCH_FILE = re.compile(r"^epoch-(\d+)\.pt$")


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint holds more than data (a pickled object or code): refused, nothing run."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file is truncated or corrupt."""


def read_data(path: str | os.PathLike, *, what: str = "checkpoint", map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain Python data only.

    Args:
        path: the file.
        what: how the error names the file (``"supernet checkpoint"``, ``"retrain checkpoint"``).
        map_location: where tensors go.

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the file would build objects other than data (code never runs).
        CorruptCheckpointError: the file is truncated, corrupt or not a torch file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" in str(exc).lower():
            raise UnsafeCheckpointError(
                f"refused to load {what} {str(path)!r}: it holds {_unsafe_reason(str(exc))}, not just data "
                "(tensors, numbers, strings, lists, dicts); raynas never runs code from a checkpoint"
            ) from None
        raise CorruptCheckpointError(f"cannot read {what} {str(path)!r}: {_first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - any other failure: a truncated or corrupt file
        raise CorruptCheckpointError(
            f"cannot read {what} {str(path)!r} (truncated or corrupt): {_first_line(exc)}"
        ) from None


def _unsafe_reason(text: str) -> str:
    for line in text.splitlines():
        if "GLOBAL" in line:
            found = re.search(r"GLOBAL ([\w.]+)", line)
            return f"a reference to {found.group(1)!r}" if found else "a reference to code"
    return "pickle instructions beyond plain data"


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0][:200] if lines else type(exc).__name__


def checkpoint_dir(out_dir: str | os.PathLike) -> Path:
    """Where a run keeps its checkpoints: ``<out_dir>/checkpoints``."""
    return Path(out_dir) / "checkpoints"


def to_cpu(value: Any) -> Any:
    """A copy of nested dicts/lists/tuples with every tensor moved to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, Mapping):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_cpu(v) for v in value]
    if isinstance(value, tuple):
        return tuple(to_cpu(v) for v in value)
    return value


_SCALARS = (str, int, float, bool, type(None), torch.Tensor, torch.dtype, torch.device, torch.Size)


def to_data(value: Any, where: str = "checkpoint") -> Any:
    """:func:`to_cpu`, numpy scalars as Python numbers, and a check that nothing else than data
    (tensors, numbers, strings, ``None``, lists / tuples / dicts of them) is left.

    Raises:
        CheckpointError: some entry is another object (named by its key path).
    """
    import numpy as np

    value = to_cpu(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                kind = type(k).__name__
                raise CheckpointError(f"a checkpoint holds data only: key {k!r} under {where!r} is a {kind}")
            out[k] = to_data(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        items = [to_data(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    raise CheckpointError(
        f"a checkpoint holds data only (tensors, numbers, strings, lists, dicts): {where!r} is a "
        f"{type(value).__module__}.{type(value).__qualname__}"
    )


def save_checkpoint(payload: Mapping[str, Any], out_dir: str | os.PathLike, *, keep: int = 2) -> Path:
    """Write ``epoch-NNNN.pt`` and ``last.pt`` under ``<out_dir>/checkpoints`` (temp + rename).

    Args:
        payload: the checkpoint dict (see the module docstring); ``epoch`` names the file.
        out_dir: the run directory.
        keep: how many ``epoch-*.pt`` files to keep (older ones are removed; ``last.pt`` stays).

    Returns:
        The path of ``last.pt``.
    """
    missing = [k for k in ("model", "optimizer", "rank_states", "epoch", "step", "config") if k not in payload]
    if missing:
        raise CheckpointError(f"a checkpoint needs the entry {missing[0]!r}")
    data = to_data(dict(payload))
    data["format"] = FORMAT
    folder = checkpoint_dir(out_dir)
    last = folder / LAST
    # serialized first, then written as bytes: a full or read-only disk is then an OSError with
    # its errno (torch's own writer reports it as "unexpected pos ...")
    buffer = io.BytesIO()
    torch.save(data, buffer)
    blob = buffer.getvalue()
    for path in ([folder / f"epoch-{int(data['epoch']):04d}.pt"] if keep > 0 else []) + [last]:
        try:
            write_atomic(path, lambda tmp: _write_synced(tmp, blob))
        except OSError as exc:
            raise CheckpointError(_write_failure(path, exc)) from None
    epochs = sorted(_epoch_files(folder))
    for _epoch, old in epochs[: max(len(epochs) - keep, 0)]:
        old.unlink(missing_ok=True)
    return last


def _write_synced(tmp: Path, blob: bytes) -> None:
    with open(tmp, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())


def _write_failure(path: Path, exc: OSError) -> str:
    """One line on a checkpoint that could not be written (the previous ones are left as they were)."""
    import errno

    reason = _first_line(exc)
    if exc.errno is not None:
        reason = os.strerror(exc.errno) + (" (disk full)" if exc.errno == errno.ENOSPC else "")
    return f"cannot write supernet checkpoint {str(path)!r}: {reason}; the previous checkpoints are unchanged"


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint file (or a run directory: its ``checkpoints/last.pt``) as data.

    An unreadable ``last.pt`` falls back to the newest readable ``epoch-NNNN.pt`` beside it, with
    a warning line.

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the file holds more than data (nothing in it runs).
        CorruptCheckpointError: the file (and, for ``last.pt``, every epoch file) is unreadable.
        CheckpointError: the file is not a raynas supernet checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        candidate = checkpoint_dir(path) / LAST
        path = candidate if candidate.is_file() else path / LAST
    try:
        return _read_supernet(path, map_location)
    except CorruptCheckpointError as exc:
        if path.name != LAST:
            raise
        for _epoch, older in sorted(_epoch_files(path.parent), reverse=True):
            try:
                data = _read_supernet(older, map_location)
            except CorruptCheckpointError:
                continue
            _log.warning("%s; falling back to %s (epoch %s)", exc, older, data.get("epoch"))
            return data
        raise CorruptCheckpointError(f"{exc}; no readable epoch-*.pt beside it to fall back to") from None


def _read_supernet(path: Path, map_location: Any) -> dict[str, Any]:
    data = read_data(path, what="supernet checkpoint", map_location=map_location)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{str(path)!r} is not a raynas supernet checkpoint (format {FORMAT!r}, got {found!r})")
    return data


def _epoch_files(folder: Path) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    return [(int(m.group(1)), p) for p in folder.iterdir() if (m := _EPOCH_FILE.match(p.name))]


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """``<out_dir>/checkpoints/last.pt`` if it exists, else ``None``."""
    last = checkpoint_dir(out_dir) / LAST
    return last if last.is_file() else None


def final_architecture(path: str | os.PathLike) -> dict[str, Any]:
    """The architecture a learnable mutator (``darts``, ``enas``, ``proxylessnas``) exported at a checkpoint.

    Args:
        path: a checkpoint file, or a run directory (its ``checkpoints/last.pt``).

    Returns:
        The exported form (``{key: name or list of names}``), ready for retraining.

    Raises:
        FileNotFoundError: no checkpoint there.
        CheckpointError: the run's mutator is not learnable, so it exported nothing.
    """
    data = load_checkpoint(path)
    architecture = data.get("architecture")
    if architecture is None:
        algorithm = (data.get("config") or {}).get("algorithm")
        raise CheckpointError(
            f"supernet checkpoint {str(path)!r} holds no exported architecture: only a learnable "
            f"mutator exports one (supernet.algorithm darts or enas), got algorithm {algorithm!r}"
        )
    return dict(architecture)
