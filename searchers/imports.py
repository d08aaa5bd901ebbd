"""The one importer of ``"package.module:name"`` strings (torch-free).

Model and data factories (:func:`raynas.nas.space.load_factory`) and tuners / searchers
(:func:`searchers.tune.load_searcher`) are all named this way in configs and on the command line.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

from searchers.errors import ConfigError

__all__ = ["import_object"]


def import_object(
    spec: str,
    *,
    what: str = "object",
    error: type[Exception] = ConfigError,
    offers: Callable[[ModuleType], list[str]] | None = None,
    offers_label: str = "it has",
) -> Any:
    """Import ``"package.module:name"`` (``name`` may be dotted: ``"Class.attr"``) and return it.

    Args:
        spec: the import path.
        what: what the path names, for the messages (``"factory"``, ``"searcher"``).
        error: the exception class raised (called with the one-line message); a
            :class:`searchers.errors.RaynasError` subclass, so that the CLI prints it as one line.
        offers: names of the module to list when ``name`` is missing; default: its public callables.
        offers_label: the words before that list.

    Raises:
        error: the spec is not ``MODULE:NAME``, the module cannot be imported or has no such name.
    """
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise error(f"a {what} must be written 'package.module:name', got {spec!r}")
    module_name, attr = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise error(f"cannot import module {module_name!r} of {what} {spec!r}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = (offers or _public_callables)(module)
            raise error(
                f"module {module_name!r} has no attribute {attr!r} ({what} {spec!r}); "
                f"{offers_label}: {', '.join(sorted(names)) or 'none'}"
            )
        obj = getattr(obj, part)
    return obj


def _public_callables(module: ModuleType) -> list[str]:
    return [
        n
        for n, v in vars(module).items()
        if not n.startswith("_") and callable(v) and getattr(v, "__module__", None) == module.__name__
    ]
