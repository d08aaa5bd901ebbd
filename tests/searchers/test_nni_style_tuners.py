"""Tuners written as NNI writes them: only update_search_space / generate_parameters / receive_trial_result.

NNI v1.9 (nni/tuner.py, nni/recoverable.py) makes load_checkpoint / save_checkpoint optional no-ops; such a
tuner must instantiate, pass the conformance suite, run under Tune, and survive ``Tuner.restore`` (its calls
are replayed into the fresh tuner).
"""

from __future__ import annotations

import glob
import json
import logging
import os

import numpy as np
import pytest
from ray import tune
from ray.tune.search import ConcurrencyLimiter

from searchers import CallLog, CheckpointError, NoMoreTrialError, Tuner, parse_search_space
from searchers.errors import ConfigError
from searchers.testing import TunerConformance, check_parameters, mnist1d_search_space, synthetic_objective
from searchers.tune import TunerSearcher, load_searcher
from tests.searchers.test_tune_runs import InterruptOnce

MNIST1D = mnist1d_search_space()
_FIXED = {"op0": "conv3", "op1": "conv5", "op2": "identity", "op3": "conv7", "skip1": [], "skip2": ["op0"]}
_FIXED["skip3"] = [0]


class NNIRandomTuner(Tuner):
    """What an NNI user writes: the three protocol methods, nothing else (numpy RandomState, as NNI's examples)."""

    def __init__(self, seed=None):
        self.random_state = np.random.RandomState(seed)
        self.space = None
        self.results = {}

    def update_search_space(self, search_space):
        parse_search_space(search_space)  # validates (the suite demands an error on a bad space)
        self.space = search_space

    def generate_parameters(self, parameter_id, **kwargs):
        params = {}
        for key, spec in sorted(self.space.items()):
            if spec["_type"] == "layer_choice":
                idx = int(self.random_state.randint(len(spec["_value"])))
                params[key] = {"_value": spec["_value"][idx], "_idx": idx}
            else:
                candidates, n_chosen = spec["_value"]["candidates"], spec["_value"]["n_chosen"]
                if n_chosen is None:
                    idx = [i for i in range(len(candidates)) if self.random_state.randint(2)]
                else:
                    idx = sorted(int(i) for i in self.random_state.choice(len(candidates), n_chosen, replace=False))
                params[key] = {"_value": [candidates[i] for i in idx], "_idx": idx}
        return params

    def receive_trial_result(self, parameter_id, parameters, value, **kwargs):
        self.results[parameter_id] = value


class TestNNIStyleTuner(TunerConformance):
    no_duplicates = False  # a plain random tuner repeats, and never runs out
    exhausts_space = False

    @pytest.fixture
    def tuner_factory(self):
        return lambda seed: NNIRandomTuner(seed=seed)


class CountingTuner(Tuner):
    """Proposes candidate ``len(results received)`` of the single key: a lost result shows as a repeat."""

    def __init__(self):
        self.space = None
        self.received = []

    def update_search_space(self, search_space):
        self.space = search_space

    def generate_parameters(self, parameter_id, **kwargs):
        names = self.space["n"]["_value"]
        if len(self.received) >= len(names):
            raise NoMoreTrialError("all candidates done")
        i = len(self.received)
        return {"n": {"_value": names[i], "_idx": i}}

    def receive_trial_result(self, parameter_id, parameters, value, **kwargs):
        self.received.append([parameter_id, parameters["n"]["_idx"], value])


COUNT_SPACE = {"n": {"_type": "layer_choice", "_value": [f"c{i}" for i in range(30)]}}


def test_three_method_tuner_instantiates_and_loads_by_import_path():
    searcher = load_searcher(
        "tests.searchers.test_nni_style_tuners:NNIRandomTuner", search_space=MNIST1D, metric="score", mode="max", seed=3
    )
    assert isinstance(searcher.tuner, NNIRandomTuner) and searcher.tuner.space == MNIST1D
    config = searcher.suggest("t0")
    check_parameters(config["arch"], MNIST1D)
    searcher.on_trial_complete("t0", {"score": 0.25})
    assert searcher.tuner.results == {0: 0.25}
    assert searcher.get_state()["tuner"] is None and searcher.get_state()["calls"]


def _drive(searcher, n, start=0):
    for i in range(start, start + n):
        config = searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", {"score": synthetic_objective(config["arch"])})


def test_get_state_of_a_tuner_without_checkpoint_replays_into_a_fresh_one(caplog):
    searcher = TunerSearcher(NNIRandomTuner(seed=5), search_space=MNIST1D, metric="score", mode="max")
    _drive(searcher, 6)
    searcher.suggest("t6")  # in flight when saved
    searcher.add_evaluated_point({"arch": _FIXED}, 0.5)
    state = json.loads(json.dumps(searcher.get_state()))
    assert state["tuner"] is None and len(state["calls"]) == 6 * 3 + 1 + 1

    fresh = TunerSearcher(NNIRandomTuner(seed=5), search_space=MNIST1D, metric="score", mode="max")
    with caplog.at_level(logging.WARNING, logger="searchers.tune"):
        fresh.set_state(state)
    assert (
        "NNIRandomTuner keeps no checkpoint (save_checkpoint() returned None): replayed its 20 recorded calls "
        "(7 results) into the fresh tuner"
    ) in caplog.text
    assert fresh.tuner.results == searcher.tuner.results and len(fresh.tuner.results) == 6
    # the same RNG state: the next proposals agree, and the in-flight trial still completes
    fresh.on_trial_complete("t6", {"score": 1.0})
    searcher.on_trial_complete("t6", {"score": 1.0})
    assert [fresh.suggest(f"u{i}") for i in range(3)] == [searcher.suggest(f"u{i}") for i in range(3)]


def test_replay_needs_a_fresh_searcher_and_a_sane_log():
    searcher = TunerSearcher(NNIRandomTuner(seed=1), search_space=MNIST1D, metric="score", mode="max")
    _drive(searcher, 2)
    state = searcher.get_state()
    used = TunerSearcher(NNIRandomTuner(seed=1), search_space=MNIST1D, metric="score", mode="max")
    _drive(used, 1)
    with pytest.raises(CheckpointError, match="into a fresh tuner, but this searcher has already suggested 1 trials"):
        used.set_state(state)
    with pytest.raises(CheckpointError, match="call log record 0 is not a tuner call"):
        CallLog([["teleport", 1]])


def test_a_failing_replay_names_the_call():
    class Fragile(CountingTuner):
        def receive_trial_result(self, parameter_id, parameters, value, **kwargs):
            if parameter_id == 1:
                raise KeyError(parameter_id)
            super().receive_trial_result(parameter_id, parameters, value)

    log = CallLog()
    log.generated(0, {"n": {"_value": "c0", "_idx": 0}})
    log.received(0, {"n": {"_value": "c0", "_idx": 0}}, 1.0)
    log.received(1, {"n": {"_value": "c1", "_idx": 1}}, 2.0, customized=True)
    tuner = Fragile()
    tuner.update_search_space(COUNT_SPACE)
    message = r"replaying call 2 \(result of parameter id 1\) into a fresh Fragile failed: KeyError"
    with pytest.raises(RuntimeError, match=message):
        log.replay(tuner)
    assert tuner.received == [[0, 0, 1.0]]


def test_a_checkpointing_tuner_drops_the_log():
    from searchers import RandomTuner

    searcher = TunerSearcher(RandomTuner(seed=0), search_space=MNIST1D, metric="score", mode="max")
    _drive(searcher, 3)
    state = searcher.get_state()
    assert state["calls"] is None and state["tuner"]["tuner"] == "RandomTuner"
    assert searcher._log.records == []


def test_parameter_id_key_puts_the_sequence_id_into_the_config():
    searcher = TunerSearcher(
        CountingTuner(), search_space=COUNT_SPACE, metric="score", mode="max", parameter_id_key="nni_parameter_id",
        points_to_evaluate=[{"n": "c7"}],
    )
    assert searcher.suggest("a") == {"arch": {"n": {"_value": "c7", "_idx": 7}}, "nni_parameter_id": 0}
    assert searcher.suggest("b") == {"arch": {"n": {"_value": "c0", "_idx": 0}}, "nni_parameter_id": 1}
    with pytest.raises(ConfigError, match="parameter_id_key must be a str other than 'arch'"):
        TunerSearcher(CountingTuner(), search_space=COUNT_SPACE, metric="score", parameter_id_key="arch")


def test_a_tuner_with_only_generate_multiple_parameters_runs():
    class Batch(CountingTuner):
        generate_parameters = Tuner.generate_parameters

        def generate_multiple_parameters(self, parameter_id_list, **kwargs):
            wanted = parameter_id_list[: 30 - len(self.received)]
            return [CountingTuner.generate_parameters(self, pid) for pid in wanted]

    searcher = TunerSearcher(Batch(), search_space=COUNT_SPACE, metric="score", mode="max")
    config = searcher.suggest("a")
    assert config == {"arch": {"n": {"_value": "c0", "_idx": 0}}}
    searcher.on_trial_complete("a", {"score": 1.0})
    assert searcher.suggest("b")["arch"]["n"]["_idx"] == 1


# -- a real Tune run, interrupted and restored --------------------------------------------------------


def counting_trainable(config):
    tune.report({"score": 100.0 + config["arch"]["n"]["_idx"]})


def _searcher_state(experiment_dir) -> dict:
    newest = max(glob.glob(os.path.join(experiment_dir, "searcher-state-*.pkl")))
    with open(newest) as f:
        return json.load(f)


@pytest.mark.slow
def test_tune_restore_replays_results_into_a_fresh_three_method_tuner(ray_local, tmp_path, caplog):
    flag = str(tmp_path / "interrupt")
    open(flag, "w").close()
    searcher = ConcurrencyLimiter(
        TunerSearcher(CountingTuner(), search_space=COUNT_SPACE, metric="score", mode="max"), max_concurrent=1
    )
    first = tune.Tuner(
        counting_trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=12, reuse_actors=True),
        run_config=tune.RunConfig(
            storage_path=str(tmp_path), name="counting", verbose=0, callbacks=[InterruptOnce(flag, 5)]
        ),
    ).fit()
    assert not os.path.exists(flag)
    done_first = [r for r in first if r.metrics and "score" in r.metrics]
    assert 5 <= len(done_first) < 12
    saved = _searcher_state(first.experiment_path)
    assert saved["tuner"] is None and sum(c[0] == "result" for c in saved["calls"]) >= 5

    with caplog.at_level(logging.WARNING, logger="searchers.tune"):
        second = tune.Tuner.restore(first.experiment_path, counting_trainable, resume_errored=True).fit()
    assert "CountingTuner keeps no checkpoint" in caplog.text and "replayed its" in caplog.text
    assert len(second) == 12 and not second.errors
    # the tuner proposes candidate len(results received): a result lost in the restore would repeat one
    assert sorted(r.config["arch"]["n"]["_idx"] for r in second) == list(range(12))
    final = _searcher_state(first.experiment_path)
    received = [c for c in final["calls"] if c[0] == "result"]
    assert [(c[1], c[3]) for c in received] == [(i, 100.0 + i) for i in range(12)]
    # what Tune knows agrees with what the tuner was told
    for r in second:
        assert r.metrics["score"] == 100.0 + r.config["arch"]["n"]["_idx"]
