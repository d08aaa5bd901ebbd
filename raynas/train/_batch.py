"""Model inputs of any structure: a tensor, or tuples / lists / dicts of tensors.

raynas follows NNI's convention: a dataset item is ``(x, y)``; ``x`` may be a tensor or a nested
tuple / list / dict of tensors (NNI's TextNAS reads ``((ids, mask), label)``); a batch is what
``default_collate`` makes of the items, moved to the device recursively (NNI's
``nni.nas.pytorch.utils.to_device``), and the model is called with the whole input as one
argument, ``model(x)``, never ``model(*x)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["to_device", "batch_size", "first_examples", "snapshot"]


def to_device(obj: Any, device: torch.device | str) -> Any:
    """Move the tensors of a tensor, tuple, list or dict (nested) to ``device``; other values pass."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, tuple):
        items = [to_device(t, device) for t in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)  # a namedtuple keeps its type
    if isinstance(obj, list):
        return [to_device(t, device) for t in obj]
    if isinstance(obj, Mapping):
        return {k: to_device(v, device) for k, v in obj.items()}
    return obj


def _tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for item in obj for t in _tensors(item)]
    if isinstance(obj, Mapping):
        return [t for item in obj.values() for t in _tensors(item)]
    return []


def batch_size(x: Any) -> int:
    """The number of examples in a batch: the first dimension of its first tensor (1 without one)."""
    for t in _tensors(x):
        if t.dim() > 0:
            return int(t.shape[0])
    return 1


def first_examples(x: Any, n: int) -> Any:
    """The first ``n`` examples of a batch of any structure (every tensor sliced along dim 0)."""
    if isinstance(x, torch.Tensor):
        return x[:n] if x.dim() > 0 else x
    if isinstance(x, tuple):
        items = [first_examples(t, n) for t in x]
        return type(x)(*items) if hasattr(x, "_fields") else tuple(items)
    if isinstance(x, list):
        return [first_examples(t, n) for t in x]
    if isinstance(x, Mapping):
        return {k: first_examples(v, n) for k, v in x.items()}
    return x


def snapshot(obj: Any) -> Any:
    """Copies of the lists, tuples and dicts in ``obj`` (tensors shared): what a forward received,
    kept unchanged when the caller later appends to the list it passed (ENAS' growing input list)."""
    if isinstance(obj, list):
        return [snapshot(t) for t in obj]
    if isinstance(obj, tuple):
        items = [snapshot(t) for t in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    return obj
