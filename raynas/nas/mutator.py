"""Mutators: parse a model's mutables, decide every choice, and run the mutables' forwards.

``BaseMutator`` parses and binds; ``Mutator`` adds NNI's ``reset()`` / ``export()`` on top of two
abstract methods, ``sample_search()`` and ``sample_final()``, which return ``{key: tensor}``: a
``torch.bool`` mask of the chosen candidates or a float tensor of weights (0 skips a candidate).
The path is decided once per ``reset()``: a forward only looks the decision up.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from searchers.errors import RaynasError
from raynas.nas.mutables import InputChoice, LayerChoice, Mutable, MutableScope

__all__ = [
    "BaseMutator",
    "Mutator",
    "MutableTreeNode",
    "ParsedModel",
    "parse_model",
    "MutatorBindingError",
    "DecisionError",
]


class MutatorBindingError(RaynasError, RuntimeError):
    """A model or mutable is already bound to another mutator, or the model cannot be parsed."""


class DecisionError(RaynasError, ValueError):
    """A decision dict breaks a rule (missing or unknown key, wrong type, dtype or length)."""


class MutableTreeNode:
    """A node of the mutable tree: a mutable (``None`` at the root) and the mutables under it.

    Iterating a node yields the mutables under it in pre-order, one per key (as NNI's
    ``mutator.mutables`` does).
    """

    def __init__(self, mutable: Mutable | None):
        self.mutable = mutable
        self.children: list[MutableTreeNode] = []

    def traverse(
        self, order: str = "pre", deduplicate: bool = True, memo: set[str] | None = None
    ) -> Iterator[Mutable]:
        """Yield the mutables of this subtree.

        Args:
            order: ``"pre"`` (a node before its children) or ``"post"``.
            deduplicate: yield one mutable per key (the first met).
            memo: keys already yielded (shared across calls when given).

        Returns:
            An iterator over mutables; the root (no mutable) is not yielded.
        """
        if order not in ("pre", "post"):
            raise ValueError(f"traversal order must be 'pre' or 'post', got {order!r}")
        memo = set() if memo is None else memo
        yield from self._traverse(order, deduplicate, memo)

    def _traverse(self, order: str, deduplicate: bool, memo: set[str]) -> Iterator[Mutable]:
        own = self.mutable is not None and not (deduplicate and self.mutable.key in memo)
        if own:
            memo.add(self.mutable.key)
            if order == "pre":
                yield self.mutable
        for child in self.children:
            yield from child._traverse(order, deduplicate, memo)
        if own and order == "post":
            yield self.mutable

    def __iter__(self) -> Iterator[Mutable]:
        return self.traverse()

    def __len__(self) -> int:
        return sum(1 for _ in self.traverse())


@dataclass(frozen=True)
class ParsedModel:
    """What :func:`parse_model` found.

    Attributes:
        tree: the mutable tree (scopes are inner nodes).
        instances: ``(key, path, mutable)`` for every mutable instance, depth-first in definition
            order; a module reachable by several paths is listed once, at its first path.
        choices: ``{key: first LayerChoice/InputChoice with that key}`` in parse order.
        aliases: ``{alias: key}`` for mutables without an explicit key: the module path, and the
            counter key NNI gives when the model is the first thing built in a process
            (``LayerChoice1``, ...) where it differs from the key. A key always wins over an alias.
    """

    tree: MutableTreeNode
    instances: tuple[tuple[str, str, Mutable], ...]
    choices: dict[str, LayerChoice | InputChoice]
    aliases: dict[str, str] = field(default_factory=dict)

    def canonical_key(self, key: str) -> str:
        """``key`` itself when it is a key of the model, else the key its alias stands for (or ``key``)."""
        if key in self.choices:
            return key
        return self.aliases.get(key, key)

    def canonical(self, architecture: Mapping[str, Any], what: str = "architecture") -> dict[str, Any]:
        """``architecture`` with alias keys (module paths, NNI counter keys) renamed to the model's keys.

        Raises:
            DecisionError: a key and its alias both appear.
        """
        out: dict[str, Any] = {}
        source: dict[str, str] = {}
        for key, value in architecture.items():
            canon = self.canonical_key(key) if isinstance(key, str) else key
            if canon in out:
                raise DecisionError(
                    f"keys {source[canon]!r} and {key!r} name the same mutable {canon!r} in the {what}; give one"
                )
            out[canon] = value
            source[canon] = key
        return out


def _aliases(instances: list[tuple[str, str, Mutable]], keys: set[str]) -> dict[str, str]:
    auto = [(m.__dict__["_serial"], key, path, m) for key, path, m in instances if m._auto_key]
    aliases: dict[str, str] = {}
    for number, (_serial, key, path, mutable) in enumerate(sorted(auto, key=lambda t: t[0]), start=1):
        for alias in (path, f"{type(mutable).__name__}{number}"):
            if alias and alias != key and alias not in keys:
                aliases.setdefault(alias, key)
    return aliases


def _compatible(a: Mutable, b: Mutable) -> str | None:
    if type(a) is not type(b) and not (isinstance(a, LayerChoice) and isinstance(b, LayerChoice)):
        return f"{type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, LayerChoice) and a.names != b.names:
        return f"candidates {a.names} vs {b.names}"
    if isinstance(a, InputChoice) and (a.n_candidates, a.n_chosen, a.choose_from) != (
        b.n_candidates,
        b.n_chosen,
        b.choose_from,
    ):
        return (
            f"(n_candidates, n_chosen, choose_from) {(a.n_candidates, a.n_chosen, a.choose_from)} "
            f"vs {(b.n_candidates, b.n_chosen, b.choose_from)}"
        )
    return None


def parse_model(model: nn.Module) -> ParsedModel:
    """Find a model's mutables and their keys without binding anything.

    The walk is depth-first in definition order; a module reachable by several paths is visited
    once. A mutable's key is its ``key`` (explicit, else NNI's counter key); unkeyed mutables are
    also reachable by their module path (see :attr:`ParsedModel.aliases`).

    Args:
        model: the model.

    Returns:
        The :class:`ParsedModel`.

    Raises:
        MutatorBindingError: a choice nested inside a LayerChoice, mutables that share a key but disagree on their candidates, or an InputChoice label
            that names a mutable which is not parsed before it.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"a mutator takes an nn.Module, got {type(model).__name__}")
    root = MutableTreeNode(None)
    instances: list[tuple[str, str, Mutable]] = []
    seen: set[int] = set()

    def visit(module: nn.Module, path: str, node: MutableTreeNode, inside: str | None) -> None:
        if isinstance(module, Mutable):
            key = module.key
            if inside is not None and isinstance(module, (LayerChoice, InputChoice)):
                raise MutatorBindingError(
                    f"nested choices are not supported: {type(module).__name__} {key!r} "
                    f"sits inside LayerChoice {inside!r}"
                )
            instances.append((key, path, module))
            child_node = MutableTreeNode(module)
            node.children.append(child_node)
            node = child_node
            if isinstance(module, LayerChoice):
                inside = key
        for name, child in module.named_children():
            if child is None or id(child) in seen:
                continue
            seen.add(id(child))
            visit(child, f"{path}.{name}" if path else name, node, inside)

    seen.add(id(model))
    visit(model, "", root, None)

    first: dict[str, Mutable] = {}
    order: dict[str, int] = {}
    for position, (key, _path, mutable) in enumerate(instances):
        if key in first:
            why = _compatible(first[key], mutable)
            if why:
                raise MutatorBindingError(f"mutables sharing key {key!r} must be alike, got {why}")
        else:
            first[key] = mutable
            order[key] = position
    for key, _path, mutable in instances:
        if isinstance(mutable, InputChoice):
            for label in mutable.choose_from:
                if label in order and order[label] >= order[key]:
                    raise MutatorBindingError(
                        f"choose_from label {label!r} of InputChoice {key!r} names a mutable that is "
                        "not defined before it; use an earlier key or a plain label"
                    )
    choices = {k: m for k, m in first.items() if isinstance(m, (LayerChoice, InputChoice))}
    aliases = _aliases(instances, set(first))
    return ParsedModel(tree=root, instances=tuple(instances), choices=choices, aliases=aliases)


class BaseMutator(nn.Module, metaclass=abc.ABCMeta):
    """Parses a model once, binds to it, and receives its mutables' forward calls.

    A mutator binds to one model, once; a model takes one mutator (call :meth:`detach` to free it).

    Args:
        model: the model holding the mutables.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        parsed = parse_model(model)
        bound = model.__dict__.get("_raynas_mutator")
        if bound is not None:
            raise MutatorBindingError(
                f"the model is already bound to a {type(bound).__name__}; a model takes one mutator "
                "(call .detach() on the old one first)"
            )
        for key, _path, mutable in parsed.instances:
            if mutable.mutator is not None:
                raise MutatorBindingError(
                    f"mutable {key!r} is already bound to a {type(mutable.mutator).__name__} "
                    "(of this or another model); call .detach() on it first"
                )
        self.__dict__["model"] = model
        self._parsed = parsed
        for _key, path, mutable in parsed.instances:
            mutable.__dict__["_name"] = path
            mutable.__dict__["_mutator"] = self
        model.__dict__["_raynas_mutator"] = self

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
            if mutable.__dict__.get("_mutator") is self:
                mutable.__dict__["_mutator"] = None
        if model.__dict__.get("_raynas_mutator") is self:
            model.__dict__["_raynas_mutator"] = None
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
        from raynas.nas.space import model_choices, to_exported

        decisions = self.sample_final()
        self._plan_all(decisions)  # validates without applying
        return to_exported(decisions, model_choices(self))

    def status(self) -> dict[str, list[float]]:
        """The decision in force, ``{key: list of floats}`` (NNI's form); empty before a reset."""
        return {k: mask.detach().float().cpu().tolist() for k, (mask, _i, _w) in self._plans.items()}

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
