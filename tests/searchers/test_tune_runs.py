"""Real Ray Tune runs: TunerSearcher under ConcurrencyLimiter, Tuner.restore, Tune's own searcher."""

from __future__ import annotations

import glob
import json
import os
import signal

import pytest
from ray import tune
from ray.tune.search import ConcurrencyLimiter

from searchers import RegularizedEvolutionTuner, canonical_hash, to_index_form
from searchers.testing import check_parameters, mnist1d_search_space, synthetic_objective
from searchers.tune import TunerSearcher, from_tune_config, to_tune_space

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
