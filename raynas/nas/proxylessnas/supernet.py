"""``supernet.algorithm: proxylessnas``: ProxylessNAS' binary gates as a :class:`~raynas.nas.LearnableMutator`.

:class:`ProxylessSupernetMutator` gives every LayerChoice the same :class:`~raynas.nas.proxylessnas.MixedOp`
that :class:`~raynas.nas.proxylessnas.ProxylessNasMutator` registers (architecture weights
``ap_path_alpha``, binary gates ``ap_path_wb``, the sampling, the ``full_v2`` gradient and the
chain rule to the architecture weights are that class's code), held by the mutator itself so that
they travel in its ``state_dict`` and are broadcast and checkpointed by ``raynas.train``:

- a **weight step** (:meth:`~ProxylessSupernetMutator.reset`) samples one op per LayerChoice from
  ``softmax(alpha)`` (NNI's ``binarize``; the draw comes from the mutator's own RNG, so
  ``sampling: shared`` gives every replica the same path) and runs only that op;
- an **architecture step** (:meth:`~ProxylessSupernetMutator.arch_step`, on a batch of the
  architecture half, every ``arch_every``-th call: NNI's ``grad_update_arch_param_every``) samples
  the gates, runs the model in ``full_v2`` mode (NNI's default ``binary_mode``), turns the gates'
  gradient into the architecture weights' gradient, averages that across replicas and takes an
  Adam step (NNI's: ``betas=(0, 0.999)``, ``eps=1e-8``);
- the **final architecture** keeps each LayerChoice's most probable op.

An InputChoice with ``n_chosen=None`` connects every input (search and final); ProxylessNAS has no
rule for one with ``n_chosen`` set, so such a space is refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from raynas.nas.learnable import Criterion, LearnableMutator, Reduce, grads_of
from raynas.nas.mutables import InputChoice, LayerChoice
from raynas.nas.proxylessnas.mutator import MixedOp
from searchers.errors import ConfigError

__all__ = ["ProxylessSupernetMutator"]


class ProxylessSupernetMutator(LearnableMutator):
    """ProxylessNAS (binary gates, ``full_v2``) for ``raynas.train`` (``supernet.algorithm: proxylessnas``).

    Args:
        model: the supernet.
        lr: Adam learning rate of the architecture weights (NNI's ``arch_optim_lr``).
        weight_decay: their weight decay (NNI's ``arch_weight_decay``).
        arch_every: :meth:`arch_step` updates the weights on every ``arch_every``-th call (NNI's
            ``grad_update_arch_param_every``); the other calls do nothing.
        init_ratio: standard deviation of the normal initial architecture weights (NNI's
            ``arch_init_ratio``).
        seed: seeds the mutator's own RNG (initial weights and every draw). ``None``: torch's RNG.

    The binary gates ``ap_path_wb`` hold the one-hot sample during an architecture step only and
    are zeros between steps, so replicas that draw their own paths (``sampling: independent``)
    still hold identical mutator state.

    Raises:
        ConfigError: a setting breaks its rule, or an InputChoice has ``n_chosen`` set.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        arch_every: int = 5,
        init_ratio: float = 1e-3,
        seed: int | None = None,
    ):
        super().__init__(model)
        if isinstance(arch_every, bool) or not isinstance(arch_every, int) or arch_every < 1:
            raise ConfigError(f"proxylessnas arch_every must be an integer >= 1, got {arch_every!r}")
        self.arch_every = arch_every
        self._rng = np.random.default_rng(seed) if seed is not None else None
        self.keys: list[str] = []
        self.mixed_ops = nn.ModuleList()
        for mutable in self.mutables:
            if isinstance(mutable, LayerChoice):
                self.keys.append(mutable.key)
                self.mixed_ops.append(MixedOp(mutable))
            elif isinstance(mutable, InputChoice) and mutable.n_chosen is not None:
                raise ConfigError(
                    "supernet.algorithm 'proxylessnas' learns LayerChoices only and connects every input of "
                    f"an InputChoice, so n_chosen must be None; InputChoice {mutable.key!r} has "
                    f"n_chosen={mutable.n_chosen!r}"
                )
        for op in self.mixed_ops:
            op.ap_path_alpha.data.copy_(self._normal(op.n_choices, init_ratio))
        self.arch_optimizer = torch.optim.Adam(
            self.arch_parameters() or [torch.zeros(1)], lr, weight_decay=weight_decay, betas=(0.0, 0.999), eps=1e-8
        )
        self._calls = 0
        self._arch_forward = False

    def _normal(self, n: int, std: float) -> torch.Tensor:
        if self._rng is None:
            return torch.empty(n).normal_(0, std)  # NNI: param.data.normal_(0, init_ratio)
        return torch.tensor(self._rng.normal(0.0, std, n), dtype=torch.float32)

    def _draw(self, probs: torch.Tensor) -> int:
        if self._rng is None:
            return int(torch.multinomial(probs, 1)[0])
        p = probs.detach().double().cpu().numpy()
        return int(self._rng.choice(len(p), p=p / p.sum()))

    def _pairs(self) -> list[tuple[LayerChoice, MixedOp]]:
        choices = self.parsed.choices
        return [(choices[key], op) for key, op in zip(self.keys, self.mixed_ops)]

    def arch_parameters(self) -> list[nn.Parameter]:
        """Every LayerChoice's ``ap_path_alpha`` (they keep ``requires_grad=False`` outside a step)."""
        return [op.ap_path_alpha for op in self.mixed_ops]

    # -- decisions --------------------------------------------------------------------------

    def _all_inputs(self) -> dict[str, torch.Tensor]:
        return {
            key: torch.ones(m.n_candidates, dtype=torch.bool)
            for key, m in self.parsed.choices.items()
            if isinstance(m, InputChoice)
        }

    def sample_search(self) -> dict[str, torch.Tensor]:
        """Binarize every LayerChoice (one op drawn from ``softmax(alpha)``): one-hot masks."""
        out = self._all_inputs()
        for mutable, op in self._pairs():
            op.binarize(mutable, self._draw)
            if not self._arch_forward:
                op.ap_path_wb.data.zero_()  # gates live for an architecture step only (see the class)
            out[mutable.key] = F.one_hot(torch.tensor(op.active_op_index), len(mutable)).bool()
        return out

    def sample_final(self) -> dict[str, torch.Tensor]:
        """Every LayerChoice's most probable op; every input of an InputChoice."""
        out = self._all_inputs()
        for mutable, op in self._pairs():
            out[mutable.key] = F.one_hot(torch.tensor(op.chosen_index[0]), len(mutable)).bool()
        return out

    def on_forward_layer_choice(self, mutable: LayerChoice, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        if not self._arch_forward:
            return super().on_forward_layer_choice(mutable, *args, **kwargs)
        mask = self._plan_for(mutable.key)[0]
        return self.mixed_ops[self.keys.index(mutable.key)](mutable, *args, **kwargs), mask

    # -- the architecture step --------------------------------------------------------------

    def arch_step(
        self,
        arch_batch: tuple[torch.Tensor, torch.Tensor],
        *,
        train_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
        criterion: Criterion | None = None,
        reduce: Reduce | None = None,
        lr: float | None = None,
        weight_decay: float = 0.0,
    ) -> dict[str, float]:
        """On every ``arch_every``-th call: one ProxylessNAS gradient step on ``arch_batch``
        (see the module docstring); the other calls return ``{}``.

        Returns:
            ``{"arch_loss": loss on the architecture batch}`` (this replica's) when it stepped.
        """
        self._calls += 1
        if self._calls % self.arch_every != 0:
            return {}
        criterion = criterion or nn.functional.cross_entropy
        pairs = self._pairs()
        gates = [op.ap_path_wb for _, op in pairs]
        alphas = self.arch_parameters()
        previous = MixedOp.forward_mode
        MixedOp.forward_mode = "full_v2"
        self._arch_forward = True
        for _, op in pairs:
            op.to_requires_grad()
        try:
            self.reset()
            x, y = arch_batch
            loss = criterion(self.model(x), y)
            if gates:
                grads = torch.autograd.grad(loss, gates, allow_unused=True)
                for gate, grad in zip(gates, grads):
                    gate.grad = grad
                self.arch_optimizer.zero_grad(set_to_none=True)
                for mutable, op in pairs:
                    op.set_arch_param_grad(mutable)  # NNI's chain rule; None for an active zero layer
                if reduce is not None:
                    reduce(grads_of(alphas))
                self.arch_optimizer.step()
        finally:
            MixedOp.forward_mode = previous
            self._arch_forward = False
            for _, op in pairs:
                op.to_disable_grad()
                op.ap_path_wb.grad = None
                op.ap_path_wb.data.zero_()
        return {"arch_loss": float(loss.detach())}

    def _extra_state(self) -> dict[str, Any]:
        return {"rng": None if self._rng is None else self._rng.bit_generator.state, "calls": self._calls}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        if state.get("rng") is not None and self._rng is not None:
            self._rng.bit_generator.state = state["rng"]
        self._calls = int(state.get("calls", 0))
