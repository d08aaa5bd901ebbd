"""FairNAS' strict-fairness sampling (Chu et al. 2019): every candidate trained once per optimizer step."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from raynas.nas.mutables import LayerChoice
from raynas.nas.random import RandomMutator

__all__ = ["FairMutator"]


class FairMutator(RandomMutator):
    """Strict-fairness sampling (FairNAS, Chu et al. 2019): paths come in groups of ``m`` (the
    largest LayerChoice's number of candidates) in which every LayerChoice runs each of its
    candidates once (a fresh random permutation per group; a choice with fewer candidates repeats
    random ones). InputChoices are sampled uniformly per path.

    The trainer reads :attr:`paths_per_step` and accumulates the gradients of a whole group
    before one optimizer step, so every candidate is updated at every step.

    Args:
        model: the model holding the mutables.
        seed: seeds the mutator's RNG; its state (and any paths still queued) travel in
            ``state_dict()``.
    """

    def __init__(self, model: nn.Module, *, seed: int | None = None):
        super().__init__(model, seed=seed)
        layer_choices = [m for m in self.choice_mutables.values() if isinstance(m, LayerChoice)]
        self.paths_per_step = max((m.length for m in layer_choices), default=1)
        self._queue: list[dict[str, torch.Tensor]] = []

    def _group(self) -> list[dict[str, torch.Tensor]]:
        m = self.paths_per_step
        group = [super(FairMutator, self).sample_search() for _ in range(m)]
        for key, mutable in self.choice_mutables.items():
            if not isinstance(mutable, LayerChoice):
                continue
            order = list(self._rng.permutation(mutable.length))
            while len(order) < m:
                order.append(int(self._rng.integers(mutable.length)))
            for path, index in zip(group, order):
                mask = torch.zeros(mutable.length, dtype=torch.bool)
                mask[int(index)] = True
                path[key] = mask
        return group

    def sample_search(self) -> dict[str, torch.Tensor]:
        if not self._queue:
            self._queue = self._group()
        return self._queue.pop(0)

    def get_extra_state(self) -> Any:
        queue = [{k: v.tolist() for k, v in path.items()} for path in self._queue]
        return {"rng": self._rng.bit_generator.state, "queue": queue}

    def set_extra_state(self, state: Any) -> None:
        self._rng.bit_generator.state = state["rng"]
        self._queue = [
            {k: torch.tensor(v, dtype=torch.bool) for k, v in path.items()} for path in state.get("queue", [])
        ]
