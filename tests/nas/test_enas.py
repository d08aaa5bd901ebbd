"""EnasMutator: valid samples (n_chosen respected), NNI v1.9's arguments and attributes with NNI's
meaning, seeding (torch's global RNG unless seed=), pickling, REINFORCE on a toy."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from torch import nn

from raynas.nas import (
    NO_KEY,
    EnasMutator,
    InputChoice,
    LayerChoice,
    MutableScope,
    apply_fixed_architecture,
    to_decisions,
)
from raynas.nas.enas import EnasConfigError
from raynas.zoo.mnist1d import build_supernet


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The controller's ops are tiny: one torch thread (a busy shared machine's thread pool
    turns each multi-row op into milliseconds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


def test_log_prob_and_entropy_of_the_sample_are_nnis_and_keep_a_graph():
    """NNI's meaning: ``sample_log_prob`` is the sample's negative log-probability (a
    cross-entropy, minimised times the advantage); ``sample_entropy`` the drawn decisions'
    detached ``-p log p``."""
    model = nn.Sequential(LayerChoice([nn.Identity(), nn.Tanh(), nn.ReLU(), nn.Sigmoid()], key="op"))
    mutator = EnasMutator(model, seed=3)
    probs = mutator.policy()["op"]
    sample = mutator.sample_search()
    chosen = int(sample["op"].nonzero())
    assert math.isclose(float(torch.exp(-mutator.sample_log_prob.detach())), probs[chosen], rel_tol=1e-5)
    p = probs[chosen]
    assert math.isclose(float(mutator.sample_entropy), -p * math.log(p), rel_tol=1e-5)
    assert not mutator.sample_entropy.requires_grad
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
        ({"entropy_reduction": "max"}, ["entropy_reduction", "'sum' or 'mean'", "'max'"]),
        ({"skip_target": 1.0}, ["skip_target", "< 1.0", "1.0"]),
        ({"lstm_num_layers": 0}, ["lstm_num_layers", ">= 1", "0"]),
        ({"cell_exit_extra_step": "yes"}, ["cell_exit_extra_step", "'yes'"]),
        ({"temperature": -1}, ["temperature", "> 0", "-1"]),
    ],
)
def test_bad_settings_name_the_setting_and_value(kwargs, words):
    with pytest.raises(EnasConfigError) as info:
        EnasMutator(Choices(), **kwargs)
    assert isinstance(info.value, ValueError)
    for word in words:
        assert word in str(info.value)


# -- NNI v1.9's arguments and their meaning ---------------------------------------------------


class ConvOp(nn.Module):
    """A candidate whose type name contains "conv" (what ``branch_bias`` looks for)."""

    def __init__(self, width: int = 4):
        super().__init__()
        self.lin = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.lin(x))


class PoolOp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.5


def _ops() -> list[nn.Module]:
    return [ConvOp(), PoolOp(), nn.Identity()]


class MicroCell(nn.Module):
    """ENAS-micro idiom: pick one earlier node, run one op on it."""

    def __init__(self, name: str, prev_labels: list[str]):
        super().__init__()
        self.input_choice = InputChoice(choose_from=prev_labels, n_chosen=1, key=name + "_input")
        self.op_choice = LayerChoice(_ops(), key=name + "_op")

    def forward(self, prev: list[torch.Tensor]) -> torch.Tensor:
        return self.op_choice(self.input_choice(prev))


class MicroNode(MutableScope):
    def __init__(self, name: str, prev_labels: list[str]):
        super().__init__(name)
        self.cell_x = MicroCell(name + "_x", prev_labels)
        self.cell_y = MicroCell(name + "_y", prev_labels)

    def forward(self, prev: list[torch.Tensor]) -> torch.Tensor:
        return self.cell_x(prev) + self.cell_y(prev)


class MicroNet(nn.Module):
    """A normal and a reduce layer of two nodes each; the two cell inputs are unlabelled (NO_KEY),
    later nodes choose from the earlier nodes' scope keys."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 4)
        self.layers = nn.ModuleList()
        for prefix in ("normal", "reduce"):
            labels = [NO_KEY, NO_KEY]
            nodes = nn.ModuleList()
            for i in range(2):
                labels.append(f"{prefix}_node_{i}")
                nodes.append(MicroNode(labels[-1], labels[:-1]))
            self.layers.append(nodes)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prev = cur = self.stem(x)
        for nodes in self.layers:
            outs = [prev, cur]
            for node in nodes:
                outs.append(node(outs))
            prev, cur = cur, sum(outs[2:])
        return self.head(cur)


class MacroLayer(MutableScope):
    """ENAS-macro idiom: an unkeyed op, then skip connections from the earlier layers' scopes."""

    def __init__(self, key: str, prev_labels: list[str]):
        super().__init__(key)
        self.mutable = LayerChoice(_ops())
        self.skipconnect = InputChoice(choose_from=prev_labels, n_chosen=None) if prev_labels else None

    def forward(self, prev_layers: list[torch.Tensor]) -> torch.Tensor:
        out = self.mutable(prev_layers[-1])
        if self.skipconnect is not None:
            skip = self.skipconnect(prev_layers[:-1])
            if skip is not None:
                out = out + skip
        return out


class MacroNet(nn.Module):
    def __init__(self, layers: int = 3) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 4)
        labels: list[str] = []
        self.layers = nn.ModuleList()
        for i in range(layers):
            labels.append(f"layer_{i}")
            self.layers.append(MacroLayer(labels[-1], labels[:-1]))
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = [self.stem(x)]
        for layer in self.layers:
            layers.append(layer(layers))
        return self.head(layers[-1])


class Chain(nn.Module):
    """An InputChoice whose choose_from names earlier LayerChoice keys (no scopes at all)."""

    def __init__(self) -> None:
        super().__init__()
        self.op0 = LayerChoice(_ops(), key="op0")
        self.op1 = LayerChoice(_ops(), key="op1")
        self.skip = InputChoice(choose_from=["op0", "op1"], n_chosen=None, key="skip")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.op0(x)
        b = self.op1(a)
        skip = self.skip([a, b])
        return b if skip is None else b + skip


def _lstm_steps(mutator: EnasMutator) -> int:
    """LSTM steps of one sample (calls of the first LSTM cell)."""
    cell = next(m for m in mutator.modules() if isinstance(m, nn.LSTMCell))
    calls = []
    handle = cell.register_forward_hook(lambda *_: calls.append(1))
    try:
        with torch.no_grad():
            mutator.sample_search()
    finally:
        handle.remove()
    return len(calls)


@pytest.mark.parametrize(
    ("factory", "kwargs"),
    [
        (MicroNet, {"tanh_constant": 1.1, "cell_exit_extra_step": True}),  # examples/nas/enas/search.py (micro)
        (MacroNet, {}),  # the macro search: EnasTrainer's default EnasMutator(model)
        (MacroNet, {"temperature": None, "tanh_constant": None, "entropy_reduction": "mean"}),  # textnas/search.py
        (MicroNet, {"lstm_size": 16, "lstm_num_layers": 2}),
        (Chain, {}),
    ],
    ids=["enas-micro", "enas-macro", "textnas", "two-layers", "chain"],
)
def test_nni_example_calls_run_and_feed_nnis_trainer_loss(factory, kwargs):
    """NNI's EnasTrainer reads sample_log_prob / sample_entropy / sample_skip_penalty after
    reset() and minimises ``sample_log_prob * (reward - baseline) + skip_weight * penalty``."""
    torch.manual_seed(0)
    model = factory()
    mutator = EnasMutator(model, **kwargs)
    x, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    mutator.reset()
    with torch.no_grad():
        logits = model(x)
    reward = float((logits.argmax(-1) == y).float().mean()) + 1e-4 * mutator.sample_entropy.item()
    loss = mutator.sample_log_prob * (reward - 0.5) + 0.8 * mutator.sample_skip_penalty
    assert mutator.sample_log_prob.item() > 0  # a negative log-probability
    assert mutator.sample_entropy.item() > 0 and not mutator.sample_entropy.requires_grad
    assert (mutator.sample_skip_penalty.item() != 0) == (factory is not MicroNet)  # MicroNet: n_chosen=1 only
    loss.backward()
    first_cell = next(m for m in mutator.modules() if isinstance(m, nn.LSTMCell))
    assert first_cell.weight_hh.grad.abs().sum() > 0
    torch.optim.Adam(mutator.parameters(), lr=1e-3).step()  # NNI's mutator optimizer: all parameters
    with torch.no_grad():
        mutator.reset()
        assert model(x).shape[0] == 6
    assert set(mutator.export()) == set(mutator.status())


def test_positional_arguments_are_nnis():
    mutator = EnasMutator(MacroNet(), 32, 2, 1.1, True, 0.3, 2.0, 0.5, "mean")
    assert (mutator.lstm_size, mutator.lstm_num_layers, mutator.tanh_constant) == (32, 2, 1.1)
    assert (mutator.cell_exit_extra_step, mutator.skip_target, mutator.temperature) == (True, 0.3, 2.0)
    assert (mutator.branch_bias, mutator.entropy_reduction) == (0.5, "mean")
    assert len([m for m in mutator.modules() if isinstance(m, nn.LSTMCell)]) == 2
    assert torch.allclose(mutator.skip_targets, torch.tensor([0.7, 0.3]))


@pytest.mark.parametrize(
    ("factory", "plain", "extra"),
    # MicroNet: 8 op steps + 1 step anchoring the unlabelled inputs (shared by every NO_KEY
    # label), node labels are scope anchors; 4 scopes. MacroNet: one step per op, skips read
    # the 3 scopes' anchors. Chain: 2 ops, and each LayerChoice key the InputChoice names gets
    # a step when first read (no scope anchors it), as in NNI.
    [(MicroNet, 9, 13), (MacroNet, 3, 6), (Chain, 4, 4)],
)
def test_cell_exit_extra_step_adds_one_lstm_step_per_scope(factory, plain, extra):
    assert _lstm_steps(EnasMutator(factory(), seed=0)) == plain
    assert _lstm_steps(EnasMutator(factory(), cell_exit_extra_step=True, seed=0)) == extra


class Skips(nn.Module):
    """One InputChoice with n_chosen=None over four plain labels (its own anchors)."""

    def __init__(self, n_chosen: int | None = None) -> None:
        super().__init__()
        self.skip = InputChoice(choose_from=["a", "b", "c", "d"], n_chosen=n_chosen, key="skip")


def test_entropy_reduction_mean_averages_the_terms_of_a_decision():
    outs = {}
    for reduction in ("sum", "mean"):
        mutator = EnasMutator(Skips(), entropy_reduction=reduction, seed=4)
        samples = [mutator.sample_search()["skip"].tolist() for _ in range(3)]
        outs[reduction] = (samples, mutator.sample_log_prob.item(), mutator.sample_entropy.item(),
                           mutator.sample_skip_penalty.item())
    assert outs["sum"][0] == outs["mean"][0]  # same seed, same draws
    assert math.isclose(outs["mean"][1], outs["sum"][1] / 4, rel_tol=1e-5)  # four inputs, four terms
    assert math.isclose(outs["mean"][2], outs["sum"][2] / 4, rel_tol=1e-5)
    assert math.isclose(outs["mean"][3], outs["sum"][3], rel_tol=1e-6)  # the penalty is never reduced
    # a LayerChoice or an n_chosen=1 InputChoice is one term: no difference
    one = [EnasMutator(Skips(n_chosen=1), entropy_reduction=r, seed=4) for r in ("sum", "mean")]
    for m in one:
        m.sample_search()
    assert math.isclose(one[0].sample_log_prob.item(), one[1].sample_log_prob.item(), rel_tol=1e-6)


def _peaked(mutator: EnasMutator) -> EnasMutator:
    with torch.no_grad():
        mutator.soft.weight.mul_(200.0)  # large raw logits
    return mutator


def test_temperature_divides_and_tanh_constant_bounds_the_logits():
    def policy(**kwargs):
        model = nn.Sequential(LayerChoice([nn.Identity(), nn.Tanh(), nn.ReLU(), nn.Sigmoid()], key="op"))
        return torch.tensor(_peaked(EnasMutator(model, seed=2, **kwargs)).policy()["op"])

    raw = policy(tanh_constant=None)
    assert raw.max() / raw.min() > math.exp(1.0)
    cooled = policy(tanh_constant=None, temperature=4.0)
    assert torch.allclose(cooled, torch.softmax(raw.log() / 4.0, dim=0), atol=1e-5)
    bounded = policy(tanh_constant=0.5)  # logits in [-0.5, 0.5]
    assert bounded.max() / bounded.min() <= math.exp(1.0) + 1e-6
    assert not torch.allclose(bounded, raw, atol=1e-3)


def test_skip_penalty_is_the_kl_divergence_from_skip_target():
    mutator = EnasMutator(Skips(), skip_target=0.3, seed=1)
    keep = torch.tensor(mutator.policy()["skip"])  # softmax([-q, q])[1] = sigmoid(2q)
    q = torch.logit(keep.double()) / 2
    prob = torch.sigmoid(torch.stack([-q, q], 1))
    expected = float((prob * torch.log(prob / torch.tensor([0.7, 0.3], dtype=torch.double))).sum())
    mutator.sample_search()  # the first decision: its distribution does not depend on earlier draws
    assert math.isclose(mutator.sample_skip_penalty.item(), expected, rel_tol=1e-4)
    assert mutator.sample_skip_penalty.requires_grad
    other = EnasMutator(Skips(), skip_target=0.6, seed=1)
    other.sample_search()
    assert not math.isclose(other.sample_skip_penalty.item(), expected, rel_tol=1e-3)
    no_skips = EnasMutator(Skips(n_chosen=1), seed=1)
    no_skips.sample_search()
    assert no_skips.sample_skip_penalty.item() == 0.0


def test_branch_bias_favours_conv_candidates_of_reduce_keys():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.normal = LayerChoice([ConvOp(), PoolOp(), nn.Identity(), ConvOp()], key="normal_op")
            self.reduce = LayerChoice([ConvOp(), PoolOp(), nn.Identity(), ConvOp()], key="cell.reduce_op")

    biased = EnasMutator(Net(), branch_bias=0.4, seed=6)
    plain = EnasMutator(Net(), branch_bias=0.0, seed=6)
    assert [list(p.shape) for p in biased.bias_dict.values()] == [[4]]  # reduce keys only
    a, b = biased.policy(), plain.policy()
    assert a["normal_op"] == pytest.approx(b["normal_op"])
    shift = torch.tensor(a["cell.reduce_op"]).log() - torch.tensor(b["cell.reduce_op"]).log()
    shift = shift - shift[1]
    assert shift.tolist() == pytest.approx([0.8, 0.0, 0.0, 0.8], abs=1e-5)  # +0.4 conv, -0.4 others


# -- seeding: torch's global RNG unless seed= -------------------------------------------------


def _draws(mutator: EnasMutator, n: int = 8) -> list[list]:
    out = []
    for _ in range(n):
        with torch.no_grad():
            out.append([v.tolist() for v in mutator.sample_search().values()])  # keys differ per build
    return out


def test_torch_manual_seed_reproduces_an_unseeded_controller_and_its_draws():
    runs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        mutator = EnasMutator(MacroNet(layers=5))
        runs.append((_draws(mutator, 12), [p.detach().clone() for p in mutator.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(p, q) for p, q in zip(runs[0][1], runs[1][1]))
    assert runs[0][0] != runs[2][0]


def test_seed_owns_the_rng_and_leaves_torchs_global_rng_alone():
    first, second = MacroNet(layers=5), MacroNet(layers=5)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a = EnasMutator(first, seed=5)
    draws_a = _draws(a)
    assert torch.equal(torch.get_rng_state(), state)  # neither the init nor the draws used it
    torch.manual_seed(1)
    b = EnasMutator(second, seed=5)
    assert _draws(b) == draws_a
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_an_unseeded_mutator_pickles_and_keeps_drawing_from_torchs_rng():
    mutator = EnasMutator(MacroNet(), cell_exit_extra_step=True)
    mutator.reset()  # the sample_* attributes now hold graphs
    assert mutator.sample_log_prob.requires_grad and mutator.sample_skip_penalty.requires_grad
    clone = pickle.loads(pickle.dumps(mutator))
    assert clone.sample_log_prob is None and clone.sample_skip_penalty is None
    torch.manual_seed(3)
    expected = _draws(mutator)
    torch.manual_seed(3)
    assert _draws(clone) == expected
