"""searchers.tune: TunerSearcher against the Searcher protocol, Tune spaces, load_searcher."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from ray.tune.search import Searcher
from ray.tune.search.sample import Domain

from searchers import (
    EvolutionTuner,
    RandomTuner,
    RegularizedEvolutionTuner,
    SearchSpaceError,
    canonical_hash,
    enumerate_architectures,
    from_index_form,
    space_size,
)
from searchers.errors import CheckpointError, ConfigError, ConfigTypeError
from searchers.testing import SMALL_SPACE, SPACES, check_parameters, mnist1d_search_space
from searchers.tune import (
    SearcherLoadError,
    TunerSearcher,
    from_tune_config,
    load_searcher,
    to_tune_space,
)

MNIST1D = mnist1d_search_space()


def _searcher(tuner=None, **kwargs):
    kwargs.setdefault("search_space", MNIST1D)
    kwargs.setdefault("metric", "score")
    kwargs.setdefault("mode", "max")
    return TunerSearcher(tuner or RandomTuner(seed=0), **kwargs)


# -- the Searcher protocol ------------------------------------------------------------------------


def test_suggest_returns_exact_parameters_under_arch():
    searcher = _searcher()
    assert isinstance(searcher, Searcher)
    config = searcher.suggest("t1")
    assert set(config) == {"arch"}
    check_parameters(config["arch"], MNIST1D)
    assert searcher.live_trials == ["t1"]


def test_results_failures_and_missing_metrics_reach_the_tuner():
    tuner = RegularizedEvolutionTuner(optimize_mode="maximize", seed=0, population_size=6, sample_size=2)
    searcher = _searcher(tuner)
    configs = {f"t{i}": searcher.suggest(f"t{i}") for i in range(6)}
    searcher.on_trial_complete("t0", result={"score": 1.5})
    searcher.on_trial_complete("t1", result=None, error=True)  # failed trial
    searcher.on_trial_complete("t2", result=None, error=False)  # stopped while pending
    searcher.on_trial_complete("t3", result={"other": 1.0})  # metric missing
    searcher.on_trial_complete("t4", result={"score": float("nan")})
    searcher.on_trial_complete("t5", result={"score": 2})
    searcher.on_trial_complete("unknown", result={"score": 9.0})  # not ours: ignored
    assert [r["parameters"] for r in tuner.population] == [configs["t0"]["arch"], configs["t5"]["arch"]]
    assert [r["value"] for r in tuner.population] == [1.5, 2.0]
    # the four failed initial members are replaced by random ones, not mutants
    assert tuner.save_checkpoint()["state"]["initial_left"] == 4
    assert searcher.live_trials == []


def test_none_while_trials_run_finished_when_none_does():
    searcher = _searcher(RandomTuner(seed=0), search_space=SMALL_SPACE)
    ids = [f"t{i}" for i in range(space_size(SMALL_SPACE))]
    configs = [searcher.suggest(t) for t in ids]
    assert len({canonical_hash(c["arch"], SMALL_SPACE) for c in configs}) == 24
    assert searcher.suggest("extra1") is None
    for t in ids[:-1]:
        searcher.on_trial_complete(t, result={"score": 1.0})
    assert searcher.suggest("extra2") is None
    searcher.on_trial_complete(ids[-1], result=None, error=True)
    assert searcher.suggest("extra3") == Searcher.FINISHED


@pytest.mark.parametrize(
    "tune_mode, tuner_mode, sign",
    [("min", "maximize", -1.0), ("max", "minimize", -1.0), ("max", "maximize", 1.0), ("min", "minimize", 1.0), (None, "maximize", 1.0)],
)
def test_mode_orients_values_for_the_tuner(tune_mode, tuner_mode, sign):
    tuner = EvolutionTuner(optimize_mode=tuner_mode, seed=0)
    searcher = _searcher(tuner, mode=tune_mode)
    searcher.suggest("a")
    searcher.on_trial_complete("a", result={"score": 3.0})
    assert tuner.population[0]["value"] == sign * 3.0


def test_min_mode_with_a_maximizing_tuner_favours_low_metrics():
    tuner = EvolutionTuner(optimize_mode="maximize", seed=0)
    searcher = _searcher(tuner, mode="min")
    configs = {t: searcher.suggest(t) for t in ("a", "b", "c")}
    for t, loss in zip("abc", (5.0, 0.5, 2.0)):
        searcher.on_trial_complete(t, result={"score": loss})
    assert tuner.population[0]["parameters"] == configs["b"]["arch"]


def test_points_to_evaluate_come_first_and_reach_the_tuner():
    point = {"op0": "conv5", "op1": 0, "op2": "identity", "op3": [1], "skip1": [], "skip2": ["op0"], "skip3": [True, True, False]}
    tuner = EvolutionTuner(optimize_mode="maximize", seed=0)
    searcher = _searcher(tuner, points_to_evaluate=[point])
    first = searcher.suggest("p")
    assert first["arch"] == from_index_form(point, MNIST1D)
    second = searcher.suggest("q")
    check_parameters(second["arch"], MNIST1D)
    searcher.on_trial_complete("p", result={"score": 7.0})
    assert tuner.population[0] == {"parameters": first["arch"], "value": 7.0}
    with pytest.raises(SearchSpaceError, match="'op0'"):
        _searcher(points_to_evaluate=[dict(point, op0="conv99")])


def test_add_evaluated_point_imports_into_the_tuner():
    tuner = EvolutionTuner(optimize_mode="maximize", seed=0)
    searcher = _searcher(tuner, mode="min")
    arch = from_index_form(next(iter(enumerate_architectures(MNIST1D))), MNIST1D)
    searcher.add_evaluated_point({"arch": arch}, 4.0)
    searcher.add_evaluated_point({"arch": arch}, 1.0, error=True)
    assert tuner.population == [{"parameters": arch, "value": -4.0}]


def test_save_and_restore_resume_exactly(tmp_path):
    def make():
        return _searcher(RegularizedEvolutionTuner(optimize_mode="maximize", seed=3, population_size=5, sample_size=2))

    original = make()
    for i in range(8):
        original.suggest(f"t{i}")
    for i in range(6):
        original.on_trial_complete(f"t{i}", result={"score": float(i % 3)})
    path = tmp_path / "searcher-state.pkl"
    original.save(str(path))
    state = json.loads(path.read_text())  # JSON on disk
    assert set(state["trials"]) == {"t6", "t7"}
    restored = TunerSearcher(
        RegularizedEvolutionTuner(optimize_mode="maximize", seed=99, population_size=5, sample_size=2),
        metric="score",
        mode="max",
    )
    restored.restore(str(path))
    assert restored.live_trials == original.live_trials
    assert restored.tuner.population == original.tuner.population
    for s in (original, restored):
        s.on_trial_complete("t6", result={"score": 5.0})
        s.on_trial_complete("t7", result=None, error=True)
    assert [restored.suggest(f"n{i}") for i in range(5)] == [original.suggest(f"n{i}") for i in range(5)]


def test_restore_into_another_tuner_class_is_an_error(tmp_path):
    path = tmp_path / "state.json"
    _searcher(RandomTuner(seed=0)).save(str(path))
    with pytest.raises(CheckpointError, match="RandomTuner.*EvolutionTuner"):
        _searcher(EvolutionTuner(optimize_mode="maximize")).restore(str(path))


def test_errors_say_what_is_wrong():
    with pytest.raises(ConfigTypeError, match="needs a searchers.Tuner instance, got builtins.dict"):
        TunerSearcher({})
    with pytest.raises(ConfigError, match="mode must be one of 'max', 'min' or None, got 'maximize'"):
        _searcher(mode="maximize")
    with pytest.raises(ConfigError, match="no search space"):
        TunerSearcher(RandomTuner(seed=0), metric="score").suggest("t")
    with pytest.raises(ConfigError, match="no metric"):
        TunerSearcher(RandomTuner(seed=0), search_space=MNIST1D).suggest("t")
    searcher = _searcher()
    with pytest.raises(ConfigError, match="pass the search space as TunerSearcher"):
        searcher.set_search_properties("score", "max", {"arch": MNIST1D})
    assert searcher.set_search_properties("score", "max", to_tune_space(MNIST1D)) is False
    assert searcher.set_search_properties("score", "max", {"lr": 0.1}) is True


def test_set_search_properties_fills_metric_and_mode():
    searcher = TunerSearcher(EvolutionTuner(optimize_mode="maximize", seed=0), search_space=MNIST1D)
    assert searcher.set_search_properties("loss", "min", {"lr": 0.1})
    assert (searcher.metric, searcher.mode) == ("loss", "min")
    searcher.suggest("a")
    searcher.on_trial_complete("a", result={"loss": 2.0})
    assert searcher.tuner.population[0]["value"] == -2.0


class BadTuner(RandomTuner):
    def generate_parameters(self, parameter_id, **kwargs):
        params = super().generate_parameters(parameter_id)
        params["op0"] = {"_value": ["conv3", "conv5"], "_idx": [0, 1]}
        return params


def test_inexact_tuner_parameters_are_rejected():
    with pytest.raises(SearchSpaceError, match="exactly 1 candidate.*'op0'"):
        _searcher(BadTuner(seed=0)).suggest("t")


# -- Tune spaces ---------------------------------------------------------------------------------


def _sample(space_node, rng):
    if isinstance(space_node, Domain):
        return space_node.sample()
    if isinstance(space_node, dict):
        return {k: _sample(v, rng) for k, v in space_node.items()}
    return space_node


@pytest.mark.parametrize("name", sorted(SPACES))
def test_tune_space_samples_map_back_to_exact_parameters(name):
    space = SPACES[name]
    tune_space = to_tune_space(space)
    assert set(tune_space) == {"arch"}
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        params = from_tune_config(_sample(tune_space, rng), space)
        check_parameters(params, space)
        seen.add(canonical_hash(params, space))
    if space_size(space) <= 50:
        assert len(seen) == space_size(space)  # every architecture is reachable


def test_tune_space_domains_are_categorical_over_plain_values():
    from ray.tune.search.sample import Categorical

    def leaves(node):
        if isinstance(node, dict):
            for v in node.values():
                yield from leaves(v)
        else:
            yield node

    for name, space in SPACES.items():
        for leaf in leaves(to_tune_space(space)):
            if isinstance(leaf, Domain):
                assert isinstance(leaf, Categorical)
                assert all(isinstance(c, (str, int, bool)) for c in leaf.categories), name
            else:
                assert isinstance(leaf, list)


def test_from_tune_config_reads_tuner_searcher_configs_and_rejects_junk():
    config = _searcher().suggest("t")
    assert from_tune_config(config, MNIST1D) == config["arch"]
    with pytest.raises(SearchSpaceError, match="unknown key 'nope'"):
        from_tune_config({"arch": {"nope": 1}}, MNIST1D)
    with pytest.raises(SearchSpaceError, match="'skip2'"):
        from_tune_config({"arch": {**config["arch"], "skip2": {"0": True}}}, MNIST1D)


def test_too_many_combinations_is_an_error():
    space = {"k": {"_type": "input_choice", "_value": {"candidates": [str(i) for i in range(40)], "n_chosen": 20}}}
    with pytest.raises(SearchSpaceError, match="combinations .*for key 'k'"):
        to_tune_space(space)


# -- load_searcher ---------------------------------------------------------------------------------

USER_MODULE = '''
import random
from ray.tune.search import Searcher
from ray.tune.search.sample import Domain
from searchers import RandomTuner, SPOSEvolution


def _sample(node, rnd):
    if isinstance(node, Domain):
        return node.sample(random_state=rnd)
    if isinstance(node, dict):
        return {k: _sample(v, rnd) for k, v in node.items()}
    return node


class SpaceSampler(Searcher):
    """A user's Tune searcher that takes the converted space in its constructor."""

    def __init__(self, space=None, metric=None, mode=None, seed=0):
        super().__init__(metric=metric, mode=mode)
        self.space, self.seed, self.count = space, seed, 0

    def suggest(self, trial_id):
        self.count += 1
        import numpy as np
        return _sample(self.space, np.random.RandomState(self.seed + self.count))

    def on_trial_complete(self, trial_id, result=None, error=False):
        pass


class PropertiesSampler(SpaceSampler):
    """Takes the space through set_search_properties only."""

    def __init__(self, metric=None, mode=None):
        super().__init__(None, metric, mode)

    def set_search_properties(self, metric, mode, config, **spec):
        self.space = config
        return True


class MyTuner(RandomTuner):
    def __init__(self, *, seed=None, optimize_mode="maximize"):
        super().__init__(seed=seed)
        self.optimize_mode = optimize_mode


class ForwardsKwargs(SPOSEvolution):
    """NNI's pattern (examples/nas/spos/tuner.py): arguments of its own, the rest passed on."""

    def __init__(self, limit=1, **kwargs):
        super().__init__(**kwargs)
        self.limit = limit


not_a_class = 3
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_searchers_mod.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "user_searchers_mod"


def test_load_searcher_wraps_tuners(user_module):
    searcher = load_searcher("searchers.evolution:EvolutionTuner", search_space=MNIST1D, metric="loss", mode="min", seed=1)
    assert isinstance(searcher, TunerSearcher)
    assert searcher.tuner.optimize_mode == "minimize" and searcher.metric == "loss"
    check_parameters(searcher.suggest("t")["arch"], MNIST1D)
    mine = load_searcher(f"{user_module}:MyTuner", search_space=MNIST1D, metric="acc", mode="max", optimize_mode="minimize")
    assert mine.tuner.optimize_mode == "minimize"  # an explicit kwarg wins


@pytest.mark.parametrize("name", ["SpaceSampler", "PropertiesSampler"])
def test_load_searcher_gives_tune_searchers_the_converted_space(user_module, name):
    searcher = load_searcher(f"{user_module}:{name}", search_space=MNIST1D, metric="acc", mode="max")
    assert type(searcher).__name__ == name
    check_parameters(from_tune_config(searcher.suggest("t"), MNIST1D), MNIST1D)


@pytest.mark.parametrize(
    "path, match",
    [
        ("no_colon", r"'package.module:name', got 'no_colon'"),
        ("no_such_module_xyz:Thing", r"cannot import module 'no_such_module_xyz'"),
        ("searchers.random:Nope", r"has no attribute 'Nope' .*; tuners and searchers there: RandomTuner"),
        ("searchers.space:parse_search_space", r"found function"),
        ("{mod}:not_a_class", r"found int 3"),
        ("json:JSONDecoder", r"found class json.decoder.JSONDecoder"),
    ],
)
def test_load_searcher_errors_say_what_was_found(user_module, path, match):
    with pytest.raises(SearcherLoadError, match=match):
        load_searcher(path.format(mod=user_module), search_space=MNIST1D, metric="acc", mode="max")
    assert issubclass(SearcherLoadError, ValueError)


def test_load_searcher_adds_seed_and_optimize_mode_only_where_a_constructor_names_them(user_module, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # SPOSEvolution writes ./checkpoints
    space = {f"op{i}": {"_type": "layer_choice", "_value": ["a", "b", "c", "d"]} for i in range(4)}
    # **kwargs passed on to SPOSEvolution, which names seed but not optimize_mode (NNI's SPOS tuner.py)
    searcher = load_searcher(f"{user_module}:ForwardsKwargs", search_space=space, metric="acc", mode="max", seed=5)
    assert searcher.tuner.limit == 1
    plain = load_searcher("searchers:SPOSEvolution", search_space=space, metric="acc", mode="max", seed=5)
    assert [searcher.suggest(f"t{i}") for i in range(4)] == [plain.suggest(f"t{i}") for i in range(4)]
    searcher = load_searcher(f"{user_module}:ForwardsKwargs", search_space=space, metric="acc", mode="max", limit=2)
    assert searcher.tuner.limit == 2


def test_load_searcher_passes_seed_to_a_tuner_that_takes_one():
    space = mnist1d_search_space()

    def first(**kw):
        s = load_searcher("searchers:RandomTuner", search_space=space, metric="score", mode="max", **kw)
        return s.suggest("t0")

    assert first(seed=3) == first(seed=3)
    assert first(seed=3) != first(seed=4)
