"""The one checker of raynas settings: a rule per setting, declared next to it, and one function applying it.

A config is a frozen dataclass whose every field carries its rule,
``field(default=2, metadata=rule("int", min=1))``, and whose ``__post_init__`` calls
:func:`check_fields`; a lone argument is checked with :func:`check`. Unknown keys and non-mapping
sections are refused by :func:`check_keys`, in the one wording every raynas reader of keys uses:
``unknown key 'nope' in section 'search' (valid keys: searcher, ...)``. Every failure is a
:class:`~searchers.errors.ConfigError` (or the ``error`` given) naming the key, the rule and the value.

Kinds and their options (every kind also takes ``optional=True``: ``None`` passes):

- ``int``: an integer, not a bool; ``min``.
- ``number``: a finite int or float, not a bool; ``min`` (``strict``: ``>``), ``max``
  (``max_strict``: ``<``).
- ``bool``: ``True`` or ``False``.
- ``choice``: one of ``valid`` (a sequence, or a mapping whose keys are read at each check, so a
  registry may grow), compared with its type (``1.0`` and ``True`` are not ``1``).
- ``str``: a non-empty string; ``form=(predicate, text)``: it must also pass ``predicate``, and a
  failure reads "must be <text>".
- ``dict``: a mapping of string names to values.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

from searchers.errors import ConfigError

__all__ = ["rule", "check", "check_fields", "check_keys", "is_import_path", "IMPORT_PATH"]

KINDS = ("int", "number", "bool", "choice", "str", "dict")


def rule(kind: str, **options: Any) -> dict[str, Any]:
    """A field's rule, as dataclass field ``metadata``: ``field(default=..., metadata=rule("int", min=1))``."""
    if kind not in KINDS:  # a typo in raynas' own tables, not user input
        raise ValueError(f"unknown rule kind {kind!r} (valid: {', '.join(KINDS)})")
    return {"rule": (kind, options)}


def is_import_path(value: str) -> bool:
    """``True`` for ``"package.module:name"`` (exactly one ``:``, both sides non-empty)."""
    return value.count(":") == 1 and all(value.split(":"))


#: the ``form`` of a ``module:function`` setting (factories, searchers).
IMPORT_PATH = (is_import_path, "written 'package.module:name'")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bounds(options: Mapping[str, Any]) -> str:
    parts = []
    if "min" in options:
        parts.append(f"{'>' if options.get('strict') else '>='} {options['min']}")
    if "max" in options:
        parts.append(f"{'<' if options.get('max_strict') else '<='} {options['max']}")
    return " and ".join(parts)


def _in_bounds(value: float, options: Mapping[str, Any]) -> bool:
    low, high = options.get("min", -math.inf), options.get("max", math.inf)
    if value < low or (options.get("strict") and value == low):
        return False
    return not (value > high or (options.get("max_strict") and value == high))


def _problem(value: Any, kind: str, options: Mapping[str, Any]) -> str | None:
    """What ``value`` breaks ("must be ..."), or ``None`` when it keeps the rule."""
    if kind == "int":
        if not _is_int(value):
            return "must be an integer"
        return None if _in_bounds(value, options) else f"must be {_bounds(options)}"
    if kind == "number":
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            return "must be a finite number"
        return None if _in_bounds(value, options) else f"must be {_bounds(options)}"
    if kind == "bool":
        return None if isinstance(value, bool) else "must be true or false"
    if kind == "choice":
        valid = list(options["valid"])
        if any(type(value) is type(v) and value == v for v in valid):
            return None
        return f"must be one of {', '.join(map(str, valid))}"
    if kind == "str":
        form = options.get("form")
        if isinstance(value, str) and value and (form is None or form[0](value)):
            return None
        return f"must be {form[1]}" if form is not None else "must be a non-empty string"
    if kind == "dict":
        if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
            return None
        return "must be a mapping of name -> value"
    raise ValueError(f"unknown rule kind {kind!r}")  # rule() refuses these


def check(key: str, value: Any, kind: str, *, error: type[Exception] = ConfigError, **options: Any) -> Any:
    """Check one value against a rule and return it.

    Args:
        key: the name the message gives it (``"supernet.lr"``, ``"ArchTrainer arch_warmup_steps"``).
        value: the value.
        kind: the rule's kind (see the module docstring), with its ``options``.
        error: the class raised (a :class:`~searchers.errors.ConfigError` by default).

    Raises:
        error: ``"<key> must be <rule>, got <value>"``.
    """
    if value is None and options.get("optional"):
        return value
    problem = _problem(value, kind, options)
    if problem is not None:
        raise error(f"{key} {problem}, got {value!r}")
    return value


def check_fields(config: Any, section: str) -> None:
    """Check every field of a dataclass that carries a :func:`rule` (call it in ``__post_init__``).

    Args:
        config: the dataclass instance.
        section: the prefix of the keys in the messages (``"supernet"`` -> ``supernet.lr``).
    """
    for f in dataclasses.fields(config):
        if "rule" in f.metadata:
            kind, options = f.metadata["rule"]
            check(f"{section}.{f.name}", getattr(config, f.name), kind, **options)


def check_keys(data: Any, valid: Iterable[str], where: str) -> Mapping[str, Any]:
    """Refuse a non-mapping or a key not in ``valid``, in raynas' one wording, and return ``data``.

    Args:
        data: what the user gave (a YAML section, keyword overrides).
        valid: the keys it may hold.
        where: what it is, for the messages: ``"section 'search'"``.

    Raises:
        ConfigError: ``"<where> must be a mapping of settings, got ..."`` or
            ``"unknown key 'k' in <where> (valid keys: a, b)"``.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping of settings, got {data!r}")
    valid = list(valid)
    for key in data:
        if key not in valid:
            raise ConfigError(f"unknown key {key!r} in {where} (valid keys: {', '.join(valid)})")
    return data

