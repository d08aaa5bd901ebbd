"""Parsing a model: find its mutables, their keys and key aliases, without binding anything.

The bottom of :mod:`raynas.nas` after the mutables themselves: :mod:`raynas.nas.space` (architecture
forms) and :mod:`raynas.nas.mutator` (deciding and running choices) both build on it, and it
imports neither (mutables <- parse <- space <- mutator).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from raynas.nas.mutables import InputChoice, LayerChoice, Mutable, auto_key_serial
from raynas.nas.utils import MutableTreeNode
from searchers.errors import ConfigTypeError, RaynasError

__all__ = [
    "MutableTreeNode",
    "ParsedModel",
    "parse_model",
    "parsed_of",
    "MutatorBindingError",
    "DecisionError",
]


class MutatorBindingError(RaynasError, RuntimeError):
    """A model or mutable is already bound to another mutator, or the model cannot be parsed."""


class DecisionError(RaynasError, ValueError):
    """A decision dict breaks a rule (missing or unknown key, wrong type, dtype or length)."""


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
    auto = [(auto_key_serial(m), key, path, m) for key, path, m in instances if auto_key_serial(m) is not None]
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
        MutatorBindingError: a choice nested inside a LayerChoice, mutables that share a key but disagree on
            their candidates, or an InputChoice label
            that names a mutable which is not parsed before it.
    """
    if not isinstance(model, nn.Module):
        raise ConfigTypeError(f"a mutator takes an nn.Module, got {type(model).__name__}")
    root, instances = _walk(model)
    first = _first_of_each_key(instances)
    choices = {k: m for k, m in first.items() if isinstance(m, (LayerChoice, InputChoice))}
    aliases = _aliases(instances, set(first))
    return ParsedModel(tree=root, instances=tuple(instances), choices=choices, aliases=aliases)


def _walk(model: nn.Module) -> tuple[MutableTreeNode, list[tuple[str, str, Mutable]]]:
    """The mutable tree and ``[(key, module path, mutable)]`` in depth-first definition order."""
    root = MutableTreeNode(None)
    instances: list[tuple[str, str, Mutable]] = []
    seen: set[int] = {id(model)}

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

    visit(model, "", root, None)
    return root, instances


def _first_of_each_key(instances: list[tuple[str, str, Mutable]]) -> dict[str, Mutable]:
    """``{key: first mutable with it}``, after checking that mutables sharing a key are alike and
    that an InputChoice's labels name only mutables defined before it."""
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
    return first


def parsed_of(source: Any) -> ParsedModel:
    """What parsing found for a model, or for the model a mutator is bound to (its ``parsed``).

    Args:
        source: a model (parsed now), a :class:`ParsedModel` (returned as is), or anything whose
            ``parsed`` is one (a mutator; it keeps the parse it bound with).
    """
    if isinstance(source, ParsedModel):
        return source
    parsed = getattr(source, "parsed", None)
    return parsed if isinstance(parsed, ParsedModel) else parse_model(source)
