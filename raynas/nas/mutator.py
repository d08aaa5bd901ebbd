"""Mutators: parse a model's mutables, decide every choice, and run the mutables' forwards.

``BaseMutator`` parses and binds; ``Mutator`` adds NNI's ``reset()`` / ``export()`` on top of two
abstract methods, ``sample_search()`` and ``sample_final()``, which return ``{key: tensor}``: a
``torch.bool`` mask of the chosen candidates or a float tensor of weights (0 skips a candidate).
The path is decided once per ``reset()``: a forward only looks the decision up.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from raynas.nas.mutables import InputChoice, LayerChoice, Mutable, MutableScope, bind_mutable, unbind_mutable
from raynas.nas.parse import DecisionError, MutableTreeNode, MutatorBindingError, ParsedModel, parse_model
from raynas.nas.space import model_choices, to_exported

__all__ = [
    "BaseMutator",
    "bound_mutator",
    "require_unbound",
    "Mutator",
    "MutableTreeNode",
    "ParsedModel",
    "parse_model",
    "MutatorBindingError",
    "DecisionError",
]


#: where a model records the mutator bound to it (in its ``__dict__``: not a submodule, not in its state_dict)
_BOUND = "_raynas_mutator"


def bound_mutator(model: nn.Module) -> BaseMutator | None:
    """The mutator bound to ``model`` (by constructing it on the model), or ``None``."""
    return model.__dict__.get(_BOUND)


def require_unbound(model: nn.Module, remedy: str) -> None:
    """Refuse a model that a mutator is bound to (a model takes one mutator).

    Raises:
        MutatorBindingError: naming the bound mutator's class, then ``remedy``.
    """
    bound = bound_mutator(model)
    if bound is not None:
        raise MutatorBindingError(
            f"the model is already bound to a {type(bound).__name__}; a model takes one mutator ({remedy})"
        )


class BaseMutator(nn.Module, metaclass=abc.ABCMeta):
    """Parses a model once, binds to it, and receives its mutables' forward calls.

    A mutator binds to one model, once; a model takes one mutator (call :meth:`detach` to free it).

    Args:
        model: the model holding the mutables.

    Attributes:
        model: the bound model (as NNI's ``mutator.model``; ``None`` after :meth:`detach`). Held
            outside the module tree: the model's weights are not the mutator's submodules.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        parsed = parse_model(model)
        require_unbound(model, "call .detach() on the old one first")
        for key, _path, mutable in parsed.instances:
            if mutable.mutator is not None:
                raise MutatorBindingError(
                    f"mutable {key!r} is already bound to a {type(mutable.mutator).__name__} "
                    "(of this or another model); call .detach() on it first"
                )
        self.__dict__["model"] = model
        self._parsed = parsed
        for _key, path, mutable in parsed.instances:
            bind_mutable(mutable, self, path)
        model.__dict__[_BOUND] = self

    @property
    def mutables(self) -> MutableTreeNode:
        """The mutable tree; iterating it yields one mutable per key, pre-order."""
        return self._parsed.tree

    @property
    def undedup_mutables(self) -> list[Mutable]:
        """Every mutable instance (also those sharing a key), in parse order."""
        return [m for _k, _p, m in self._parsed.instances]

    @property
    def parsed(self) -> ParsedModel:
        """What parsing the model found: the tree, every instance, the choices and key aliases."""
        return self._parsed

    @property
    def choice_mutables(self) -> dict[str, LayerChoice | InputChoice]:
        """``{key: LayerChoice or InputChoice}``, one per key, in parse order (no scopes).

        (Not named ``choices``: NNI's own mutators assign ``self.choices``, e.g. DARTS' alphas.)
        """
        return dict(self._parsed.choices)

    def detach(self) -> None:
        """Unbind from the model so that another mutator may bind to it."""
        model = self.__dict__.get("model")
        if model is None:
            return
        for _key, _path, mutable in self._parsed.instances:
            unbind_mutable(mutable, self)
        if bound_mutator(model) is self:
            model.__dict__[_BOUND] = None
        self.__dict__["model"] = None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a mutator is not called; call the model (and mutator.reset() before it)")

    def enter_mutable_scope(self, mutable_scope: MutableScope) -> None:
        """Hook: the forward pass enters ``mutable_scope``. Does nothing by default."""

    def exit_mutable_scope(self, mutable_scope: MutableScope) -> None:
        """Hook: the forward pass leaves ``mutable_scope`` (also on error). Does nothing by default."""

    @abc.abstractmethod
    def on_forward_layer_choice(self, mutable: LayerChoice, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        """Run a LayerChoice.

        Args:
            mutable: the LayerChoice being called.
            *args: its positional inputs.
            **kwargs: its keyword inputs.

        Returns:
            ``(output, mask)``.
        """

    @abc.abstractmethod
    def on_forward_input_choice(self, mutable: InputChoice, tensor_list: list) -> tuple[Any, Any]:
        """Run an InputChoice.

        Args:
            mutable: the InputChoice being called.
            tensor_list: its inputs, in ``choose_from`` order.

        Returns:
            ``(output, mask)``; output is ``None`` when nothing is chosen.
        """


def reduce_tensors(reduction: str, tensors: list) -> Any:
    """Combine chosen outputs: ``sum``, ``mean``, ``concat`` (dim 1) or ``none`` (the list)."""
    if not tensors:
        return None
    if reduction == "none":
        return tensors
    if len(tensors) == 1:
        return tensors[0]
    if reduction == "concat":
        return torch.cat(tensors, dim=1)
    out = tensors[0]
    for t in tensors[1:]:
        out = out + t
    return out / len(tensors) if reduction == "mean" else out


class Mutator(BaseMutator):
    """A mutator that decides every choice on :meth:`reset` and keeps the decision until the next.

    Subclasses implement :meth:`sample_search` and :meth:`sample_final`.
    """

    def __init__(self, model: nn.Module):
        super().__init__(model)
        # key -> (mask tensor, chosen indices, weights tensor or None)
        self._plans: dict[str, tuple[torch.Tensor, tuple[int, ...], torch.Tensor | None]] = {}

    @abc.abstractmethod
    def sample_search(self) -> dict[str, torch.Tensor]:
        """Decide every choice for the next training steps.

        Returns:
            ``{key: bool mask or float weights}`` with one entry per key.
        """

    @abc.abstractmethod
    def sample_final(self) -> dict[str, torch.Tensor]:
        """Decide every choice for the final architecture.

        Returns:
            ``{key: bool mask or float weights}`` with one entry per key.
        """

    def reset(self) -> None:
        """Apply ``sample_search()`` to the model until the next reset."""
        self.apply_decisions(self.sample_search())

    def export(self) -> dict[str, Any]:
        """``sample_final()`` in the readable JSON-able form (names, lists, float weights)."""
        decisions = self.sample_final()
        self._plan_all(decisions)  # validates without applying
        return to_exported(decisions, model_choices(self))

    def status(self) -> dict[str, list[float]]:
        """The decision in force, ``{key: list of floats}`` (NNI's form); empty before a reset."""
        return {k: mask.detach().float().cpu().tolist() for k, (mask, _i, _w) in self._plans.items()}

    @property
    def decisions(self) -> dict[str, torch.Tensor]:
        """The decision in force, ``{key: bool mask or float weights}`` as applied (a new dict each
        read; empty before the first reset). Read-only: put a decision in force with
        :meth:`apply_decisions`, or for a while with :meth:`applied`."""
        return {k: value for k, (value, _i, _w) in self._plans.items()}

    @property
    def chosen_indices(self) -> dict[str, tuple[int, ...]]:
        """``{key: indices of the candidates the decision in force runs}`` (nonzero weights, true
        mask entries); empty before the first reset."""
        return {k: chosen for k, (_v, chosen, _w) in self._plans.items()}

    @contextmanager
    def applied(self, decisions: Mapping[str, torch.Tensor]) -> Iterator[None]:
        """Put ``decisions`` in force for the ``with`` block, then restore the decision that was in
        force before (also on error, and also when nothing was in force).

        Raises:
            DecisionError: as :meth:`apply_decisions` (nothing changes then).
        """
        saved = dict(self._plans)
        self.apply_decisions(decisions)
        try:
            yield
        finally:
            self._plans = saved

    def apply_decisions(self, decisions: Mapping[str, torch.Tensor]) -> None:
        """Validate ``decisions`` and put them in force (what :meth:`reset` does with a sample).

        Raises:
            DecisionError: a key is missing or unknown, or a value has the wrong type, dtype or length.
        """
        self._plans = self._plan_all(decisions)

    def _plan_all(self, decisions: Mapping[str, torch.Tensor]) -> dict:
        if not isinstance(decisions, Mapping):
            raise DecisionError(f"decisions must be a dict of key -> tensor, got {type(decisions).__name__}")
        choices = self._parsed.choices
        decisions = self._parsed.canonical(decisions, "decisions")
        unknown = [k for k in decisions if k not in choices]
        if unknown:
            raise DecisionError(f"unknown key {unknown[0]!r} in decisions (valid keys: {', '.join(choices)})")
        plans = {}
        for key, mutable in choices.items():
            if key not in decisions:
                raise DecisionError(f"decisions have no entry for key {key!r}")
            plans[key] = _plan(key, decisions[key], mutable.length)
        return plans

    def _plan_for(self, key: str) -> tuple[torch.Tensor, tuple[int, ...], torch.Tensor | None]:
        try:
            return self._plans[key]
        except KeyError:
            raise RuntimeError(
                f"no decision for key {key!r}: call mutator.reset() before the forward pass"
            ) from None

    def on_forward_layer_choice(self, mutable: LayerChoice, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        mask, chosen, weights = self._plan_for(mutable.key)
        modules, names = mutable._modules, mutable.names
        if weights is None and len(chosen) == 1 and mutable.reduction != "none":
            return modules[names[chosen[0]]](*args, **kwargs), mask
        outs = [modules[names[i]](*args, **kwargs) for i in chosen]
        if weights is not None:
            outs = [out * weights[i] for out, i in zip(outs, chosen)]
        return reduce_tensors(mutable.reduction, outs), mask

    def on_forward_input_choice(self, mutable: InputChoice, tensor_list: list) -> tuple[Any, Any]:
        mask, chosen, weights = self._plan_for(mutable.key)
        chosen = [i for i in chosen if tensor_list[i] is not None]  # a pruned edge's LayerChoice gave None
        outs = [tensor_list[i] for i in chosen]
        if weights is not None:
            outs = [out * weights[i] for out, i in zip(outs, chosen)]
        return reduce_tensors(mutable.reduction, outs), mask


def _plan(key: str, value: Any, length: int) -> tuple[torch.Tensor, tuple[int, ...], torch.Tensor | None]:
    if not isinstance(value, torch.Tensor):
        raise DecisionError(
            f"the decision for key {key!r} must be a torch.Tensor (bool mask or float weights), "
            f"got {type(value).__name__}"
        )
    if value.dtype != torch.bool and not value.is_floating_point():
        raise DecisionError(
            f"the decision for key {key!r} must have dtype torch.bool or a float dtype, got {value.dtype}"
        )
    if value.dim() != 1 or value.numel() != length:
        raise DecisionError(
            f"the decision for key {key!r} must have shape ({length},), got {tuple(value.shape)}"
        )
    if value.dtype == torch.bool:
        chosen = tuple(i for i, v in enumerate(value.tolist()) if v)
        return value, chosen, None
    chosen = tuple(i for i, v in enumerate(value.detach().tolist()) if v != 0)
    return value, chosen, value
