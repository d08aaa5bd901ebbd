"""searchers.space: parsing, value forms, hashing, sampling, mutation, crossover, enumeration."""

from __future__ import annotations

import math

import numpy as np
import pytest

from searchers import space as S
from searchers.space import (
    SearchSpaceError,
    canonical_hash,
    choice_size,
    crossover_architectures,
    enumerate_architectures,
    from_index_form,
    mutate_architecture,
    neighbour_choice,
    parse_search_space,
    sample_architecture,
    sample_choice,
    space_size,
    to_index_form,
    to_parameters,
)
from searchers.testing import SMALL_SPACE, SPACES, check_parameters, mnist1d_search_space

MNIST1D = mnist1d_search_space()


def test_mnist1d_space_is_the_contract():
    assert list(MNIST1D) == sorted(MNIST1D)
    assert space_size(MNIST1D) == 6**4 * 2 ** (1 + 2 + 3) == 82_944
    assert MNIST1D["skip3"]["_value"] == {"candidates": ["stem", "op0", "op1"], "n_chosen": None}


@pytest.mark.parametrize(
    "entry, match",
    [
        ({"_type": "bogus", "_value": ["a"]}, r"unknown '_type' 'bogus' for key 'k' \(valid: layer_choice, input_choice\)"),
        ({"_type": "layer_choice", "_value": []}, r"non-empty list, got \[\] for key 'k'"),
        ({"_type": "input_choice", "_value": {"candidates": ["a"], "n_chosen": 2}}, r"got 2 for key 'k'"),
        ({"_type": "input_choice", "_value": {"candidates": ["a"], "n_chosen": -1}}, r"got -1 for key 'k'"),
    ],
)
def test_validation_names_key_and_value(entry, match):
    with pytest.raises(SearchSpaceError, match=match):
        parse_search_space({"k": entry})
    assert issubclass(SearchSpaceError, ValueError)


def test_idex_alias_is_read_as_idx():
    space = SPACES["inputs"]
    choice = parse_search_space(space)["free"]
    assert choice.resolve({"_value": ["t"], "_idex": [1]}, exact=True) == (1,)
    with pytest.raises(SearchSpaceError, match="disagree"):
        choice.resolve({"_idx": [0], "_idex": [1]})


def test_index_and_parameter_forms_round_trip():
    arch = {"op0": 1, "op1": "identity", "op2": [2], "op3": {"_idx": 0}, "skip1": [], "skip2": ["op0"], "skip3": [True, False, True]}
    params = to_parameters(arch, MNIST1D)
    assert params["op1"] == {"_value": "identity", "_idx": 5}
    assert params["skip3"] == {"_value": ["stem", "op1"], "_idx": [0, 2]}
    indices = to_index_form(params, MNIST1D)
    assert from_index_form(indices, MNIST1D) == params
    assert canonical_hash(arch, MNIST1D) == canonical_hash(params, MNIST1D) == canonical_hash(indices, MNIST1D)
    other = dict(indices, op0=[0])
    assert canonical_hash(other, MNIST1D) != canonical_hash(indices, MNIST1D)


@pytest.mark.parametrize("name", sorted(SPACES) + ["small"])
def test_space_size_matches_enumeration(name):
    space = SMALL_SPACE if name == "small" else SPACES[name]
    if space_size(space) > 5000:
        choices = parse_search_space(space)
        assert space_size(space) == math.prod(choice_size(c) for c in choices.values())
        return
    archs = list(enumerate_architectures(space))
    assert len(archs) == space_size(space)
    assert len({canonical_hash(a, space) for a in archs}) == len(archs)
    for arch in archs:
        check_parameters(from_index_form(arch, space), space)


def test_choice_sizes():
    c = parse_search_space(SPACES["inputs"])
    assert [choice_size(c[k]) for k in ("free", "none", "one", "two", "all", "op")] == [8, 1, 3, 6, 1, 2]


@pytest.mark.parametrize("name", sorted(SPACES))
def test_sampling_gives_exact_values_and_covers_the_choice(name):
    rng = np.random.default_rng(0)
    for choice in parse_search_space(SPACES[name]).values():
        values = {sample_choice(choice, rng) for _ in range(300)}
        for v in values:
            assert list(v) == sorted(set(v))
            choice.resolve(list(v), exact=True)
        if choice_size(choice) <= 8:
            assert len(values) == choice_size(choice)


def test_sample_architecture_is_seeded():
    a = [sample_architecture(MNIST1D, np.random.default_rng(3)) for _ in range(2)]
    assert a[0] == a[1]
    check_parameters(from_index_form(a[0], MNIST1D), MNIST1D)


@pytest.mark.parametrize("name", sorted(SPACES))
def test_neighbour_differs_in_one_step_and_stays_exact(name):
    rng = np.random.default_rng(1)
    for choice in parse_search_space(SPACES[name]).values():
        for _ in range(50):
            value = sample_choice(choice, rng)
            nb = neighbour_choice(choice, value, rng)
            choice.resolve(list(nb), exact=True)
            assert list(nb) == sorted(set(nb))
            if choice_size(choice) == 1:
                assert nb == value
            elif choice.type == S.LAYER_CHOICE:
                assert nb != value
            elif choice.n_chosen is None:
                assert len(set(nb) ^ set(value)) == 1
            else:
                assert len(nb) == len(value) == choice.n_chosen and len(set(nb) - set(value)) == 1


def test_mutate_one_key_and_per_key_probability():
    rng = np.random.default_rng(2)
    parent = sample_architecture(MNIST1D, rng)
    for _ in range(30):
        child = mutate_architecture(parent, MNIST1D, rng)
        assert sum(child[k] != parent[k] for k in parent) == 1
    assert mutate_architecture(parent, MNIST1D, rng, prob=0.0) == parent
    changed = [sum(mutate_architecture(parent, MNIST1D, rng, prob=1.0)[k] != parent[k] for k in parent) for _ in range(20)]
    assert max(changed) > 1
    with pytest.raises(SearchSpaceError, match=r"prob must be a number in \[0, 1\], got 1.5"):
        mutate_architecture(parent, MNIST1D, rng, prob=1.5)
    frozen = {"k": {"_type": "layer_choice", "_value": ["only"]}}
    assert mutate_architecture({"k": 0}, frozen, rng) == {"k": [0]}


def test_crossover_takes_each_key_from_a_parent():
    rng = np.random.default_rng(4)
    a, b = sample_architecture(MNIST1D, rng), sample_architecture(MNIST1D, rng)
    seen_a = seen_b = False
    for _ in range(20):
        child = crossover_architectures(a, b, MNIST1D, rng)
        for k in MNIST1D:
            assert child[k] in (a[k], b[k])
        seen_a |= any(child[k] == a[k] != b[k] for k in MNIST1D)
        seen_b |= any(child[k] == b[k] != a[k] for k in MNIST1D)
    assert seen_a and seen_b


def test_helpers_reject_architectures_outside_the_space():
    rng = np.random.default_rng(0)
    with pytest.raises(SearchSpaceError, match="'op0'"):
        mutate_architecture({"op0": 9}, {"op0": MNIST1D["op0"]}, rng)
