"""Path costs, SPOS constrained sampling (profiled costs or the user's FLOPs function), mutator seeding."""

from __future__ import annotations

import pytest
import torch

from raynas.nas import RandomMutator, SPOSSupernetTrainingMutator, apply_fixed_architecture, to_decisions
from raynas.nas.costs import largest_path
from raynas.train import ConfigError, SposMutator, SupernetConfig, build_mutator, profile_costs
from raynas.train.sampling import mutator_seed
from raynas.zoo.mnist1d import build_supernet

EXAMPLE = torch.randn(2, 1, 40)


def _costs():
    model = build_supernet()
    mutator = RandomMutator(model, seed=0)
    return model, mutator, profile_costs(mutator, EXAMPLE)


def test_candidate_costs_are_exact_for_mnist1d():
    _model, _mutator, costs = _costs()
    table = dict(zip(("conv3", "conv5", "conv7", "sepconv5", "maxpool3", "identity"), costs.candidates["op0"]))
    assert table["conv7"] == (16 * 16 * 7 + 32, 40 * 16 * 16 * 7 + 40 * 16)  # conv MACs + BN
    assert table["conv3"][0] == 16 * 16 * 3 + 32
    assert table["sepconv5"][0] == 16 * 5 + 16 * 16 + 32
    assert table["identity"] == (0, 0)
    assert table["maxpool3"] == (0, 40 * 16)
    # a skip adds one 16x40 tensor
    assert costs.candidates["skip3"] == ((0, 640),) * 3
    # stem conv + BN + head
    assert costs.base_params == 16 * 5 + 32 + 16 * 10 + 10


def test_path_cost_matches_the_fixed_model():
    _model, mutator, costs = _costs()
    for _ in range(5):
        decisions = mutator.sample_search()
        fixed = build_supernet()
        apply_fixed_architecture(fixed, decisions)
        params, _flops = costs.cost(decisions)
        assert params == sum(p.numel() for p in fixed.parameters())


def test_bounds_are_the_cheapest_and_dearest_paths():
    _model, _mutator, costs = _costs()
    cheapest = {f"op{i}": "identity" for i in range(4)} | {"skip1": [], "skip2": [], "skip3": []}
    dearest = {f"op{i}": "conv7" for i in range(4)} | {
        "skip1": ["stem"],
        "skip2": ["stem", "op0"],
        "skip3": ["stem", "op0", "op1"],
    }
    space = build_supernet()
    assert costs.bounds("params")[0] == costs.cost(to_decisions(cheapest, space))[0]
    assert costs.bounds("params")[1] == costs.cost(to_decisions(dearest, space))[0]
    assert costs.bounds("flops") == (
        costs.cost(to_decisions(cheapest, space))[1],
        costs.cost(to_decisions(dearest, space))[1],
    )


def test_profiling_leaves_the_model_and_path_alone():
    model, mutator, _ = _costs()
    mutator.reset()
    before = mutator.status()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    profile_costs(mutator, EXAMPLE)
    assert mutator.status() == before
    assert model.training
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # eval mode: BN untouched


def test_spos_paths_fall_in_their_bins():
    model = build_supernet()
    probe = RandomMutator(model, seed=0)
    costs = profile_costs(probe, EXAMPLE)
    probe.detach()
    mutator = SposMutator(model, costs=costs, bins=4, constraint="params", max_tries=400, seed=1)
    bins = []
    for _ in range(200):
        before = mutator.fallbacks
        mutator.reset()
        lo, hi = mutator.bin_edges("params", mutator.last_bin)
        if mutator.fallbacks == before:
            assert lo <= mutator.last_cost[0] <= hi
            bins.append(mutator.last_bin)
    assert mutator.fallbacks <= 5
    assert sorted(set(bins)) == [0, 1, 2, 3]
    # uniform sampling puts far fewer paths in the extreme bins than SPOS does
    uniform = RandomMutator(build_supernet(), seed=1)
    lo3, hi3 = mutator.bin_edges("params", 3)
    top_uniform = sum(lo3 <= costs.cost(uniform.sample_search())[0] <= hi3 for _ in range(200))
    assert bins.count(3) > 2 * top_uniform


def test_spos_falls_back_to_the_closest_path_when_a_bin_is_missed():
    model = build_supernet()
    probe = RandomMutator(model, seed=0)
    costs = profile_costs(probe, EXAMPLE)
    probe.detach()
    # 1000 narrow bins over both metrics: most cannot be hit in 3 draws
    mutator = SposMutator(model, costs=costs, bins=1000, constraint="both", max_tries=3, seed=2)
    for _ in range(50):
        mutator.reset()  # never stalls, always a valid path
        assert set(mutator.status()) == set(mutator.choice_mutables)
    assert mutator.fallbacks > 0
    state = mutator.state_dict()
    other = SposMutator(build_supernet(), costs=costs, bins=1000, constraint="both", max_tries=3, seed=99)
    other.load_state_dict(state)
    assert other.fallbacks == mutator.fallbacks
    assert [mutator.sample_search()["op0"].tolist() for _ in range(5)] == [
        other.sample_search()["op0"].tolist() for _ in range(5)
    ]


def test_build_mutator_seeds_shared_and_independent_streams():
    shared = SupernetConfig(sampling="shared", seed=3)
    independent = SupernetConfig(sampling="independent", seed=3)
    assert mutator_seed(shared, 0) == mutator_seed(shared, 1)
    assert mutator_seed(independent, 0) != mutator_seed(independent, 1)
    assert mutator_seed(shared, 0) != mutator_seed(SupernetConfig(seed=4), 0)

    def paths(config, rank):
        m = build_mutator(build_supernet(), config=config, rank=rank, example=EXAMPLE)
        out = []
        for _ in range(10):
            m.reset()
            out.append(m.status())
        return out

    assert paths(shared, 0) == paths(shared, 1)
    assert paths(independent, 0) != paths(independent, 1)
    spos = build_mutator(build_supernet(), config=SupernetConfig(algorithm="spos"), rank=0, example=EXAMPLE)
    assert isinstance(spos, SposMutator) and not isinstance(spos, SPOSSupernetTrainingMutator)


def op_index_sum(candidate) -> int:
    """A FLOPs function for ``supernet.flops_func: MODULE:FUNCTION``: the sum of op0..op3's indices."""
    return sum(int(torch.max(m, 0)[1]) for k, m in candidate.items() if k.startswith("op"))


def test_build_mutator_spos_with_a_flops_func_is_nnis_mutator():
    from tests.nas.test_spos import net

    config = SupernetConfig(algorithm="spos", flops_func="get_candidate_flops", flops_lb=1000, flops_ub=9000,
                            flops_bin_num=5, flops_sample_timeout=50, sampling="independent", seed=1)
    model = net()
    m = build_mutator(model, config=config, rank=0, example=torch.randn(2, 1, 40))
    assert type(m) is SPOSSupernetTrainingMutator
    assert m.flops_func == model.get_candidate_flops  # NNI's flops_func=model.get_candidate_flops
    assert (m.flops_lb, m.flops_ub, m.flops_bin_num, m.flops_sample_timeout) == (1000, 9000, 5, 50)

    def paths(config, rank):
        mutator = build_mutator(net(), config=config, rank=rank, example=torch.randn(2, 1, 40))
        return [str(mutator.sample_search()) for _ in range(10)]

    assert paths(config, 0) == paths(config, 0)
    assert paths(config, 0) != paths(config, 1)  # independent: a stream per rank
    shared = config.replace(sampling="shared")
    assert paths(shared, 0) == paths(shared, 1)

    by_path = config.replace(flops_func="tests.train.test_sampling:op_index_sum", flops_lb=4, flops_ub=8)
    m = build_mutator(build_supernet(), config=by_path, rank=0, example=EXAMPLE)
    assert m.flops_func is op_index_sum
    assert all(4 <= op_index_sum(m.sample_search()) <= 8 for _ in range(20))


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("get_flops", ["supernet.flops_func", "Mnist1dSupernet has no method 'get_flops'", "got 'get_flops'"]),
        ("training", ["supernet.flops_func", "Mnist1dSupernet has no method 'training'"]),  # a bool attribute
        ("no_such_module_xyz:f", ["supernet.flops_func", "cannot import", "got 'no_such_module_xyz:f'"]),
        ("tests.train.test_sampling:nope", ["supernet.flops_func", "no attribute 'nope'"]),
        ("tests.train.test_sampling:EXAMPLE", ["supernet.flops_func must name a function", "(Tensor)"]),
    ],
)
def test_build_mutator_names_a_flops_func_it_cannot_use(spec, words):
    config = SupernetConfig(algorithm="spos", flops_func=spec, flops_lb=0, flops_ub=1)
    model = build_supernet()
    with pytest.raises(ConfigError) as info:
        build_mutator(model, config=config, rank=0, example=EXAMPLE)
    assert "\n" not in str(info.value)
    for word in words:
        assert word in str(info.value)


def test_fair_sampling_runs_every_candidate_once_per_step(small_data):
    from raynas.nas.fair import FairMutator
    from raynas.train import SupernetReplica
    from tests.train.conftest import FACTORY, small_config

    mutator = FairMutator(build_supernet(), seed=0)
    assert mutator.paths_per_step == 6
    for _ in range(3):
        group = [mutator.sample_search() for _ in range(6)]
        for key in ("op0", "op1", "op2", "op3"):
            assert sorted(int(p[key].nonzero()) for p in group) == list(range(6))
    mutator.sample_search()  # 5 paths of the next group stay queued and travel in the state
    other = FairMutator(build_supernet(), seed=42)
    other.load_state_dict(mutator.state_dict())
    assert [str(other.sample_search()) for _ in range(8)] == [str(mutator.sample_search()) for _ in range(8)]

    replica = SupernetReplica(factory=FACTORY, data=small_data, config=small_config(replicas=1, algorithm="fair"))
    replica.setup()
    report = replica.run(2)
    assert report["counts"]["op2"] == [2] * 6  # every candidate trained at each of the 2 steps


def test_largest_path_is_all_conv7_with_every_skip():
    _model, _mutator, costs = _costs()
    path = largest_path(costs)
    assert {k: v.nonzero().flatten().tolist() for k, v in path.items() if k.startswith("op")} == {
        f"op{i}": [2] for i in range(4)  # conv7
    }
    assert all(path[f"skip{i}"].all() and len(path[f"skip{i}"]) == i for i in (1, 2, 3))
    assert costs.cost(path)[0] == costs.bounds("params")[1]


def test_every_registered_algorithm_builds_its_mutator_and_unknown_names_list_the_valid_ones(monkeypatch):
    from raynas.nas import DartsMutator, EnasMutator, FairMutator
    from raynas.nas.algorithms import ALGORITHMS
    from raynas.nas.proxylessnas.supernet import ProxylessSupernetMutator

    expected = {"random": RandomMutator, "fair": FairMutator, "spos": SposMutator, "darts": DartsMutator,
                "enas": EnasMutator, "proxylessnas": ProxylessSupernetMutator}
    assert list(ALGORITHMS) == list(expected)  # the registry is what config validation offers, in order
    for name, cls in expected.items():
        m = build_mutator(build_supernet(), config=SupernetConfig(algorithm=name), rank=0, example=EXAMPLE)
        assert type(m) is cls
    # a config that skipped validation: the error lists the registry's names
    bad = SupernetConfig()
    object.__setattr__(bad, "algorithm", "dart")
    with pytest.raises(ConfigError, match="supernet.algorithm must be one of random, fair, spos, darts, enas, proxylessnas, got 'dart'"):
        build_mutator(build_supernet(), config=bad, rank=0, example=EXAMPLE)
    # the config validates against the registry itself: a registered builder is a valid name
    monkeypatch.setitem(ALGORITHMS, "mine", lambda model, settings, **kw: RandomMutator(model, seed=kw["seed"]))
    assert type(build_mutator(build_supernet(), config=SupernetConfig(algorithm="mine"), rank=0,
                              example=EXAMPLE)) is RandomMutator
