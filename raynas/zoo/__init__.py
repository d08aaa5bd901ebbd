"""Built-in datasets and search spaces.

Each built-in is a module with ``build_supernet()`` (no required arguments) and ``load_data()``
returning ``{"train", "val", "test"}`` datasets: ``raynas.zoo.mnist1d`` (the
benchmark space, README "Built-in spaces"), ``raynas.zoo.digits`` (scikit-learn's 8x8 digits, a 2-D example)
and ``raynas.zoo.cifar10`` (CIFAR-10 from a local folder, with augmentation, and a DARTS-cell supernet).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from searchers.errors import ConfigError

__all__ = ["BUILTINS", "builtin"]

BUILTINS = ("mnist1d", "digits", "cifar10")


def builtin(name: str) -> ModuleType:
    """The built-in module called ``name``.

    Raises:
        ConfigError: unknown name (the message lists the built-ins).
    """
    if name not in BUILTINS:
        raise ConfigError(f"unknown built-in dataset {name!r} (valid: {', '.join(BUILTINS)})")
    return importlib.import_module(f"raynas.zoo.{name}")
