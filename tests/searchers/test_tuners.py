"""The shipped tuners: options, the evolution rules, failures, checkpoints, and search quality."""

from __future__ import annotations

import json

import numpy as np
import pytest

from searchers import (
    CheckpointError,
    EvolutionTuner,
    NoMoreTrialError,
    RandomTuner,
    RegularizedEvolutionTuner,
    canonical_hash,
    from_index_form,
    space_size,
    to_index_form,
)
from searchers.errors import ConfigError, ConfigKeyError, ConfigTypeError, SearchSpaceError
from searchers.testing import SMALL_SPACE, SPACES, best_found, check_parameters, drive, mnist1d_search_space

MNIST1D = mnist1d_search_space()


def _distance(a, b, space=MNIST1D) -> int:
    ia, ib = to_index_form(a, space), to_index_form(b, space)
    return sum(ia[k] != ib[k] for k in ia)


# -- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [EvolutionTuner, RegularizedEvolutionTuner])
def test_optimize_mode_is_required_keyword_and_validated(cls):
    with pytest.raises(TypeError):
        cls("maximize")  # keyword-only
    with pytest.raises(ConfigError, match=r"optimize_mode must be one of 'maximize', 'minimize', got 'up'"):
        cls(optimize_mode="up")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"population_size": 0}, ConfigError, "population_size must be >= 1, got 0"),
        ({"num_select": 1.5}, ConfigTypeError, "num_select must be an int, got 1.5"),
        ({"num_mutation": 40}, ConfigError, "num_mutation \\+ num_crossover must be <= population_size=50"),
        ({"mutation_prob": 2}, ConfigError, "mutation_prob must be a number in \\[0, 1\\], got 2"),
        ({"constraint": 3}, ConfigTypeError, "constraint must be a callable"),
        ({"seed": "x"}, ConfigTypeError, "seed must be an int or None, got 'x'"),
        ({"seed": -1}, ConfigError, "seed must be >= 0, got -1"),
    ],
)
def test_evolution_options_are_validated(kwargs, error, match):
    with pytest.raises(error, match=match):
        EvolutionTuner(optimize_mode="maximize", **kwargs)


def test_regularized_evolution_options_are_validated():
    with pytest.raises(ConfigError, match="sample_size must be <= population_size=10, got 11"):
        RegularizedEvolutionTuner(optimize_mode="maximize", population_size=10, sample_size=11)


def test_generate_before_search_space_is_an_error():
    with pytest.raises(SearchSpaceError, match="no search space: call update_search_space first"):
        RandomTuner(seed=0).generate_parameters(0)


def test_bad_values_are_errors_not_warnings():
    tuner = RandomTuner(seed=0)
    tuner.update_search_space(MNIST1D)
    params = tuner.generate_parameters(0)
    with pytest.raises(ConfigTypeError, match="real number"):
        tuner.receive_trial_result(0, params, "high")
    with pytest.raises(ConfigKeyError, match="lacks \\['value'\\]"):
        tuner.import_data([{"parameter": params}])


def test_checkpoint_of_another_tuner_is_rejected():
    state = RandomTuner(seed=0).save_checkpoint()
    with pytest.raises(CheckpointError, match="'RandomTuner' format 1 cannot be loaded into EvolutionTuner"):
        EvolutionTuner(optimize_mode="maximize").load_checkpoint(state)


# -- RandomTuner ---------------------------------------------------------------------------------


def test_random_tuner_exhausts_a_small_space_without_repeats():
    tuner = RandomTuner(seed=0)
    tuner.update_search_space(SMALL_SPACE)
    proposals = [tuner.generate_parameters(i) for i in range(space_size(SMALL_SPACE))]
    assert len({canonical_hash(p, SMALL_SPACE) for p in proposals}) == 24
    with pytest.raises(NoMoreTrialError, match="all 24 architectures"):
        tuner.generate_parameters(99)


def test_random_tuner_seeds_differ():
    a, _ = drive(RandomTuner(seed=1), MNIST1D, 10)
    b, _ = drive(RandomTuner(seed=2), MNIST1D, 10)
    assert a != b


# -- EvolutionTuner ------------------------------------------------------------------------------


def _evolution_run(**kwargs):
    tuner = EvolutionTuner(optimize_mode="maximize", seed=0, **kwargs)
    tuner.update_search_space(MNIST1D)
    values = {}
    proposals = []
    for pid in range(100):
        params = tuner.generate_parameters(pid)
        proposals.append(params)
        values[pid] = float(params["op0"]["_idx"] + params["op1"]["_idx"])
        tuner.receive_trial_result(pid, params, values[pid])
    return tuner, proposals


def test_evolution_second_generation_is_bred_from_the_top_results():
    tuner, proposals = _evolution_run()
    first, second = proposals[:50], proposals[50:]
    top = sorted(first, key=lambda p: -(p["op0"]["_idx"] + p["op1"]["_idx"]))[:10]
    # 25 mutants (per-key redraw with p=0.1) and 25 crossovers of the top 10: mostly close to a parent
    close = [p for p in second if min(_distance(p, t) for t in top) <= 3]
    assert len(close) >= 40
    mean = lambda ps: np.mean([p["op0"]["_idx"] + p["op1"]["_idx"] for p in ps])  # noqa: E731
    assert mean(second) > mean(first) + 1.0
    assert len({canonical_hash(p, MNIST1D) for p in proposals}) == 100


def test_evolution_minimize_prefers_low_values():
    tuner = EvolutionTuner(optimize_mode="minimize", seed=0, population_size=10, num_select=2, num_mutation=5, num_crossover=5)
    tuner.update_search_space(MNIST1D)
    for pid in range(40):
        params = tuner.generate_parameters(pid)
        tuner.receive_trial_result(pid, params, float(params["op0"]["_idx"]))
    assert tuner.population[0]["value"] == 0.0
    assert [r["value"] for r in tuner.population] == sorted(r["value"] for r in tuner.population)


def test_evolution_constraint_is_always_met():
    def no_identity(params):
        return all(params[f"op{i}"]["_value"] != "identity" for i in range(4))

    tuner = EvolutionTuner(optimize_mode="maximize", seed=0, population_size=20, num_select=4, num_mutation=8, num_crossover=8, constraint=no_identity)
    proposals, _ = drive(tuner, MNIST1D, 120, concurrency=3)
    assert len(proposals) == 120 and all(no_identity(p) for p in proposals)


def test_evolution_constraint_that_rejects_everything_ends_the_search():
    tuner = EvolutionTuner(optimize_mode="maximize", seed=0, constraint=lambda p: False)
    tuner.update_search_space(SMALL_SPACE)
    with pytest.raises(NoMoreTrialError, match="meets the constraint"):
        tuner.generate_parameters(0)


def test_evolution_max_generations():
    tuner = EvolutionTuner(optimize_mode="maximize", seed=0, population_size=5, num_select=2, num_mutation=2, num_crossover=2, max_generations=3)
    proposals, _ = drive(tuner, MNIST1D, 100, concurrency=2)
    assert len(proposals) == 15


def test_evolution_keeps_proposing_before_any_result():
    tuner = EvolutionTuner(optimize_mode="maximize", seed=0, population_size=10, num_select=3, num_mutation=4, num_crossover=4)
    tuner.update_search_space(MNIST1D)
    proposals = [tuner.generate_parameters(i) for i in range(35)]  # 3.5 generations, no result yet
    assert len({canonical_hash(p, MNIST1D) for p in proposals}) == 35


# -- RegularizedEvolutionTuner -------------------------------------------------------------------


def test_regularized_evolution_initial_population_then_one_key_mutants():
    tuner = RegularizedEvolutionTuner(optimize_mode="maximize", seed=0, population_size=10, sample_size=3)
    tuner.update_search_space(MNIST1D)
    history = []
    for pid in range(40):
        params = tuner.generate_parameters(pid)
        if pid >= 10:  # every later proposal is one key away from a population member
            assert min(_distance(params, h) for h in history[-10:]) == 1
        history.append(params)
        tuner.receive_trial_result(pid, params, float(pid % 5))
    assert len(tuner.population) == 10
    assert [r["parameters"] for r in tuner.population] == history[-10:]  # aging: oldest dropped


def test_regularized_evolution_replaces_a_failed_initial_member():
    tuner = RegularizedEvolutionTuner(optimize_mode="maximize", seed=0, population_size=4, sample_size=2)
    tuner.update_search_space(MNIST1D)
    first = [tuner.generate_parameters(i) for i in range(4)]
    tuner.trial_end(0, success=False)
    for pid in (1, 2, 3):
        tuner.receive_trial_result(pid, first[pid], 1.0)
    replacement = tuner.generate_parameters(4)
    # the replacement is random (a fifth initial member), not a mutant of the three results
    state = tuner.save_checkpoint()["state"]
    assert state["initial_left"] == 0 and len(state["initial_ids"]) == 1
    check_parameters(replacement, MNIST1D)
    tuner.receive_trial_result(4, replacement, 2.0)
    assert len(tuner.population) == 4
    nxt = tuner.generate_parameters(5)
    assert min(_distance(nxt, r["parameters"]) for r in tuner.population) == 1


@pytest.mark.parametrize("key", ["free", "none", "one", "two", "all"])
def test_regularized_evolution_input_choices_stay_exact(key):
    space = {key: SPACES["inputs"][key], "op": SPACES["inputs"]["op"]}
    tuner = RegularizedEvolutionTuner(optimize_mode="maximize", seed=0, population_size=2, sample_size=1)
    proposals, _ = drive(tuner, space, 50, concurrency=2)
    assert len(proposals) == space_size(space)
    for p in proposals:
        check_parameters(p, space)
        assert len(set(p[key]["_idx"])) == len(p[key]["_idx"])


def test_checkpoint_is_json_and_holds_the_population():
    tuner = RegularizedEvolutionTuner(optimize_mode="maximize", seed=0, population_size=5, sample_size=2)
    drive(tuner, MNIST1D, 12, concurrency=2)
    state = json.loads(json.dumps(tuner.save_checkpoint()))
    clone = RegularizedEvolutionTuner(optimize_mode="maximize", seed=1, population_size=5, sample_size=2)
    clone.load_checkpoint(state)  # no update_search_space needed: the space is in the checkpoint
    assert clone.population == tuner.population
    assert clone.generate_parameters(100) == tuner.generate_parameters(100)


# -- search quality ------------------------------------------------------------------------------

BUDGET = 300
SEEDS = range(5)


def test_evolution_tuners_beat_random_at_equal_budget():
    """Over 5 seeds at a budget of 300 trials (2 in flight) on the synthetic mnist1d objective."""
    factories = {
        "random": lambda s: RandomTuner(seed=s),
        "evolution": lambda s: EvolutionTuner(optimize_mode="maximize", seed=s),
        "regularized_evolution": lambda s: RegularizedEvolutionTuner(optimize_mode="maximize", seed=s),
    }
    best = {name: [best_found(f(s), budget=BUDGET, seed=s) for s in SEEDS] for name, f in factories.items()}
    print({k: [round(v, 3) for v in vs] for k, vs in best.items()})
    for name in ("evolution", "regularized_evolution"):
        assert np.mean(best[name]) > np.mean(best["random"]) + 0.5, best
        assert sum(e > r for e, r in zip(best[name], best["random"])) >= 4, best


def test_evolution_skips_queued_architectures_that_arrive_as_foreign_results():
    tuner = EvolutionTuner(optimize_mode="maximize", seed=0, population_size=6, num_select=2, num_mutation=2, num_crossover=2)
    tuner.update_search_space(MNIST1D)
    first = tuner.generate_parameters(0)
    queued = tuner.save_checkpoint()["state"]["queue"]
    upcoming = from_index_form(dict(zip(sorted(MNIST1D), queued[0])), MNIST1D)
    tuner.receive_trial_result("elsewhere", upcoming, 1.0, customized=True)
    rest = [tuner.generate_parameters(i) for i in range(1, 6)]
    hashes = [canonical_hash(p, MNIST1D) for p in [first, upcoming, *rest]]
    assert len(set(hashes)) == 7
