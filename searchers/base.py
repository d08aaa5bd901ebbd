"""The NNI tuner protocol (:class:`Tuner`), :class:`NoMoreTrialError` and shared tuner helpers.

The contract, as NNI defines it: the driver calls ``update_search_space`` once, then
``generate_parameters(parameter_id)`` for every trial it starts, ``receive_trial_result`` with the
trial's final metric, and ``trial_end`` when the trial is over (``success=False`` for a failed
trial, which reports no result). Several trials may run at once, so calls interleave.

As in NNI (``nni/tuner.py``, ``nni/recoverable.py``), a tuner must implement only
``update_search_space``, ``generate_parameters`` (or ``generate_multiple_parameters``) and
``receive_trial_result``; ``save_checkpoint`` / ``load_checkpoint`` are optional. A driver restores
a tuner that keeps no checkpoint by replaying the calls it made (a :class:`CallLog`) into a fresh one.
"""

from __future__ import annotations

import abc
import copy
import inspect
import logging
import math
import numbers
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from searchers.errors import CheckpointError, ConfigError, ConfigKeyError, ConfigTypeError
from searchers.space import (
    Choice,
    SearchSpaceError,
    Selection,
    choice_parameter,
    choice_size,
    choice_values,
    parse_search_space,
    sample_choice,
    to_index_form,
)

__all__ = [
    "OPTIMIZE_MODES",
    "ArchTuner",
    "arch_json",
    "arch_tuple",
    "calls_without_argument",
    "hashable_id",
    "positive_int",
    "NoMoreTrialError",
    "Tuner",
    "CheckpointError",
    "CallLog",
    "check_optimize_mode",
    "metric_value",
]

OPTIMIZE_MODES = ("maximize", "minimize")

_logger = logging.getLogger(__name__)

Arch = tuple  # one tuple of sorted candidate indices per key, in sorted key order


class NoMoreTrialError(Exception):
    """Raised by ``generate_parameters`` when the tuner has nothing to propose (now or ever).

    A driver that still has trials running should wait for their results and ask again; with
    nothing running, the search is over.

    It derives from ``Exception`` only, like NNI's own (``nni.NoMoreTrialError``), and not from
    :class:`searchers.errors.RaynasError`: it is the protocol's signal that a tuner is done, not an
    error in the user's input. Drivers catch it by name, as NNI's dispatcher does; a handler of
    raynas' user errors (``except RaynasError``, the CLI's one-line exit 2) must not swallow it.
    """


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
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ConfigTypeError(f"a metric value must be a real number (or a dict with 'default'), got {raw!r}")
    value = float(value)
    if math.isnan(value):
        raise ConfigError(f"a metric value must not be NaN, got {raw!r}")
    return value


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


def calls_without_argument(method: Callable) -> bool:
    """Whether ``method`` can be called with no argument (every parameter has a default or is ``*args``/``**kw``);
    ``False`` when its signature cannot be read."""
    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)


_calls_without_argument = calls_without_argument  # the old private name, kept for existing callers


class CallLog:
    """The calls a driver made to a tuner, in order, as JSON-able records; replayable.

    A tuner that keeps no checkpoint (``save_checkpoint()`` returns ``None``) is restored by
    replaying the log into a fresh tuner of the same class and constructor arguments: the fresh
    tuner sees the same ``generate_parameters`` / ``receive_trial_result`` / ``trial_end`` /
    ``import_data`` calls in the same order, so a seeded, deterministic tuner ends in the very
    state the original had (the same next proposals); any tuner at least learns every result.

    Args:
        records: records of an earlier log (``log.records``), e.g. read back from JSON.
    """

    def __init__(self, records: Iterable[Sequence[Any]] | None = None) -> None:
        self.records: list[list] = [list(r) for r in records or []]
        for i, record in enumerate(self.records):
            if not record or record[0] not in ("generate", "result", "end", "import"):
                raise CheckpointError(f"call log record {i} is not a tuner call: {record!r}")

    def generated(self, parameter_id: Any, parameters: Mapping[str, Any]) -> None:
        """Record that ``generate_parameters(parameter_id)`` returned ``parameters``."""
        self.records.append(["generate", parameter_id, copy.deepcopy(dict(parameters))])

    def received(
        self, parameter_id: Any, parameters: Mapping[str, Any], value: Any, *, customized: bool = False
    ) -> None:
        """Record a ``receive_trial_result`` call."""
        self.records.append(["result", parameter_id, copy.deepcopy(dict(parameters)), value, bool(customized)])

    def ended(self, parameter_id: Any, success: bool) -> None:
        """Record a ``trial_end`` call."""
        self.records.append(["end", parameter_id, bool(success)])

    def imported(self, data: Iterable[Mapping[str, Any]]) -> None:
        """Record an ``import_data`` call."""
        self.records.append(["import", copy.deepcopy([dict(r) for r in data])])

    def clear(self) -> None:
        """Forget every record (after a checkpoint made them unnecessary)."""
        self.records.clear()

    @property
    def results(self) -> int:
        """How many results (received or imported) the log holds."""
        return sum(1 if r[0] == "result" else len(r[1]) if r[0] == "import" else 0 for r in self.records)

    def replay(self, tuner: Tuner) -> None:
        """Make the recorded calls on ``tuner`` (fresh, with its search space set), in order.

        A replayed ``generate_parameters`` goes through ``generate_multiple_parameters([id])``
        (the tuner's own proposal is discarded: the recorded parameters are what ran, and they
        reach the tuner with the result); ``NoMoreTrialError`` there is ignored.

        Args:
            tuner: the fresh tuner.

        Raises:
            RuntimeError: a replayed call raised (the message names the call and the record).
        """
        for i, record in enumerate(self.records):
            kind = record[0]
            try:
                if kind == "generate":
                    try:
                        tuner.generate_multiple_parameters([hashable_id(record[1])])
                    except NoMoreTrialError:
                        pass
                elif kind == "result":
                    extras = {"customized": True} if record[4] else {}
                    tuner.receive_trial_result(hashable_id(record[1]), copy.deepcopy(record[2]), record[3], **extras)
                elif kind == "end":
                    tuner.trial_end(hashable_id(record[1]), record[2])
                else:
                    tuner.import_data(copy.deepcopy(record[1]))
            except Exception as exc:
                raise RuntimeError(
                    f"replaying call {i} ({kind} of parameter id {record[1] if kind != 'import' else '-'!r}) "
                    f"into a fresh {type(tuner).__name__} failed: {type(exc).__name__}: {exc}"
                ) from exc


# -- shared machinery of the shipped tuners ------------------------------------------------------


class ArchTuner(Tuner):
    """Base of the shipped tuners, and of user tuners: parsed space, seeded RNG, no-repeat memory,
    results, checkpoints.

    Architectures are tuples (one tuple of sorted indices per key, keys sorted). Every proposed,
    received or imported architecture is remembered, so none is proposed twice; once every
    architecture of the space is remembered, ``generate_parameters`` raises NoMoreTrialError.

    Subclass contract (the single-underscore members are the subclass API, not the driver's):

    - implement ``generate_parameters(parameter_id, **kwargs)``: call ``self._need_space()``,
      choose an architecture (``self._random_unseen(extra)`` draws an unseen acceptable one or
      ``None``; ``self._acceptable(arch, extra)`` tests one against the memory and the
      constraint), and return ``self._propose(parameter_id, arch)``;
    - override the hooks as needed: ``_on_result(parameter_id, arch, score)`` (``score`` is larger
      for better whatever the optimize mode), ``_on_failure(parameter_id, arch)``, ``_reset()``
      (a new search space), ``_state()`` / ``_load_state(state)`` (JSON-able learnt state in
      checkpoints);
    - read ``self._rng`` (the seeded generator), ``self._list`` (the space's choices in key
      order), ``self._size`` (the number of architectures), ``self._parameters(arch)`` and
      ``self._arch_of(parameters)`` (architecture <-> NNI parameters).

    Args:
        seed: seed of the tuner's ``numpy.random.Generator`` (``None``: fresh entropy).
        optimize_mode: ``"maximize"``, ``"minimize"`` or ``None`` (results not ranked).
        constraint: ``constraint(parameters) -> bool``; architectures it rejects are not proposed.
    """

    _FORMAT = 1
    _ATTEMPTS = 200  # random draws before falling back to enumerating the unseen architectures
    _ENUMERATE_LIMIT = 1 << 20

    def __init__(
        self,
        *,
        seed: int | None = None,
        optimize_mode: str | None = "maximize",
        constraint: Callable[[dict], bool] | None = None,
    ) -> None:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise ConfigTypeError(f"seed must be an int or None, got {seed!r}")
        if seed is not None and seed < 0:
            raise ConfigError(f"seed must be >= 0, got {seed!r}")
        if constraint is not None and not callable(constraint):
            raise ConfigTypeError(f"constraint must be a callable(parameters) -> bool or None, got {constraint!r}")
        self.optimize_mode = None if optimize_mode is None else check_optimize_mode(optimize_mode)
        self.seed = seed
        self.constraint = constraint
        self._rng = np.random.default_rng(seed)
        self._choices: dict[str, Choice] | None = None
        self._list: list[Choice] = []
        self._size = 0
        self._seen: set[Arch] = set()
        self._pending: dict[Any, Arch] = {}

    @abc.abstractmethod
    def generate_parameters(self, parameter_id: Any, **kwargs: Any) -> dict:
        """Propose one architecture as NNI parameters (see the subclass contract above).

        Raises:
            NoMoreTrialError: nothing to propose.
        """

    # -- space ---------------------------------------------------------------------------------

    def update_search_space(self, search_space: Mapping[str, Any]) -> None:
        """Set the search space (nnictl JSON); forgets everything learnt on a previous space.

        Args:
            search_space: ``{key: {"_type": ..., "_value": ...}}``.

        Raises:
            SearchSpaceError: the space breaks a rule (the message names key and value).
        """
        choices = parse_search_space(search_space)
        self._choices = choices
        self._list = list(choices.values())
        self._size = math.prod(choice_size(c) for c in self._list)
        self._seen = set()
        self._pending = {}
        self._reset()

    def _reset(self) -> None:
        """Subclass hook: drop learnt state after a new search space."""

    def _need_space(self) -> None:
        if self._choices is None:
            raise SearchSpaceError(f"{type(self).__name__} has no search space: call update_search_space first")

    # -- conversions ---------------------------------------------------------------------------

    def _parameters(self, arch: Arch) -> dict:
        return {c.key: choice_parameter(c, Selection(v)) for c, v in zip(self._list, arch)}

    def _arch_of(self, parameters: Mapping[str, Any]) -> Arch:
        indices = to_index_form(parameters, self._choices)
        return tuple(tuple(indices[c.key]) for c in self._list)

    def _score(self, value: Any) -> float:
        v = metric_value(value)
        return -v if self.optimize_mode == "minimize" else v

    # -- proposing -----------------------------------------------------------------------------

    def _random_arch(self) -> Arch:
        return tuple(sample_choice(c, self._rng) for c in self._list)

    def _acceptable(self, arch: Arch, extra: set | None = None) -> bool:
        if arch in self._seen or (extra is not None and arch in extra):
            return False
        return self.constraint is None or bool(self.constraint(self._parameters(arch)))

    def _random_unseen(self, extra: set | None = None) -> Arch | None:
        """A random architecture not seen (nor in ``extra``) that meets the constraint, or None."""
        taken = len(self._seen) + (len(extra) if extra else 0)
        if taken >= self._size:
            return None
        for _ in range(self._ATTEMPTS):
            arch = self._random_arch()
            if self._acceptable(arch, extra):
                return arch
        if self._size > self._ENUMERATE_LIMIT:
            return None
        import itertools

        left = [
            arch
            for arch in itertools.product(*(choice_values(c) for c in self._list))
            if self._acceptable(arch, extra)
        ]
        return left[int(self._rng.integers(len(left)))] if left else None

    def _propose(self, parameter_id: Any, arch: Arch) -> dict:
        self._seen.add(arch)
        self._pending[parameter_id] = arch
        return self._parameters(arch)

    # -- results -------------------------------------------------------------------------------

    def receive_trial_result(self, parameter_id: Any, parameters: dict, value: Any, **kwargs: Any) -> None:
        """Record a trial's final result.

        Args:
            parameter_id: the trial's id; an id this tuner did not generate uses ``parameters``.
            parameters: the trial's parameters (any form :func:`searchers.space.to_index_form`
                reads).
            value: a number, or a dict holding it under ``"default"``.
            **kwargs: ignored.

        Raises:
            SearchSpaceError: ``parameters`` do not fit the space (for a foreign id).
            ConfigError: ``value`` is not a number (see :func:`metric_value`).
        """
        self._need_space()
        score = self._score(value)
        arch = self._pending.pop(parameter_id, None)
        if arch is None:
            arch = self._arch_of(parameters)
            self._seen.add(arch)
        self._on_result(parameter_id, arch, score)

    def trial_end(self, parameter_id: Any, success: bool, **kwargs: Any) -> None:
        """A trial is over; a failed one (no result) is forgotten and never proposed again.

        Args:
            parameter_id: the trial's id.
            success: whether it ended normally.
            **kwargs: ignored.
        """
        arch = self._pending.pop(parameter_id, None)
        if arch is not None and not success:
            self._on_failure(parameter_id, arch)

    def import_data(self, data: Iterable[Mapping[str, Any]]) -> None:
        """Take results evaluated elsewhere, as if they were trials of this tuner.

        Args:
            data: records ``{"parameter": parameters, "value": number or {"default": number}}``.

        Raises:
            ConfigKeyError: a record lacks ``"parameter"`` or ``"value"`` (a ``KeyError`` too).
            ConfigTypeError: a record is not a mapping (a ``TypeError`` too).
            SearchSpaceError: a record's parameters do not fit the space.
        """
        self._need_space()
        records = []
        for i, record in enumerate(data):
            if not isinstance(record, Mapping):
                raise ConfigTypeError(
                    f"import_data record {i} must be a dict with 'parameter' and 'value', got {record!r}"
                )
            missing = [k for k in ("parameter", "value") if k not in record]
            if missing:
                raise ConfigKeyError(f"import_data record {i} lacks {missing} (keys: {sorted(record)})")
            records.append((self._arch_of(record["parameter"]), self._score(record["value"])))
        for arch, score in records:
            self._seen.add(arch)
            self._on_result(None, arch, score)

    def _on_result(self, parameter_id: Any, arch: Arch, score: float) -> None:
        """Subclass hook: a result arrived (``score`` is larger for better)."""

    def _on_failure(self, parameter_id: Any, arch: Arch) -> None:
        """Subclass hook: a pending trial failed."""

    # -- checkpoints ---------------------------------------------------------------------------

    def save_checkpoint(self) -> dict:
        """The whole state as JSON-able data (space, RNG, seen, pending, population).

        Returns:
            A dict that ``json.dumps`` accepts; the constraint callable is not part of it.
        """
        return {
            "tuner": type(self).__name__,
            "format": self._FORMAT,
            "optimize_mode": self.optimize_mode,
            "search_space": None if self._choices is None else {k: c.spec() for k, c in self._choices.items()},
            "rng": self._rng.bit_generator.state,
            "seen": sorted(arch_json(a) for a in self._seen),
            "pending": [[pid, arch_json(a)] for pid, a in self._pending.items()],
            "state": self._state(),
        }

    def load_checkpoint(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`save_checkpoint` state exactly (the same next proposals).

        Args:
            state: the checkpoint.

        Raises:
            CheckpointError: it belongs to another tuner class or format.
        """
        if not isinstance(state, Mapping) or "tuner" not in state:
            raise CheckpointError(f"not a tuner checkpoint: {type(state).__name__} without key 'tuner'")
        if state["tuner"] != type(self).__name__ or state.get("format") != self._FORMAT:
            raise CheckpointError(
                f"checkpoint of {state['tuner']!r} format {state.get('format')!r} cannot be loaded into "
                f"{type(self).__name__} (format {self._FORMAT})"
            )
        if state["search_space"] is None:
            self._choices, self._list, self._size = None, [], 0
        else:
            self.update_search_space(state["search_space"])
        self.optimize_mode = state["optimize_mode"]
        rng = np.random.default_rng()
        rng.bit_generator.state = state["rng"]
        self._rng = rng
        self._seen = {arch_tuple(a) for a in state["seen"]}
        self._pending = {hashable_id(pid): arch_tuple(a) for pid, a in state["pending"]}
        self._load_state(state["state"])

    def _state(self) -> dict:
        """Subclass hook: JSON-able learnt state."""
        return {}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        """Subclass hook: restore :meth:`_state`."""


_ArchTuner = ArchTuner  # the old private name, kept for existing subclasses


def arch_json(arch: Arch) -> list[list[int]]:
    """An architecture tuple as JSON-able lists (for checkpoints)."""
    return [list(v) for v in arch]


def arch_tuple(arch: Iterable[Iterable[int]]) -> Arch:
    """An architecture read back from JSON (:func:`arch_json`) as the hashable tuple form."""
    return tuple(tuple(int(i) for i in v) for v in arch)


def hashable_id(pid: Any) -> Any:
    """A parameter id read back from JSON, hashable again (JSON turns tuple ids into lists)."""
    return tuple(hashable_id(p) for p in pid) if isinstance(pid, list) else pid


def positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """``value`` as an int when it is an integer ``>= minimum`` (a tuner argument's check).

    Raises:
        ConfigTypeError: not an integer (a bool is not one; a ``TypeError`` too).
        ConfigError: below ``minimum`` (the message names ``name`` and the value).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigTypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


# the old private names, kept for existing callers
_arch_json, _arch_tuple, _pid = arch_json, arch_tuple, hashable_id
