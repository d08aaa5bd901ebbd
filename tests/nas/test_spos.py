"""NNI's SPOS training mutator: FLOPs bins drawn per try, timeout fallback, RNGs, pickling, training.

The test model follows NNI's SPOS example's idioms (a ShuffleNet-style supernet whose choice blocks
are built in a loop, each reading ``choice.key`` in ``__init__`` to fill a FLOPs table, and a
``get_candidate_flops(candidate)`` reading ``m["_idx"]`` or ``torch.max(m, 0)[1]``), on mnist1d.
"""

from __future__ import annotations

import itertools
import logging
import math
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from raynas.nas import LayerChoice, RandomMutator, SPOSSupernetTrainingMutator, to_parameters
from raynas.nas.utils import ScopedFactory

CHANNELS = 8
KINDS = ("shuffle3", "shuffle5", "shuffle7", "xception3")


class _DwPw(nn.Sequential):
    """Depthwise conv (kernel k, stride) then pointwise conv, BatchNorm, ReLU."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int):
        super().__init__(
            nn.Conv1d(c_in, c_in, k, stride=stride, padding=k // 2, groups=c_in, bias=False),
            nn.Conv1d(c_in, c_out, 1, bias=False),
            nn.BatchNorm1d(c_out, affine=False),
            nn.ReLU(),
        )

    @staticmethod
    def flops(c_in: int, c_out: int, k: int, length_out: int) -> int:
        return c_in * k * length_out + c_in * c_out * length_out


class ShuffleBlock(nn.Module):
    """Half the channels go through pointwise / depthwise(k) / pointwise, then the halves shuffle.

    With stride 2 both halves are downsampled (the pass-through half by an average pool).
    """

    def __init__(self, k: int, stride: int):
        super().__init__()
        half = CHANNELS // 2
        self.k, self.stride = k, stride
        self.branch = nn.Sequential(nn.Conv1d(half, half, 1, bias=False), nn.ReLU(), _DwPw(half, half, k, stride))
        self.pool = nn.AvgPool1d(stride) if stride > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep, work = x.chunk(2, dim=1)
        out = torch.stack([self.pool(keep), self.branch(work)], dim=2)  # channel shuffle
        return out.flatten(1, 2)

    def flops(self, length: int) -> int:
        half = CHANNELS // 2
        return half * half * length + _DwPw.flops(half, half, self.k, length // self.stride)


class XceptionBlock(nn.Module):
    """Three depthwise-3 / pointwise stages on all channels (the first with the stride)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride
        self.body = nn.Sequential(*(_DwPw(CHANNELS, CHANNELS, 3, stride if i == 0 else 1) for i in range(3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def flops(self, length: int) -> int:
        return 3 * _DwPw.flops(CHANNELS, CHANNELS, 3, length // self.stride)


class TinyShuffleNet(nn.Module):
    """Two stages of two choice blocks (the first of each downsamples) over 4 candidates: 256 paths."""

    def __init__(self, stage_blocks: tuple[int, ...] = (2, 2), length: int = 40, n_classes: int = 10):
        super().__init__()
        self._parsed_flops: dict[str, list[int]] = {}
        self.first_conv = nn.Sequential(nn.Conv1d(1, CHANNELS, 3, padding=1, bias=False), nn.ReLU())
        self._base_flops = CHANNELS * 3 * length + CHANNELS * n_classes
        blocks = []
        for n in stage_blocks:
            for i in range(n):
                stride = 2 if i == 0 else 1
                choice_block = LayerChoice([ShuffleBlock(3, stride), ShuffleBlock(5, stride),
                                            ShuffleBlock(7, stride), XceptionBlock(stride)])
                blocks.append(choice_block)
                # NNI's idiom: the key is known at construction
                self._parsed_flops[choice_block.key] = [cand.flops(length) for cand in choice_block]
                length //= stride
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Linear(CHANNELS, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.first_conv(x)).mean(dim=2))

    def get_candidate_flops(self, candidate) -> int:
        total = self._base_flops
        for k, m in candidate.items():
            table = self._parsed_flops[k]
            if isinstance(m, dict):  # tuner parameters {"_value", "_idx"}
                total += table[m["_idx"]]
            else:
                total += table[torch.max(m, 0)[1]]
        return total


def build_tiny_shufflenet() -> TinyShuffleNet:
    """The model factory of the training tests (``tests.nas.test_spos:build_tiny_shufflenet``)."""
    return TinyShuffleNet()


def net() -> TinyShuffleNet:
    return ScopedFactory(TinyShuffleNet)()  # as raynas builds models: LayerChoice1..4


def all_flops(model: TinyShuffleNet) -> list[int]:
    """The FLOPs of every one of the 256 paths (each equally likely under a random draw)."""
    tables = list(model._parsed_flops.values())
    return [model._base_flops + sum(t[i] for t, i in zip(tables, idx)) for idx in itertools.product(range(4), repeat=4)]


def _plain(path: dict) -> dict:
    return {k: v.tolist() for k, v in path.items()}


def _paths(mutator, n: int) -> list[dict]:
    return [_plain(mutator.sample_search()) for _ in range(n)]


def _np_state() -> tuple:
    """numpy's global RNG state, comparable with ``==`` (the key array, the position, ...)."""
    name, keys, *rest = np.random.get_state()
    return (name, tuple(keys.tolist()), *rest)


def _random_mutator_follows_torch() -> bool:
    """Whether an unseeded RandomMutator draws from torch's global RNG, as NNI's does."""
    out = []
    for _ in range(2):
        torch.manual_seed(0)
        m = RandomMutator(net())
        out.append(_paths(m, 8))
    return out[0] == out[1]


needs_torch_random = pytest.mark.skipif(
    not _random_mutator_follows_torch(), reason="needs RandomMutator(seed=None) on torch's global RNG (NNI's)"
)


class _Counting:
    """A FLOPs function returning a constant and counting its calls."""

    def __init__(self, value: float):
        self.value, self.calls = value, 0

    def __call__(self, candidate) -> float:
        self.calls += 1
        return self.value


def test_the_flops_table_uses_nni_keys_and_reads_masks_and_tuner_parameters():
    model = net()
    mutator = SPOSSupernetTrainingMutator(model, model.get_candidate_flops, 0, 1e9, seed=0)
    assert list(model._parsed_flops) == list(mutator.choice_mutables) == [f"LayerChoice{i}" for i in range(1, 5)]
    flops = all_flops(model)
    assert len(set(flops)) > 50  # the 4 candidates cost different amounts at every position
    for path in (mutator.sample_search() for _ in range(5)):
        assert model.get_candidate_flops(path) == model.get_candidate_flops(to_parameters(path, model))


@pytest.mark.parametrize(
    ("value", "hit"),
    [(b + 0.5, 1 / 7) for b in range(7)] + [(0.0, 1 / 7), (3.0, 2 / 7), (7.0, 1 / 7)],
)
def test_each_try_draws_a_bin_uniformly(value, hit):
    """A FLOPs function that always returns ``value``: [0, 7] cut in 7 closed bins, a try hits
    with probability 1/7 whichever bin holds the value (2/7 on an inner edge, in two bins), so a
    path takes 1/hit tries on average (geometric)."""
    func = _Counting(value)
    mutator = SPOSSupernetTrainingMutator(net(), func, 0, 7, 7, 200, seed=int(value * 2))  # P(200 misses) < 1e-13
    n = 600
    for _ in range(n):
        mutator.sample_search()
    mean = func.calls / n
    sd = math.sqrt((1 - hit) / hit**2 / n)  # of the mean of n geometric(hit) counts
    assert abs(mean - 1 / hit) < 4 * sd, mean
    assert mutator.fallbacks == 0


def test_accepted_flops_follow_random_paths_restricted_to_the_bounds():
    """NNI v1.9 draws the bin afresh at every try, so a path is accepted with a probability
    proportional to the number of (closed) bins that hold its FLOPs: the accepted FLOPs follow
    the random paths' distribution inside [lb, ub], not a uniform one over the bins."""
    model = net()
    flops = np.array(all_flops(model), dtype=float)
    lb, ub, n_bins = float(flops.min()), float(flops.max()), 7
    mutator = SPOSSupernetTrainingMutator(model, model.get_candidate_flops, lb, ub, n_bins, 500, seed=1)
    edges = mutator.flops_bins
    assert edges == [lb + (ub - lb) / n_bins * i for i in range(n_bins + 1)]

    def bin_of(f: float) -> int:
        return min(int((f - lb) / ((ub - lb) / n_bins)), n_bins - 1)

    weight = np.array([sum(edges[b] <= f <= edges[b + 1] for b in range(n_bins)) for f in flops], dtype=float)
    expected = np.zeros(n_bins)
    for f, w in zip(flops, weight):
        expected[bin_of(f)] += w
    expected /= expected.sum()
    assert expected.max() > 3 * expected.min()  # far from uniform over the bins: the test can tell

    n = 3000
    seen = np.zeros(n_bins)
    for _ in range(n):
        f = model.get_candidate_flops(mutator.sample_search())
        assert mutator.last_flops == f and lb <= f <= ub
        seen[bin_of(f)] += 1
    seen /= n
    tolerance = 4 * np.sqrt(expected * (1 - expected) / n) + 1e-3
    assert np.all(np.abs(seen - expected) < tolerance), (seen, expected)
    assert mutator.fallbacks == 0


def test_a_timeout_logs_a_warning_and_returns_a_plain_random_path(caplog):
    func = _Counting(100.0)  # never inside [0, 7]
    model = net()
    mutator = SPOSSupernetTrainingMutator(model, func, 0, 7, 7, 5, seed=0)
    with caplog.at_level(logging.WARNING, logger="raynas.nas.spos"):
        path = mutator.sample_search()
    assert func.calls == 5
    assert _plain(path) == _paths(RandomMutator(net(), seed=0), 6)[5]  # one more draw after the 5 tries
    assert [r.getMessage() for r in caplog.records] == ["Failed to sample a flops-valid candidate within 5 tries."]
    assert set(path) == set(mutator.choice_mutables)
    assert all(v.dtype == torch.bool and int(v.sum()) == 1 for v in path.values())
    assert mutator.fallbacks == 1 and mutator.last_flops is None
    mutator.reset()  # the fallback path is a valid decision
    assert model(torch.randn(2, 1, 40)).shape == (2, 10)


def test_without_flops_func_it_is_random_mutator():
    spos = SPOSSupernetTrainingMutator(net(), seed=4)
    assert _paths(spos, 20) == _paths(RandomMutator(net(), seed=4), 20)
    before = _np_state()
    SPOSSupernetTrainingMutator(net()).sample_search()  # unseeded: numpy's global RNG untouched
    assert _np_state() == before


def test_unseeded_bins_come_from_numpys_global_rng():
    """The number of tries per path depends on the bins only (a constant FLOPs function)."""

    def tries(np_seed: int) -> list[int]:
        np.random.seed(np_seed)
        func = _Counting(0.5)
        mutator = SPOSSupernetTrainingMutator(net(), func, 0, 7)
        out = []
        for _ in range(30):
            calls = func.calls
            mutator.sample_search()
            out.append(func.calls - calls)
        return out

    assert tries(11) == tries(11)
    assert tries(11) != tries(12)


@needs_torch_random
def test_global_seeds_reproduce_nnis_draws():
    """Unseeded, a path is NNI's: per try ``np.random.randint(bins)``, then RandomMutator's draw."""
    lb, ub = 0.25, 0.75  # of the FLOPs range: some tries miss

    def run() -> list[dict]:
        np.random.seed(3)
        torch.manual_seed(3)
        model = net()
        flops = all_flops(model)
        lo, hi = min(flops) + lb * (max(flops) - min(flops)), min(flops) + ub * (max(flops) - min(flops))
        return _paths(SPOSSupernetTrainingMutator(model, model.get_candidate_flops, lo, hi), 20)

    def replay() -> list[dict]:  # NNI v1.9 spos/mutator.py, written out
        np.random.seed(3)
        torch.manual_seed(3)
        model = net()
        flops = all_flops(model)
        lo, hi = min(flops) + lb * (max(flops) - min(flops)), min(flops) + ub * (max(flops) - min(flops))
        edges = [lo + (hi - lo) / 7 * i for i in range(8)]
        sampler = RandomMutator(model)
        out = []
        for _ in range(20):
            for _try in range(500):
                b = np.random.randint(7)
                cand = sampler.sample_search()
                if edges[b] <= model.get_candidate_flops(cand) <= edges[b + 1]:
                    break
            out.append(_plain(cand))
        return out

    first = run()
    assert first == run() == replay()
    assert len({str(p) for p in first}) > 10


def test_a_seed_owns_the_rngs():
    def run(seed: int, global_seed: int) -> list[dict]:
        np.random.seed(global_seed)
        torch.manual_seed(global_seed)
        model = net()
        flops = all_flops(model)
        mutator = SPOSSupernetTrainingMutator(model, model.get_candidate_flops, min(flops), max(flops), seed=seed)
        np_state, torch_state = _np_state(), torch.get_rng_state()
        paths = _paths(mutator, 20)
        assert _np_state() == np_state  # the global RNGs are not touched
        assert torch.equal(torch.get_rng_state(), torch_state)
        return paths

    assert run(5, 0) == run(5, 1)
    assert run(5, 0) != run(6, 0)


def test_state_dict_and_pickle_carry_the_rngs_the_fallbacks_and_the_flops_func():
    model = net()
    flops = all_flops(model)
    mid = (min(flops) + max(flops)) / 2
    mutator = SPOSSupernetTrainingMutator(model, model.get_candidate_flops, min(flops), mid, 7, 3, seed=2)
    _paths(mutator, 20)
    assert mutator.fallbacks > 0  # 3 tries miss now and then
    state, saved_fallbacks = mutator.state_dict(), mutator.fallbacks
    expected = _paths(mutator, 20)

    other_model = net()
    other = SPOSSupernetTrainingMutator(other_model, other_model.get_candidate_flops, min(flops), mid, 7, 3, seed=99)
    other.load_state_dict(state)
    assert other.fallbacks == saved_fallbacks
    assert _paths(other, 20) == expected

    mutator.load_state_dict(state)
    clone = pickle.loads(pickle.dumps(mutator))
    assert clone.flops_func.__self__ is clone.model  # the clone prices its own model
    assert clone.fallbacks == saved_fallbacks
    assert _paths(clone, 20) == expected


def test_bad_arguments_are_refused_before_binding():
    model = net()
    with pytest.raises(ValueError, match="flops_func needs numeric flops_lb and flops_ub, got None, 10"):
        SPOSSupernetTrainingMutator(model, model.get_candidate_flops, None, 10)
    with pytest.raises(ValueError, match="flops_bin_num must be an integer >= 1, got 0"):
        SPOSSupernetTrainingMutator(model, model.get_candidate_flops, 0, 10, 0)
    with pytest.raises(ValueError, match="flops_func must be callable or None, got str"):
        SPOSSupernetTrainingMutator(model, "get_candidate_flops", 0, 10)
    SPOSSupernetTrainingMutator(model, model.get_candidate_flops, 0, 10)  # the model is still free


def test_nni_import_path_and_signature():
    import inspect

    from raynas.nas.spos import SPOSSupernetTrainingMutator as FromModule

    assert FromModule is SPOSSupernetTrainingMutator and issubclass(FromModule, RandomMutator)
    params = inspect.signature(FromModule).parameters
    assert list(params)[:6] == ["model", "flops_func", "flops_lb", "flops_ub", "flops_bin_num", "flops_sample_timeout"]
    assert [params[p].default for p in list(params)[1:6]] == [None, None, None, 7, 500]
    model = net()
    flops = all_flops(model)
    m = FromModule(model, flops_func=model.get_candidate_flops, flops_lb=min(flops), flops_ub=max(flops))
    m.reset()  # NNI's example's keyword call, unseeded
    assert min(flops) <= model.get_candidate_flops({k: torch.tensor(v) for k, v in m.status().items()}) <= max(flops)


FACTORY = "tests.nas.test_spos:build_tiny_shufflenet"


def _spos_config(**changes):
    from tests.train.conftest import small_config

    flops = all_flops(net())
    lo, hi = min(flops), max(flops)
    lb, ub = lo + 0.3 * (hi - lo), lo + 0.6 * (hi - lo)  # a middle band that random paths often miss
    outside = sum(not lb <= f <= ub for f in flops) / len(flops)
    assert outside > 0.3
    config = small_config(algorithm="spos", flops_func="get_candidate_flops", flops_lb=lb, flops_ub=ub, **changes)
    return config, lb, ub


def _trace_flops(trace: list[dict]) -> list[int]:
    model = net()
    return [model.get_candidate_flops({k: torch.tensor(v) for k, v in t["path"].items()}) for t in trace]


def test_supernet_trains_locally_under_spos_with_the_models_flops_func(tmp_path):
    from raynas.train import train_supernet
    from tests.train.conftest import slice_mnist1d

    config, lb, ub = _spos_config(replicas=1, epochs=1)
    result = train_supernet(FACTORY, slice_mnist1d(), config, out_dir=tmp_path, local=True, trace=True)
    (trace,) = result.trace
    assert len(trace) == 20
    assert all(lb <= f <= ub for f in _trace_flops(trace))
    assert len({str(t["path"]) for t in trace}) > 10
    assert result.history[-1]["fallbacks"] == 0


@pytest.mark.usefixtures("ray_local")
def test_two_ray_replicas_stay_bit_identical_under_spos_with_the_models_flops_func(tmp_path):
    from raynas.train import train_supernet
    from tests.train.conftest import slice_mnist1d

    config, lb, ub = _spos_config(replicas=2, epochs=1, sampling="shared", allreduce="backend")
    result = train_supernet(FACTORY, slice_mnist1d(), config, out_dir=tmp_path, trace=True)
    rank0, rank1 = result.trace
    assert [t["step"] for t in rank0] == [t["step"] for t in rank1] == list(range(1, 11))
    assert [t["digest"] for t in rank0] == [t["digest"] for t in rank1]
    assert [t["path"] for t in rank0] == [t["path"] for t in rank1]
    assert all(lb <= f <= ub for f in _trace_flops(rank0))
