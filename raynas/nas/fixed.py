"""Fixed architectures: pin every choice of a model, and prune what the choice leaves unused."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from raynas._io import read_json
from raynas.nas.mutables import LayerChoice
from raynas.nas.mutator import Mutator, bound_mutator, parse_model, require_unbound
from raynas.nas.space import model_choices, to_decisions, to_exported
from searchers.errors import CheckpointError, ConfigTypeError

__all__ = ["FixedArchitecture", "apply_fixed_architecture", "copy_supernet_weights", "load_architecture"]


class FixedArchitecture(Mutator):
    """A mutator whose every decision is fixed.

    Args:
        model: the model holding the mutables.
        fixed_arc: one value per key of the model, in any fixed form (names, indices, lists,
            bool masks, float weights, ``{"_value", "_idx"}`` parameters); module paths and NNI
            counter keys name unkeyed mutables too.
    """

    def __init__(self, model: nn.Module, fixed_arc: Mapping[str, Any]):
        super().__init__(model)
        self._decisions = to_decisions(fixed_arc, self)
        self._architecture: dict[str, Any] | None = None  # made on first read (apply_fixed_architecture gives it)
        #: module path -> chosen candidate name of every LayerChoice replaced by that candidate.
        self.replaced: dict[str, str] = {}
        self.reset()

    @property
    def architecture(self) -> dict[str, Any]:
        """The whole architecture in the readable form (also keys whose LayerChoice was pruned)."""
        if self._architecture is None:
            self._architecture = to_exported(self._decisions, model_choices(self))
        return self._architecture

    def sample_search(self) -> dict[str, torch.Tensor]:
        return dict(self._decisions)

    def sample_final(self) -> dict[str, torch.Tensor]:
        return dict(self._decisions)

    def export(self) -> dict[str, Any]:
        return dict(self.architecture)


def load_architecture(arch: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """Read an architecture: a dict as is, or a JSON file holding one.

    Raises:
        FileNotFoundError: the file does not exist.
        ConfigError: the file is not JSON, or does not hold an object.
        ConfigTypeError: ``arch`` is neither a mapping nor a path.
    """
    if isinstance(arch, Mapping):
        return dict(arch)
    if not isinstance(arch, (str, os.PathLike)):
        raise ConfigTypeError(f"an architecture is a dict or a JSON file path, got {type(arch).__name__}")
    data = read_json(arch, what="architecture", expect=Mapping, expect_text="a JSON object of key -> choice")
    return dict(data)


def apply_fixed_architecture(model: nn.Module, arch: str | os.PathLike | Mapping[str, Any]) -> FixedArchitecture:
    """Fix every choice of ``model`` in place and return the bound :class:`FixedArchitecture`.

    As in NNI, a LayerChoice whose decision picks exactly one candidate is replaced by that
    candidate, unless it has ``return_mask=True`` (its caller unpacks ``(output, mask)``, so it stays
    and keeps returning the mask). A LayerChoice that stays drops the candidates it never runs, so
    the fixed model holds no unused weights; one fixed to nothing (``[]``: NNI's pruned edge) holds
    no candidate at all and returns ``None``, which the InputChoice reading it skips.

    Args:
        model: a model holding mutables, not bound to a mutator.
        arch: a dict or a JSON file, one value per key in any fixed form; an unkeyed mutable
            may also be named by its module path or by NNI's counter key.

    Returns:
        The mutator now bound to the model; ``.export()`` gives the whole architecture.

    Raises:
        SearchSpaceError: a missing or unknown key, or a bad value (the message names both).
        MutatorBindingError: the model is already bound to a mutator.
    """
    arch = load_architecture(arch)
    require_unbound(model, "call .detach() on it, or fix a fresh model")
    parsed = parse_model(model)  # once: the choices, the decisions and the pruning all read it
    choices = model_choices(parsed)
    decisions = to_decisions(arch, parsed)
    key_of = {id(m): k for k, _p, m in parsed.instances}
    replaced: dict[str, str] = {}

    def prune(module: nn.Module, prefix: str) -> None:
        for name, child in list(module._modules.items()):
            if child is None:
                continue
            path = f"{prefix}.{name}" if prefix else name
            if isinstance(child, LayerChoice):
                decision = decisions[key_of[id(child)]]
                used = decision != 0
                if decision.dtype == torch.bool and int(used.sum()) == 1 and not child.return_mask:
                    cand = child.names[int(used.nonzero())]
                    module._modules[name] = child._modules[cand]
                    replaced[path] = cand
                    continue
                for cand, keep in zip(child.names, used.tolist()):
                    if not keep:  # never run under this architecture: no dead weights
                        child._modules[cand] = None
            prune(child, path)

    prune(model, "")
    remaining = model_choices(model)
    mutator = FixedArchitecture(model, {k: decisions[k] for k in remaining})
    mutator._architecture = to_exported(decisions, choices)  # once, with the pruned keys too
    mutator.replaced = replaced
    return mutator


def copy_supernet_weights(
    supernet: nn.Module | Mapping[str, torch.Tensor], fixed_model: nn.Module
) -> nn.Module:
    """Load a trained supernet's weights into a model fixed by :func:`apply_fixed_architecture`.

    Args:
        supernet: the supernet, or its ``state_dict()``.
        fixed_model: the fixed model (same factory, same kwargs).

    Returns:
        ``fixed_model``, with every parameter and buffer taken from the supernet.

    Raises:
        CheckpointError: the supernet has no weight for a parameter of the fixed model, or its shape differs.
    """
    source = supernet.state_dict() if isinstance(supernet, nn.Module) else supernet
    mutator = bound_mutator(fixed_model)
    replaced = getattr(mutator, "replaced", {}) if mutator is not None else {}
    prefixes = sorted(replaced, key=len, reverse=True)
    target = fixed_model.state_dict()
    new = {}
    for key, value in target.items():
        src = key
        for prefix in prefixes:
            if key.startswith(prefix + "."):
                src = f"{prefix}.{replaced[prefix]}.{key[len(prefix) + 1:]}"
                break
        if src not in source:
            raise CheckpointError(f"the supernet weights have no {src!r} (for {key!r} of the fixed model)")
        if tuple(source[src].shape) != tuple(value.shape):
            raise CheckpointError(
                f"shape of supernet weight {src!r} is {tuple(source[src].shape)}, "
                f"the fixed model's {key!r} is {tuple(value.shape)}"
            )
        new[key] = source[src]
    fixed_model.load_state_dict(new)
    return fixed_model
