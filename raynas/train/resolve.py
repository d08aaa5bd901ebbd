"""What a replica is given by name: the training device and the model factory."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from raynas.train.config import ConfigError, SupernetConfig

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


def resolve_factory(factory: Callable[[], nn.Module] | str) -> Callable[[], nn.Module]:
    """A model factory: a zero-argument callable, or ``"package.module:function"``.

    Raises:
        TypeError: the factory is not callable.
    """
    if isinstance(factory, str):
        from raynas.nas.space import load_factory

        factory = load_factory(factory)
    if not callable(factory):
        raise TypeError(f"a model factory must be callable or 'module:function', got {type(factory).__name__}")
    from raynas.nas.utils import ScopedFactory

    return ScopedFactory(factory)  # the same mutable keys in every process
