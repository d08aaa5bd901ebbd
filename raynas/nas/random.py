"""``RandomMutator``: uniform random paths, reproducible under a seed (NNI's semantics)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from raynas.nas.mutables import InputChoice, LayerChoice
from raynas.nas.mutator import Mutator

__all__ = ["RandomMutator"]


class RandomMutator(Mutator):
    """Sample every choice uniformly at random.

    A LayerChoice gets a uniform one-hot mask; an InputChoice with ``n_chosen=None`` keeps each
    input with probability 1/2, otherwise a uniform subset of ``n_chosen`` inputs.

    Args:
        model: the model holding the mutables.
        seed: seeds the mutator's own RNG (``None``: fresh entropy). Its state travels in
            ``state_dict()``, so a checkpoint restores the same sequence of paths.
    """

    def __init__(self, model: nn.Module, *, seed: int | None = None):
        super().__init__(model)
        self._rng = np.random.default_rng(seed)
        # (key, number of candidates, n_chosen or -1 for a layer choice), one per key, parse order
        self._specs = [
            (m.key, m.length, -1 if isinstance(m, LayerChoice) else m.n_chosen)
            for m in self.mutables
            if isinstance(m, (LayerChoice, InputChoice))
        ]

    def sample_search(self) -> dict[str, torch.Tensor]:
        rng, result = self._rng, {}
        for key, n, n_chosen in self._specs:
            if n_chosen is None:  # any number: each candidate with probability 1/2
                mask = rng.random(n) < 0.5
            else:
                mask = np.zeros(n, dtype=bool)
                if n_chosen == -1:  # layer choice: uniform one-hot
                    mask[rng.integers(n)] = True
                else:  # a uniform subset of n_chosen candidates
                    mask[rng.choice(n, size=n_chosen, replace=False)] = True
            result[key] = torch.from_numpy(mask)
        return result

    def sample_final(self) -> dict[str, torch.Tensor]:
        return self.sample_search()

    def get_extra_state(self) -> Any:
        return {"rng": self._rng.bit_generator.state}

    def set_extra_state(self, state: Any) -> None:
        self._rng.bit_generator.state = state["rng"]
