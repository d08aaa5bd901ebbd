"""``DartsMutator``: differentiable architecture search (Liu et al. 2019), as NNI v1.9's ``DartsMutator``.

NNI's semantics (``nni/nas/pytorch/darts/mutator.py``) are the default:

- **alphas**: ``mutator.choices`` is an ``nn.ParameterDict`` ``{LayerChoice key: alpha}``; each alpha
  has ``length + 1`` entries, the last one the "none" (zero) op, and starts as
  ``1e-3 * torch.randn`` (NNI's init; under ``seed=`` the mutator's own RNG draws it).
- **search** (:meth:`~DartsMutator.sample_search`): a LayerChoice runs every candidate weighted by
  ``softmax(alpha)[:-1]`` (the "none" weight is dropped: it scales the sum instead of adding a
  term); every InputChoice connects all its inputs (an all-true mask).
- **final** (:meth:`~DartsMutator.sample_final`): a LayerChoice keeps its strongest op (argmax of
  ``softmax(alpha)[:-1]``, "none" excluded); an InputChoice with ``n_chosen=k`` keeps the ``k`` inputs
  whose source edge has the strongest op (the max of that LayerChoice's weights; an input whose
  ``choose_from`` label is not a LayerChoice key weighs 0; ties: the lower index), and every
  LayerChoice of a dropped edge is marked all-false (it exports as ``[]``: NNI's pruned edge, which
  :func:`~raynas.nas.apply_fixed_architecture` removes, so the fixed model holds no dead weights);
  an InputChoice with ``n_chosen=None`` keeps every input.

raynas' variant, as an option: ``learn_inputs=True`` gives every InputChoice an alpha of its own
(``n_candidates`` entries, also in ``mutator.choices``): with ``n_chosen=k`` its inputs are weighted
by ``softmax(alpha)`` and the final architecture keeps the ``k`` largest; with ``n_chosen=None`` each
input is gated on its own by ``sigmoid(alpha_i)`` (a softmax over ``{input i, none}`` with the
"none" logit fixed at 0) and kept when its gate beats "none" (``alpha_i > 0``). Dropped edges'
LayerChoices are pruned as above.

``sample_search()`` returns the float weights with their graph, so a loss computed under them has
a gradient in the alphas. :meth:`DartsMutator.arch_step` is one DARTS architecture step (Adam on
the alphas, on a batch the weights never train on): first order by default; with ``order=2`` the
unrolled (second-order) approximation. NNI's own ``DartsTrainer`` keeps its optimizer outside the
mutator (over ``mutator.parameters()``); raynas' ``arch_optimizer`` is an extra.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from raynas.nas.darts.unrolled import unrolled_alpha_grads, virtual_step_settings
from raynas.nas.learnable import Criterion, LearnableMutator, Reduce, grads_of
from raynas.nas.mutables import InputChoice, LayerChoice
from searchers.errors import ConfigError

__all__ = ["DartsMutator", "DartsConfigError"]

_logger = logging.getLogger(__name__)


class DartsConfigError(ConfigError):
    """A DARTS setting breaks its rule (the message names the setting and the value)."""


def _check_number(name: str, value: Any, *, minimum: float, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DartsConfigError(f"DartsMutator {name} must be a number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise DartsConfigError(f"DartsMutator {name} must be {'>' if strict else '>='} {minimum}, got {value!r}")
    return float(value)


class DartsMutator(LearnableMutator):
    """NNI's DARTS mutator: softmax-weighted ops (with a "none" op) during search, strongest ops
    and the top-``n_chosen`` edges for the final architecture.

    Args:
        model: the model holding the mutables (NNI's signature: ``DartsMutator(model)``).
        lr: Adam learning rate of :attr:`arch_optimizer` (raynas' extra; NNI's trainer: 3e-4).
        betas: Adam betas (DARTS: ``(0.5, 0.999)``).
        weight_decay: L2 weight decay of the alphas (DARTS: 1e-3).
        order: 1 (first-order DARTS) or 2 (unrolled second-order approximation).
        init_std: standard deviation of the initial alphas (NNI: 1e-3; 0.0: zeros, uniform weights).
        learn_inputs: raynas' variant: InputChoices get alphas too (see the module docstring);
            ``False`` (NNI): InputChoices connect every input during search.
        seed: seeds the mutator's own RNG, which draws the initial alphas (DARTS draws nothing
            else); its state travels in ``state_dict()``. ``None``: the torch global RNG, as NNI.

    Attributes:
        choices: ``nn.ParameterDict`` ``{key: alpha}`` (NNI's attribute: LayerChoice keys; with
            ``learn_inputs`` InputChoice keys too).
        arch_optimizer: the Adam optimizer over :meth:`arch_parameters`.

    Raises:
        DartsConfigError: a setting breaks its rule, or a key cannot name an ``nn.ParameterDict``
            entry (a key with a ``.``, as in NNI).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        lr: float = 3e-3,
        betas: tuple[float, float] = (0.5, 0.999),
        weight_decay: float = 1e-3,
        order: int = 1,
        init_std: float = 1e-3,
        learn_inputs: bool = False,
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
        if not isinstance(learn_inputs, bool):
            raise DartsConfigError(f"DartsMutator learn_inputs must be True or False, got {learn_inputs!r}")
        self.order = order
        self.learn_inputs = learn_inputs
        self._adam = {"lr": float(lr), "betas": tuple(float(b) for b in betas), "weight_decay": float(weight_decay)}
        self._seeded = seed is not None
        self._rng = np.random.default_rng(seed)
        self._warned: set[tuple[str, str]] = set()
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
        self.choices = nn.ParameterDict()
        for mutable in self.mutables:
            if isinstance(mutable, LayerChoice):
                n = len(mutable) + 1  # the last entry is the "none" op
            elif isinstance(mutable, InputChoice) and learn_inputs:
                n = mutable.n_candidates
            else:
                continue
            alpha = nn.Parameter(self._initial(n, float(init_std)).to(device))
            try:
                self.choices[mutable.key] = alpha
            except KeyError as exc:
                raise DartsConfigError(
                    f"DartsMutator keeps one alpha per key in an nn.ParameterDict (mutator.choices); "
                    f"key {mutable.key!r} cannot name an entry: {exc.args[0] if exc.args else exc}"
                ) from None
        self.__dict__["_arch_optimizer"] = None

    def _initial(self, n: int, std: float) -> torch.Tensor:
        if std == 0.0:
            return torch.zeros(n)
        if self._seeded:
            return torch.tensor(self._rng.normal(0.0, std, n), dtype=torch.float32)
        return std * torch.randn(n)  # NNI: 1e-3 * torch.randn(length + 1), the torch global RNG

    @property
    def arch_optimizer(self) -> torch.optim.Optimizer:  # type: ignore[override]
        """Adam over :meth:`arch_parameters`, rebuilt (fresh moments) if a subclass replaced an alpha
        in :attr:`choices` after ``__init__`` (as NNI's P-DARTS mutator does)."""
        params = self.arch_parameters()
        opt = self.__dict__.get("_arch_optimizer")
        if opt is None or [id(p) for p in opt.param_groups[0]["params"]] != [id(p) for p in params]:
            opt = torch.optim.Adam(params, **self._adam) if params else torch.optim.Adam([torch.zeros(1)], **self._adam)
            self.__dict__["_arch_optimizer"] = opt
        return opt

    def configure_arch_optimizer(
        self, *, lr: float, betas: tuple[float, float] = (0.5, 0.999), weight_decay: float = 1e-3
    ) -> torch.optim.Optimizer:
        """Replace :attr:`arch_optimizer` by a fresh Adam with these settings (what
        :class:`~raynas.nas.darts.DartsTrainer` does with its ``arc_learning_rate``, as NNI's
        trainer builds its own Adam over ``mutator.parameters()``).

        Raises:
            DartsConfigError: a setting breaks its rule.
        """
        _check_number("lr", lr, minimum=0.0, strict=True)
        _check_number("weight_decay", weight_decay, minimum=0.0)
        self._adam = {"lr": float(lr), "betas": tuple(float(b) for b in betas), "weight_decay": float(weight_decay)}
        self.__dict__["_arch_optimizer"] = None
        return self.arch_optimizer

    def device(self) -> torch.device | None:
        """The device of the alphas (NNI's ``DartsMutator.device()``); ``None`` without any."""
        for alpha in self.choices.values():
            return alpha.device
        return None

    # -- decisions --------------------------------------------------------------------------

    def alpha(self, key: str) -> nn.Parameter:
        """The alpha of ``key`` (``mutator.choices[key]``, with an error that lists the keys).

        Raises:
            KeyError: no alpha has that key.
        """
        if key in self.choices:
            return self.choices[key]
        canon = self.parsed.canonical_key(key)
        if canon in self.choices:
            return self.choices[canon]
        raise KeyError(f"no alpha with key {key!r} (keys: {', '.join(self.choices)})")

    def _ones(self, n: int) -> torch.Tensor:
        device = self.device()
        if device is None:
            first = next(iter(self.model.parameters()), None)
            device = first.device if first is not None else torch.device("cpu")
        return torch.ones(n, dtype=torch.bool, device=device)

    def _input_weights(self, alpha: torch.Tensor, n_chosen: int | None) -> torch.Tensor:
        if n_chosen is None:
            return torch.sigmoid(alpha)
        if n_chosen == 0:
            return torch.zeros_like(alpha)
        return torch.softmax(alpha, dim=-1)

    def sample_search(self) -> dict[str, torch.Tensor]:
        """``softmax(alpha)[:-1]`` per LayerChoice (with its graph); all inputs of an InputChoice."""
        result: dict[str, torch.Tensor] = {}
        for key, mutable in self.parsed.choices.items():
            if isinstance(mutable, LayerChoice):
                result[key] = torch.softmax(self.choices[key], dim=-1)[:-1]
            elif self.learn_inputs:
                result[key] = self._input_weights(self.choices[key], mutable.n_chosen)
            else:
                result[key] = self._ones(mutable.n_candidates)
        return result

    def sample_final(self) -> dict[str, torch.Tensor]:
        """The strongest op per LayerChoice, the top-``n_chosen`` edges per InputChoice, and
        all-false LayerChoices on the dropped edges."""
        choices = self.parsed.choices
        result: dict[str, torch.Tensor] = {}
        strongest: dict[str, float] = {}
        with torch.no_grad():
            for key, mutable in choices.items():
                if isinstance(mutable, LayerChoice):
                    weights = torch.softmax(self.choices[key].detach(), dim=-1)[:-1].cpu()
                    index = int(torch.argmax(weights))
                    strongest[key] = float(weights[index])
                    mask = torch.zeros(len(weights), dtype=torch.bool)
                    mask[index] = True
                    result[key] = mask
            dropped: set[str] = set()
            for key, mutable in choices.items():
                if not isinstance(mutable, InputChoice):
                    continue
                k, n = mutable.n_chosen, mutable.n_candidates
                if self.learn_inputs:
                    values = self.choices[key].detach().cpu().numpy()
                    mask = np.zeros(n, dtype=bool)
                    if k is None:
                        mask = values > 0.0
                    elif k > 0:
                        mask[np.argsort(-values, kind="stable")[:k]] = True
                elif k is None:
                    mask = np.ones(n, dtype=bool)
                else:
                    mask = np.zeros(n, dtype=bool)
                    mask[np.argsort(-np.asarray(self._edge_weights(mutable, strongest)), kind="stable")[:k]] = True
                result[key] = torch.from_numpy(np.asarray(mask, dtype=bool))
                if k is not None:  # NNI prunes only behind an InputChoice with n_chosen
                    for label, keep in zip(mutable.choose_from, mask.tolist()):
                        source = self.parsed.canonical_key(label) if label else label
                        if not keep and source in strongest:
                            dropped.add(source)
            for label in dropped:
                result[label] = torch.zeros_like(result[label])
        return {key: result[key] for key in choices}

    def _edge_weights(self, mutable: InputChoice, strongest: dict[str, float]) -> list[float]:
        """Each input's weight for the top-k: its LayerChoice's strongest op weight (else 0)."""
        weights = []
        for label in mutable.choose_from:
            source = self.parsed.canonical_key(label) if label else label
            if source in strongest:
                weights.append(strongest[source])
                continue
            if (mutable.key, label) not in self._warned:
                self._warned.add((mutable.key, label))
                _logger.warning(
                    "InputChoice %r: candidate %r is not a LayerChoice key, weighted 0 when selecting inputs",
                    mutable.key,
                    label,
                )
            weights.append(0.0)
        return weights

    def probabilities(self) -> dict[str, list[float]]:
        """The search weights now, ``{key: list of floats}`` (what :meth:`sample_search` gives)."""
        with torch.no_grad():
            return {k: v.float().cpu().tolist() for k, v in self.sample_search().items()}

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
        optimizer: torch.optim.Optimizer | None = None,
    ) -> dict[str, float]:
        """One DARTS architecture step: the gradient of the architecture-batch loss in alpha
        (first order: at the current weights; second order: at the weights after a virtual SGD
        step on ``train_batch``, minus the finite-difference Hessian-vector term), averaged
        across replicas by ``reduce``, then an Adam step on alpha.

        The model's weights are left as they were (second order restores them), their
        ``.grad`` untouched; BatchNorm running statistics see the extra forward passes.

        ``optimizer`` (second order): the weights' optimizer, whose first group's ``lr``,
        ``momentum`` and ``weight_decay`` and whose momentum buffers make the virtual step
        ``w - lr * (momentum * buffer + dw + weight_decay * w)`` (the step NNI's ``DartsTrainer``
        means); it replaces ``lr`` and ``weight_decay``.

        Returns:
            ``{"arch_loss": loss on the architecture batch}`` (this replica's).

        Raises:
            DartsConfigError: ``order=2`` without ``train_batch``, or without ``lr`` or ``optimizer``.
        """
        criterion = criterion or nn.functional.cross_entropy
        model = self.model
        alphas = self.arch_parameters()
        if not alphas:  # no LayerChoice (and no learned input): nothing to learn, the loss is reported
            with torch.no_grad():
                self.reset()
                x, y = arch_batch
                return {"arch_loss": float(criterion(model(x), y))}
        self.arch_optimizer.zero_grad(set_to_none=True)
        if self.order == 1:
            self.reset()
            x, y = arch_batch
            loss = criterion(model(x), y)
            grads = torch.autograd.grad(loss, alphas, allow_unused=True)
        else:
            momentum: dict[int, tuple[float, torch.Tensor]] = {}
            if optimizer is not None:
                lr, weight_decay, momentum = virtual_step_settings(optimizer, model)
            if train_batch is None or lr is None:
                raise DartsConfigError(
                    "second-order DARTS (order=2, unrolled=True) needs train_batch and lr (or optimizer) "
                    f"for the virtual step, got train_batch={'set' if train_batch is not None else None}, lr={lr!r}"
                )
            loss, grads = unrolled_alpha_grads(
                self, arch_batch, train_batch, criterion, reduce, float(lr), weight_decay, momentum
            )
        for a, g in zip(alphas, grads):
            a.grad = g.detach().clone() if g is not None else torch.zeros_like(a)
        if reduce is not None:
            reduce(grads_of(alphas))
        self.arch_optimizer.step()
        return {"arch_loss": float(loss.detach())}

    # -- state ------------------------------------------------------------------------------

    def _extra_state(self) -> dict[str, Any]:
        return {"rng": self._rng.bit_generator.state}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        if "rng" in state:
            self._rng.bit_generator.state = state["rng"]
