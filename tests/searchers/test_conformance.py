"""The conformance suite (searchers.testing) against the shipped tuners and a user-style tuner."""

from __future__ import annotations

from typing import Any

import pytest

from searchers import (
    EvolutionTuner,
    NoMoreTrialError,
    RandomTuner,
    RegularizedEvolutionTuner,
    Tuner,
    canonical_hash,
    enumerate_architectures,
    from_index_form,
    parse_search_space,
    space_size,
)
from searchers.testing import TunerConformance

SHIPPED = {
    "random": lambda seed: RandomTuner(seed=seed),
    "evolution": lambda seed: EvolutionTuner(optimize_mode="maximize", seed=seed),
    "evolution-small": lambda seed: EvolutionTuner(
        optimize_mode="minimize", seed=seed, population_size=8, num_select=3, num_mutation=3, num_crossover=3
    ),
    "regularized": lambda seed: RegularizedEvolutionTuner(optimize_mode="maximize", seed=seed),
    "regularized-small": lambda seed: RegularizedEvolutionTuner(
        optimize_mode="minimize", seed=seed, population_size=6, sample_size=3
    ),
}


class TestShippedTuners(TunerConformance):
    @pytest.fixture(params=sorted(SHIPPED))
    def tuner_factory(self, request):
        return SHIPPED[request.param]


class GridTuner(Tuner):
    """What a user writes: walks the space in enumeration order, from the public helpers only."""

    def __init__(self, *, seed: int | None = None) -> None:
        self.space: dict | None = None
        self.position = 0
        self.results: list[list] = []
        self.seen: set[str] = set()

    def update_search_space(self, search_space):
        parse_search_space(search_space)  # validates
        self.space = dict(search_space)
        self.position = 0
        self.seen = set()

    def generate_parameters(self, parameter_id: Any, **kwargs: Any) -> dict:
        grid = enumerate_architectures(self.space)
        for i, arch in enumerate(grid):
            if i >= self.position and canonical_hash(arch, self.space) not in self.seen:
                self.position = i + 1
                self.seen.add(canonical_hash(arch, self.space))
                return from_index_form(arch, self.space)
        raise NoMoreTrialError(f"grid of {space_size(self.space)} exhausted")

    def receive_trial_result(self, parameter_id, parameters, value, **kwargs):
        self.seen.add(canonical_hash(parameters, self.space))
        self.results.append([parameters, value])

    def import_data(self, data):
        for record in data:
            self.receive_trial_result(None, record["parameter"], record["value"])

    def save_checkpoint(self) -> dict:
        return {"space": self.space, "position": self.position, "results": self.results, "seen": sorted(self.seen)}

    def load_checkpoint(self, state):
        self.space, self.position, self.results = state["space"], state["position"], state["results"]
        self.seen = set(state["seen"])


class TestUserStyleTuner(TunerConformance):
    @pytest.fixture
    def tuner_factory(self):
        return lambda seed: GridTuner(seed=seed)
