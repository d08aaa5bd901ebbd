import pickle
from collections import Counter

import pytest
import torch
from torch import nn

from raynas.nas import InputChoice, LayerChoice, RandomMutator


class Net(nn.Module):
    def __init__(self, n_chosen):
        super().__init__()
        self.op = LayerChoice([nn.Identity() for _ in range(4)], key="op")
        self.inp = InputChoice(n_candidates=5, n_chosen=n_chosen, key="inp")


def _samples(mutator, n):
    return [{k: v.tolist() for k, v in mutator.sample_search().items()} for _ in range(n)]


def test_layer_choice_is_a_uniform_one_hot():
    samples = _samples(RandomMutator(Net(None), seed=0), 4000)
    assert all(sum(s["op"]) == 1 for s in samples)
    counts = Counter(s["op"].index(True) for s in samples)
    assert set(counts) == {0, 1, 2, 3}
    assert all(850 < c < 1150 for c in counts.values())


def test_n_chosen_none_keeps_each_input_with_probability_one_half():
    samples = _samples(RandomMutator(Net(None), seed=0), 4000)
    for i in range(5):
        kept = sum(s["inp"][i] for s in samples)
        assert 1800 < kept < 2200
    assert any(sum(s["inp"]) == 0 for s in samples)  # choosing nothing is allowed


@pytest.mark.parametrize("k", [0, 1, 3, 5])
def test_n_chosen_k_chooses_a_uniform_subset_of_size_k(k):
    samples = _samples(RandomMutator(Net(k), seed=0), 2000)
    assert all(sum(s["inp"]) == k for s in samples)
    if 0 < k < 5:
        per_input = [sum(s["inp"][i] for s in samples) for i in range(5)]
        expected = 2000 * k / 5
        assert all(abs(c - expected) < 0.15 * expected for c in per_input)


def test_a_seed_reproduces_the_paths_and_differs_from_another_seed():
    a = _samples(RandomMutator(Net(None), seed=7), 20)
    b = _samples(RandomMutator(Net(None), seed=7), 20)
    c = _samples(RandomMutator(Net(None), seed=8), 20)
    assert a == b and a != c


def test_rng_state_travels_in_state_dict_and_pickle():
    mutator = RandomMutator(Net(2), seed=3)
    _samples(mutator, 5)
    state = mutator.state_dict()
    expected = _samples(mutator, 10)
    other = RandomMutator(Net(2), seed=99)
    other.load_state_dict(state)
    assert _samples(other, 10) == expected
    mutator.load_state_dict(state)
    clone = pickle.loads(pickle.dumps(mutator))
    assert _samples(clone, 10) == expected


def test_reset_applies_a_new_sample():
    net = Net(None)
    mutator = RandomMutator(net, seed=0)
    paths = set()
    for _ in range(10):
        mutator.reset()
        paths.add(str(mutator.status()))
    assert len(paths) > 1
    assert isinstance(mutator.status()["op"][0], float)
    assert torch.is_tensor(mutator.sample_final()["op"])
