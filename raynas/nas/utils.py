"""NNI's ``nni.nas.pytorch.utils``: the mutable key counter, the meters NNI's trainers and scripts
import (:class:`AverageMeter`, :class:`AverageMeterGroup`), ``to_device`` and ``to_list``; and
NNI's standalone logging (:func:`init_standalone_logger`).

An unkeyed mutable takes NNI's key from construction on: its class name plus a process-wide
counter (``LayerChoice1``, ``InputChoice2``, ...). :func:`mutable_counting_scope` gives one model
build a counter of its own that starts from 1, which is how raynas builds every model from a
factory: the same factory then yields the same keys in every process, whatever the process built
before.
"""

from __future__ import annotations

import itertools
import logging
import sys
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from searchers.errors import ConfigError

__all__ = [
    "global_mutable_counting",
    "reset_global_mutable_counting",
    "_reset_global_mutable_counting",
    "mutable_counting_scope",
    "ScopedFactory",
    "to_device",
    "batch_size",
    "snapshot",
    "to_list",
    "AverageMeter",
    "AverageMeterGroup",
    "StructuredMutableTreeNode",
    "MutableTreeNode",
    "init_standalone_logger",
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


def to_list(arr: Any) -> Any:
    """A tensor, numpy array, list or tuple as a plain list (NNI's ``to_list``); other values pass."""
    if torch.is_tensor(arr):
        return arr.cpu().numpy().tolist()
    if isinstance(arr, np.ndarray):
        return arr.tolist()
    if isinstance(arr, (list, tuple)):
        return list(arr)
    return arr


# -- meters (NNI's AverageMeter / AverageMeterGroup) ------------------------------------------


class AverageMeter:
    """The latest value and the running (weighted) average of a metric.

    Args:
        name: the name shown by ``str()`` and :meth:`summary`.
        fmt: a format spec for the values, e.g. ``":4f"`` (NNI's).

    Attributes:
        val: the latest value.
        avg: ``sum / count``.
        sum: the weighted sum of the values.
        count: the total weight.
    """

    def __init__(self, name: str, fmt: str = ":f"):
        self.name = name
        self.fmt = fmt
        self.reset()

    def reset(self) -> None:
        """Forget every value."""
        self.val: Any = 0
        self.avg: Any = 0
        self.sum: Any = 0
        self.count: Any = 0

    def update(self, val: Any, n: int = 1) -> None:
        """Account ``val`` with weight ``n``."""
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.sum / self.count

    def __str__(self) -> str:
        return ("{name} {val" + self.fmt + "} ({avg" + self.fmt + "})").format(**self.__dict__)

    def summary(self) -> str:
        """``"name: avg"``."""
        return ("{name}: {avg" + self.fmt + "}").format(**self.__dict__)


class AverageMeterGroup:
    """One :class:`AverageMeter` per metric name, created on first sight (format ``":4f"``).

    ``group.loss`` and ``group["loss"]`` are the meter of ``loss``.
    """

    def __init__(self) -> None:
        self.meters: OrderedDict[str, AverageMeter] = OrderedDict()

    def update(self, data: Mapping[str, Any]) -> None:
        """Account one value per metric (``{name: value}``)."""
        for k, v in data.items():
            if k not in self.meters:
                self.meters[k] = AverageMeter(k, ":4f")
            self.meters[k].update(v)

    def __getattr__(self, item: str) -> AverageMeter:
        meters = self.__dict__.get("meters")
        if meters is None or item not in meters:
            raise AttributeError(f"no meter named {item!r} (meters: {', '.join(meters or [])})")
        return meters[item]

    def __getitem__(self, item: str) -> AverageMeter:
        return self.meters[item]

    def __str__(self) -> str:
        return "  ".join(str(v) for v in self.meters.values())

    def summary(self) -> str:
        """The averages: ``"name: avg  name: avg ..."``."""
        return "  ".join(v.summary() for v in self.meters.values())

    def averages(self) -> dict[str, float]:
        """``{name: average}`` as floats (raynas' extra; what a replica reports to the driver)."""
        return {k: float(m.avg) for k, m in self.meters.items()}


class MutableTreeNode:
    """A node of the mutable tree: a mutable (``None`` at the root) and the mutables under it (NNI's
    ``StructuredMutableTreeNode``; :func:`raynas.nas.parse.parse_model` builds the tree).

    Iterating a node yields the mutables under it in pre-order, one per key (as NNI's
    ``mutator.mutables`` does).
    """

    def __init__(self, mutable: Any):
        self.mutable = mutable
        self.children: list[MutableTreeNode] = []

    def traverse(
        self, order: str = "pre", deduplicate: bool = True, memo: set[str] | None = None
    ) -> Iterator[Any]:
        """Yield the mutables of this subtree.

        Args:
            order: ``"pre"`` (a node before its children) or ``"post"``.
            deduplicate: yield one mutable per key (the first met).
            memo: keys already yielded (shared across calls when given).

        Returns:
            An iterator over mutables; the root (no mutable) is not yielded.
        """
        if order not in ("pre", "post"):
            raise ConfigError(f"traversal order must be 'pre' or 'post', got {order!r}")
        memo = set() if memo is None else memo
        yield from self._traverse(order, deduplicate, memo)

    def _traverse(self, order: str, deduplicate: bool, memo: set[str]) -> Iterator[Any]:
        own = self.mutable is not None and not (deduplicate and self.mutable.key in memo)
        if own:
            memo.add(self.mutable.key)
            if order == "pre":
                yield self.mutable
        for child in self.children:
            yield from child._traverse(order, deduplicate, memo)
        if own and order == "post":
            yield self.mutable

    def __iter__(self) -> Iterator[Any]:
        return self.traverse()

    def __len__(self) -> int:
        return sum(1 for _ in self.traverse())


#: NNI's name for it
StructuredMutableTreeNode = MutableTreeNode


_standalone_logging = False
_NNI_TIME_FORMAT = "%m/%d/%Y, %I:%M:%S %p"  # nni/common.py's


def init_standalone_logger() -> None:
    """NNI's standalone logging, where the application has set up none.

    ``import nni`` does this in NNI: the ``nni`` loggers (an NNI script's own
    ``logging.getLogger("nni")`` and NNI's trainers) print their INFO lines to standard output as
    ``[time] INFO (name) message``. raynas does it for ``nni`` and ``raynas.nas`` (its trainers
    and callbacks) when an NNI-style trainer is built, not on import, and only where nothing is
    configured yet: it leaves logging alone when the root logger or either logger already has a
    handler (``logging.basicConfig``, pytest, the ``raynas`` CLI), and after its first call.
    """
    global _standalone_logging
    if _standalone_logging:
        return
    _standalone_logging = True
    names = ("nni", "raynas.nas")
    if logging.getLogger().handlers or any(logging.getLogger(name).handlers for name in names):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s (%(name)s) %(message)s", _NNI_TIME_FORMAT))
    for name in names:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # as NNI: a later logging.basicConfig() does not print each line twice
