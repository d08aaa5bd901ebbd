"""Second-order (unrolled) DARTS: the architecture gradient through a virtual weight step."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from raynas.nas.learnable import Criterion, LearnableMutator, Reduce

__all__ = ["unrolled_alpha_grads", "virtual_step_settings"]


def virtual_step_settings(
    optimizer: torch.optim.Optimizer, model: nn.Module
) -> tuple[float, float, dict[int, tuple[float, torch.Tensor]]]:
    """``(lr, weight_decay, {id(weight): (momentum, buffer)})`` of the weights' optimizer (its first
    group; the momentum buffers of the weights that have one)."""
    group = optimizer.param_groups[0]
    factor = float(group.get("momentum", 0.0) or 0.0)
    momentum = {}
    for p in model.parameters():
        buffer = optimizer.state.get(p, {}).get("momentum_buffer")
        if factor and buffer is not None:
            momentum[id(p)] = (factor, buffer)
    return group["lr"], group.get("weight_decay", 0.0), momentum


# one algorithm kept whole (virtual step, arch gradient, finite-difference Hessian term): ~50 lines of code
def unrolled_alpha_grads(
    mutator: LearnableMutator,
    arch_batch: tuple[torch.Tensor, torch.Tensor],
    train_batch: tuple[torch.Tensor, torch.Tensor],
    criterion: Criterion,
    reduce: Reduce | None,
    lr: float,
    weight_decay: float,
    momentum: dict[int, tuple[float, torch.Tensor]] | None = None,
) -> tuple[torch.Tensor, Sequence[torch.Tensor]]:
    """Second-order DARTS' architecture gradient, and the architecture loss at the virtual weights.

    The virtual step ``w' = w - lr * (momentum * buffer + dw + weight_decay * w)`` takes the
    training batch's weight gradient averaged by ``reduce`` (so every replica unrolls to the same
    ``w'``); the gradient is ``dL_arch(w', alpha)/dalpha - lr * H``, with the Hessian-vector term
    ``H`` by central finite differences of the training loss at ``w +- eps * dL_arch/dw'``
    (``eps = 0.01 / |dL_arch/dw'|``). The weights are restored before it returns.

    Args:
        mutator: the DARTS mutator (bound to the model).
        arch_batch: ``(x, y)`` of the architecture split.
        train_batch: ``(x, y)`` of the weights' split.
        criterion: the loss.
        reduce: averages tensors in place across replicas (``None``: alone).
        lr: the weights' learning rate.
        weight_decay: the weights' weight decay.
        momentum: ``{id(weight): (momentum, buffer)}`` of the weights' optimizer.
    """
    model = mutator.model
    alphas = mutator.arch_parameters()
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
        mutator.weight_reset()
        gw = weight_grads(criterion(model(xt), yt))
        if reduce is not None:
            reduce(gw)
        momentum = momentum or {}
        with torch.no_grad():
            for p, g, b in zip(params, gw, backup):
                if id(p) in momentum:
                    factor, buffer = momentum[id(p)]
                    g = g + factor * buffer
                p.copy_(b - lr * (g + weight_decay * b))
        # dL_arch(w', alpha) / d(alpha, w')
        mutator.reset()
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
            mutator.reset()
            gs = torch.autograd.grad(criterion(model(xt), yt), alphas, allow_unused=True)
            return [torch.zeros_like(a) if g is None else g for a, g in zip(alphas, gs)]

        plus, minus = alpha_grads_at(1.0), alpha_grads_at(-1.0)
        grads = [d - lr * (gp - gm) / (2 * eps) for d, gp, gm in zip(dalpha, plus, minus)]
    finally:
        with torch.no_grad():
            for p, b in zip(params, backup):
                p.copy_(b)
    return loss, grads
