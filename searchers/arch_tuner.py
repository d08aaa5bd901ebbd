"""``ArchTuner``: the base of the shipped tuners and of user tuners (torch-free).

It implements the :class:`searchers.base.Tuner` contract once for every tuner that proposes
architectures of a discrete space: the parsed space, a seeded RNG, the memory that keeps any
architecture from being proposed twice, results oriented by ``optimize_mode``, and JSON
checkpoints. A subclass only chooses the next architecture (see the class docstring).
"""

from __future__ import annotations

import abc
import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from searchers.base import Tuner
from searchers.checks import check_callable, check_optimize_mode, check_seed, metric_value
from searchers.codec import Arch, arch_json, arch_tuple, hashable_id
from searchers.errors import CheckpointError, ConfigKeyError, ConfigTypeError, SearchSpaceError
from searchers.space import (
    Choice,
    Selection,
    choice_parameter,
    choice_size,
    choice_values,
    parse_search_space,
    sample_choice,
    to_index_form,
)

__all__ = ["ArchTuner"]


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
        self.seed = check_seed(seed)
        self.constraint = check_callable("constraint", constraint, signature="(parameters) -> bool")
        self.optimize_mode = None if optimize_mode is None else check_optimize_mode(optimize_mode)
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

