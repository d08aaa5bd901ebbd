"""Sizes, sampling and variation of architectures, in index form (torch-free).

The functions work on one :class:`~searchers.space.choice.Choice` at a time or on a whole space,
and on the *index form* of a value: a sorted tuple of chosen candidate indices (``(1,)`` for a
layer choice, ``(0, 2)`` for an input choice). They draw from a caller-owned
``numpy.random.Generator`` so that tuners stay seeded. Every value they return obeys
:meth:`Choice.resolve` with ``exact=True``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from searchers.checks import check_probability
from searchers.errors import SearchSpaceError
from searchers.space.choice import LAYER_CHOICE, Choice
from searchers.space.forms import parse_search_space, to_index_form

__all__ = [
    "choice_size",
    "choice_values",
    "space_size",
    "sample_choice",
    "neighbour_choice",
    "sample_architecture",
    "mutate_architecture",
    "crossover_architectures",
    "enumerate_architectures",
]


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
        prob = check_probability("mutation prob", prob, error=SearchSpaceError)
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


def enumerate_architectures(search_space: Mapping[str, Any]) -> Iterator[dict[str, list[int]]]:
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
