"""A whole search space and architecture: parse the nnictl JSON, resolve an architecture, write its forms.

A search space maps each mutable key to one entry (``nnictl ss_gen``'s format)::

    {"op0":   {"_type": "layer_choice", "_value": ["conv3", "conv5"]},
     "skip1": {"_type": "input_choice",
               "_value": {"candidates": ["stem", "op0"], "n_chosen": null}}}

An architecture maps every key to a value in any form :mod:`searchers.space.choice` reads; the
functions here check it against the space and write it as tuner parameters, the exported form,
the index form or a canonical hash (torch-free).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from searchers.checks import is_int
from searchers.errors import SearchSpaceError
from searchers.space.choice import (
    CHOICE_TYPES,
    INPUT_CHOICE,
    LAYER_CHOICE,
    Choice,
    Resolved,
    Weights,
    choice_exported,
    choice_parameter,
)

__all__ = [
    "parse_search_space",
    "resolve_architecture",
    "to_parameters",
    "to_exported",
    "to_index_form",
    "from_index_form",
    "canonical_hash",
]


def _parse_entry(key: Any, entry: Any) -> Choice:
    if not isinstance(key, str) or not key:
        raise SearchSpaceError(f"search-space keys must be non-empty strings, got {key!r}")
    if not isinstance(entry, Mapping):
        raise SearchSpaceError(
            f"a search-space entry must be an object with '_type' and '_value', got {entry!r} for key {key!r}"
        )
    extra = sorted(set(entry) - {"_type", "_value"})
    if extra or "_type" not in entry or "_value" not in entry:
        raise SearchSpaceError(
            f"a search-space entry holds exactly '_type' and '_value', got keys {sorted(entry)} for key {key!r}"
        )
    kind, spec = entry["_type"], entry["_value"]
    if kind not in CHOICE_TYPES:
        raise SearchSpaceError(
            f"unknown '_type' {kind!r} for key {key!r} (valid: {', '.join(CHOICE_TYPES)})"
        )
    if kind == LAYER_CHOICE:
        candidates = spec
        n_chosen: int | None = 1
    else:
        if not isinstance(spec, Mapping) or "candidates" not in spec:
            raise SearchSpaceError(
                f"an input_choice '_value' must be an object with 'candidates' and 'n_chosen', "
                f"got {spec!r} for key {key!r}"
            )
        extra = sorted(set(spec) - {"candidates", "n_chosen"})
        if extra:
            raise SearchSpaceError(
                f"an input_choice '_value' holds 'candidates' and 'n_chosen' only, got {extra} for key {key!r}"
            )
        candidates = spec["candidates"]
        n_chosen = spec.get("n_chosen")
    if isinstance(candidates, str) or not isinstance(candidates, Sequence) or not candidates:
        raise SearchSpaceError(f"candidates must be a non-empty list, got {candidates!r} for key {key!r}")
    if not all(isinstance(c, str) for c in candidates):
        raise SearchSpaceError(f"candidate names must be strings, got {list(candidates)!r} for key {key!r}")
    if kind == INPUT_CHOICE and n_chosen is not None:
        if not is_int(n_chosen) or not 0 <= n_chosen <= len(candidates):
            raise SearchSpaceError(
                f"n_chosen must be null or between 0 and {len(candidates)}, got {n_chosen!r} for key {key!r}"
            )
        n_chosen = int(n_chosen)
    return Choice(key=key, type=kind, candidates=tuple(candidates), n_chosen=n_chosen)


def parse_search_space(search_space: Mapping[str, Any]) -> dict[str, Choice]:
    """Validate a search space and return its choices, sorted by key.

    Args:
        search_space: the nnictl JSON (a dict), or a dict of :class:`Choice` (returned as is).

    Returns:
        ``{key: Choice}`` in sorted key order.

    Raises:
        SearchSpaceError: an entry breaks a rule; the message names the key and the value.
    """
    if not isinstance(search_space, Mapping):
        raise SearchSpaceError(f"a search space must be a JSON object, got {type(search_space).__name__}")
    if all(isinstance(v, Choice) for v in search_space.values()):
        return {k: search_space[k] for k in sorted(search_space)}
    return {k: _parse_entry(k, search_space[k]) for k in sorted(search_space)}


def resolve_architecture(
    architecture: Mapping[str, Any], search_space: Mapping[str, Any], *, exact: bool = False
) -> dict[str, Resolved]:
    """Resolve every key of an architecture (any value form) against a search space.

    Args:
        architecture: ``{key: value}`` with one value per key of the space.
        search_space: the nnictl JSON or parsed choices.
        exact: apply the rules a tuner's parameters obey (see :meth:`Choice.resolve`).

    Returns:
        ``{key: Selection | Weights}`` in sorted key order.

    Raises:
        SearchSpaceError: a key is missing or unknown, or a value breaks its key's rule.
    """
    choices = parse_search_space(search_space)
    if not isinstance(architecture, Mapping):
        raise SearchSpaceError(
            f"an architecture must be a JSON object of key -> choice, got {type(architecture).__name__}"
        )
    unknown = sorted(set(architecture) - set(choices))
    if unknown:
        raise SearchSpaceError(
            f"unknown key {unknown[0]!r} in architecture (valid keys: {', '.join(choices)})"
        )
    missing = [k for k in choices if k not in architecture]
    if missing:
        raise SearchSpaceError(f"architecture has no value for key {missing[0]!r} (missing: {missing})")
    return {k: c.resolve(architecture[k], exact=exact) for k, c in choices.items()}


def to_parameters(architecture: Mapping[str, Any], search_space: Mapping[str, Any]) -> dict:
    """An architecture in any form -> the tuner parameter form ``{key: {"_value", "_idx"}}``."""
    choices = parse_search_space(search_space)
    resolved = resolve_architecture(architecture, choices)
    return {k: choice_parameter(choices[k], r) for k, r in resolved.items()}


def to_exported(architecture: Mapping[str, Any], search_space: Mapping[str, Any]) -> dict:
    """An architecture in any form -> the readable exported form (names, lists, weights)."""
    choices = parse_search_space(search_space)
    resolved = resolve_architecture(architecture, choices)
    return {k: choice_exported(choices[k], r) for k, r in resolved.items()}


def to_index_form(architecture: Mapping[str, Any], search_space: Mapping[str, Any]) -> dict[str, list[int]]:
    """An architecture -> ``{key: sorted list of chosen indices}`` (weights are not allowed)."""
    choices = parse_search_space(search_space)
    out = {}
    for k, r in resolve_architecture(architecture, choices).items():
        if isinstance(r, Weights):
            raise SearchSpaceError(f"weights {list(r)!r} have no index form for key {k!r}")
        out[k] = list(r)
    return out


def from_index_form(indices: Mapping[str, Any], search_space: Mapping[str, Any]) -> dict:
    """``{key: index or list of indices}`` -> the tuner parameter form."""
    return to_parameters(indices, search_space)


def canonical_hash(architecture: Mapping[str, Any], search_space: Mapping[str, Any]) -> str:
    """A stable hex digest of an architecture: equal for every form of the same choices."""
    payload = json.dumps(to_index_form(architecture, search_space), sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(payload.encode()).hexdigest()
