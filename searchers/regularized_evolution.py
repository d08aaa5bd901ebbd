"""RegularizedEvolutionTuner: aging evolution (Real et al. 2019), asynchronous."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from searchers.arch_tuner import ArchTuner
from searchers.base import NoMoreTrialError
from searchers.checks import check_optimize_mode, positive_int
from searchers.codec import arch_json, arch_tuple, hashable_id
from searchers.errors import ConfigError
from searchers.space import choice_size, neighbour_choice

__all__ = ["RegularizedEvolutionTuner"]


class RegularizedEvolutionTuner(ArchTuner):
    """Aging (regularized) evolution, as NNI's tuner of the same name, without repeats.

    The first ``population_size`` proposals are random (a failed one is replaced by another random
    proposal). Every later proposal runs a tournament: ``sample_size`` members of the population
    (the latest ``population_size`` results, drawn without replacement), and the best one's
    child differs from it in exactly one key (another candidate for a layer choice; one candidate
    toggled for ``n_chosen=None``; one chosen candidate swapped for an unchosen one for
    ``n_chosen=k``, so indices never repeat and the count stays exact). Each result joins the
    population and pushes the oldest out.

    Asynchronous rule: proposals never wait for results. Until the first result arrives, extra
    proposals are random. A child that was proposed before is redrawn (new tournament), up to
    100 times, then a random new architecture is proposed instead; NoMoreTrialError only once
    the space is exhausted.

    Args:
        optimize_mode: ``"maximize"`` or ``"minimize"``.
        seed: seed of the tuner's ``numpy.random.Generator``.
        population_size: size of the initial random population and of the aging population.
        sample_size: tournament size.
    """

    _TRIES = 100

    def __init__(
        self,
        *,
        optimize_mode: str,
        seed: int | None = None,
        population_size: int = 100,
        sample_size: int = 25,
    ) -> None:
        super().__init__(seed=seed, optimize_mode=check_optimize_mode(optimize_mode))
        self.population_size = positive_int("population_size", population_size)
        self.sample_size = positive_int("sample_size", sample_size)
        if self.sample_size > self.population_size:
            raise ConfigError(
                f"sample_size must be <= population_size={self.population_size}, got {self.sample_size}"
            )
        self._reset()

    def _reset(self) -> None:
        self._initial_left = self.population_size
        self._initial_ids: set = set()
        self._population: deque = deque()  # (arch, score), oldest first

    def generate_parameters(self, parameter_id: Any, **kwargs: Any) -> dict:
        """Propose a random initial member or the mutated winner of a tournament.

        Args:
            parameter_id: the trial's id.
            **kwargs: ignored.

        Returns:
            ``{key: {"_value": ..., "_idx": ...}}``.

        Raises:
            NoMoreTrialError: every architecture of the space has been seen.
        """
        self._need_space()
        arch = None
        initial = self._initial_left > 0
        if not initial and self._population:
            arch = self._evolve()
        if arch is None:
            arch = self._random_unseen()
        if arch is None:
            raise NoMoreTrialError(f"all {self._size} architectures of the search space have been proposed")
        if initial:
            self._initial_left -= 1
            self._initial_ids.add(parameter_id)
        return self._propose(parameter_id, arch)

    def _evolve(self) -> tuple | None:
        rng = self._rng
        movable = [i for i, c in enumerate(self._list) if choice_size(c) > 1]
        if not movable:
            return None
        population = list(self._population)
        k = min(self.sample_size, len(population))
        for _ in range(self._TRIES):
            sample = rng.choice(len(population), size=k, replace=False)
            winner = max((population[int(i)] for i in sample), key=lambda r: r[1])[0]
            key = movable[int(rng.integers(len(movable)))]
            child = list(winner)
            child[key] = neighbour_choice(self._list[key], winner[key], rng)
            child = tuple(child)
            if self._acceptable(child):
                return child
        return None

    def _on_result(self, parameter_id: Any, arch: tuple, score: float) -> None:
        self._initial_ids.discard(parameter_id)
        self._population.append((arch, score))
        while len(self._population) > self.population_size:
            self._population.popleft()

    def _on_failure(self, parameter_id: Any, arch: tuple) -> None:
        if parameter_id in self._initial_ids:
            self._initial_ids.discard(parameter_id)
            self._initial_left += 1

    @property
    def population(self) -> list[dict]:
        """The aging population, oldest first: ``[{"parameters": ..., "value": ...}]``."""
        sign = -1.0 if self.optimize_mode == "minimize" else 1.0
        return [{"parameters": self._parameters(a), "value": sign * s} for a, s in self._population]

    def _state(self) -> dict:
        return {
            "initial_left": self._initial_left,
            "initial_ids": [pid for pid in self._pending if pid in self._initial_ids],
            "population": [[arch_json(a), s] for a, s in self._population],
        }

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self._initial_left = int(state["initial_left"])
        self._initial_ids = {hashable_id(p) for p in state["initial_ids"]}
        self._population = deque((arch_tuple(a), float(s)) for a, s in state["population"])
