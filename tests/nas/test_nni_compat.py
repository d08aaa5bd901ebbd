"""NNI v1 idioms on raynas' mutables: containers, return_mask under a fixed architecture, pruned
edges, NNI-exported files with counter keys, and NNI-layout state dicts."""

import json
from collections import OrderedDict

import pytest
import torch
from torch import nn

from raynas.nas import (
    InputChoice,
    LayerChoice,
    RandomMutator,
    apply_fixed_architecture,
    copy_supernet_weights,
    generate_search_space,
    to_decisions,
)
from raynas.nas.utils import ScopedFactory, reset_global_mutable_counting
from tests.nas.helpers import Scale


def _ops(width: int) -> OrderedDict:
    return OrderedDict(
        conv3=nn.Conv1d(width, width, 3, padding=1, bias=False),
        conv5=nn.Conv1d(width, width, 5, padding=2, bias=False),
        skip=nn.Identity(),
    )


class DartsLikeCell(nn.Module):
    """Node i has one LayerChoice per earlier node and an InputChoice over those edges (NNI's DARTS idiom:
    unkeyed mutables, ``choose_from`` the edges' keys read in ``__init__``)."""

    def __init__(self, width: int = 4, nodes: int = 2):
        super().__init__()
        self.edges = nn.ModuleList()
        self.inputs = nn.ModuleList()
        for i in range(nodes):
            edges = nn.ModuleList([LayerChoice(_ops(width)) for _ in range(i + 2)])
            self.edges.append(edges)
            self.inputs.append(InputChoice(choose_from=[e.key for e in edges], n_chosen=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [x, x * 0.5]
        for edges, inp in zip(self.edges, self.inputs):
            states.append(inp([edge(s) for edge, s in zip(edges, states)]))
        return states[-1]


def test_layer_choice_is_nni_container():
    reset_global_mutable_counting()
    lc = LayerChoice(OrderedDict(a=Scale(1.0), b=Scale(2.0), c=Scale(3.0)))
    assert lc.key == "LayerChoice1" and lc.names == ["a", "b", "c"] and len(lc) == lc.length == 3
    assert [m.factor for m in lc] == [1.0, 2.0, 3.0] == [m.factor for m in lc.choices]
    assert lc["b"] is lc[1] is lc.b and [m.factor for m in lc[1:]] == [2.0, 3.0]
    lc[0] = Scale(5.0)
    assert lc["a"].factor == 5.0
    del lc["b"]
    assert lc.names == ["a", "c"] and len(lc) == 2 and [k for k, _ in lc.named_children()] == ["a", "c"]
    del lc[0]
    assert lc.names == ["c"] and lc[0].factor == 3.0
    listed = LayerChoice([nn.Linear(2, 2), nn.Linear(2, 2)], "sum", False, "k")  # NNI's positional signature
    assert listed.names == ["0", "1"] and listed.key == "k"


def test_state_dict_has_nni_layout_and_loads_strictly_both_ways():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.named = LayerChoice(OrderedDict(conv3=nn.Conv1d(2, 2, 3), bn=nn.BatchNorm1d(2)))
            self.listed = LayerChoice([nn.Linear(2, 2), nn.Linear(2, 3)])

    net = Net()
    # the keys NNI v1 writes: candidates registered under their names (OrderedDict keys, "0", "1" for a list)
    nni_keys = {
        "named.conv3.weight", "named.conv3.bias", "named.bn.weight", "named.bn.bias", "named.bn.running_mean",
        "named.bn.running_var", "named.bn.num_batches_tracked",
        "listed.0.weight", "listed.0.bias", "listed.1.weight", "listed.1.bias",
    }
    assert set(net.state_dict()) == nni_keys
    nni_state = {k: torch.full_like(v, 0.25) if v.is_floating_point() else v for k, v in net.state_dict().items()}
    other = Net()
    other.load_state_dict(nni_state, strict=True)
    assert torch.equal(other.listed[1].weight, torch.full((3, 2), 0.25))


def test_return_mask_choices_stay_under_a_fixed_architecture():
    class Net(nn.Module):  # NNI's ProxylessNAS idiom: out, idx = self.op(x) after apply_fixed_architecture
        def __init__(self):
            super().__init__()
            self.op = LayerChoice([nn.Linear(4, 4), nn.Linear(4, 4, bias=False), nn.Identity()], return_mask=True)
            self.inp = InputChoice(n_candidates=2, n_chosen=1, return_mask=True)

        def forward(self, x):
            out, mask = self.op(x)
            picked, inp_mask = self.inp([out, x])
            return picked, mask, inp_mask

    net = ScopedFactory(Net)()
    mutator = apply_fixed_architecture(net, {"LayerChoice1": 1, "InputChoice2": [0]})
    assert isinstance(net.op, LayerChoice)  # kept, so the caller still unpacks (output, mask)
    out, mask, inp_mask = net(torch.randn(3, 4))
    assert out.shape == (3, 4) and mask.tolist() == [False, True, False] and inp_mask.tolist() == [True, False]
    assert net.op[0] is None and net.op[2] is None  # the unchosen candidates hold no weights
    assert set(net.state_dict()) == {"op.1.weight"}
    assert mutator.export() == {"InputChoice2": 0, "LayerChoice1": "1"} or mutator.export()["LayerChoice1"] == 1


def test_nni_export_with_counter_keys_and_pruned_edges_applies():
    factory = ScopedFactory(DartsLikeCell)
    supernet = factory()
    space = generate_search_space(supernet)
    # keys: node 0 edges LayerChoice1-2 + InputChoice3; node 1 edges LayerChoice4-6 + InputChoice7
    assert sorted(space) == ["InputChoice3", "InputChoice7", "LayerChoice1", "LayerChoice2", "LayerChoice4",
                             "LayerChoice5", "LayerChoice6"]
    # what NNI's DARTS export writes: the dropped edge's LayerChoice is [] (all false)
    nni_file = {"LayerChoice1": "conv3", "LayerChoice2": "skip", "InputChoice3": ["LayerChoice1", "LayerChoice2"],
                "LayerChoice4": "conv5", "LayerChoice5": [], "LayerChoice6": "conv3",
                "InputChoice7": ["LayerChoice4", "LayerChoice6"]}
    fixed = factory()
    mutator = apply_fixed_architecture(fixed, nni_file)
    assert mutator.export()["LayerChoice5"] == []
    pruned = fixed.edges[1][1]
    assert isinstance(pruned, LayerChoice) and all(m is None for m in pruned.choices)
    assert not any(k.startswith("edges.1.1.") for k in fixed.state_dict())  # no dead parameters
    assert sum(p.numel() for p in fixed.parameters()) == 2 * 4 * 4 * 3 + 4 * 4 * 5
    copy_supernet_weights(supernet, fixed)
    x = torch.randn(2, 4, 6)
    RandomMutator(supernet).apply_decisions(to_decisions(nni_file, supernet))
    with torch.no_grad():
        assert torch.allclose(fixed(x), supernet(x))
    # a pruned edge that the InputChoice *does* select contributes nothing instead of failing
    again = factory()
    apply_fixed_architecture(again, {**nni_file, "InputChoice7": ["LayerChoice5", "LayerChoice6"]})
    assert again(x).shape == x.shape


def test_nni_counter_keys_apply_to_a_model_built_after_others(tmp_path):
    for _ in range(5):
        LayerChoice([nn.ReLU()])  # this process's counter is not where a fresh NNI process starts
    model = DartsLikeCell()
    arch = {"LayerChoice1": "conv3", "LayerChoice2": "skip", "InputChoice3": [0, 1], "LayerChoice4": "conv5",
            "LayerChoice5": [], "LayerChoice6": "conv3", "InputChoice7": [0, 2]}
    path = tmp_path / "architecture_final.json"
    path.write_text(json.dumps(arch))
    inp, edges = model.inputs[1].key, [e.key for e in model.edges[1]]
    exported = apply_fixed_architecture(model, str(path)).export()
    assert inp != "InputChoice7"  # its real key differs ...
    assert exported[inp] == [edges[0], edges[2]] and exported[edges[1]] == []  # ... yet it applied


def test_module_paths_name_unkeyed_mutables_and_conflicts_are_refused():
    model = DartsLikeCell()
    by_path = {"edges.0.0": "conv3", "edges.0.1": "skip", "inputs.0": [0, 1], "edges.1.0": "conv5",
               "edges.1.1": "conv3", "edges.1.2": [], "inputs.1": [0, 1]}
    exported = apply_fixed_architecture(model, by_path).export()
    assert exported[model.edges[1][2].key] == []
    from raynas.nas import SearchSpaceError

    with pytest.raises(SearchSpaceError, match=r"keys 'edges.0.0' and 'LayerChoice1' name the same mutable"):
        apply_fixed_architecture(ScopedFactory(DartsLikeCell)(), {**by_path, "LayerChoice1": "conv5"})


#: every ``nni.nas.pytorch`` import of NNI v1.9's examples and docs that raynas provides
NNI_IMPORTS = [
    ("mutables", "LayerChoice InputChoice MutableScope"),
    ("mutator", "Mutator"),
    ("base_mutator", "BaseMutator"),
    ("base_trainer", "BaseTrainer"),
    ("trainer", "Trainer TorchTensorEncoder"),
    ("fixed", "apply_fixed_architecture"),
    ("utils", "AverageMeter AverageMeterGroup _reset_global_mutable_counting global_mutable_counting to_device"),
    ("callbacks", "Callback LRSchedulerCallback ArchitectureCheckpoint ModelCheckpoint"),
    ("random", "RandomMutator"),
    ("darts", "DartsMutator DartsTrainer"),
    ("enas", "EnasMutator EnasTrainer"),
    ("spos", "SPOSSupernetTrainingMutator SPOSSupernetTrainer SPOSEvolution"),
    ("proxylessnas", "ProxylessNasMutator ProxylessNasTrainer"),
    ("classic_nas", "get_and_apply_next_architecture"),
]


@pytest.mark.parametrize(("module", "names"), NNI_IMPORTS)
def test_nni_import_paths_port_by_renaming_the_package(module, names):
    import importlib

    ported = importlib.import_module(f"raynas.nas.{module}")  # was: nni.nas.pytorch.<module>
    missing = [name for name in names.split() if not hasattr(ported, name)]
    assert not missing, f"raynas.nas.{module} lacks {missing}"
