"""``RandomMutator``: uniform random paths (NNI's ``nni.nas.pytorch.random.RandomMutator``).

Without ``seed=`` the draws come from torch's global RNG with the same torch calls, in the same
order, as NNI v1.9 (``torch.randint`` for a LayerChoice and for an InputChoice with
``n_chosen=None``, ``torch.randperm`` for ``n_chosen=k``), so ``torch.manual_seed(s)`` reproduces
a run, as NNI documents, and draws the same paths NNI would. With ``seed=`` the mutator owns a
numpy generator instead: the paths do not depend on (nor disturb) torch's global RNG, and the
generator's state travels in ``state_dict()`` and in a pickle (a Ray actor, a checkpoint).
"""

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
        seed: ``None`` (NNI's behaviour): draw from torch's global RNG, so ``torch.manual_seed``
            reproduces the paths. An int: the mutator's own RNG, independent of torch's; its
            state travels in ``state_dict()``, so a checkpoint restores the same sequence of paths.

    Attributes:
        seed: the seed given (``None``: torch's global RNG).
    """

    def __init__(self, model: nn.Module, *, seed: int | None = None):
        super().__init__(model)
        self.seed = seed
        self._own_rng: np.random.Generator | None = None if seed is None else np.random.default_rng(seed)
        # (key, number of candidates, n_chosen or -1 for a layer choice), one per key, parse order
        self._specs = [
            (m.key, m.length, -1 if isinstance(m, LayerChoice) else m.n_chosen)
            for m in self.mutables
            if isinstance(m, (LayerChoice, InputChoice))
        ]

    @property
    def _rng(self) -> np.random.Generator:
        """The numpy generator subclasses draw from (bins, permutations).

        Seeded: the mutator's own. Unseeded: created at the first use from torch's global RNG,
        so ``torch.manual_seed`` reproduces a subclass's extra draws as well.
        """
        if self._own_rng is None:
            self._own_rng = np.random.default_rng(int(torch.randint(2**62, (1,))))
        return self._own_rng

    def sample_search(self) -> dict[str, torch.Tensor]:
        if self.seed is None:
            return self._sample_torch()
        rng, result = self._own_rng, {}
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

    def _sample_torch(self) -> dict[str, torch.Tensor]:
        # NNI v1.9 random/mutator.py: the same torch calls, in the same order, on the global RNG
        result = {}
        for key, n, n_chosen in self._specs:
            if n_chosen == -1:
                index = torch.randint(high=n, size=(1,))
                result[key] = nn.functional.one_hot(index, num_classes=n).view(-1).bool()
            elif n_chosen is None:
                result[key] = torch.randint(high=2, size=(n,)).view(-1).bool()
            else:
                mask = torch.zeros(n, dtype=torch.bool)
                mask[torch.randperm(n)[:n_chosen]] = True
                result[key] = mask
        return result

    def sample_final(self) -> dict[str, torch.Tensor]:
        return self.sample_search()

    def get_extra_state(self) -> Any:
        # unseeded: the RNG is torch's global one, which is the caller's to save
        return {"rng": None if self._own_rng is None else self._own_rng.bit_generator.state}

    def set_extra_state(self, state: Any) -> None:
        if state.get("rng") is not None:
            if self._own_rng is None:
                self._own_rng = np.random.default_rng()
            self._own_rng.bit_generator.state = state["rng"]
