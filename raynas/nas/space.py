"""Search-space export (``nnictl ss_gen`` JSON) and conversions between architecture forms.

The torch-free format lives in :mod:`searchers.space`; this module connects it to models
(mutables -> choices) and to tensors (decisions).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from raynas.nas.mutables import InputChoice, LayerChoice
from raynas.nas.parse import ParsedModel, parsed_of
from searchers.errors import ConfigError
from searchers.imports import import_object
from searchers.space import (
    INPUT_CHOICE,
    LAYER_CHOICE,
    Choice,
    SearchSpaceError,
    Weights,
    parse_search_space,
    resolve_architecture,
)
from searchers.space import to_exported as _to_exported
from searchers.space import to_parameters as _to_parameters

__all__ = [
    "generate_search_space",
    "model_choices",
    "to_decisions",
    "to_parameters",
    "to_exported",
    "load_factory",
    "SearchSpaceError",
]


def _choice_of(key: str, mutable: LayerChoice | InputChoice) -> Choice:
    if isinstance(mutable, LayerChoice):
        return Choice(key=key, type=LAYER_CHOICE, candidates=tuple(mutable.names), n_chosen=1)
    return Choice(key=key, type=INPUT_CHOICE, candidates=tuple(mutable.choose_from), n_chosen=mutable.n_chosen)


def model_choices(model: nn.Module | ParsedModel) -> dict[str, Choice]:
    """``{key: Choice}`` (sorted by key) of a model, of the model a mutator is bound to, or of a parse."""
    parsed = parsed_of(model)
    return {k: _choice_of(k, parsed.choices[k]) for k in sorted(parsed.choices)}


def generate_search_space(model: nn.Module) -> dict[str, dict]:
    """The model's search space in the ``nnictl ss_gen`` JSON format (sorted keys, no scopes).

    Args:
        model: a model holding LayerChoice / InputChoice mutables (bound or not).

    Returns:
        ``{key: {"_type": ..., "_value": ...}}``.
    """
    return {k: c.spec() for k, c in model_choices(model).items()}


def _plain(value: Any) -> Any:
    """Tensors -> lists (bool masks stay bools, float weights floats); other values unchanged."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    return value


def _against(
    architecture: Any, space: Mapping[str, Any] | nn.Module | ParsedModel
) -> tuple[Any, dict[str, Choice]]:
    """The architecture (tensors as lists; against a model, alias keys renamed to keys: module paths,
    NNI counter keys) and the space's choices. A model is parsed once for both."""
    plain = {k: _plain(v) for k, v in architecture.items()} if isinstance(architecture, Mapping) else architecture
    if not isinstance(space, (nn.Module, ParsedModel)):  # a model or a mutator, else a search space
        return plain, parse_search_space(space)
    parsed = parsed_of(space)
    if isinstance(plain, Mapping):
        try:
            plain = parsed.canonical(plain)
        except ValueError as exc:
            raise SearchSpaceError(str(exc)) from None
    return plain, model_choices(parsed)


def to_decisions(
    architecture: Mapping[str, Any], space: Mapping[str, Any] | nn.Module
) -> dict[str, torch.Tensor]:
    """An architecture in any fixed form -> decisions ``{key: bool mask or float weights}``.

    Args:
        architecture: one value per key, in any fixed form (tensors too). Against a model, an
            unkeyed mutable may also be named by its module path or NNI's counter key.
            An empty value for a LayerChoice is NNI's pruned edge (an all-false mask).
        space: a search space (JSON or parsed) or a model to take it from.

    Returns:
        ``{key: tensor}`` in sorted key order.

    Raises:
        SearchSpaceError: a missing or unknown key, or a value that breaks its key's rule.
    """
    plain, choices = _against(architecture, space)
    out = {}
    for key, resolved in resolve_architecture(plain, choices).items():
        if isinstance(resolved, Weights):
            out[key] = torch.tensor(list(resolved), dtype=torch.float32)
        else:
            mask = torch.zeros(choices[key].length, dtype=torch.bool)
            mask[list(resolved)] = True
            out[key] = mask
    return out


def to_parameters(architecture: Mapping[str, Any], space: Mapping[str, Any] | nn.Module) -> dict:
    """An architecture in any form (tensors too) -> the tuner form ``{key: {"_value", "_idx"}}``."""
    return _to_parameters(*_against(architecture, space))


def to_exported(architecture: Mapping[str, Any], space: Mapping[str, Any] | nn.Module) -> dict:
    """An architecture in any form (tensors too) -> the readable exported form."""
    return _to_exported(*_against(architecture, space))


def load_factory(spec: str) -> Any:
    """Import ``"package.module:attribute"`` and return the attribute (see :func:`searchers.imports.import_object`).

    Raises:
        ConfigError: the spec is not of the form ``MODULE:NAME``, or the module or name is missing.
    """
    return import_object(spec, what="factory", error=ConfigError)
