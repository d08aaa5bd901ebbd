"""Learnable mutators: mutators that are models themselves, trained by their own optimizer.

A :class:`LearnableMutator` owns architecture parameters (DARTS' alphas, ENAS' LSTM controller)
and an optimizer over them. Training alternates two steps per batch pair:

- an **architecture step** (:meth:`LearnableMutator.arch_step`) on a batch of the *architecture
  split* (DARTS: the half of the training data the weights never see; ENAS: the controller's
  validation batches), which updates only the mutator's parameters;
- a **weight step**: ``with torch.no_grad(): mutator.reset()`` (the decision is a constant for
  the weights: detached softmax weights for DARTS, a sampled path for ENAS), then the usual
  forward, backward and optimizer step of the model's weights.

Data-parallel training passes a ``reduce`` callable to :meth:`~LearnableMutator.arch_step`: it
averages a list of tensors in place across replicas (an all-reduce). Every gradient of the
mutator's parameters goes through it before the optimizer step, and so does every statistic
that feeds its state (the ENAS baseline), so the architecture parameters stay bit-identical on
every replica after every step. The mutator's ``state_dict()`` holds its parameters and, as
extra state, its optimizer and RNG, so a supernet checkpoint resumes it exactly.

:class:`ArchTrainer` is a small in-process trainer for using a learnable mutator outside
``raynas.train`` (NNI's ``DartsTrainer`` / ``EnasTrainer``); ``raynas.train`` runs the same two
steps on its replicas.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from raynas._rules import check
from raynas.nas.mutator import Mutator
from searchers.errors import ConfigError, ConfigTypeError

__all__ = ["LearnableMutator", "ArchTrainer", "Reduce", "grads_of", "split_halves"]

#: ``reduce(tensors)``: average the tensors in place across replicas (identity when alone).
Reduce = Callable[[Sequence[torch.Tensor]], None]

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def grads_of(params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Each parameter's ``.grad``, with zeros (set on the parameter) where it has none.

    Every replica then reduces the same list of tensors, whichever parameters its last sample
    touched.
    """
    out = []
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        out.append(p.grad)
    return out


def split_halves(n: int) -> tuple[np.ndarray, np.ndarray]:
    """NNI's ``DartsTrainer`` split of ``range(n)`` (``indices[:n // 2]``, ``indices[n // 2:]``).

    Returns:
        ``(weight_half, arch_half)``: the weights train on the first, the mutator on the second
        (each shuffled every epoch).
    """
    half = n // 2
    return np.arange(half), np.arange(half, n)


class LearnableMutator(Mutator):
    """A mutator with trainable parameters and its own optimizer (``arch_optimizer``).

    Subclasses create their parameters and ``self.arch_optimizer`` in ``__init__`` (or define
    ``arch_optimizer`` as a property, as :class:`~raynas.nas.DartsMutator` does) and implement
    :meth:`arch_step`. The optimizer's state travels in ``state_dict()`` (extra state), next to
    whatever a subclass adds in :meth:`_extra_state` / :meth:`_load_extra_state`.
    """

    #: the exported architecture is a deterministic function of the mutator's state.
    learnable = True
    arch_optimizer: torch.optim.Optimizer

    def arch_parameters(self) -> list[nn.Parameter]:
        """The parameters :attr:`arch_optimizer` trains, in a fixed order."""
        return [p for p in self.parameters() if p.requires_grad]

    @abc.abstractmethod
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
        """One update of the mutator's parameters on a batch of the architecture split.

        Args:
            arch_batch: ``(x, y)`` of the architecture split (never seen by the weight step).
            train_batch: ``(x, y)`` of the weight step (second-order DARTS needs it).
            criterion: the loss ``f(logits, target)`` (default cross-entropy).
            reduce: averages tensors in place across replicas (``None``: one replica).
            lr: the weights' learning rate now (second-order DARTS' virtual step).
            weight_decay: the weights' weight decay (same use).

        Returns:
            Scalars to report (e.g. ``arch_loss``, ``reward``), local to this replica.
        """

    def weight_reset(self) -> None:
        """Decide the path of a weight step: :meth:`reset` without a gradient to the mutator."""
        with torch.no_grad():
            self.reset()

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`_extra_state` returned."""

    #: attributes that may hold an autograd graph: dropped when pickled or deep-copied.
    _transient: tuple[str, ...] = ()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        # the decision in force may carry a graph (DARTS' softmax weights): keep its values only
        state["_plans"] = {
            k: (mask.detach(), chosen, None if w is None else w.detach())
            for k, (mask, chosen, w) in self.__dict__.get("_plans", {}).items()
        }
        for name in self._transient:
            state[name] = None
        return state

    def get_extra_state(self) -> Any:
        # a copy: an optimizer's state_dict() shares its tensors, and another mutator loading
        # it would then step the very same moment tensors
        return {"arch_optimizer": copy.deepcopy(self.arch_optimizer.state_dict()), **self._extra_state()}

    def set_extra_state(self, state: Any) -> None:
        self.arch_optimizer.load_state_dict(copy.deepcopy(state["arch_optimizer"]))
        self._load_extra_state(state)


def _accuracy_count(logits: torch.Tensor, y: torch.Tensor) -> int:
    return int((logits.argmax(dim=-1) == y).sum()) if logits.dim() == 2 else 0


class ArchTrainer:
    """Train a supernet and a learnable mutator in this process (no Ray), alternating steps.

    Each step takes one batch of the weight half and one of the architecture half of the
    training data (NNI's ``DartsTrainer`` split, :func:`split_halves`):
    :meth:`LearnableMutator.arch_step` on the latter, then a weight step on the former.
    ``raynas.train`` does the same on its replicas; this class is for notebooks, tests and custom
    loops (NNI's ``DartsTrainer`` / ``EnasTrainer``).

    Args:
        model: the supernet (bound to ``mutator``).
        mutator: a :class:`LearnableMutator` bound to ``model``.
        optimizer: the optimizer of the model's weights.
        criterion: the loss (default cross-entropy).
        grad_clip: clip the weights' gradient norm to this value (``None``: no clipping).
        arch_warmup_steps: weight steps taken before the first architecture step.
    """

    def __init__(
        self,
        model: nn.Module,
        mutator: LearnableMutator,
        *,
        optimizer: torch.optim.Optimizer,
        criterion: Criterion | None = None,
        grad_clip: float | None = 5.0,
        arch_warmup_steps: int = 0,
    ):
        if not isinstance(mutator, LearnableMutator):
            raise ConfigTypeError(
                f"ArchTrainer needs a LearnableMutator (DartsMutator, EnasMutator), got {type(mutator).__name__}"
            )
        if mutator.model is not model:
            raise ConfigError("the mutator is not bound to this model; build the mutator on it first")
        check("arch_warmup_steps", arch_warmup_steps, "int", min=0)
        self.model = model
        self.mutator = mutator
        self.optimizer = optimizer
        self.criterion = criterion or nn.functional.cross_entropy
        self.grad_clip = grad_clip
        self.arch_warmup_steps = arch_warmup_steps
        self.steps = 0

    def step(
        self, train_batch: tuple[torch.Tensor, torch.Tensor], arch_batch: tuple[torch.Tensor, torch.Tensor]
    ) -> dict[str, float]:
        """One architecture step (after the warm-up) and one weight step.

        Returns:
            ``{"loss", "accuracy"}`` of the weight step, plus the architecture step's scalars.
        """
        self.model.train()
        report: dict[str, float] = {}
        if self.steps >= self.arch_warmup_steps:
            lr = self.optimizer.param_groups[0]["lr"]
            wd = self.optimizer.param_groups[0].get("weight_decay", 0.0)
            report.update(
                self.mutator.arch_step(
                    arch_batch, train_batch=train_batch, criterion=self.criterion, lr=lr, weight_decay=wd
                )
            )
        x, y = train_batch
        self.optimizer.zero_grad(set_to_none=True)
        self.mutator.weight_reset()
        out = self.model(x)
        loss = self.criterion(out, y)
        loss.backward()
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.grad is not None], self.grad_clip)
        self.optimizer.step()
        self.steps += 1
        report["loss"] = float(loss.detach())
        report["accuracy"] = _accuracy_count(out.detach(), y) / max(int(y.shape[0]), 1)
        return report

    def fit(self, dataset: Any, *, epochs: int, batch_size: int = 64, seed: int = 0) -> list[dict[str, float]]:
        """Train for ``epochs`` passes over the weight half of ``dataset`` (a TensorDataset or
        any indexable dataset of ``(x, y)``), the architecture half in step with it.

        Returns:
            One report per step (see :meth:`step`).
        """
        from torch.utils.data import default_collate

        n = len(dataset)
        w_idx, a_idx = split_halves(n)
        if len(w_idx) < batch_size:
            raise ConfigError(f"batch_size must be <= half the training set ({len(w_idx)}), got {batch_size!r}")

        def take(index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            x, y = default_collate([dataset[int(i)] for i in index])[:2]
            return x, y

        reports = []
        for epoch in range(epochs):
            rng = np.random.default_rng([seed, 0xDA7A, epoch])
            w, a = rng.permutation(w_idx), rng.permutation(a_idx)
            for s in range(len(w) // batch_size):
                part = slice(s * batch_size, (s + 1) * batch_size)
                reports.append(self.step(take(w[part]), take(a[part])))
        return reports
