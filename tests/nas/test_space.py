import json

import pytest
import torch

from raynas.nas import RandomMutator, SearchSpaceError, generate_search_space, to_decisions, to_exported, to_parameters
from raynas.zoo.mnist1d import build_supernet

OPS = ["conv3", "conv5", "conv7", "sepconv5", "maxpool3", "identity"]


def test_mnist1d_space_is_the_design_contract():
    space = generate_search_space(build_supernet())
    assert list(space) == sorted(space) == ["op0", "op1", "op2", "op3", "skip1", "skip2", "skip3"]
    for i in range(4):
        assert space[f"op{i}"] == {"_type": "layer_choice", "_value": OPS}
    for i in range(1, 4):
        assert space[f"skip{i}"] == {
            "_type": "input_choice",
            "_value": {"candidates": ["stem"] + [f"op{j}" for j in range(i - 1)], "n_chosen": None},
        }
    size = 1
    for entry in space.values():
        size *= len(entry["_value"]) if entry["_type"] == "layer_choice" else 2 ** len(entry["_value"]["candidates"])
    assert size == 82_944


def test_search_space_has_no_scopes_and_does_not_bind():
    from tests.nas.helpers import tiny_net

    net = tiny_net()
    space = generate_search_space(net)
    assert list(space) == ["InputChoice3", "InputChoice4", "LayerChoice2", "shared"]
    RandomMutator(net)  # still free to bind


def test_parameters_decisions_and_exported_round_trip():
    model = build_supernet()
    space = generate_search_space(model)
    mutator = RandomMutator(model, seed=0)
    for _ in range(20):
        decisions = mutator.sample_search()
        params = to_parameters(decisions, space)
        exported = to_exported(params, space)
        back = to_decisions(json.loads(json.dumps(exported)), space)
        assert all(torch.equal(back[k], decisions[k]) for k in decisions)
        for key, p in params.items():
            assert set(p) == {"_value", "_idx"}
            if key.startswith("op"):
                assert p["_value"] == OPS[p["_idx"]]
            else:
                assert p["_value"] == [space[key]["_value"]["candidates"][i] for i in p["_idx"]]


def test_conversions_validate_against_the_space():
    space = generate_search_space(build_supernet())
    with pytest.raises(SearchSpaceError, match="no value for key"):
        to_parameters({"op0": "conv3"}, space)
    with pytest.raises(SearchSpaceError, match="weights .* have no parameter form for key 'op0'"):
        to_parameters({**{k: [] for k in space}, **{f"op{i}": 0 for i in range(4)}, "op0": [0.1] * 6}, space)
