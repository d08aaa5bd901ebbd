"""Supernet checkpoints: one format for local and Ray mode, written atomically.

A checkpoint is a ``torch.save`` dict::

    {"format": "raynas.supernet/1",
     "model": state_dict, "optimizer": state_dict, "scaler": state_dict | None,
     "rank_states": [{"mutator": state_dict, "torch_rng": tensor, "cuda_rng": tensor | None}, ...],
     "epoch": completed epochs, "step": global step, "replicas": R,
     "config": SupernetConfig.to_dict(), "history": [per-epoch metrics],
     "sample_counts": {key: [count per candidate]},
     "architecture": exported architecture of a learnable mutator (darts, enas) | None}

Every tensor is on the CPU, so a checkpoint written on a GPU loads anywhere. ``rank_states`` has
one entry per replica (the mutator holds its RNG), so a resumed run draws the same paths as an
uninterrupted one. A checkpoint from a run with a different number of replicas loads too: ranks
without an entry continue rank 0's path stream (``shared``) or start their own (``independent``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from raynas._io import write_torch_atomic
from searchers.errors import CheckpointError  # one class for every raynas checkpoint error

__all__ = [
    "FORMAT",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "checkpoint_dir",
    "to_cpu",
    "final_architecture",
]

FORMAT = "raynas.supernet/1"
LAST = "last.pt"
_EPOCH_FILE = re.compile(r"^epoch-(\d+)\.pt$")


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
    data = to_cpu(dict(payload))
    data["format"] = FORMAT
    folder = checkpoint_dir(out_dir)
    last = folder / LAST
    if keep > 0:
        write_torch_atomic(folder / f"epoch-{int(data['epoch']):04d}.pt", data)
    write_torch_atomic(last, data)
    epochs = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _EPOCH_FILE.match(p.name)))
    for _epoch, old in epochs[: max(len(epochs) - keep, 0)]:
        old.unlink(missing_ok=True)
    return last


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint file (or a run directory: its ``checkpoints/last.pt``).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is not a raynas supernet checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        candidate = checkpoint_dir(path) / LAST
        path = candidate if candidate.is_file() else path / LAST
    if not path.is_file():
        raise FileNotFoundError(f"supernet checkpoint {str(path)!r} does not exist")
    try:
        data = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        raise CheckpointError(f"cannot read supernet checkpoint {str(path)!r}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{str(path)!r} is not a raynas supernet checkpoint (format {FORMAT!r}, got {found!r})")
    return data


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """``<out_dir>/checkpoints/last.pt`` if it exists, else ``None``."""
    last = checkpoint_dir(out_dir) / LAST
    return last if last.is_file() else None


def final_architecture(path: str | os.PathLike) -> dict[str, Any]:
    """The architecture a learnable mutator (``darts``, ``enas``) exported at a checkpoint.

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
