"""``DartsMutator``: differentiable architecture search (Liu et al. 2019) on float decisions.

One architecture parameter vector ``alpha`` per key (zeros at the start: uniform weights):

- a **LayerChoice** runs every candidate weighted by ``softmax(alpha)``; :meth:`sample_final`
  keeps the argmax;
- an **InputChoice with** ``n_chosen=k`` weights its inputs by ``softmax(alpha)``; the final
  architecture keeps the ``k`` largest (ties: the lower index);
- an **InputChoice with** ``n_chosen=None`` ("any number, none included") gates each input on its
  own with ``sigmoid(alpha_i)``, i.e. a softmax over ``{input i, none}`` with the 'none' logit
  fixed at 0; the final architecture keeps exactly the inputs whose gate beats 'none'
  (``alpha_i > 0``, weight > 0.5). At the start (alpha = 0) the gates tie and nothing is kept;
  an empty selection is a valid architecture for ``n_chosen=None``.

``sample_search()`` returns those float weights with their graph, so a loss computed under them
has a gradient in ``alpha``. :meth:`DartsMutator.arch_step` is one DARTS architecture step
(Adam on ``alpha``, on a batch the weights never train on): first order by default; with
``order=2`` the unrolled (second-order) approximation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from raynas.nas.learnable import Criterion, LearnableMutator, Reduce, grads_of
from raynas.nas.mutables import InputChoice, LayerChoice

__all__ = ["DartsMutator", "DartsConfigError"]


class DartsConfigError(ValueError):
    """A DARTS setting breaks its rule (the message names the setting and the value)."""


def _check_number(name: str, value: Any, *, minimum: float, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DartsConfigError(f"DartsMutator {name} must be a number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise DartsConfigError(f"DartsMutator {name} must be {'>' if strict else '>='} {minimum}, got {value!r}")
    return float(value)


class DartsMutator(LearnableMutator):
    """Softmax-weighted candidates during search, argmax / top-k for the final architecture.

    Args:
        model: the model holding the mutables.
        lr: Adam learning rate of the architecture parameters.
        betas: Adam betas (DARTS: ``(0.5, 0.999)``).
        weight_decay: L2 weight decay of the architecture parameters.
        order: 1 (first-order DARTS) or 2 (unrolled second-order approximation).
        init_std: standard deviation of the initial alphas (0.0: zeros, uniform weights).
        seed: seeds the mutator's RNG (used for ``init_std`` noise only; DARTS draws nothing
            else). Its state travels in ``state_dict()``.

    Attributes:
        arch_optimizer: the Adam optimizer over :meth:`arch_parameters`.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        lr: float = 3e-3,
        betas: tuple[float, float] = (0.5, 0.999),
        weight_decay: float = 1e-3,
        order: int = 1,
        init_std: float = 0.0,
        seed: int | None = None,
    ):
        super().__init__(model)
        _check_number("lr", lr, minimum=0.0, strict=True)
        _check_number("weight_decay", weight_decay, minimum=0.0)
        _check_number("init_std", init_std, minimum=0.0)
        if order not in (1, 2) or isinstance(order, bool):
            raise DartsConfigError(f"DartsMutator order must be 1 or 2, got {order!r}")
        if (
            not isinstance(betas, (tuple, list))
            or len(betas) != 2
            or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas)
        ):
            raise DartsConfigError(f"DartsMutator betas must be two numbers in [0, 1), got {betas!r}")
        self.order = order
        self._rng = np.random.default_rng(seed)
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
        #: (key, number of candidates, n_chosen or -1 for a LayerChoice), one per key, parse order
        self._specs: list[tuple[str, int, int | None]] = [
            (m.key, m.length, -1 if isinstance(m, LayerChoice) else m.n_chosen)
            for m in self.mutables
            if isinstance(m, (LayerChoice, InputChoice))
        ]
        alphas = []
        for _key, n, _k in self._specs:
            init = self._rng.normal(0.0, init_std, n) if init_std > 0 else np.zeros(n)
            alphas.append(nn.Parameter(torch.tensor(init, dtype=torch.float32, device=device)))
        #: one architecture parameter vector per key, in parse order (``self.alpha(key)``).
        self.alphas = nn.ParameterList(alphas)
        self._index = {key: i for i, (key, _n, _k) in enumerate(self._specs)}
        self.arch_optimizer = torch.optim.Adam(
            self.arch_parameters(), lr=float(lr), betas=tuple(float(b) for b in betas), weight_decay=float(weight_decay)
        )

    # -- decisions --------------------------------------------------------------------------

    def alpha(self, key: str) -> nn.Parameter:
        """The architecture parameters of ``key``.

        Raises:
            KeyError: no choice has that key.
        """
        try:
            return self.alphas[self._index[key]]
        except KeyError:
            raise KeyError(f"no choice with key {key!r} (keys: {', '.join(self._index)})") from None

    def _weights(self, alpha: torch.Tensor, n_chosen: int | None) -> torch.Tensor:
        if n_chosen is None:
            return torch.sigmoid(alpha)
        if n_chosen == 0:
            return torch.zeros_like(alpha)
        return torch.softmax(alpha, dim=-1)

    def sample_search(self) -> dict[str, torch.Tensor]:
        return {key: self._weights(a, k) for (key, _n, k), a in zip(self._specs, self.alphas)}

    def sample_final(self) -> dict[str, torch.Tensor]:
        out = {}
        for (key, n, k), a in zip(self._specs, self.alphas):
            values = a.detach().cpu().numpy()
            mask = np.zeros(n, dtype=bool)
            if k is None:
                mask = values > 0.0
            elif k == -1:
                mask[int(np.argmax(values))] = True
            elif k > 0:
                mask[np.argsort(-values, kind="stable")[:k]] = True
            out[key] = torch.from_numpy(np.asarray(mask, dtype=bool))
        return out

    def probabilities(self) -> dict[str, list[float]]:
        """The search weights now, ``{key: list of floats}`` (softmax, or sigmoid gates)."""
        with torch.no_grad():
            return {k: v.cpu().tolist() for k, v in self.sample_search().items()}

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
        """One DARTS architecture step: the gradient of the architecture-batch loss in alpha
        (first order: at the current weights; second order: at the weights after a virtual SGD
        step on ``train_batch``, minus the finite-difference Hessian-vector term), averaged
        across replicas by ``reduce``, then an Adam step on alpha.

        The model's weights are left as they were (second order restores them), their
        ``.grad`` untouched; BatchNorm running statistics see the extra forward passes.

        Returns:
            ``{"arch_loss": loss on the architecture batch}`` (this replica's).

        Raises:
            ValueError: ``order=2`` without ``train_batch`` or ``lr``.
        """
        criterion = criterion or nn.functional.cross_entropy
        model = self.__dict__["model"]
        alphas = list(self.alphas)
        self.arch_optimizer.zero_grad(set_to_none=True)
        if self.order == 1:
            self.reset()
            x, y = arch_batch
            loss = criterion(model(x), y)
            grads = torch.autograd.grad(loss, alphas, allow_unused=True)
        else:
            if train_batch is None or lr is None:
                raise ValueError("second-order DARTS (order=2) needs train_batch and lr for the virtual step")
            loss, grads = self._unrolled_grads(model, arch_batch, train_batch, criterion, reduce, float(lr), weight_decay)
        for a, g in zip(alphas, grads):
            a.grad = g.detach().clone() if g is not None else torch.zeros_like(a)
        if reduce is not None:
            reduce(grads_of(alphas))
        self.arch_optimizer.step()
        return {"arch_loss": float(loss.detach())}

    def _unrolled_grads(
        self,
        model: nn.Module,
        arch_batch: tuple[torch.Tensor, torch.Tensor],
        train_batch: tuple[torch.Tensor, torch.Tensor],
        criterion: Criterion,
        reduce: Reduce | None,
        lr: float,
        weight_decay: float,
    ) -> tuple[torch.Tensor, Sequence[torch.Tensor]]:
        alphas = list(self.alphas)
        params = [p for p in model.parameters() if p.requires_grad]
        backup = [p.detach().clone() for p in params]
        xt, yt = train_batch
        xa, ya = arch_batch

        def weight_grads(loss: torch.Tensor) -> list[torch.Tensor]:
            gs = torch.autograd.grad(loss, params, allow_unused=True)
            return [torch.zeros_like(p) if g is None else g for p, g in zip(params, gs)]

        try:
            # virtual step w' = w - lr * (dL_train/dw + wd * w), with the gradient averaged across
            # replicas so that every replica unrolls to the same w'
            self.weight_reset()
            gw = weight_grads(criterion(model(xt), yt))
            if reduce is not None:
                reduce(gw)
            with torch.no_grad():
                for p, g, b in zip(params, gw, backup):
                    p.copy_(b - lr * (g + weight_decay * b))
            # dL_arch(w', alpha) / d(alpha, w')
            self.reset()
            loss = criterion(model(xa), ya)
            both = torch.autograd.grad(loss, alphas + params, allow_unused=True)
            dalpha = [torch.zeros_like(a) if g is None else g for a, g in zip(alphas, both[: len(alphas)])]
            dw = [torch.zeros_like(p) if g is None else g for p, g in zip(params, both[len(alphas) :])]
            norm = torch.cat([g.reshape(-1) for g in dw]).norm() if dw else torch.zeros(())
            eps = 0.01 / max(float(norm), 1e-12)

            def alpha_grads_at(sign: float) -> list[torch.Tensor]:
                with torch.no_grad():
                    for p, b, d in zip(params, backup, dw):
                        p.copy_(b + sign * eps * d)
                self.reset()
                gs = torch.autograd.grad(criterion(model(xt), yt), alphas, allow_unused=True)
                return [torch.zeros_like(a) if g is None else g for a, g in zip(alphas, gs)]

            plus, minus = alpha_grads_at(1.0), alpha_grads_at(-1.0)
            grads = [d - lr * (gp - gm) / (2 * eps) for d, gp, gm in zip(dalpha, plus, minus)]
        finally:
            with torch.no_grad():
                for p, b in zip(params, backup):
                    p.copy_(b)
        return loss, grads

    # -- state ------------------------------------------------------------------------------

    def _extra_state(self) -> dict[str, Any]:
        return {"rng": self._rng.bit_generator.state}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        if "rng" in state:
            self._rng.bit_generator.state = state["rng"]
