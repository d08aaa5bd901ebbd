"""What a phase is given by name: the device it runs on and the model factory.

Supernet replicas, search trials and retrain trials pick their device with :func:`pick_device`
(``auto`` / ``cpu`` / ``cuda``) and check their precision against it with :func:`check_precision`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from raynas.train.config import ConfigError, SupernetConfig
from searchers.errors import ConfigTypeError

__all__ = ["check_precision", "pick_device", "resolve_device", "resolve_factory"]


def pick_device(device: str | torch.device | None, *, key: str = "device") -> torch.device:
    """The device of a phase: CUDA when asked for or (``auto`` / ``None``) when present, else the CPU.

    Args:
        device: ``auto``, ``cpu``, ``cuda``, ``None`` (``auto``) or a ``torch.device`` (returned as is).
        key: the setting's name, for the error.

    Raises:
        ConfigError: ``cuda`` but no CUDA device is visible.
    """
    if isinstance(device, torch.device):
        return device
    if device not in (None, "auto", "cpu", "cuda"):
        return torch.device(device)  # an explicit device string ("cuda:1") from the Python API
    if device == "cuda" or (device in (None, "auto") and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError(f"{key} is 'cuda' but no CUDA device is visible")
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def resolve_device(config: SupernetConfig) -> torch.device:
    """The supernet's training device (:func:`pick_device` of ``supernet.device``)."""
    return pick_device(config.device, key="supernet.device")


def check_precision(device: torch.device, precision: str, *, key: str) -> None:
    """Refuse ``fp16`` off CUDA (its grad scaler is CUDA's).

    Raises:
        ConfigError: ``fp16`` on a device that is not CUDA.
    """
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"{key} 'fp16' needs a CUDA device (use 'bf16' on the CPU)")


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
