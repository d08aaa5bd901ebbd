"""DartsMutator: float decisions with a gradient, argmax / top-k / gate export, the DARTS step."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

from raynas.nas import (
    ArchTrainer,
    DartsMutator,
    InputChoice,
    LayerChoice,
    RandomMutator,
    apply_fixed_architecture,
    to_decisions,
)
from raynas.nas.darts import DartsConfigError
from raynas.train.loop import parameter_digest
from raynas.zoo.mnist1d import build_supernet, load_data


class Toy(nn.Module):
    """A LayerChoice and InputChoices with n_chosen None, 2 and 0, all on a (batch, 4) input."""

    def __init__(self) -> None:
        super().__init__()
        self.op = LayerChoice([nn.Linear(4, 4), nn.Tanh(), nn.Identity()], key="op")
        self.any = InputChoice(n_candidates=3, n_chosen=None, key="any")
        self.two = InputChoice(n_candidates=4, n_chosen=2, key="two")
        self.zero = InputChoice(n_candidates=2, n_chosen=0, key="zero")
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.op(x)
        for choice, n in ((self.any, 3), (self.two, 4), (self.zero, 2)):
            extra = choice([x * (i + 1) for i in range(n)])
            if extra is not None:
                y = y + extra
        return self.head(y)


def test_alphas_start_at_zero_and_search_weights_are_uniform():
    mutator = DartsMutator(Toy())
    assert [a.tolist() for a in mutator.alphas] == [[0.0] * 3, [0.0] * 3, [0.0] * 4, [0.0] * 2]
    weights = mutator.sample_search()
    assert torch.allclose(weights["op"], torch.full((3,), 1 / 3))
    assert torch.equal(weights["any"], torch.full((3,), 0.5))  # sigmoid gates (softmax vs 'none')
    assert torch.allclose(weights["two"], torch.full((4,), 0.25))
    assert torch.equal(weights["zero"], torch.zeros(2))
    assert all(w.is_floating_point() for w in weights.values())
    assert {n for n, _ in mutator.named_parameters()} == {f"alphas.{i}" for i in range(4)}


def test_gradients_reach_every_alpha_through_the_float_decisions():
    torch.manual_seed(0)
    model = Toy()
    mutator = DartsMutator(model)
    mutator.reset()
    loss = nn.functional.cross_entropy(model(torch.randn(8, 4)), torch.randint(0, 3, (8,)))
    loss.backward()
    for key in ("op", "any", "two"):
        grad = mutator.alpha(key).grad
        assert grad is not None and grad.abs().sum() > 0, key
    assert mutator.alpha("zero").grad is None  # n_chosen=0: nothing runs, nothing to learn
    with pytest.raises(KeyError, match="'nope'"):
        mutator.alpha("nope")


def test_sample_final_argmax_top_k_and_gates_beating_none():
    model = Toy()
    mutator = DartsMutator(model)
    with torch.no_grad():
        mutator.alpha("op").copy_(torch.tensor([0.1, 0.7, -0.2]))
        mutator.alpha("any").copy_(torch.tensor([0.3, -0.1, 0.0]))  # 0.0 ties with 'none': dropped
        mutator.alpha("two").copy_(torch.tensor([0.5, 0.2, 0.5, 0.9]))  # tie 0.5/0.5: lower index
    final = {k: v.tolist() for k, v in mutator.sample_final().items()}
    assert final == {
        "op": [False, True, False],
        "any": [True, False, False],
        "two": [True, False, False, True],
        "zero": [False, False],
    }
    exported = mutator.export()
    assert exported == {"op": "1", "any": [0], "two": [0, 3], "zero": []}
    decisions = to_decisions(exported, model)
    assert decisions["two"].tolist() == [True, False, False, True]


def test_export_at_the_start_is_valid_and_keeps_no_gated_input():
    model = build_supernet()
    exported = DartsMutator(model).export()
    assert exported == {"op0": "conv3", "op1": "conv3", "op2": "conv3", "op3": "conv3", "skip1": [], "skip2": [], "skip3": []}
    fixed = build_supernet()
    apply_fixed_architecture(fixed, exported)
    assert fixed(torch.randn(2, 1, 40)).shape == (2, 10)


@pytest.fixture(scope="module")
def mnist1d_small():
    data = load_data()
    x, y = data["train"].tensors
    return torch.utils.data.TensorDataset(x[:768], y[:768])


@pytest.fixture
def one_thread():
    """One torch thread for the test; later tests get the caller's count back."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_darts_on_mnist1d_moves_alpha_away_from_uniform_and_exports_a_valid_architecture(mnist1d_small, one_thread):
    torch.manual_seed(0)
    model = build_supernet()
    mutator = DartsMutator(model, lr=0.01, seed=0)
    trainer = ArchTrainer(model, mutator, optimizer=torch.optim.Adam(model.parameters(), lr=0.01))
    reports = trainer.fit(mnist1d_small, epochs=2, batch_size=64)
    assert len(reports) == 12 and all("arch_loss" in r for r in reports)
    probs = mutator.probabilities()
    for key in ("op0", "op1", "op2", "op3"):
        assert max(abs(p - 1 / 6) for p in probs[key]) > 0.005, (key, probs[key])
    for key in ("skip1", "skip2", "skip3"):
        assert max(abs(p - 0.5) for p in probs[key]) > 0.005, (key, probs[key])
    exported = mutator.export()
    decisions = to_decisions(exported, model)
    assert all(decisions[f"op{i}"].sum() == 1 for i in range(4))
    fixed = build_supernet()
    apply_fixed_architecture(fixed, exported)
    assert fixed(mnist1d_small.tensors[0][:4]).shape == (4, 10)


def test_arch_step_changes_only_alpha_and_leaves_weight_grads_alone(mnist1d_small):
    torch.manual_seed(0)
    model = build_supernet()
    mutator = DartsMutator(model, lr=0.01)
    before = parameter_digest(model)
    x, y = mnist1d_small.tensors
    mutator.arch_step((x[:32], y[:32]))
    assert parameter_digest(model) == before
    assert all(p.grad is None for p in model.parameters())
    assert any(a.detach().abs().sum() > 0 for a in mutator.alphas)


def test_second_order_restores_the_weights_and_differs_from_first_order(mnist1d_small):
    x, y = mnist1d_small.tensors
    train, arch = (x[:32], y[:32]), (x[32:64], y[32:64])
    torch.manual_seed(0)
    first_model = build_supernet()
    second_model = copy.deepcopy(first_model)
    first = DartsMutator(first_model, lr=0.01)
    second = DartsMutator(second_model, lr=0.01, order=2)
    first_model.eval(), second_model.eval()  # no BatchNorm statistics drift: weights compare exactly
    before = parameter_digest(second_model)
    second.arch_step(arch, train_batch=train, lr=0.01, weight_decay=1e-4)
    first.arch_step(arch, train_batch=train, lr=0.01)
    assert parameter_digest(second_model) == before  # the virtual step was undone
    a1 = torch.cat([a.detach() for a in first.alphas])
    a2 = torch.cat([a.detach() for a in second.alphas])
    assert a2.abs().sum() > 0 and not torch.equal(a1, a2)
    with pytest.raises(ValueError, match="train_batch and lr"):
        second.arch_step(arch)


def test_state_dict_and_pickle_carry_alpha_and_the_arch_optimizer(mnist1d_small):
    x, y = mnist1d_small.tensors
    model = build_supernet()
    mutator = DartsMutator(model, lr=0.01)
    for i in range(3):
        mutator.arch_step((x[i * 16 : (i + 1) * 16], y[i * 16 : (i + 1) * 16]))
    state = mutator.state_dict()
    assert state["_extra_state"]["arch_optimizer"]["state"]  # Adam moments travel
    twin = build_supernet()
    twin.load_state_dict(model.state_dict())
    restored = DartsMutator(twin, lr=0.01)
    restored.load_state_dict(state)
    clone = pickle.loads(pickle.dumps(mutator))
    batch = (x[100:132], y[100:132])
    torch.manual_seed(1)
    mutator.arch_step(batch)
    for other in (restored, clone):
        torch.manual_seed(1)
        other.arch_step(batch)
        assert all(torch.equal(a, b) for a, b in zip(mutator.alphas, other.alphas))


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"lr": 0}, ["lr", "> 0", "0"]),
        ({"order": 3}, ["order", "1 or 2", "3"]),
        ({"weight_decay": -1}, ["weight_decay", ">= 0", "-1"]),
        ({"betas": (0.5,)}, ["betas", "(0.5,)"]),
        ({"init_std": "big"}, ["init_std", "'big'"]),
    ],
)
def test_bad_settings_name_the_setting_and_value(kwargs, words):
    with pytest.raises(DartsConfigError) as info:
        DartsMutator(Toy(), **kwargs)
    assert isinstance(info.value, ValueError)
    for word in words:
        assert word in str(info.value)


def test_arch_trainer_checks_its_mutator():
    model = Toy()
    with pytest.raises(TypeError, match="LearnableMutator"):
        ArchTrainer(model, RandomMutator(model), optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    other = Toy()
    mutator = DartsMutator(other)
    with pytest.raises(ValueError, match="not bound to this model"):
        ArchTrainer(model, mutator, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="arch_warmup_steps"):
        ArchTrainer(other, mutator, optimizer=torch.optim.SGD(other.parameters(), lr=0.1), arch_warmup_steps=-1)
