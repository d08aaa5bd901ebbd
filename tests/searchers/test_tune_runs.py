"""Real Ray Tune runs: TunerSearcher under ConcurrencyLimiter, Tuner.restore, Tune's own searcher."""

from __future__ import annotations

import glob
import json
import os
import pickle
import signal

import numpy as np
import pytest
from ray import tune
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.sample import Categorical

from searchers import RegularizedEvolutionTuner, canonical_hash, to_index_form
from searchers.constrained import ConstrainedSearcher
from searchers.testing import check_parameters, mnist1d_search_space, synthetic_objective
from searchers.tune import TunerSearcher, from_tune_config, load_searcher, to_tune_space

MNIST1D = mnist1d_search_space()


def score_trainable(config):
    """A trivial trial: the synthetic score; fails for every architecture with op3 = maxpool3."""
    if config["arch"]["op3"]["_value"] == "maxpool3":
        raise RuntimeError("synthetic failure")
    tune.report({"score": synthetic_objective(config["arch"])})


def plain_trainable(config):
    tune.report({"score": synthetic_objective(config["arch"])})


def converting_trainable(config):
    params = from_tune_config(config, mnist1d_search_space())
    tune.report({"score": synthetic_objective(params), "arch_json": json.dumps(params)})


def _tuner(trainable, tmp_path, name, search_alg, num_samples, callbacks=None, param_space=None):
    return tune.Tuner(
        trainable,
        param_space=param_space or {},
        tune_config=tune.TuneConfig(search_alg=search_alg, num_samples=num_samples, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name=name, verbose=0, callbacks=callbacks or []),
    )


def _searcher_state(experiment_dir) -> dict:
    newest = max(glob.glob(os.path.join(experiment_dir, "searcher-state-*.pkl")))
    with open(newest) as f:
        return json.load(f)


def _hashes(results) -> list[str]:
    return [canonical_hash(r.config["arch"], MNIST1D) for r in results]


@pytest.mark.slow
def test_regularized_evolution_run_under_concurrency_limiter(ray_local, tmp_path):
    tuner = RegularizedEvolutionTuner(optimize_mode="maximize", seed=0, population_size=8, sample_size=3)
    searcher = TunerSearcher(tuner, search_space=MNIST1D, metric="score", mode="max")
    results = _tuner(score_trainable, tmp_path, "regevo", ConcurrencyLimiter(searcher, max_concurrent=2), 30).fit()
    assert len(results) == 30
    hashes = _hashes(results)
    assert len(set(hashes)) == 30, "an architecture ran twice"
    failing = [r for r in results if r.config["arch"]["op3"]["_value"] == "maxpool3"]
    assert failing, "the run should include failing trials"
    assert len(results.errors) == len(failing)
    for r in results:
        check_parameters(r.config["arch"], MNIST1D)
        if r.error is None:
            assert r.metrics["score"] == pytest.approx(synthetic_objective(r.config["arch"]))
    state = _searcher_state(results.experiment_path)
    assert state["trials"] == {} and state["next_id"] == 30
    population = state["tuner"]["state"]["population"]
    assert len(population) == 8
    assert state["tuner"]["state"]["initial_left"] == 0
    assert len(state["tuner"]["seen"]) == 30
    best = max(r.metrics["score"] for r in results if r.error is None)
    assert max(score for _, score in population) <= best


class InterruptOnce(tune.Callback):
    """Sends SIGINT (as Ctrl+C does) after ``after`` completed trials, once per flag file."""

    def __init__(self, flag: str, after: int) -> None:
        self.flag, self.after, self.completed = flag, after, 0

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.completed += 1
        if self.completed >= self.after and os.path.exists(self.flag):
            os.remove(self.flag)
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.slow
def test_interrupted_run_resumes_without_repeats(ray_local, tmp_path):
    flag = str(tmp_path / "interrupt")
    open(flag, "w").close()
    tuner = RegularizedEvolutionTuner(optimize_mode="maximize", seed=1, population_size=6, sample_size=3)
    searcher = ConcurrencyLimiter(
        TunerSearcher(tuner, search_space=MNIST1D, metric="score", mode="max"), max_concurrent=2
    )
    first = _tuner(plain_trainable, tmp_path, "resume", searcher, 24, callbacks=[InterruptOnce(flag, 10)]).fit()
    assert not os.path.exists(flag)
    experiment = first.experiment_path
    done_first = [r for r in first if r.metrics and "score" in r.metrics]
    assert 10 <= len(done_first) < 24
    saved = _searcher_state(experiment)
    assert saved["tuner"]["state"]["population"], "the population was saved"
    # finished trials, plus those in flight at the interrupt (their results have no config yet)
    first_archs = {canonical_hash(r.config["arch"], MNIST1D) for r in done_first}
    first_archs |= {canonical_hash(t["parameters"], MNIST1D) for t in saved["trials"].values()}
    assert len(first_archs) == len(done_first) + len(saved["trials"])

    second = tune.Tuner.restore(experiment, plain_trainable, resume_errored=True).fit()  # must not hang
    assert len(second) == 24 and not second.errors
    assert all("score" in r.metrics for r in second)
    hashes = _hashes(second)
    assert len(set(hashes)) == 24, "a trial was repeated after restore"
    assert first_archs <= set(hashes)
    final = _searcher_state(experiment)
    assert final["trials"] == {} and final["next_id"] == 24
    # the tuner's memory survived the restore: it still knows the first run's architectures
    seen = {canonical_hash(dict(zip(sorted(MNIST1D), a)), MNIST1D) for a in final["tuner"]["seen"]}
    assert seen == set(hashes)
    # and its population: every architecture proposed after the restore is a one-key mutant
    indices = {h: to_index_form(r.config["arch"], MNIST1D) for h, r in zip(hashes, second)}
    for h in set(hashes) - first_archs:
        assert any(sum(indices[h][k] != indices[o][k] for k in MNIST1D) == 1 for o in indices if o != h)


def test_basic_variant_generator_searches_the_nas_space(ray_local, tmp_path):
    results = _tuner(converting_trainable, tmp_path, "bvg", None, 6, param_space=to_tune_space(MNIST1D)).fit()
    assert len(results) == 6 and not results.errors
    for r in results:
        params = json.loads(r.metrics["arch_json"])
        check_parameters(params, MNIST1D)
        assert params == from_tune_config(r.config, MNIST1D)


class SeededRandomSearcher(Searcher):
    """A user's own Tune ``Searcher`` (no NNI tuner): seeded random samples of the Tune form of
    the space, never the same architecture twice; ``save`` / ``restore`` keep its RNG and memory."""

    def __init__(self, space: dict, *, metric: str | None = None, mode: str | None = None, seed: int = 0):
        super().__init__(metric=metric, mode=mode)
        self.space = space
        self.rng = np.random.default_rng(seed)
        self.seen: set[str] = set()

    def _sample(self, domain):
        if isinstance(domain, Categorical):
            return domain.categories[int(self.rng.integers(len(domain.categories)))]
        if isinstance(domain, dict):
            return {k: self._sample(v) for k, v in domain.items()}
        return domain

    def suggest(self, trial_id: str) -> dict:
        while True:
            config = self._sample(self.space)
            key = json.dumps(config, sort_keys=True)
            if key not in self.seen:
                self.seen.add(key)
                return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w") as f:
            json.dump({"rng": self.rng.bit_generator.state, "seen": sorted(self.seen)}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as f:
            state = json.load(f)
        self.rng.bit_generator.state = state["rng"]
        self.seen = set(state["seen"])


REJECTED: list[dict] = []  # every proposal the constraint turned down, in this process


def no_conv7_first(config: dict) -> str | None:
    """The constraint: op0 must not be conv7 (about one proposal in six is turned down)."""
    if from_tune_config(config, MNIST1D)["op0"]["_value"] == "conv7":
        REJECTED.append(config)
        return "op0 is conv7"
    return None


def _constrained_state(experiment_dir) -> dict:
    """The wrapper's state as Tune saved it: Tune keeps the wrappers' ``get_state()`` in its
    search-generator state (a pickle) and the innermost searcher's ``save`` in searcher-state."""
    newest = max(glob.glob(os.path.join(experiment_dir, "search_gen_state-*.json")))
    with open(newest, "rb") as f:
        return pickle.load(f)["name:ConstrainedSearcher"]


@pytest.mark.slow
def test_users_searcher_under_constrained_searcher_is_restored(ray_local, tmp_path):
    """``Tuner.restore`` brings back a user's own Tune Searcher (loaded by import path, as
    ``search.searcher`` does) wrapped in ``ConstrainedSearcher``: its RNG and memory, the
    wrapper's rejection count; no architecture runs twice, none breaks the constraint."""
    REJECTED.clear()
    flag = str(tmp_path / "interrupt")
    open(flag, "w").close()
    user = load_searcher(
        "tests.searchers.test_tune_runs:SeededRandomSearcher", search_space=MNIST1D, metric="score", mode="max", seed=3
    )
    assert isinstance(user, SeededRandomSearcher)
    searcher = ConcurrencyLimiter(ConstrainedSearcher(user, constraint=no_conv7_first), max_concurrent=2)
    first = _tuner(converting_trainable, tmp_path, "own", searcher, 20, callbacks=[InterruptOnce(flag, 8)]).fit()
    assert not os.path.exists(flag)
    done_first = [r for r in first if r.metrics and "score" in r.metrics]
    assert 8 <= len(done_first) < 20
    rejected_first = len(REJECTED)
    assert rejected_first > 0 and _constrained_state(first.experiment_path)["rejected"] == rejected_first

    second = tune.Tuner.restore(first.experiment_path, converting_trainable, resume_errored=True).fit()
    assert len(second) == 20 and not second.errors
    archs = [r.metrics["arch_json"] for r in second]
    assert len(set(archs)) == 20, "an architecture ran twice after restore"
    assert {r.metrics["arch_json"] for r in done_first} <= set(archs)
    assert all(json.loads(a)["op0"]["_value"] != "conv7" for a in archs)
    # the wrapper's count went on from the interrupted run's: every rejection of both runs
    assert len(REJECTED) > rejected_first and _constrained_state(first.experiment_path)["rejected"] == len(REJECTED)
