"""What a user's callable accepts, read from its signature (torch-free).

Drivers build user classes from an import path and keyword arguments (:func:`searchers.tune.load_searcher`)
and call optional hooks with or without an argument (NNI's ``load_checkpoint()``); these functions
answer from the signature, before the call, so a wrong keyword is a clear error rather than a
``TypeError`` from deep inside.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from searchers.errors import ConfigTypeError

__all__ = ["calls_without_argument", "check_keywords", "names_keyword"]


def _signature(target: Callable) -> inspect.Signature | None:
    try:
        return inspect.signature(target)
    except (TypeError, ValueError):  # a builtin or extension callable without a readable signature
        return None


def calls_without_argument(method: Callable) -> bool:
    """Whether ``method`` can be called with no argument (every parameter has a default or is
    ``*args``/``**kw``); ``False`` when its signature cannot be read."""
    signature = _signature(method)
    if signature is None:
        return False
    return all(
        p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in signature.parameters.values()
    )


def names_keyword(cls: type, name: str) -> bool:
    """Whether constructing ``cls`` takes keyword ``name`` by name, for a keyword a driver adds
    unasked (``seed``, ``optimize_mode``): in its ``__init__``, or, where that ``__init__`` takes
    ``**kwargs`` (NNI's ``class EvolutionWithFlops(SPOSEvolution)`` passes them on with
    ``super().__init__(**kwargs)``), in the next ``__init__`` up the MRO. ``**kwargs`` alone does not
    count: the class may hand them to a base that refuses ``name``. ``False`` when a signature
    cannot be read."""
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is object:
            return False
        signature = _signature(init)
        if signature is None:
            return False
        params = signature.parameters
        named = params.get(name)
        if named is not None and named.kind in (named.POSITIONAL_OR_KEYWORD, named.KEYWORD_ONLY):
            return True
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return False
    return False


def check_keywords(target: Callable, kwargs: Mapping[str, Any], *, what: str) -> None:
    """Check that ``target(**kwargs)`` binds (no unknown keyword, none missing) without calling it.

    A target whose signature cannot be read passes (the call itself then decides).

    Args:
        target: the class or function.
        kwargs: the keyword arguments it will get.
        what: what ``target`` is, for the message (``"searcher 'pkg.mod:Name'"``).

    Raises:
        ConfigTypeError: they do not bind (the message lists the keywords ``target`` takes).
    """
    signature = _signature(target)
    if signature is None:
        return
    try:
        signature.bind(**kwargs)
    except TypeError as exc:
        takes = [n for n, p in signature.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        raise ConfigTypeError(
            f"keyword arguments {sorted(kwargs)} do not fit {what}: {exc} (it takes: {', '.join(takes) or 'none'})"
        ) from None
