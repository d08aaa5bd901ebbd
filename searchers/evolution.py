"""EvolutionTuner: SPOS-style evolution in generations, asynchronous."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from searchers.arch_tuner import ArchTuner
from searchers.base import NoMoreTrialError
from searchers.checks import check_optimize_mode, check_probability, positive_int
from searchers.codec import arch_json, arch_tuple
from searchers.errors import ConfigError
from searchers.space import sample_choice

__all__ = ["EvolutionTuner"]


_positive_int = positive_int  # the old private name (now searchers.checks.positive_int), kept for existing callers


class EvolutionTuner(ArchTuner):
    """Evolution as in SPOS (Guo et al. 2019), in generations of ``population_size``.

    Generation 0 is random. Every later generation is bred from the parents: the best
    ``num_select`` results received so far (over all generations): ``num_mutation`` children
    redraw each key of a random parent with probability ``mutation_prob``, ``num_crossover``
    children take each key from one of two random parents, and random architectures fill the
    generation up to ``population_size``. No architecture is proposed twice, and every one meets
    ``constraint`` when given (breeding retries up to ten times the wanted count).

    Asynchronous rule: proposals are handed out from the current generation; when it is used up,
    the next one is bred at once from the results received until then (trials still running are
    simply not parents yet, and with no result at all the generation is random). The tuner never
    waits, and a failed trial only means one result fewer.

    Args:
        optimize_mode: ``"maximize"`` or ``"minimize"``.
        seed: seed of the tuner's ``numpy.random.Generator``.
        population_size: proposals per generation.
        num_select: parents kept (top results).
        num_mutation: mutated children per generation.
        num_crossover: crossover children per generation.
        mutation_prob: per-key redraw probability of a mutation.
        max_generations: stop (NoMoreTrialError) after this many generations; ``None``: never.
        constraint: ``constraint(parameters) -> bool``; only architectures it accepts are proposed.
            Not part of the checkpoint: pass it again when rebuilding the tuner.
    """

    def __init__(
        self,
        *,
        optimize_mode: str,
        seed: int | None = None,
        population_size: int = 50,
        num_select: int = 10,
        num_mutation: int = 25,
        num_crossover: int = 25,
        mutation_prob: float = 0.1,
        max_generations: int | None = None,
        constraint: Callable[[dict], bool] | None = None,
    ) -> None:
        super().__init__(seed=seed, optimize_mode=check_optimize_mode(optimize_mode), constraint=constraint)
        self.population_size = positive_int("population_size", population_size)
        self.num_select = positive_int("num_select", num_select)
        self.num_mutation = positive_int("num_mutation", num_mutation, minimum=0)
        self.num_crossover = positive_int("num_crossover", num_crossover, minimum=0)
        if self.num_mutation + self.num_crossover > self.population_size:
            raise ConfigError(
                f"num_mutation + num_crossover must be <= population_size={self.population_size}, "
                f"got {self.num_mutation} + {self.num_crossover}"
            )
        self.mutation_prob = check_probability("mutation_prob", mutation_prob)
        if max_generations is not None:
            max_generations = positive_int("max_generations", max_generations)
        self.max_generations = max_generations
        self._reset()

    def _reset(self) -> None:
        self._queue: deque = deque()
        self._history: list[tuple[tuple, float]] = []  # (arch, score), in arrival order
        self._generation = 0  # generations bred so far

    # -- proposing -----------------------------------------------------------------------------

    def generate_parameters(self, parameter_id: Any, **kwargs: Any) -> dict:
        """Propose the next architecture of the current generation (breeding one when needed).

        Args:
            parameter_id: the trial's id.
            **kwargs: ignored.

        Returns:
            ``{key: {"_value": ..., "_idx": ...}}``.

        Raises:
            NoMoreTrialError: ``max_generations`` reached, or no new architecture can be found.
        """
        self._need_space()
        while True:
            while not self._queue:
                if self.max_generations is not None and self._generation >= self.max_generations:
                    raise NoMoreTrialError(f"all {self.max_generations} generations have been proposed")
                if not self._breed():
                    raise NoMoreTrialError("no architecture left that is new and meets the constraint")
            arch = self._queue.popleft()
            if arch not in self._seen:  # a foreign or imported result may have taken it meanwhile
                return self._propose(parameter_id, arch)

    def _parents(self) -> list[tuple]:
        ranked = sorted(range(len(self._history)), key=lambda i: -self._history[i][1])  # stable
        return [self._history[i][0] for i in ranked[: self.num_select]]

    def _breed(self) -> bool:
        """Fill the queue with the next generation; False if not a single architecture was found."""
        new: set = set()
        children: list = []

        def add(arch: tuple) -> None:
            if self._acceptable(arch, new):
                new.add(arch)
                children.append(arch)

        parents = self._parents() if self._generation > 0 else []
        if parents:
            rng = self._rng
            for wanted, make in ((self.num_mutation, self._mutant), (self.num_crossover, self._cross)):
                goal = len(children) + wanted
                for _ in range(10 * wanted):
                    if len(children) >= goal:
                        break
                    add(make(parents, rng))
        while len(children) < self.population_size:
            arch = self._random_unseen(new)
            if arch is None:
                break
            new.add(arch)
            children.append(arch)
        self._generation += 1
        self._queue.extend(children)
        return bool(children)

    def _mutant(self, parents: list, rng) -> tuple:
        parent = parents[int(rng.integers(len(parents)))]
        return tuple(
            sample_choice(c, rng) if rng.random() < self.mutation_prob else v for c, v in zip(self._list, parent)
        )

    def _cross(self, parents: list, rng) -> tuple:
        i, j = rng.choice(len(parents), size=2, replace=len(parents) < 2)
        a, b = parents[int(i)], parents[int(j)]
        return tuple(x if rng.random() < 0.5 else y for x, y in zip(a, b))

    # -- results and state ---------------------------------------------------------------------

    def _on_result(self, parameter_id: Any, arch: tuple, score: float) -> None:
        self._history.append((arch, score))

    @property
    def population(self) -> list[dict]:
        """Results received so far, best first: ``[{"parameters": ..., "value": ...}]``."""
        sign = -1.0 if self.optimize_mode == "minimize" else 1.0
        ranked = sorted(self._history, key=lambda r: -r[1])
        return [{"parameters": self._parameters(a), "value": sign * s} for a, s in ranked]

    def _state(self) -> dict:
        return {
            "queue": [arch_json(a) for a in self._queue],
            "history": [[arch_json(a), s] for a, s in self._history],
            "generation": self._generation,
        }

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self._queue = deque(arch_tuple(a) for a in state["queue"])
        self._history = [(arch_tuple(a), float(s)) for a, s in state["history"]]
        self._generation = int(state["generation"])
