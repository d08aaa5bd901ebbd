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

    def sample_search(self) -> dict[str, torch.Tensor]:
        result = {}
        for mutable in self.mutables:
            if isinstance(mutable, LayerChoice):
                mask = torch.zeros(mutable.length, dtype=torch.bool)
                mask[int(self._rng.integers(mutable.length))] = True
            elif isinstance(mutable, InputChoice):
                if mutable.n_chosen is None:
                    mask = torch.from_numpy(self._rng.integers(0, 2, size=mutable.n_candidates).astype(bool))
                else:
                    mask = torch.zeros(mutable.n_candidates, dtype=torch.bool)
                    mask[self._rng.choice(mutable.n_candidates, size=mutable.n_chosen, replace=False).tolist()] = True
            else:
                continue
            result[mutable.key] = mask
        return result

    def sample_final(self) -> dict[str, torch.Tensor]:
        return self.sample_search()

    def get_extra_state(self) -> Any:
        return {"rng": self._rng.bit_generator.state}

    def set_extra_state(self, state: Any) -> None:
        self._rng.bit_generator.state = state["rng"]
