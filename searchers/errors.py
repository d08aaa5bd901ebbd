"""Every error raynas raises for input a user can get wrong, in one hierarchy (torch-free).

Catch :class:`RaynasError` to handle them all; the command line turns them into one line on
stderr and exit code 2 (Optuna's ``OptunaError`` plays the same part). Each error also derives
from the built-in it refines (``ValueError``, ``TypeError``, ``KeyError``, ``RuntimeError``), so
``except ValueError`` (or ``TypeError``, ``KeyError``) around a call keeps working::

    RaynasError
    ├── ConfigError (ValueError)            a setting or an argument breaks its rule
    │   ├── ConfigTypeError (TypeError)     ... it has the wrong type
    │   └── ConfigKeyError (KeyError)       ... a required key is missing
    ├── CheckpointError (ValueError)        a checkpoint cannot be written, read or restored
    ├── SearchSpaceError (ValueError)       a search space, parameter set or architecture breaks a rule
    ├── SearcherLoadError (ValueError)      an import path names no usable tuner or searcher
    └── ConstraintError (RuntimeError)      a searcher proposed nothing within the constraint

The tuner protocol's :class:`searchers.base.NoMoreTrialError` is not here: it is a signal between
a tuner and its driver, not an error in the user's input (see its docstring). Nor is
:class:`Interrupted`, a ``KeyboardInterrupt``: Ctrl-C stopped a phase that Ray Tune ran.
"""

from __future__ import annotations

__all__ = [
    "Interrupted",
    "RaynasError",
    "ConfigError",
    "ConfigTypeError",
    "ConfigKeyError",
    "CheckpointError",
    "SearchSpaceError",
    "SearcherLoadError",
    "ConstraintError",
]


class RaynasError(Exception):
    """Base class of raynas' user-facing errors; the message names the rule, the key and the value."""


class ConfigError(RaynasError, ValueError):
    """A setting, or an argument given to a raynas API, breaks its rule (the message names the key,
    the value and the rule)."""


class ConfigTypeError(ConfigError, TypeError):
    """A setting or an argument has the wrong type (also a ``TypeError``, as the built-in check was)."""


class ConfigKeyError(ConfigError, KeyError):
    """A mapping lacks a required key (also a ``KeyError``; printed as its plain message, unquoted)."""

    __str__ = BaseException.__str__  # KeyError's own __str__ would quote the one-line message


class CheckpointError(RaynasError, ValueError):
    """A checkpoint (a supernet's, a tuner's or a searcher's) cannot be written, read or restored."""


class SearchSpaceError(RaynasError, ValueError):
    """A search space, parameter set or architecture breaks a rule; the message names key and value."""


class SearcherLoadError(RaynasError, ValueError):
    """``searchers.tune.load_searcher`` could not build a searcher from the given import path."""


class ConstraintError(RaynasError, RuntimeError):
    """A constrained searcher's wrapped searcher proposed nothing within the constraint for too long."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped a phase that Ray Tune ran: Tune saved the experiment's state and returned;
    nothing of the phase is marked done, and ``--resume`` continues it. A ``KeyboardInterrupt``
    (not a :class:`RaynasError`): the CLI ends with exit code 130, as an interrupted program does."""

