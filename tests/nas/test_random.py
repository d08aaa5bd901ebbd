"""RandomMutator: uniform paths; NNI's torch global RNG without seed=, its own RNG with one."""

import pickle
from collections import Counter

import pytest
import torch
from torch import nn

from raynas.nas import InputChoice, LayerChoice, MutableScope, RandomMutator


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


# -- seeding as in NNI: torch's global RNG unless seed= ---------------------------------------


class Both(nn.Module):
    """A LayerChoice, an any-number InputChoice and a 2-of-5 one, inside a scope (as NNI's
    mutables iterate, the scope draws nothing)."""

    def __init__(self):
        super().__init__()
        self.scope = Scope()
        self.pick = InputChoice(n_candidates=5, n_chosen=2, key="pick")


class Scope(MutableScope):
    def __init__(self):
        super().__init__("scope")
        self.op = LayerChoice([nn.Identity() for _ in range(4)], key="op")
        self.inp = InputChoice(n_candidates=5, n_chosen=None, key="inp")


def test_unseeded_draws_nnis_torch_calls_from_the_global_rng():
    """NNI v1.9 random/mutator.py: torch.randint per LayerChoice, torch.randint(2) per input of an
    n_chosen=None InputChoice, torch.randperm for n_chosen=k; in the mutables' order."""
    mutator = RandomMutator(Both())
    torch.manual_seed(11)
    samples = _samples(mutator, 5)
    torch.manual_seed(11)
    expected = []
    for _ in range(5):
        op = torch.randint(high=4, size=(1,)).item()
        inp = torch.randint(high=2, size=(5,)).bool().tolist()
        perm = torch.randperm(5)[:2].tolist()
        expected.append({"op": [i == op for i in range(4)], "inp": inp, "pick": [i in perm for i in range(5)]})
    assert samples == expected


def test_torch_manual_seed_reproduces_an_unseeded_run():
    runs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        runs.append(_samples(RandomMutator(Net(2)), 20))
    assert runs[0] == runs[1] != runs[2]


def test_construction_draws_nothing_and_a_seed_leaves_the_global_rng_alone():
    net, other = Net(None), Net(None)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    RandomMutator(Net(3))
    assert torch.equal(torch.get_rng_state(), state)
    a = _samples(RandomMutator(net, seed=5), 10)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(1)
    assert _samples(RandomMutator(other, seed=5), 10) == a


def test_a_subclass_drawing_from_numpy_is_reproduced_by_torch_manual_seed_too():
    class Shuffled(RandomMutator):  # raynas' SPOS / fair samplers draw extra numbers this way
        def sample_search(self):
            result = super().sample_search()
            result["op"] = result["op"][torch.from_numpy(self._rng.permutation(4))]
            return result

    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        runs.append(_samples(Shuffled(Net(None)), 10))
    assert runs[0] == runs[1]


def test_an_unseeded_mutator_pickles_and_keeps_drawing_from_torchs_rng():
    mutator = RandomMutator(Net(2))
    mutator.reset()
    clone = pickle.loads(pickle.dumps(mutator))
    torch.manual_seed(4)
    expected = _samples(mutator, 10)
    torch.manual_seed(4)
    assert _samples(clone, 10) == expected
    assert mutator.state_dict()["_extra_state"] == {"rng": None}  # torch's RNG is the caller's to save
    seeded = RandomMutator(Net(2), seed=9)
    reference = _samples(RandomMutator(Net(2), seed=9), 5)
    seeded.load_state_dict(mutator.state_dict())  # nothing to restore: keeps its own sequence
    assert _samples(seeded, 5) == reference
