"""The JSON forms of what a tuner's checkpoint holds: architectures and parameter ids (torch-free).

Inside a tuner an architecture is a hashable tuple: one tuple of sorted candidate indices per key,
keys in sorted order (:data:`Arch`). JSON has no tuples, so a checkpoint writes it as lists
(:func:`arch_json`) and reads it back (:func:`arch_tuple`); a parameter id that was a tuple comes
back from JSON as a list and is made hashable again by :func:`hashable_id`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["Arch", "arch_json", "arch_tuple", "hashable_id"]

Arch = tuple  # one tuple of sorted candidate indices per key, in sorted key order


def arch_json(arch: Arch) -> list[list[int]]:
    """An architecture tuple as JSON-able lists (for checkpoints)."""
    return [list(v) for v in arch]


def arch_tuple(arch: Iterable[Iterable[int]]) -> Arch:
    """An architecture read back from JSON (:func:`arch_json`) as the hashable tuple form."""
    return tuple(tuple(int(i) for i in v) for v in arch)


def hashable_id(pid: Any) -> Any:
    """A parameter id read back from JSON, hashable again (JSON turns tuple ids into lists)."""
    return tuple(hashable_id(p) for p in pid) if isinstance(pid, list) else pid
