import json

import pytest
import torch
from torch import nn

from raynas.nas import (
    FixedArchitecture,
    LayerChoice,
    MutatorBindingError,
    RandomMutator,
    SearchSpaceError,
    apply_fixed_architecture,
    copy_supernet_weights,
    to_decisions,
)
from raynas.zoo.mnist1d import build_supernet
from searchers.errors import CheckpointError

ARCH = {
    "op0": "conv7",
    "op1": 3,
    "op2": {"_value": "identity", "_idx": 5},
    "op3": [False, True, False, False, False, False],
    "skip1": [],
    "skip2": {"_value": ["op0"], "_idex": [1]},
    "skip3": ["stem", 2],
}


def test_every_value_form_fixes_the_same_architecture():
    mutator = apply_fixed_architecture(build_supernet(), ARCH)
    assert mutator.export() == {
        "op0": "conv7",
        "op1": "sepconv5",
        "op2": "identity",
        "op3": "conv5",
        "skip1": [],
        "skip2": ["op0"],
        "skip3": ["stem", "op1"],
    }
    json.dumps(mutator.export())


def test_fixing_makes_the_exported_form_once(monkeypatch):
    from raynas.nas import fixed

    calls = []
    real = fixed.to_exported
    monkeypatch.setattr(fixed, "to_exported", lambda *args: calls.append(args) or real(*args))
    mutator = apply_fixed_architecture(build_supernet(), ARCH)
    assert mutator.export()["op0"] == "conv7" and mutator.export()["skip1"] == []
    assert len(calls) == 1


def test_fixing_prunes_single_choice_layer_choices():
    model = build_supernet()
    apply_fixed_architecture(model, ARCH)
    assert not any(isinstance(m, LayerChoice) for m in model.modules())
    conv7 = build_supernet().ops[0]["conv7"]
    assert isinstance(model.ops[0], nn.Sequential)
    assert model.ops[0][0].kernel_size == conv7[0].kernel_size
    assert isinstance(model.ops[2], nn.Identity)
    full = sum(p.numel() for p in build_supernet().parameters())
    fixed = sum(p.numel() for p in model.parameters())
    stem_head = 16 * 5 + 32 + 16 * 10 + 10
    conv = lambda k: 16 * 16 * k + 32  # noqa: E731
    sep = 16 * 5 + 16 * 16 + 32
    assert fixed == stem_head + conv(7) + sep + conv(5) < full
    out = model(torch.randn(4, 1, 40))
    assert out.shape == (4, 10)


def test_fixed_architecture_reads_a_json_file(tmp_path):
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(ARCH))
    model = build_supernet()
    assert apply_fixed_architecture(model, str(path)).export()["op3"] == "conv5"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        apply_fixed_architecture(build_supernet(), tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        apply_fixed_architecture(build_supernet(), tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        apply_fixed_architecture(build_supernet(), tmp_path / "list.json")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"op0": "conv9"}, r"unknown candidate name 'conv9'.*'conv3'.*for key 'op0'"),
        ({"op0": 6}, r"index must be in \[0, 5\], got 6 for key 'op0'"),
        ({"op0": [True, False]}, "bool mask needs 6 entries.*key 'op0'"),
        ({"op0": [0.5, 0.5]}, "weight list needs 6 entries.*key 'op0'"),
        ({"skip3": [1, 1]}, "chosen twice.*key 'skip3'"),
        ({"skip3": ["op5"]}, "unknown candidate name 'op5'.*key 'skip3'"),
        ({"op0": {"_value": "conv3", "_idx": 2}}, "'_value' and '_idx' disagree.*key 'op0'"),
        ({"op0": None}, "a choice must be a name.*NoneType.*key 'op0'"),
        ({"op0": True}, "single bool is not a choice.*key 'op0'"),
        ({"extra": 1}, r"unknown key 'extra' in architecture \(valid keys: op0, op1"),
    ],
)
def test_bad_architectures_name_the_key_and_value(change, match):
    arch = {**ARCH, **change}
    with pytest.raises(SearchSpaceError, match=match):
        apply_fixed_architecture(build_supernet(), arch)


def test_missing_key_and_n_chosen_limits():
    arch = dict(ARCH)
    del arch["skip3"]
    with pytest.raises(SearchSpaceError, match="no value for key 'skip3'"):
        apply_fixed_architecture(build_supernet(), arch)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            from raynas.nas import InputChoice

            self.inp = InputChoice(n_candidates=3, n_chosen=1, key="inp")

    with pytest.raises(SearchSpaceError, match="n_chosen=1 allows at most 1 candidates, got \\[0, 2\\] for key 'inp'"):
        apply_fixed_architecture(Net(), {"inp": [0, 2]})
    with pytest.raises(SearchSpaceError, match="ambiguous"):
        apply_fixed_architecture(Net(), {"inp": [""]})
    assert apply_fixed_architecture(Net(), {"inp": {"_value": [""], "_idx": [2]}}).export() == {"inp": 2}


def test_fixing_a_bound_model_is_an_error():
    model = build_supernet()
    RandomMutator(model)
    with pytest.raises(MutatorBindingError, match="already bound to a RandomMutator"):
        apply_fixed_architecture(model, ARCH)


def test_float_weights_stay_weights_and_are_not_pruned():
    model = build_supernet()
    arch = {**ARCH, "op0": [0.5, 0.0, 0.5, 0.0, 0.0, 0.0]}
    mutator = apply_fixed_architecture(model, arch)
    assert isinstance(model.ops[0], LayerChoice)
    assert mutator.status()["op0"] == [0.5, 0.0, 0.5, 0.0, 0.0, 0.0]
    assert mutator.export()["op0"] == [0.5, 0.0, 0.5, 0.0, 0.0, 0.0]
    model(torch.randn(2, 1, 40))


def test_fixed_architecture_mutator_on_an_unpruned_model():
    model = build_supernet()
    mutator = FixedArchitecture(model, ARCH)
    assert mutator.export()["op1"] == "sepconv5"
    assert isinstance(model.ops[0], LayerChoice)
    model(torch.randn(2, 1, 40))


def test_fixed_model_with_copied_weights_matches_the_supernet_for_random_architectures():
    torch.manual_seed(0)
    supernet = build_supernet()
    mutator = RandomMutator(supernet, seed=0)
    # give the BatchNorm layers non-trivial statistics
    supernet.train()
    for _ in range(3):
        mutator.reset()
        supernet(torch.randn(64, 1, 40))
    supernet.eval()
    x = torch.randn(16, 1, 40)
    for _ in range(20):
        decisions = mutator.sample_search()
        mutator.apply_decisions(decisions)
        with torch.no_grad():
            expected = supernet(x)
        fixed = build_supernet()
        fixed_mutator = apply_fixed_architecture(fixed, decisions)
        copy_supernet_weights(supernet, fixed)
        fixed.eval()
        with torch.no_grad():
            actual = fixed(x)
        assert torch.allclose(actual, expected, atol=1e-6), fixed_mutator.export()


def test_copy_supernet_weights_reports_missing_and_misshapen_weights():
    fixed = build_supernet()
    apply_fixed_architecture(fixed, ARCH)
    state = build_supernet().state_dict()
    del state["ops.0.conv7.0.weight"]
    with pytest.raises(CheckpointError, match=r"no 'ops.0.conv7.0.weight' \(for 'ops.0.0.weight'"):
        copy_supernet_weights(state, fixed)
    state = build_supernet().state_dict()
    state["head.weight"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointError, match=r"'head.weight' is \(3, 3\)"):
        copy_supernet_weights(state, fixed)


def test_to_decisions_accepts_tensors_and_every_form():
    model = build_supernet()
    decisions = to_decisions(ARCH, model)
    again = to_decisions(decisions, model)
    assert all(torch.equal(decisions[k], again[k]) for k in decisions)
    assert decisions["op2"].dtype == torch.bool and decisions["op2"].tolist()[5]
