"""The NNI tuner protocol: the :class:`Tuner` contract and :class:`NoMoreTrialError`, its signal.

The contract, as NNI defines it: the driver calls ``update_search_space`` once, then
``generate_parameters(parameter_id)`` for every trial it starts, ``receive_trial_result`` with the
trial's final metric, and ``trial_end`` when the trial is over (``success=False`` for a failed
trial, which reports no result). Several trials may run at once, so calls interleave.

As in NNI (``nni/tuner.py``, ``nni/recoverable.py``), a tuner must implement only
``update_search_space``, ``generate_parameters`` (or ``generate_multiple_parameters``) and
``receive_trial_result``; ``save_checkpoint`` / ``load_checkpoint`` are optional. A driver restores
a tuner that keeps no checkpoint by replaying the calls it made (a :class:`searchers.calllog.CallLog`)
into a fresh one.

The helpers that used to live here have their own modules and are still importable from here:
:mod:`searchers.checks` (``check_optimize_mode``, ``metric_value``, ``positive_int``),
:mod:`searchers.codec` (``arch_json``, ``arch_tuple``, ``hashable_id``), :mod:`searchers.signatures`
(``calls_without_argument``), :mod:`searchers.calllog` (``CallLog``) and :mod:`searchers.arch_tuner`
(``ArchTuner``, the base of the shipped tuners).
"""

from __future__ import annotations

import abc
import importlib
import logging
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from searchers.checks import OPTIMIZE_MODES, check_optimize_mode, metric_value, positive_int
from searchers.codec import arch_json, arch_tuple, hashable_id
from searchers.errors import CheckpointError
from searchers.signatures import calls_without_argument

if TYPE_CHECKING:  # loaded on first access instead, see __getattr__ at the end
    from searchers.arch_tuner import ArchTuner
    from searchers.calllog import CallLog

__all__ = [
    "NoMoreTrialError",
    "Tuner",
    # re-exported from their own modules (see the module docstring)
    "OPTIMIZE_MODES",
    "ArchTuner",
    "arch_json",
    "arch_tuple",
    "calls_without_argument",
    "hashable_id",
    "positive_int",
    "CheckpointError",
    "CallLog",
    "check_optimize_mode",
    "metric_value",
]

_logger = logging.getLogger(__name__)


class NoMoreTrialError(Exception):
    """Raised by ``generate_parameters`` when the tuner has nothing to propose (now or ever).

    A driver that still has trials running should wait for their results and ask again; with
    nothing running, the search is over.

    It derives from ``Exception`` only, like NNI's own (``nni.NoMoreTrialError``), and not from
    :class:`searchers.errors.RaynasError`: it is the protocol's signal that a tuner is done, not an
    error in the user's input. Drivers catch it by name, as NNI's dispatcher does; a handler of
    raynas' user errors (``except RaynasError``, the CLI's one-line exit 2) must not swallow it.
    """


class Tuner(abc.ABC):
    """An NNI-protocol tuner: proposes architectures and learns from their results.

    Subclasses implement NNI's protocol methods: ``update_search_space``, ``generate_parameters``
    (or, as NNI allows, ``generate_multiple_parameters`` instead) and ``receive_trial_result``;
    ``trial_end``, ``import_data`` and ``generate_multiple_parameters`` have working defaults.
    ``save_checkpoint`` / ``load_checkpoint`` are optional, as in NNI: the defaults keep no state
    (``save_checkpoint`` returns ``None``), and a driver that resumes such a tuner
    (:class:`searchers.tune.TunerSearcher` under ``Tuner.restore``) replays the calls it made into
    a fresh tuner instead (:class:`CallLog`). A tuner must be picklable (it travels into a Ray actor)
    and its checkpoint, when it keeps one, JSON-able. ``optimize_mode`` is ``"maximize"``,
    ``"minimize"`` or ``None`` (the tuner does not rank results); drivers negate values to match.
    """

    optimize_mode: str | None = None

    def __new__(cls, *args: Any, **kwargs: Any) -> Tuner:
        instance = super().__new__(cls)  # raises for missing abstract methods
        if (
            cls.generate_parameters is Tuner.generate_parameters
            and cls.generate_multiple_parameters is Tuner.generate_multiple_parameters
        ):
            # a plain TypeError, as abc raises for a missing abstract method: a bug in the tuner class
            # itself (its author's code), not a value a user passed; its traceback is what helps
            raise TypeError(
                f"Can't instantiate tuner class {cls.__name__}: NNI's tuner protocol needs "
                "generate_parameters (or generate_multiple_parameters)"
            )
        return instance

    @abc.abstractmethod
    def update_search_space(self, search_space: Mapping[str, Any]) -> None:
        """Set the search space (nnictl JSON); called before the first ``generate_parameters``.

        Args:
            search_space: ``{key: {"_type": ..., "_value": ...}}``.

        Raises:
            SearchSpaceError: the space breaks a rule.
        """

    def generate_parameters(self, parameter_id: Any, **kwargs: Any) -> dict:
        """Propose the parameters of one new trial (override this or ``generate_multiple_parameters``).

        Args:
            parameter_id: the driver's id for the trial (JSON-able, unique).
            **kwargs: driver extras, ignored by default.

        Returns:
            ``{key: {"_value": ..., "_idx": ...}}`` for every key, as
            :func:`searchers.space.to_parameters` writes it.

        Raises:
            NoMoreTrialError: nothing to propose now (wait for results) or ever.
            NotImplementedError: the subclass overrides only ``generate_multiple_parameters``.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement generate_parameters")

    @abc.abstractmethod
    def receive_trial_result(self, parameter_id: Any, parameters: dict, value: Any, **kwargs: Any) -> None:
        """Take the final result of a trial.

        Args:
            parameter_id: the trial's id (possibly one this tuner never generated; then
                ``kwargs["customized"]`` is true and ``parameters`` says what ran).
            parameters: the trial's parameters.
            value: a number, or a dict holding it under ``"default"``.
            **kwargs: driver extras.
        """

    def trial_end(self, parameter_id: Any, success: bool, **kwargs: Any) -> None:
        """A trial is over; ``success=False`` means it failed and reports no result. No-op.

        Args:
            parameter_id: the trial's id.
            success: whether the trial ended normally.
            **kwargs: driver extras.
        """

    def generate_multiple_parameters(self, parameter_id_list: Iterable[Any], **kwargs: Any) -> list[dict]:
        """Propose parameters for several trials; stops early at :class:`NoMoreTrialError`.

        Args:
            parameter_id_list: one id per wanted trial.
            **kwargs: passed on to ``generate_parameters``.

        Returns:
            One parameter dict per id, in order; fewer when the tuner ran out.
        """
        out = []
        for parameter_id in parameter_id_list:
            try:
                out.append(self.generate_parameters(parameter_id, **kwargs))
            except NoMoreTrialError:
                break
        return out

    def import_data(self, data: Iterable[Mapping[str, Any]]) -> None:
        """Take results evaluated elsewhere: records ``{"parameter": ..., "value": ...}``. No-op.

        Args:
            data: the records.
        """

    def save_checkpoint(self) -> dict | None:
        """The tuner's whole state (space, RNG, population, pending trials) as JSON-able data.

        Optional, as in NNI: the default keeps no state and returns ``None``; a driver then
        restores the tuner by replaying its calls into a fresh one (:class:`CallLog`).

        Returns:
            A dict that ``json.dumps`` accepts, or ``None`` (no checkpoint).
        """
        _logger.debug("%s keeps no checkpoint (checkpoint path: %s)", type(self).__name__, self.get_checkpoint_path())
        return None

    def load_checkpoint(self, state: Mapping[str, Any] | None = None) -> None:
        """Restore what :meth:`save_checkpoint` returned, exactly (the same next proposals). No-op.

        NNI's own signature takes no argument (a tuner that checkpoints to files reads
        :meth:`get_checkpoint_path`); drivers call it without one when the checkpoint is ``None``.

        Args:
            state: a checkpoint of a tuner of this class, or ``None``.

        Raises:
            CheckpointError: the state belongs to another tuner class or format.
        """

    def get_checkpoint_path(self) -> str | None:
        """NNI's checkpoint folder: ``$NNI_CHECKPOINT_DIRECTORY`` when it is a folder, else ``None``."""
        path = os.environ.get("NNI_CHECKPOINT_DIRECTORY")
        return path if path is not None and os.path.isdir(path) else None

    def _accept_customized_trials(self, accept: bool = True) -> None:
        # NNI's opt-in for results of user-added trials; raynas drivers always pass them on
        # (with customized=True), so the flag is only recorded.
        self._accept_customized = accept


# -- names whose home moved out ------------------------------------------------------------------
# ArchTuner and CallLog build on this module (Tuner, NoMoreTrialError), so importing them here at
# load time would be circular; they load on first access instead (PEP 562).

_MOVED = {"ArchTuner": "searchers.arch_tuner", "_ArchTuner": "searchers.arch_tuner", "CallLog": "searchers.calllog"}

# the old private names, kept for code written against earlier versions
_arch_json, _arch_tuple, _pid, _calls_without_argument = arch_json, arch_tuple, hashable_id, calls_without_argument


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(_MOVED[name])
    return getattr(module, name.lstrip("_"))


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MOVED))
