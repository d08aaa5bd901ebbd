"""NNI's ``nni.nas.pytorch.utils``: the mutable key counter (and, later, the meters NNI's scripts import).

An unkeyed mutable takes NNI's key from construction on: its class name plus a process-wide
counter (``LayerChoice1``, ``InputChoice2``, ...). :func:`mutable_counting_scope` gives one model
build a counter of its own that starts from 1, which is how raynas builds every model from a
factory: the same factory then yields the same keys in every process, whatever the process built
before.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

__all__ = [
    "global_mutable_counting",
    "reset_global_mutable_counting",
    "_reset_global_mutable_counting",
    "mutable_counting_scope",
    "ScopedFactory",
    "to_device",
    "batch_size",
    "snapshot",
]

_counter = 0
_serial = itertools.count()  # never reset: orders mutables by construction across scopes


def global_mutable_counting() -> int:
    """Advance the process-wide mutable counter and return it (starts at 1, as NNI's)."""
    global _counter
    _counter += 1
    return _counter


def reset_global_mutable_counting() -> None:
    """Make the next unkeyed mutable count from 1 again (NNI's ``_reset_global_mutable_counting``)."""
    global _counter
    _counter = 0


_reset_global_mutable_counting = reset_global_mutable_counting


def construction_serial() -> int:
    """A number that grows with every mutable constructed in this process (never reset)."""
    return next(_serial)


@contextmanager
def mutable_counting_scope() -> Iterator[None]:
    """Count unkeyed mutables from 1 inside the block, and restore the outer count after it.

    raynas wraps every model-factory call in this scope, so a factory builds the same keys in
    the driver, in every Ray actor and in every trial.
    """
    global _counter
    saved, _counter = _counter, 0
    try:
        yield
    finally:
        _counter = saved


class ScopedFactory:
    """A model factory whose every call builds inside :func:`mutable_counting_scope`.

    Unkeyed mutables then get the same NNI counter keys in every process that calls it. Pickles
    when the wrapped factory does (it travels to Ray actors and trials).

    Args:
        factory: a callable returning the model.
    """

    def __init__(self, factory):
        self.factory = factory.factory if isinstance(factory, ScopedFactory) else factory

    def __call__(self, *args, **kwargs):
        with mutable_counting_scope():
            return self.factory(*args, **kwargs)

    def __repr__(self) -> str:
        return f"ScopedFactory({self.factory!r})"


# -- inputs of any structure (NNI keeps to_device here too) -----------------------------------


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
