"""EnasMutator: valid samples (n_chosen respected), log-prob and entropy, REINFORCE on a toy."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from torch import nn

from raynas.nas import EnasMutator, InputChoice, LayerChoice, apply_fixed_architecture, to_decisions
from raynas.nas.enas import EnasConfigError
from raynas.zoo.mnist1d import build_supernet


class Choices(nn.Module):
    """Every kind of choice: a LayerChoice, InputChoices with n_chosen None, 1, 2 (of 4) and 0."""

    def __init__(self) -> None:
        super().__init__()
        self.op = LayerChoice([nn.Identity(), nn.Tanh(), nn.ReLU()], key="op")
        self.any = InputChoice(n_candidates=3, n_chosen=None, key="any")
        self.one = InputChoice(n_candidates=3, n_chosen=1, key="one")
        self.two = InputChoice(n_candidates=4, n_chosen=2, key="two")
        self.zero = InputChoice(n_candidates=2, n_chosen=0, key="zero")


RULES = {"op": 1, "any": None, "one": 1, "two": 2, "zero": 0}


def test_samples_are_valid_architectures_and_cover_the_space():
    model = Choices()
    mutator = EnasMutator(model, seed=0)
    seen: dict[str, set] = {k: set() for k in RULES}
    for _ in range(300):
        with torch.no_grad():  # as in a weight step
            sample = mutator.sample_search()
        assert set(sample) == set(RULES)
        for key, mask in sample.items():
            assert mask.dtype == torch.bool
            if RULES[key] is not None:
                assert int(mask.sum()) == RULES[key], (key, mask)
            seen[key].add(tuple(mask.tolist()))
        mutator.apply_decisions(sample)
    assert len(seen["op"]) == 3 and len(seen["one"]) == 3
    assert len(seen["two"]) == 6  # every pair of 4
    assert len(seen["any"]) == 8  # every subset of 3, the empty one included
    exported = mutator.export()
    decisions = to_decisions(exported, model)
    assert decisions["two"].sum() == 2 and decisions["zero"].sum() == 0


def test_mnist1d_samples_and_greedy_export_apply_to_a_fixed_network():
    mutator = EnasMutator(build_supernet(), seed=1)
    for _ in range(20):
        mutator.reset()
        assert all(mutator.status()[f"op{i}"].count(1.0) == 1 for i in range(4))
    exported = mutator.export()
    assert exported == mutator.export()  # greedy decoding: deterministic, draws nothing
    fixed = build_supernet()
    apply_fixed_architecture(fixed, exported)
    assert fixed(torch.randn(3, 1, 40)).shape == (3, 10)


def test_log_prob_and_entropy_of_the_sample_are_kept_with_a_graph():
    model = nn.Sequential(LayerChoice([nn.Identity(), nn.Tanh(), nn.ReLU(), nn.Sigmoid()], key="op"))
    mutator = EnasMutator(model, seed=3)
    probs = mutator.policy()["op"]
    sample = mutator.sample_search()
    chosen = int(sample["op"].nonzero())
    assert math.isclose(float(mutator.sample_log_prob.detach().exp()), probs[chosen], rel_tol=1e-5)
    expected_entropy = -sum(p * math.log(p) for p in probs)
    assert math.isclose(float(mutator.sample_entropy.detach()), expected_entropy, rel_tol=1e-5)
    mutator.sample_log_prob.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in mutator.parameters())
    with torch.no_grad():
        mutator.reset()
    assert not mutator.sample_log_prob.requires_grad  # the weight step's sample builds no graph


def test_the_same_seed_draws_the_same_paths_and_the_state_dict_continues_them():
    a, b = EnasMutator(Choices(), seed=7), EnasMutator(Choices(), seed=7)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    first = [{k: v.tolist() for k, v in a.sample_search().items()} for _ in range(5)]
    assert first == [{k: v.tolist() for k, v in b.sample_search().items()} for _ in range(5)]
    restored = EnasMutator(Choices(), seed=99)
    restored.load_state_dict(a.state_dict())
    clone = pickle.loads(pickle.dumps(a))
    nxt = [{k: v.tolist() for k, v in a.sample_search().items()} for _ in range(5)]
    assert nxt == [{k: v.tolist() for k, v in restored.sample_search().items()} for _ in range(5)]
    assert nxt == [{k: v.tolist() for k, v in clone.sample_search().items()} for _ in range(5)]
    assert nxt != first


class Pick(nn.Module):
    """Logits = x rolled by ``shift``: only shift 0 classifies the one-hot inputs right."""

    def __init__(self, shift: int):
        super().__init__()
        self.shift = shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.roll(x, self.shift, dims=1)


class Toy(nn.Module):
    """The reward (accuracy) is 1 for candidate ``right`` of ``op``, 0 for the others; the
    InputChoice adds a little noise that does not change the prediction."""

    def __init__(self) -> None:
        super().__init__()
        self.op = LayerChoice([Pick(1), Pick(2), Pick(0), Pick(3)], key="op")
        self.extra = InputChoice(n_candidates=2, n_chosen=None, key="extra")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.op(x)
        e = self.extra([x * 0.01, x * -0.01])
        return y if e is None else y + e


def test_reinforce_shifts_the_policy_toward_the_rewarded_choice():
    model = Toy()
    mutator = EnasMutator(model, lr=0.02, entropy_weight=1e-4, seed=0)
    y = torch.arange(8) % 4
    x = nn.functional.one_hot(y, 4).float()
    before = mutator.policy()["op"][2]
    assert 0.15 < before < 0.35
    rewards = [mutator.arch_step((x, y))["reward"] for _ in range(150)]
    after = mutator.policy()["op"][2]
    assert after > 0.6 > before
    assert mutator.export()["op"] == "2"
    assert sum(rewards[-30:]) > sum(rewards[:30])
    assert mutator.baseline is not None and 0.0 < mutator.baseline <= 1.01


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"lstm_size": 0}, ["lstm_size", ">= 1", "0"]),
        ({"lr": -1.0}, ["lr", "> 0", "-1.0"]),
        ({"baseline_decay": 2.0}, ["baseline_decay", "<= 1.0", "2.0"]),
        ({"tanh_constant": 0}, ["tanh_constant", "> 0"]),
        ({"entropy_weight": "x"}, ["entropy_weight", "'x'"]),
    ],
)
def test_bad_settings_name_the_setting_and_value(kwargs, words):
    with pytest.raises(EnasConfigError) as info:
        EnasMutator(Choices(), **kwargs)
    assert isinstance(info.value, ValueError)
    for word in words:
        assert word in str(info.value)
