"""DartsMutator as NNI v1.9's: a "none" alpha per LayerChoice, connect-all InputChoices during search,
top-k edges by their strongest op at export with the dropped edges pruned; a mutator written with NNI's
DARTS idioms runs as a user mutator; raynas' ``learn_inputs`` variant; the DARTS architecture step."""

from __future__ import annotations

import copy
import logging
import pickle
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from raynas.nas import (
    ArchTrainer,
    DartsMutator,
    InputChoice,
    LayerChoice,
    Mutator,
    RandomMutator,
    apply_fixed_architecture,
    parse_model,
    to_decisions,
)
from raynas.nas.darts import DartsConfigError
from raynas.nas.utils import mutable_counting_scope
from raynas.train.reports import parameter_digest
from raynas.zoo.mnist1d import build_supernet, load_data
from tests.models import FactorizedReduce as HalfRes


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The CNN tests run every op of ~100 edges: threads only contend on a small shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


class Edges(nn.Module):
    """Three LayerChoice edges and a plain label behind a top-2 InputChoice, plus a connect-any one."""

    def __init__(self) -> None:
        super().__init__()
        self.e0 = LayerChoice([nn.Linear(4, 4), nn.Tanh()], key="e0")
        self.e1 = LayerChoice([nn.Linear(4, 4), nn.Tanh()], key="e1")
        self.e2 = LayerChoice([nn.Linear(4, 4), nn.Tanh()], key="e2")
        self.pick = InputChoice(choose_from=["e0", "e1", "x", "e2"], n_chosen=2, key="pick")
        self.extra = InputChoice(choose_from=["x", "e0"], n_chosen=None, key="extra")
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [self.e0(x), self.e1(x), x, self.e2(x)]
        y = self.pick(outs)
        extra = self.extra([x, outs[0]])
        return self.head(y if extra is None else y + extra)


# -- NNI's semantics ---------------------------------------------------------------------------


def test_choices_is_a_parameter_dict_of_layer_choice_alphas_with_a_none_entry():
    torch.manual_seed(3)
    mutator = DartsMutator(Toy())
    assert isinstance(mutator.choices, nn.ParameterDict) and list(mutator.choices) == ["op"]
    alpha = mutator.choices["op"]
    assert isinstance(alpha, nn.Parameter) and alpha.shape == (4,)  # 3 candidates + "none"
    assert 0 < alpha.detach().abs().max() < 0.01  # NNI: 1e-3 * randn
    assert {n for n, _ in mutator.named_parameters()} == {"choices.op"}
    assert mutator.alpha("op") is alpha and mutator.device() == alpha.device
    weights = mutator.sample_search()
    assert torch.allclose(weights["op"], F.softmax(alpha, dim=-1)[:-1])  # the "none" weight is dropped
    assert float(weights["op"].detach().sum()) < 1.0
    for key, n in (("any", 3), ("two", 4), ("zero", 2)):  # every input connected during search
        assert weights[key].dtype == torch.bool and weights[key].tolist() == [True] * n
    torch.manual_seed(3)
    assert torch.equal(DartsMutator(Toy()).choices["op"], alpha)  # unseeded: torch's global RNG, as NNI
    a, b = DartsMutator(Toy(), seed=5), DartsMutator(Toy(), seed=5)
    assert torch.equal(a.choices["op"], b.choices["op"])  # seeded: the mutator's own RNG
    assert DartsMutator(Toy(), init_std=0.0).choices["op"].tolist() == [0.0] * 4
    with pytest.raises(KeyError, match="'nope'"):
        mutator.alpha("nope")


def test_gradients_reach_every_alpha_entry_none_included():
    torch.manual_seed(0)
    model = Toy()
    mutator = DartsMutator(model)
    mutator.reset()
    loss = F.cross_entropy(model(torch.randn(8, 4)), torch.randint(0, 3, (8,)))
    loss.backward()
    grad = mutator.choices["op"].grad
    assert grad is not None and bool((grad != 0).all()), grad


def _set(mutator: DartsMutator, values: dict[str, list[float]]) -> None:
    with torch.no_grad():
        for key, value in values.items():
            mutator.choices[key].copy_(torch.tensor(value))


def test_sample_final_keeps_top_k_edges_by_their_strongest_op_and_prunes_the_rest(caplog):
    model = Edges()
    mutator = DartsMutator(model)
    # e0: "none" (last) is by far the largest logit: its strongest *op* is index 1, with a small weight
    _set(mutator, {"e0": [0.0, 0.1, 5.0], "e1": [2.0, 0.0, 0.0], "e2": [0.0, 0.5, 0.0]})
    with caplog.at_level(logging.WARNING, logger="raynas.nas.darts"):
        final = {k: v.tolist() for k, v in mutator.sample_final().items()}
        mutator.sample_final()
    assert final == {
        "e0": [False, False],  # its edge lost the top-2: pruned (NNI exports [])
        "e1": [True, False],
        "e2": [False, True],
        "pick": [False, True, False, True],  # e1 (0.79), e2 (0.45) > e0 (0.007) > "x" (not a LayerChoice: 0)
        "extra": [True, True],  # n_chosen=None: every input, nothing pruned
    }
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "'pick'" in warnings[0] and "'x'" in warnings[0]  # once per mutator
    exported = mutator.export()
    assert exported == {"e0": [], "e1": "0", "e2": "1", "pick": ["e1", "e2"], "extra": ["x", "e0"]}
    fixed = Edges()
    apply_fixed_architecture(fixed, exported)
    assert _count(fixed.e0) == 0 and fixed(torch.randn(2, 4)).shape == (2, 3)


def test_toy_export_follows_nni_for_every_n_chosen():
    model = Toy()
    mutator = DartsMutator(model)
    _set(mutator, {"op": [0.1, 0.7, -0.2, 3.0]})  # "none" wins the softmax, never the export
    assert {k: v.tolist() for k, v in mutator.sample_final().items()} == {
        "op": [False, True, False],
        "any": [True, True, True],
        "two": [True, True, False, False],  # unlabelled inputs all weigh 0: the lower indices
        "zero": [False, False],
    }
    assert mutator.export() == {"op": "1", "any": [0, 1, 2], "two": [0, 1], "zero": []}


def test_export_at_the_start_is_a_valid_mnist1d_architecture_with_every_skip():
    model = build_supernet()
    exported = DartsMutator(model, seed=0).export()
    assert {exported[f"skip{i}"].__len__() for i in (1, 2, 3)} == {1, 2, 3}
    assert all(exported[f"op{i}"] in model.ops[0].names for i in range(4))
    fixed = build_supernet()
    apply_fixed_architecture(fixed, exported)
    assert fixed(torch.randn(2, 1, 40)).shape == (2, 10)


# -- a DARTS CNN of our own, built the way NNI's DARTS example builds cells ---------------------


class ConvBn(nn.Sequential):
    """ReLU, (depthwise + pointwise, when ``sep``) conv, BatchNorm without affine parameters."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, dilation: int = 1, sep: bool = False):
        pad = dilation * (k - 1) // 2
        layers: list[nn.Module] = [nn.ReLU()]
        if sep:
            layers += [
                nn.Conv2d(c_in, c_in, k, stride, pad, dilation=dilation, groups=c_in, bias=False),
                nn.Conv2d(c_in, c_out, 1, bias=False),
            ]
        else:
            layers.append(nn.Conv2d(c_in, c_out, k, stride, pad, dilation=dilation, bias=False))
        layers.append(nn.BatchNorm2d(c_out, affine=False))
        super().__init__(*layers)


def edge_ops(c: int, stride: int, full: bool) -> OrderedDict:
    ops = OrderedDict(
        maxpool=nn.Sequential(nn.MaxPool2d(3, stride, 1), nn.BatchNorm2d(c, affine=False)),
        avgpool=nn.Sequential(nn.AvgPool2d(3, stride, 1, count_include_pad=False), nn.BatchNorm2d(c, affine=False)),
        skipconnect=nn.Identity() if stride == 1 else HalfRes(c, c),
        sepconv3x3=nn.Sequential(ConvBn(c, c, 3, stride, sep=True), ConvBn(c, c, 3, sep=True)),
        dilconv3x3=ConvBn(c, c, 3, stride, dilation=2, sep=True),
    )
    if full:
        ops["sepconv5x5"] = nn.Sequential(ConvBn(c, c, 5, stride, sep=True), ConvBn(c, c, 5, sep=True))
        ops["dilconv5x5"] = ConvBn(c, c, 5, stride, dilation=2, sep=True)
    return ops


class Node(nn.Module):
    """One LayerChoice per incoming edge, then an InputChoice keeping two of the edges."""

    def __init__(self, name: str, n_prev: int, c: int, n_reducing: int, full: bool):
        super().__init__()
        keys = [f"{name}_p{i}" for i in range(n_prev)]
        self.edges = nn.ModuleList(
            LayerChoice(edge_ops(c, 2 if i < n_reducing else 1, full), key=key) for i, key in enumerate(keys)
        )
        self.switch = InputChoice(choose_from=keys, n_chosen=2, key=f"{name}_switch")

    def forward(self, prev: list[torch.Tensor]) -> torch.Tensor:
        return self.switch([edge(t) for edge, t in zip(self.edges, prev)])


class Cell(nn.Module):
    def __init__(self, n_nodes: int, c_pp: int, c_p: int, c: int, reduction_p: bool, reduction: bool, full: bool):
        super().__init__()
        self.pre0 = HalfRes(c_pp, c) if reduction_p else ConvBn(c_pp, c, 1)
        self.pre1 = ConvBn(c_p, c, 1)
        kind = "reduce" if reduction else "normal"
        self.nodes = nn.ModuleList(
            Node(f"{kind}_n{d}", d, c, 2 if reduction else 0, full) for d in range(2, n_nodes + 2)
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for node in self.nodes:
            states.append(node(states))
        return torch.cat(states[2:], dim=1)


class DartsCNN(nn.Module):
    """Stem, ``layers`` cells (reduction at 1/3 and 2/3), global pooling, linear head; the normal cells
    share their keys, as do the reduction cells (one decision per edge of each cell type)."""

    def __init__(self, channels: int = 4, layers: int = 8, nodes: int = 4, classes: int = 10, full: bool = False):
        super().__init__()
        c = 3 * channels
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        c_pp, c_p, c = c, c, channels
        self.cells = nn.ModuleList()
        reduction = False
        for i in range(layers):
            reduction_p, reduction = reduction, i in (layers // 3, 2 * layers // 3)
            c = c * 2 if reduction else c
            self.cells.append(Cell(nodes, c_pp, c_p, c, reduction_p, reduction, full))
            c_pp, c_p = c_p, c * nodes
        self.head = nn.Linear(c_p, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.head(F.adaptive_avg_pool2d(s1, 1).flatten(1))


def build_cnn(**kwargs) -> DartsCNN:
    torch.manual_seed(0)
    with mutable_counting_scope():
        return DartsCNN(**kwargs)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _kept_op_count(supernet: nn.Module, exported: dict) -> int:
    """Parameters outside every LayerChoice plus those of each LayerChoice instance's kept op."""
    total = _count(supernet)
    for key, _path, mutable in parse_model(supernet).instances:
        if isinstance(mutable, LayerChoice):
            total -= _count(mutable)
            if isinstance(exported[key], str):
                total += _count(mutable[exported[key]])
    return total


def test_fixed_darts_cnn_has_no_dead_parameters():
    """8 cells, tiny widths: after apply_fixed_architecture(model, mutator.export()) every
    parameter gets a gradient from one backward pass, and the count is that of the kept ops."""
    supernet = build_cnn()
    mutator = DartsMutator(supernet, seed=1)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for alpha in mutator.choices.values():  # a decided architecture: alphas far apart
            alpha.copy_(torch.randn(len(alpha), generator=g))
    mutator.reset()
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([1, 7])
    assert supernet(x).shape == (2, 10)  # the search forward runs every op of every edge
    exported = mutator.export()
    pruned = [k for k, v in exported.items() if v == []]
    # every node with m incoming edges keeps 2: (0 + 1 + 2 + 3) dropped per cell type
    assert len(pruned) == 12
    assert all(len(v) == 2 for k, v in exported.items() if k.endswith("_switch"))

    fixed = build_cnn()
    apply_fixed_architecture(fixed, exported)
    assert _count(fixed) == _kept_op_count(supernet, exported) < _count(supernet)
    fixed.train()
    F.cross_entropy(fixed(x), y).backward()
    dead = [name for name, p in fixed.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert dead == []


def test_parameter_counts_of_a_real_sized_darts_cnn(capsys):
    """Reported, not asserted: the supernet, the fixed model without pruning (NNI's argmax on every
    edge, the dropped edges' ops kept as dead weights) and the pruned fixed model."""
    supernet = build_cnn(channels=16, layers=8, nodes=4, full=True)
    mutator = DartsMutator(supernet, seed=0)
    exported = mutator.export()
    names = supernet.cells[0].nodes[0].edges[0].names
    unpruned = dict(exported)
    for key, value in exported.items():
        if value == []:
            unpruned[key] = names[int(F.softmax(mutator.choices[key].detach(), dim=-1)[:-1].argmax())]
    counts = {"supernet": _count(supernet)}
    for name, arch in (("fixed_unpruned", unpruned), ("fixed_pruned", exported)):
        model = build_cnn(channels=16, layers=8, nodes=4, full=True)
        apply_fixed_architecture(model, arch)
        counts[name] = _count(model)
    with capsys.disabled():
        print(f"\nDARTS CNN (C=16, 8 cells, 4 nodes, 7 ops) parameters: {counts}")
    assert counts["fixed_pruned"] <= counts["fixed_unpruned"] < counts["supernet"]


# -- a user mutator written with NNI's DARTS idioms ------------------------------------------------


class NniIdiomDartsMutator(Mutator):
    """A user mutator written the way NNI v1.9's DartsMutator source is (NNI's idioms, our code)."""

    def __init__(self, model):
        super().__init__(model)
        self.choices = nn.ParameterDict()
        for mutable in self.mutables:
            if isinstance(mutable, LayerChoice):
                self.choices[mutable.key] = nn.Parameter(1.0e-3 * torch.randn(len(mutable) + 1))

    def device(self):
        for alpha in self.choices.values():
            return alpha.device

    def sample_search(self):
        result = dict()
        for mutable in self.mutables:
            if isinstance(mutable, LayerChoice):
                result[mutable.key] = F.softmax(self.choices[mutable.key], dim=-1)[:-1]
            elif isinstance(mutable, InputChoice):
                result[mutable.key] = torch.ones(mutable.n_candidates, dtype=torch.bool, device=self.device())
        return result

    def sample_final(self):
        result, strongest = dict(), dict()
        for mutable in self.mutables.traverse():
            if isinstance(mutable, LayerChoice):
                top, index = torch.max(F.softmax(self.choices[mutable.key], dim=-1)[:-1], 0)
                strongest[mutable.key] = top.detach()
                result[mutable.key] = F.one_hot(index, num_classes=len(mutable)).view(-1).bool()
        for mutable in self.mutables.traverse():
            if not isinstance(mutable, InputChoice):
                continue
            if mutable.n_chosen is None:
                result[mutable.key] = torch.ones(mutable.n_candidates, dtype=torch.bool, device=self.device())
                continue
            scores = torch.tensor([float(strongest.get(src, 0.0)) for src in mutable.choose_from])
            _, top = torch.topk(scores, mutable.n_chosen)
            kept = set(top.tolist())
            for i, src in enumerate(mutable.choose_from):
                if i not in kept and src in result:
                    result[src] = torch.zeros_like(result[src])
            result[mutable.key] = torch.tensor([i in kept for i in range(len(mutable.choose_from))], dtype=torch.bool)
        return result


def test_a_mutator_written_like_nnis_darts_trains_on_raynas_and_agrees_with_darts_mutator():
    model = build_cnn(channels=2, layers=3, nodes=2)
    mutator = NniIdiomDartsMutator(model)
    ctrl_optim = torch.optim.Adam(mutator.parameters(), 0.05, betas=(0.5, 0.999), weight_decay=1.0e-3)
    optimizer = torch.optim.SGD(model.parameters(), 0.05, momentum=0.9)
    before = {k: v.detach().clone() for k, v in mutator.choices.items()}
    g = torch.Generator().manual_seed(0)
    for _step in range(3):  # NNI's DartsTrainer step: an architecture step, then a weight step
        xt, xv = torch.randn(2, 4, 3, 8, 8, generator=g)
        yt, yv = torch.randint(0, 10, (2, 4), generator=g)
        ctrl_optim.zero_grad()
        mutator.reset()
        F.cross_entropy(model(xv), yv).backward()
        ctrl_optim.step()
        optimizer.zero_grad()
        mutator.reset()
        loss = F.cross_entropy(model(xt), yt)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
    assert all(not torch.equal(before[k], v) for k, v in mutator.choices.items())
    exported = mutator.export()
    assert len([k for k, v in exported.items() if v == []]) == 2  # node n3 of each cell type drops an edge

    # raynas' DartsMutator, given the same alphas, decides the same
    twin = build_cnn(channels=2, layers=3, nodes=2)
    darts = DartsMutator(twin)
    with torch.no_grad():
        for key, alpha in mutator.choices.items():
            darts.choices[key].copy_(alpha)
    ours, theirs = darts.sample_search(), mutator.sample_search()
    assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)
    ours, theirs = darts.sample_final(), mutator.sample_final()
    assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert darts.export() == exported
    fixed = build_cnn(channels=2, layers=3, nodes=2)
    apply_fixed_architecture(fixed, exported)
    assert fixed(torch.randn(2, 3, 8, 8)).shape == (2, 10)


# -- raynas' variant: learned input weights ------------------------------------------------------


def test_learn_inputs_gives_input_choices_alphas_softmax_and_sigmoid_gates():
    model = Toy()
    mutator = DartsMutator(model, learn_inputs=True, init_std=0.0)
    assert list(mutator.choices) == ["op", "any", "two", "zero"]
    assert [len(a) for a in mutator.choices.values()] == [4, 3, 4, 2]
    weights = mutator.sample_search()
    assert torch.allclose(weights["op"], torch.full((3,), 0.25))
    assert torch.equal(weights["any"], torch.full((3,), 0.5))  # sigmoid gates (softmax vs 'none')
    assert torch.allclose(weights["two"], torch.full((4,), 0.25))
    assert torch.equal(weights["zero"], torch.zeros(2))
    assert mutator.export()["any"] == []  # alpha 0 ties with 'none': nothing kept
    _set(mutator, {"op": [0.1, 0.7, -0.2, 0.0], "any": [0.3, -0.1, 0.0], "two": [0.5, 0.2, 0.5, 0.9]})
    assert {k: v.tolist() for k, v in mutator.sample_final().items()} == {
        "op": [False, True, False],
        "any": [True, False, False],
        "two": [True, False, False, True],  # top-2 by its own alpha, tie 0.5/0.5: the lower index
        "zero": [False, False],
    }
    mutator.reset()
    F.cross_entropy(model(torch.randn(8, 4)), torch.randint(0, 3, (8,))).backward()
    for key in ("op", "any", "two"):
        assert mutator.choices[key].grad.abs().sum() > 0, key
    assert mutator.choices["zero"].grad is None  # n_chosen=0: nothing runs, nothing to learn


def test_learn_inputs_prunes_the_edges_its_top_k_drops():
    mutator = DartsMutator(Edges(), learn_inputs=True)
    _set(mutator, {"pick": [1.0, 0.5, -1.0, -1.0], "extra": [1.0, -1.0]})
    final = mutator.export()
    assert final["pick"] == ["e0", "e1"] and final["e2"] == []
    assert final["extra"] == ["x"] and final["e0"] in ("0", "1")  # n_chosen=None drops e0 but prunes nothing


# -- the architecture step ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist1d_small():
    data = load_data()
    x, y = data["train"].tensors
    return torch.utils.data.TensorDataset(x[:768], y[:768])


def test_darts_on_mnist1d_moves_alpha_and_exports_a_valid_architecture(mnist1d_small):
    torch.manual_seed(0)
    model = build_supernet()
    mutator = DartsMutator(model, lr=0.01, seed=0)
    start = {k: v.detach().clone() for k, v in mutator.choices.items()}
    trainer = ArchTrainer(model, mutator, optimizer=torch.optim.Adam(model.parameters(), lr=0.01))
    reports = trainer.fit(mnist1d_small, epochs=2, batch_size=64)
    assert len(reports) == 12 and all("arch_loss" in r for r in reports)
    for key in ("op0", "op1", "op2", "op3"):
        assert (mutator.choices[key].detach() - start[key]).abs().max() > 0.005, key
    probs = mutator.probabilities()
    assert all(probs[f"skip{i}"] == [1.0] * i for i in (1, 2, 3))  # connect-all
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
    start = {k: v.detach().clone() for k, v in mutator.choices.items()}
    before = parameter_digest(model)
    x, y = mnist1d_small.tensors
    mutator.arch_step((x[:32], y[:32]))
    assert parameter_digest(model) == before
    assert all(p.grad is None for p in model.parameters())
    assert all(not torch.equal(a.detach(), start[k]) for k, a in mutator.choices.items())


def test_second_order_restores_the_weights_and_differs_from_first_order(mnist1d_small):
    x, y = mnist1d_small.tensors
    train, arch = (x[:32], y[:32]), (x[32:64], y[32:64])
    torch.manual_seed(0)
    first_model = build_supernet()
    second_model = copy.deepcopy(first_model)
    first = DartsMutator(first_model, lr=0.01, seed=0)
    second = DartsMutator(second_model, lr=0.01, order=2, seed=0)
    first_model.eval(), second_model.eval()  # no BatchNorm statistics drift: weights compare exactly
    before = parameter_digest(second_model)
    second.arch_step(arch, train_batch=train, lr=0.01, weight_decay=1e-4)
    first.arch_step(arch, train_batch=train, lr=0.01)
    assert parameter_digest(second_model) == before  # the virtual step was undone
    a1 = torch.cat([a.detach() for a in first.choices.values()])
    a2 = torch.cat([a.detach() for a in second.choices.values()])
    assert not torch.equal(a1, a2)
    with pytest.raises(ValueError, match="train_batch and lr"):
        second.arch_step(arch)


def test_state_dict_and_pickle_carry_alpha_and_the_arch_optimizer(mnist1d_small):
    x, y = mnist1d_small.tensors
    model = build_supernet()
    mutator = DartsMutator(model, lr=0.01)
    for i in range(3):
        mutator.arch_step((x[i * 16 : (i + 1) * 16], y[i * 16 : (i + 1) * 16]))
    state = mutator.state_dict()
    assert set(state) == {"_extra_state", "choices.op0", "choices.op1", "choices.op2", "choices.op3"}
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
        assert all(torch.equal(mutator.choices[k], other.choices[k]) for k in mutator.choices)


def test_a_subclass_that_replaces_an_alpha_after_init_trains_the_new_one(mnist1d_small):
    """NNI's P-DARTS mutator swaps ``self.choices[key]`` after ``DartsMutator.__init__``."""

    class Swapping(DartsMutator):
        def __init__(self, model):
            super().__init__(model, lr=0.01)
            self.choices["op0"] = nn.Parameter(torch.zeros(len(model.ops[0]) + 1))

    mutator = Swapping(build_supernet())
    x, y = mnist1d_small.tensors
    mutator.arch_step((x[:16], y[:16]))
    assert mutator.choices["op0"].detach().abs().sum() > 0
    mutator.choices["op1"] = nn.Parameter(torch.zeros(len(mutator.choices["op1"])))  # after a step, too
    mutator.arch_step((x[16:32], y[16:32]))
    assert mutator.choices["op1"].detach().abs().sum() > 0


def test_a_model_without_layer_choices_has_no_alpha_and_steps_anyway():
    class Inputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)
            self.pick = InputChoice(n_candidates=2, n_chosen=1, key="pick")

        def forward(self, x):
            return self.lin(self.pick([x, 2 * x]))

    model = Inputs()
    mutator = DartsMutator(model)
    assert list(mutator.choices) == [] and mutator.arch_parameters() == []
    report = mutator.arch_step((torch.randn(4, 4), torch.randint(0, 3, (4,))))
    assert report["arch_loss"] > 0 and mutator.export() == {"pick": 0}


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"lr": 0}, ["lr", "> 0", "0"]),
        ({"order": 3}, ["order", "1 or 2", "3"]),
        ({"weight_decay": -1}, ["weight_decay", ">= 0", "-1"]),
        ({"betas": (0.5,)}, ["betas", "(0.5,)"]),
        ({"init_std": "big"}, ["init_std", "'big'"]),
        ({"learn_inputs": 1}, ["learn_inputs", "1"]),
    ],
)
def test_bad_settings_name_the_setting_and_value(kwargs, words):
    with pytest.raises(DartsConfigError) as info:
        DartsMutator(Toy(), **kwargs)
    assert isinstance(info.value, ValueError)
    for word in words:
        assert word in str(info.value)


def test_a_key_that_cannot_name_a_parameter_dict_entry_is_refused_by_name():
    class Dotted(nn.Module):
        def __init__(self):
            super().__init__()
            self.op = LayerChoice([nn.Identity(), nn.Tanh()], key="block.op")

        def forward(self, x):
            return self.op(x)

    with pytest.raises(DartsConfigError, match=r"ParameterDict.*'block\.op'"):
        DartsMutator(Dotted())


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
