"""What a replica is given by name: the training device and the model factory."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from raynas.train.config import ConfigError, SupernetConfig
from searchers.errors import ConfigTypeError

__all__ = ["resolve_device", "resolve_factory"]


def resolve_device(config: SupernetConfig) -> torch.device:
    """The training device: CUDA when asked for or (``auto``) when present, else the CPU.

    Raises:
        ConfigError: ``device`` is ``cuda`` but no CUDA device is visible.
    """
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("supernet.device is 'cuda' but no CUDA device is visible")
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def resolve_factory(
    factory: Callable[..., nn.Module] | str, kwargs: Mapping[str, Any] | None = None
) -> Callable[[], nn.Module]:
    """The one way to a model factory: a callable or ``"package.module:function"``, with keyword arguments.

    Always a :class:`raynas.nas.utils.ScopedFactory`, so that unkeyed mutables get the same keys in every
    process; picklable when the function is (a module function, with ``kwargs`` bound by a partial).

    Raises:
        ConfigError: a string that does not import (see :func:`raynas.nas.space.load_factory`).
        ConfigTypeError: the factory is not callable, or its signature does not take ``kwargs``.
    """
    from raynas.nas.space import load_factory
    from raynas.nas.utils import ScopedFactory

    fn = load_factory(factory) if isinstance(factory, str) else factory
    if not callable(fn):
        raise ConfigTypeError(f"model factory {factory!r} is a {type(fn).__name__}, not a callable")
    _check_kwargs(factory, fn, kwargs or {})
    return ScopedFactory(functools.partial(fn, **kwargs) if kwargs else fn)  # the same keys in every process


def _check_kwargs(factory: Any, fn: Callable, kwargs: Mapping[str, Any]) -> None:
    """Bind ``kwargs`` to ``fn``'s signature, so that a ``TypeError`` raised later by the call is
    the factory's own (a bug, with its traceback) and never mistaken for bad arguments."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # no signature to read (a builtin): the call will tell
        return
    try:
        signature.bind(**kwargs)
    except TypeError as exc:
        raise ConfigTypeError(f"factory {factory!r} rejected kwargs {dict(kwargs)!r}: {exc}") from None
