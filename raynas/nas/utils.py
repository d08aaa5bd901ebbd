"""NNI's ``nni.nas.pytorch.utils``: the mutable key counter (and, later, the meters NNI's scripts import).

An unkeyed mutable takes NNI's key from construction on: its class name plus a process-wide
counter (``LayerChoice1``, ``InputChoice2``, ...). :func:`mutable_counting_scope` gives one model
build a counter of its own that starts from 1, which is how raynas builds every model from a
factory: the same factory then yields the same keys in every process, whatever the process built
before.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "global_mutable_counting",
    "reset_global_mutable_counting",
    "_reset_global_mutable_counting",
    "mutable_counting_scope",
    "ScopedFactory",
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
