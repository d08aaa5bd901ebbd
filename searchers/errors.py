"""The base of every error raynas raises for input a user can get wrong (torch-free).

Catch :class:`RaynasError` to handle them all; the command line turns them into one line on
stderr and exit code 2 (Optuna's ``OptunaError`` plays the same part). Each error also derives
from the built-in it refines (``ValueError``, ``RuntimeError``), so ``except ValueError`` keeps
working.
"""

from __future__ import annotations

__all__ = ["RaynasError", "ConfigError", "ConfigTypeError", "CheckpointError"]


class RaynasError(Exception):
    """Base class of raynas' user-facing errors; the message names the rule, the key and the value."""


class ConfigError(RaynasError, ValueError):
    """A setting breaks its rule (the message names the key, the value and the rule)."""


class ConfigTypeError(ConfigError, TypeError):
    """A setting or argument has the wrong type (also a ``TypeError``, as the built-in check raised)."""


class CheckpointError(RaynasError, ValueError):
    """A checkpoint (a supernet's or a tuner's) cannot be written, read or restored."""
