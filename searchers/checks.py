"""The checks of values a user passes to tuners and their drivers: one function per rule (torch-free).

Each check returns the value it accepts (normalised: an ``int``, a ``float``) or raises an error of
:mod:`searchers.errors` whose one-line message names the rule, the key and the value. Tuners call
them from their constructors, so a bad option fails where it is written.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from searchers.errors import ConfigError, ConfigKeyError, ConfigTypeError

__all__ = [
    "OPTIMIZE_MODES",
    "TUNE_MODES",
    "is_bool",
    "is_int",
    "is_float",
    "check_optimize_mode",
    "check_tune_mode",
    "check_metric_name",
    "check_seed",
    "check_callable",
    "check_probability",
    "positive_int",
    "metric_value",
]

OPTIMIZE_MODES = ("maximize", "minimize")  # NNI's optimize_mode
TUNE_MODES = ("max", "min")  # Ray Tune's mode


def is_bool(x: Any) -> bool:
    """Whether ``x`` is a bool (Python's or numpy's)."""
    return isinstance(x, (bool, np.bool_))


def is_int(x: Any) -> bool:
    """Whether ``x`` is an integer that is not a bool."""
    return isinstance(x, numbers.Integral) and not is_bool(x)


def is_float(x: Any) -> bool:
    """Whether ``x`` is a real number that is neither an integer nor a bool."""
    return isinstance(x, numbers.Real) and not isinstance(x, numbers.Integral) and not is_bool(x)


def check_optimize_mode(mode: Any) -> str:
    """Validate an ``optimize_mode`` option.

    Args:
        mode: ``"maximize"`` or ``"minimize"``.

    Returns:
        The mode.

    Raises:
        ConfigError: any other value (the message lists the valid ones).
    """
    if mode not in OPTIMIZE_MODES:
        raise ConfigError(f"optimize_mode must be one of {', '.join(map(repr, OPTIMIZE_MODES))}, got {mode!r}")
    return mode


def check_tune_mode(mode: Any) -> str | None:
    """Validate a Ray Tune ``mode``: ``"max"``, ``"min"`` or ``None``.

    Raises:
        ConfigError: any other value.
    """
    if mode is not None and mode not in TUNE_MODES:
        raise ConfigError(f"mode must be one of 'max', 'min' or None, got {mode!r}")
    return mode


def check_metric_name(metric: Any) -> str | None:
    """Validate a Ray Tune ``metric``: the result key to optimize, or ``None``.

    Raises:
        ConfigTypeError: not a str (a ``TypeError`` too).
    """
    if metric is not None and not isinstance(metric, str):
        raise ConfigTypeError(f"metric must be a str or None, got {metric!r}")
    return metric


def check_seed(seed: Any) -> int | None:
    """Validate a tuner's ``seed``: ``None`` or an int ``>= 0``.

    Raises:
        ConfigTypeError: not an int (a bool is not one).
        ConfigError: negative.
    """
    if seed is not None and not is_int(seed):
        raise ConfigTypeError(f"seed must be an int or None, got {seed!r}")
    if seed is not None and seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed!r}")
    return seed


def check_callable(name: str, value: Any, *, signature: str, optional: bool = True) -> Any:
    """Validate a callable option.

    Args:
        name: the option, for the message.
        value: the callable (or ``None`` where ``optional``).
        signature: how it is called, for the message (``"(parameters) -> bool"``).
        optional: whether ``None`` passes.

    Raises:
        ConfigTypeError: not callable (nor an allowed ``None``).
    """
    if not callable(value) and not (optional and value is None):
        raise ConfigTypeError(f"{name} must be a callable{signature}{' or None' if optional else ''}, got {value!r}")
    return value


def check_probability(name: str, value: Any, *, error: type[ConfigError] | type[Exception] = ConfigError) -> float:
    """``value`` as a float when it is a number in [0, 1].

    Args:
        name: the option, for the message.
        value: the probability.
        error: the error class raised (a :class:`searchers.errors.RaynasError` subclass).

    Raises:
        error: not a number (a bool is not one) or outside [0, 1].
    """
    if is_bool(value) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise error(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """``value`` as an int when it is an integer ``>= minimum`` (a tuner argument's check).

    Raises:
        ConfigTypeError: not an integer (a bool is not one; a ``TypeError`` too).
        ConfigError: below ``minimum`` (the message names ``name`` and the value).
    """
    if not is_int(value):
        raise ConfigTypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def metric_value(value: Any) -> float:
    """The scalar a trial reported: a number, or a dict holding it under ``"default"``.

    Args:
        value: a real number or a mapping with key ``"default"`` (NNI's form).

    Returns:
        The value as a float.

    Raises:
        ConfigKeyError: a mapping without ``"default"`` (a ``KeyError`` too).
        ConfigTypeError: not a real number (a ``TypeError`` too).
        ConfigError: NaN.
    """
    raw = value
    if isinstance(value, Mapping):
        if "default" not in value:
            raise ConfigKeyError(f"a metric dict must hold the value under 'default', got keys {sorted(value)!r}")
        value = value["default"]
    if is_bool(value) or not isinstance(value, numbers.Real):
        raise ConfigTypeError(f"a metric value must be a real number (or a dict with 'default'), got {raw!r}")
    value = float(value)
    if math.isnan(value):
        raise ConfigError(f"a metric value must not be NaN, got {raw!r}")
    return value
