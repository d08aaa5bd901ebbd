"""The ``nnictl ss_gen`` search-space format and the architecture forms it admits (torch-free).

A search space maps each mutable key to one entry::

    {"op0":   {"_type": "layer_choice", "_value": ["conv3", "conv5"]},
     "skip1": {"_type": "input_choice",
               "_value": {"candidates": ["stem", "op0"], "n_chosen": null}}}

A *choice value* for one key may be written in any of these forms:

- a candidate name (``"conv5"``) or an index (``1``);
- a list of names and/or indices (``["stem", 1]``);
- a multi-hot list of bools, one per candidate (``[False, True]``);
- a list of float weights, one per candidate (``[0.2, 0.8]``);
- the tuner parameter form ``{"_value": ..., "_idx": ...}`` (``_idex`` is read as ``_idx``).

Everything is resolved to a :class:`Selection` (sorted candidate indices) or to
:class:`Weights`, which the exported and parameter forms are written from.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from searchers.errors import SearchSpaceError

__all__ = [
    "LAYER_CHOICE",
    "INPUT_CHOICE",
    "SearchSpaceError",
    "Choice",
    "Selection",
    "Weights",
    "parse_search_space",
    "resolve_architecture",
    "to_parameters",
    "to_exported",
    "to_index_form",
    "from_index_form",
    "canonical_hash",
    "choice_size",
    "choice_parameter",
    "choice_values",
    "space_size",
    "sample_choice",
    "neighbour_choice",
    "sample_architecture",
    "mutate_architecture",
    "crossover_architectures",
    "enumerate_architectures",
]

LAYER_CHOICE = "layer_choice"
INPUT_CHOICE = "input_choice"
_TYPES = (LAYER_CHOICE, INPUT_CHOICE)


class Selection(tuple):
    """Sorted, distinct indices of the chosen candidates."""


class Weights(tuple):
    """One non-negative float weight per candidate (0 skips the candidate)."""


Resolved = Union[Selection, Weights]


def _is_bool(x: Any) -> bool:
    return isinstance(x, (bool, np.bool_))


def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not _is_bool(x)


def _is_float(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, numbers.Integral) and not _is_bool(x)


@dataclass(frozen=True)
class Choice:
    """One key of a search space.

    Args:
        key: the mutable key.
        type: ``"layer_choice"`` or ``"input_choice"``.
        candidates: candidate names (layer choice) or labels (input choice; ``""`` = no label).
        n_chosen: for an input choice, how many candidates are chosen (``None``: any number).
            Always ``1`` for a layer choice.
    """

    key: str
    type: str
    candidates: tuple[str, ...]
    n_chosen: int | None

    @property
    def length(self) -> int:
        """Number of candidates."""
        return len(self.candidates)

    @property
    def has_names(self) -> bool:
        """Whether every candidate has a distinct, non-empty name (else indices stand for them)."""
        return all(self.candidates) and len(set(self.candidates)) == len(self.candidates)

    @property
    def max_chosen(self) -> int:
        """The most candidates an architecture may choose for this key."""
        if self.type == INPUT_CHOICE and self.n_chosen is not None:
            return self.n_chosen
        return self.length

    def label(self, index: int) -> str | int:
        """The readable form of one candidate: its name where names are usable, else its index."""
        return self.candidates[index] if self.has_names else index

    def spec(self) -> dict:
        """This choice as a search-space JSON entry."""
        if self.type == LAYER_CHOICE:
            return {"_type": LAYER_CHOICE, "_value": list(self.candidates)}
        return {
            "_type": INPUT_CHOICE,
            "_value": {"candidates": list(self.candidates), "n_chosen": self.n_chosen},
        }

    # -- resolving values ----------------------------------------------------------------------

    def _fail(self, rule: str, value: Any) -> SearchSpaceError:
        return SearchSpaceError(f"{rule}, got {value!r} for key {self.key!r}")

    def _index_of(self, item: Any, value: Any) -> int:
        if isinstance(item, str):
            hits = [i for i, name in enumerate(self.candidates) if name == item]
            if not hits:
                valid = ", ".join(repr(c) for c in self.candidates)
                raise self._fail(f"unknown candidate name {item!r} (valid: {valid})", value)
            if len(hits) > 1:
                raise self._fail(f"candidate name {item!r} is ambiguous; use its index", value)
            return hits[0]
        if _is_int(item):
            if not 0 <= int(item) < self.length:
                raise self._fail(f"candidate index must be in [0, {self.length - 1}]", value)
            return int(item)
        raise SearchSpaceError(
            f"a candidate must be a name (str) or an index (int), got {item!r} "
            f"({type(item).__name__}) for key {self.key!r}"
        )

    def _resolve_plain(self, value: Any) -> Resolved:
        if _is_bool(value):
            raise self._fail("a single bool is not a choice; use a name, an index or a list", value)
        if isinstance(value, (str, numbers.Integral)):
            return Selection((self._index_of(value, value),))
        if isinstance(value, np.ndarray):
            value = value.tolist()
        if not isinstance(value, Sequence):
            raise SearchSpaceError(
                f"a choice must be a name, an index, a list or a {{'_value', '_idx'}} dict, "
                f"got {value!r} ({type(value).__name__}) for key {self.key!r}"
            )
        items = list(value)
        if items and all(_is_bool(x) for x in items):
            if len(items) != self.length:
                raise self._fail(f"a bool mask needs {self.length} entries", value)
            return Selection(i for i, x in enumerate(items) if x)
        if items and any(_is_float(x) for x in items):
            if len(items) != self.length:
                raise self._fail(f"a weight list needs {self.length} entries", value)
            if not all(isinstance(x, numbers.Real) and not _is_bool(x) for x in items):
                raise self._fail("a weight list holds numbers only", value)
            weights = [float(x) for x in items]
            if not all(math.isfinite(w) and w >= 0 for w in weights):
                raise self._fail("weights must be finite and >= 0", value)
            return Weights(weights)
        indices = [self._index_of(x, value) for x in items]
        if len(set(indices)) != len(indices):
            raise self._fail("a candidate is chosen twice", value)
        return Selection(sorted(indices))

    def resolve(self, value: Any, *, exact: bool = False) -> Resolved:
        """Resolve a value in any admitted form.

        Args:
            value: the value for this key (see the module docstring for the forms).
            exact: demand what a tuner must propose: one candidate for a layer choice, exactly
                ``n_chosen`` for an input choice, and no weights.

        Returns:
            A :class:`Selection` or :class:`Weights`.

        Raises:
            SearchSpaceError: the value breaks a rule of this key.
        """
        if isinstance(value, Mapping):
            resolved = self._resolve_parameter(value)
        else:
            resolved = self._resolve_plain(value)
        if isinstance(resolved, Weights):
            if exact:
                raise self._fail("a tuner parameter chooses candidates, not weights", value)
            return resolved
        n = len(resolved)
        if self.type == LAYER_CHOICE:
            # n == 0 is NNI's pruned edge (its DARTS export writes []): the LayerChoice gives None
            if exact and n != 1:
                raise self._fail("a layer choice chooses exactly 1 candidate", value)
        elif self.n_chosen is not None and (n > self.n_chosen or (exact and n != self.n_chosen)):
            bound = "exactly" if exact else "at most"
            raise self._fail(f"n_chosen={self.n_chosen} allows {bound} {self.n_chosen} candidates", value)
        return resolved

    def _resolve_parameter(self, value: Mapping) -> Resolved:
        unknown = sorted(set(value) - {"_value", "_idx", "_idex"})
        if unknown:
            raise self._fail(f"a parameter holds '_value' and '_idx' only, not {unknown}", value)
        if "_idx" in value and "_idex" in value and value["_idx"] != value["_idex"]:
            raise self._fail("'_idx' and its alias '_idex' disagree", value)
        idx = value["_idx"] if "_idx" in value else value.get("_idex")
        if idx is None:
            if "_value" not in value:
                raise self._fail("a parameter needs '_value' or '_idx'", value)
            return self._resolve_plain(value["_value"])
        if not (_is_int(idx) or (isinstance(idx, Sequence) and not isinstance(idx, str))):
            raise self._fail("'_idx' must be an index or a list of indices", value)
        if isinstance(idx, Sequence) and not all(_is_int(i) for i in idx):
            raise self._fail("'_idx' must be an index or a list of indices", value)
        resolved = self._resolve_plain(idx)
        if "_value" in value:
            names = value["_value"]
            names = [names] if isinstance(names, str) else names
            if not isinstance(names, Sequence) or not _value_order_ok(self, names, idx):
                raise self._fail("'_value' and '_idx' disagree", value)
        return resolved


def _value_order_ok(choice: Choice, names: Sequence, idx: Sequence | int) -> bool:
    idx_list = [idx] if _is_int(idx) else list(idx)
    if len(names) != len(idx_list):
        return False
    return all(isinstance(n, str) and choice.candidates[i] == n for n, i in zip(names, idx_list))


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
    if kind not in _TYPES:
        raise SearchSpaceError(
            f"unknown '_type' {kind!r} for key {key!r} (valid: {', '.join(_TYPES)})"
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
        if not _is_int(n_chosen) or not 0 <= n_chosen <= len(candidates):
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


def choice_parameter(choice: Choice, resolved: Resolved) -> dict:
    """One key's NNI parameter ``{"_value": ..., "_idx": ...}`` for a resolved selection.

    Raises:
        SearchSpaceError: ``resolved`` is weights (they have no parameter form).
    """
    if isinstance(resolved, Weights):
        raise SearchSpaceError(
            f"weights {list(resolved)!r} have no parameter form for key {choice.key!r}; fix the choice first"
        )
    if choice.type == LAYER_CHOICE and len(resolved) == 1:
        return {"_value": choice.candidates[resolved[0]], "_idx": resolved[0]}
    return {"_value": [choice.candidates[i] for i in resolved], "_idx": list(resolved)}


_parameter = choice_parameter  # the old private name, kept for existing callers


def _exported(choice: Choice, resolved: Resolved) -> Any:
    if isinstance(resolved, Weights):
        return list(resolved)
    single = choice.type == LAYER_CHOICE or choice.n_chosen == 1
    if single and len(resolved) == 1:
        return choice.label(resolved[0])
    return [choice.label(i) for i in resolved]


def to_parameters(architecture: Mapping[str, Any], search_space: Mapping[str, Any]) -> dict:
    """An architecture in any form -> the tuner parameter form ``{key: {"_value", "_idx"}}``."""
    choices = parse_search_space(search_space)
    resolved = resolve_architecture(architecture, choices)
    return {k: choice_parameter(choices[k], r) for k, r in resolved.items()}


def to_exported(architecture: Mapping[str, Any], search_space: Mapping[str, Any]) -> dict:
    """An architecture in any form -> the readable exported form (names, lists, weights)."""
    choices = parse_search_space(search_space)
    resolved = resolve_architecture(architecture, choices)
    return {k: _exported(choices[k], r) for k, r in resolved.items()}


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


# -- sampling and variation (index form) ----------------------------------------------------------
#
# The helpers below work on one :class:`Choice` at a time and on the *index form* of a value: a
# sorted tuple of chosen candidate indices (``(1,)`` for a layer choice, ``(0, 2)`` for an input
# choice). They draw from a caller-owned ``numpy.random.Generator`` so that tuners stay seeded.
# Every value they return obeys :meth:`Choice.resolve` with ``exact=True``.


def choice_size(choice: Choice) -> int:
    """How many distinct exact values one key admits (``n`` for a layer choice, ``2**n`` for
    ``n_chosen=None``, ``C(n, k)`` for ``n_chosen=k``)."""
    if choice.type == LAYER_CHOICE:
        return choice.length
    if choice.n_chosen is None:
        return 2**choice.length
    return math.comb(choice.length, choice.n_chosen)


def space_size(search_space: Mapping[str, Any]) -> int:
    """How many distinct architectures a search space holds (an exact Python int).

    Args:
        search_space: the nnictl JSON or parsed choices.

    Returns:
        The product of :func:`choice_size` over the keys (1 for an empty space).
    """
    return math.prod(choice_size(c) for c in parse_search_space(search_space).values())


def sample_choice(choice: Choice, rng: np.random.Generator) -> tuple[int, ...]:
    """Draw one exact value of a key uniformly at random, in index form.

    Args:
        choice: the key.
        rng: the generator to draw from.

    Returns:
        Sorted distinct candidate indices: one for a layer choice, ``n_chosen`` for an input
        choice (any subset, each equally likely, when ``n_chosen`` is ``None``).
    """
    n = choice.length
    if choice.type == LAYER_CHOICE:
        return (int(rng.integers(n)),)
    if choice.n_chosen is None:
        mask = rng.random(n) < 0.5
        return tuple(int(i) for i in np.flatnonzero(mask))
    k = choice.n_chosen
    if k == 0:
        return ()
    if k == n:
        return tuple(range(n))
    return tuple(sorted(int(i) for i in rng.choice(n, size=k, replace=False)))


def neighbour_choice(choice: Choice, value: Sequence[int], rng: np.random.Generator) -> tuple[int, ...]:
    """A different exact value of a key, one step away from ``value`` (index form).

    A layer choice moves to another candidate (uniformly); an input choice with
    ``n_chosen=None`` toggles one candidate; with ``n_chosen=k`` it swaps one chosen candidate for
    an unchosen one. A key with a single admissible value (see :func:`choice_size`) returns it.

    Args:
        choice: the key.
        value: the current value (sorted indices).
        rng: the generator to draw from.

    Returns:
        Sorted distinct candidate indices, different from ``value`` where the key allows it.
    """
    current = tuple(int(i) for i in value)
    n = choice.length
    if choice_size(choice) <= 1:
        return current
    if choice.type == LAYER_CHOICE:
        j = int(rng.integers(n - 1))
        return (j + (j >= current[0]),)
    if choice.n_chosen is None:
        flip = int(rng.integers(n))
        chosen = set(current) ^ {flip}
        return tuple(sorted(chosen))
    chosen = list(current)
    unchosen = [i for i in range(n) if i not in set(current)]
    out = chosen[int(rng.integers(len(chosen)))]
    into = unchosen[int(rng.integers(len(unchosen)))]
    return tuple(sorted((set(chosen) - {out}) | {into}))


def _index_arch(architecture: Mapping[str, Any], choices: dict[str, Choice]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v) for k, v in to_index_form(architecture, choices).items()}


def sample_architecture(search_space: Mapping[str, Any], rng: np.random.Generator) -> dict[str, list[int]]:
    """A uniformly random architecture in index form (``{key: sorted indices}``, sorted keys).

    Args:
        search_space: the nnictl JSON or parsed choices.
        rng: the generator to draw from.
    """
    choices = parse_search_space(search_space)
    return {k: list(sample_choice(c, rng)) for k, c in choices.items()}


def mutate_architecture(
    architecture: Mapping[str, Any],
    search_space: Mapping[str, Any],
    rng: np.random.Generator,
    *,
    prob: float | None = None,
) -> dict[str, list[int]]:
    """A mutated copy of an architecture, in index form.

    Args:
        architecture: the parent, in any admitted form.
        search_space: the nnictl JSON or parsed choices.
        rng: the generator to draw from.
        prob: with a number, every key is redrawn (:func:`sample_choice`) with this probability,
            as SPOS does (the child may equal the parent). With ``None``, exactly one key that
            admits another value is moved to a neighbouring value (:func:`neighbour_choice`), as
            aging evolution does; a space where no key can change returns the parent.

    Returns:
        ``{key: sorted indices}``.

    Raises:
        SearchSpaceError: the parent breaks the space, or ``prob`` is not in [0, 1].
    """
    choices = parse_search_space(search_space)
    parent = _index_arch(architecture, choices)
    if prob is not None:
        if not isinstance(prob, numbers.Real) or _is_bool(prob) or not 0.0 <= float(prob) <= 1.0:
            raise SearchSpaceError(f"mutation prob must be a number in [0, 1], got {prob!r}")
        child = {
            k: (sample_choice(c, rng) if rng.random() < prob else parent[k]) for k, c in choices.items()
        }
    else:
        movable = [k for k, c in choices.items() if choice_size(c) > 1]
        child = dict(parent)
        if movable:
            key = movable[int(rng.integers(len(movable)))]
            child[key] = neighbour_choice(choices[key], parent[key], rng)
    return {k: list(v) for k, v in child.items()}


def crossover_architectures(
    first: Mapping[str, Any], second: Mapping[str, Any], search_space: Mapping[str, Any], rng: np.random.Generator
) -> dict[str, list[int]]:
    """Uniform crossover: each key's value comes from either parent with probability 1/2.

    Args:
        first: one parent, in any admitted form.
        second: the other parent.
        search_space: the nnictl JSON or parsed choices.
        rng: the generator to draw from.

    Returns:
        The child in index form, ``{key: sorted indices}``.
    """
    choices = parse_search_space(search_space)
    a, b = _index_arch(first, choices), _index_arch(second, choices)
    return {k: list(a[k] if rng.random() < 0.5 else b[k]) for k in choices}


def choice_values(choice: Choice) -> list[tuple[int, ...]]:
    """Every exact value of a choice as a tuple of sorted candidate indices (one index for a
    LayerChoice; every ``n_chosen``-subset, or every subset when ``n_chosen`` is None)."""
    n = choice.length
    if choice.type == LAYER_CHOICE:
        return [(i,) for i in range(n)]
    if choice.n_chosen is None:
        return [tuple(i for i in range(n) if mask >> i & 1) for mask in range(2**n)]
    return [tuple(c) for c in itertools.combinations(range(n), choice.n_chosen)]


def enumerate_architectures(search_space: Mapping[str, Any]):
    """Yield every architecture of a space in index form, in a fixed order.

    Args:
        search_space: the nnictl JSON or parsed choices (mind :func:`space_size`).

    Yields:
        ``{key: sorted indices}``.
    """
    choices = parse_search_space(search_space)
    keys = list(choices)
    for combo in itertools.product(*(choice_values(choices[k]) for k in keys)):
        yield {k: list(v) for k, v in zip(keys, combo)}


_choice_values = choice_values  # the old private name, kept for existing callers
