"""Searcher overhead: what the NNI-protocol tuners and TunerSearcher cost per trial.

1. Per tuner (RandomTuner, EvolutionTuner, RegularizedEvolutionTuner) on the mnist1d space: the
   mean time of ``generate_parameters`` + ``receive_trial_result`` per trial (microseconds),
   and the same through ``TunerSearcher.suggest`` + ``on_trial_complete``.
2. Search quality on the synthetic mnist1d objective (``searchers.testing.synthetic_objective``):
   best score found at equal budget, per seed.
3. Ray Tune trials/s on trivial function trials, ``TunerSearcher(RandomTuner)`` vs Tune's
   ``BasicVariantGenerator`` over ``to_tune_space`` (same settings: ``reuse_actors=True``,
   ``max_concurrent_trials=2``, same ``num_samples``, runs interleaved). Goal: ratio >= 0.9.

Prints one JSON object per line (the first describes the machine); the last holds the headline.

    python benchmarks/searcher_overhead.py [--tuner-trials 3000] [--tune-trials 100] [--repeats 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from _machine import machine  # noqa: E402

from searchers import EvolutionTuner, RandomTuner, RegularizedEvolutionTuner  # noqa: E402
from searchers.testing import best_found, mnist1d_search_space, synthetic_objective  # noqa: E402

TUNERS = {
    "RandomTuner": lambda seed: RandomTuner(seed=seed),
    "EvolutionTuner": lambda seed: EvolutionTuner(optimize_mode="maximize", seed=seed),
    "RegularizedEvolutionTuner": lambda seed: RegularizedEvolutionTuner(optimize_mode="maximize", seed=seed),
}


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def tuner_cost(name: str, trials: int) -> dict:
    """Mean µs per trial of generate_parameters + receive_trial_result (objective not timed)."""
    space = mnist1d_search_space()
    tuner = TUNERS[name](0)
    tuner.update_search_space(space)
    spent = 0.0
    for pid in range(trials):
        t0 = time.perf_counter()
        params = tuner.generate_parameters(pid)
        t1 = time.perf_counter()
        value = synthetic_objective(params)
        t2 = time.perf_counter()
        tuner.receive_trial_result(pid, params, value)
        tuner.trial_end(pid, True)
        spent += (t1 - t0) + (time.perf_counter() - t2)
    return {"tuner": name, "trials": trials, "us_per_trial": round(1e6 * spent / trials, 1)}


def searcher_cost(name: str, trials: int) -> dict:
    """Mean µs per trial of TunerSearcher.suggest + on_trial_complete (objective not timed)."""
    from searchers.tune import TunerSearcher

    space = mnist1d_search_space()
    searcher = TunerSearcher(TUNERS[name](0), search_space=space, metric="score", mode="max")
    spent = 0.0
    for i in range(trials):
        t0 = time.perf_counter()
        config = searcher.suggest(str(i))
        t1 = time.perf_counter()
        result = {"score": synthetic_objective(config["arch"])}
        t2 = time.perf_counter()
        searcher.on_trial_complete(str(i), result=result)
        spent += (t1 - t0) + (time.perf_counter() - t2)
    return {"searcher": f"TunerSearcher({name})", "trials": trials, "us_per_trial": round(1e6 * spent / trials, 1)}


def trivial(config):
    from ray import tune

    tune.report({"score": 1.0})


def tune_rate(kind: str, trials: int, storage: str, index: int) -> float:
    """Trials/s of one Tune run (wall time of Tuner.fit) with the given search algorithm."""
    from ray import tune

    from searchers.tune import TunerSearcher, to_tune_space

    space = mnist1d_search_space()
    if kind == "tuner_searcher":
        search_alg = TunerSearcher(RandomTuner(seed=index), search_space=space, metric="score", mode="max")
        param_space = {}
    else:
        search_alg = None  # BasicVariantGenerator
        param_space = to_tune_space(space)
    tuner = tune.Tuner(
        trivial,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            search_alg=search_alg, num_samples=trials, reuse_actors=True, max_concurrent_trials=2
        ),
        run_config=tune.RunConfig(storage_path=storage, name=f"{kind}-{index}", verbose=0),
    )
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # Tune's banners: keep stdout JSON lines only
        results = tuner.fit()
    wall = time.perf_counter() - t0
    if len(results) != trials or results.errors:
        raise RuntimeError(f"{kind}: {len(results)} trials, errors {results.errors}")
    return trials / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tuner-trials", type=int, default=3000, help="trials per tuner for the µs figure")
    parser.add_argument("--budget", type=int, default=300, help="trials per seed for the quality figure")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--tune-trials", type=int, default=100, help="num_samples of each Tune run")
    parser.add_argument("--repeats", type=int, default=2, help="Tune runs per search algorithm (interleaved)")
    args = parser.parse_args()

    emit({"machine": machine()})

    per_trial = {}
    for name in TUNERS:
        row = tuner_cost(name, args.tuner_trials)
        per_trial[name] = row["us_per_trial"]
        emit(row)
    for name in TUNERS:
        emit(searcher_cost(name, args.tuner_trials))

    quality = {}
    for name, make in TUNERS.items():
        best = [round(best_found(make(s), budget=args.budget, seed=s), 3) for s in range(args.seeds)]
        quality[name] = round(statistics.mean(best), 3)
        emit({"quality": name, "budget": args.budget, "concurrency": 2, "best_per_seed": best,
              "mean_best": quality[name]})

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    rates: dict[str, list[float]] = {"tuner_searcher": [], "basic_variant": []}
    with tempfile.TemporaryDirectory() as storage:
        tune_rate("basic_variant", 10, storage, -1)  # warm-up: worker start-up, imports
        for r in range(args.repeats):
            order = ["tuner_searcher", "basic_variant"] if r % 2 == 0 else ["basic_variant", "tuner_searcher"]
            for kind in order:
                rate = tune_rate(kind, args.tune_trials, storage, r)
                rates[kind].append(rate)
                emit({"tune": kind, "repeat": r, "num_samples": args.tune_trials, "trials_per_s": round(rate, 2)})
    ray.shutdown()

    ts, bv = statistics.mean(rates["tuner_searcher"]), statistics.mean(rates["basic_variant"])
    emit(
        {
            "headline": "searcher overhead",
            "us_per_trial_generate_plus_receive": per_trial,
            "mean_best_synthetic_score": quality,
            "tune_trials_per_s": {"tuner_searcher": round(ts, 2), "basic_variant": round(bv, 2)},
            "ratio_tuner_searcher_vs_basic_variant": round(ts / bv, 3),
            "goal": ">= 0.9",
        }
    )


if __name__ == "__main__":
    main()
