"""Search throughput: weight-sharing evaluations per second through Ray Tune (the search phase's
own code: reused actors, weights shipped once) over a plain in-process loop.

Both score the same random mnist1d architectures on the same supernet weights (BatchNorm
recalibration on ``--bn-batches`` batches, validation split). The plain loop runs with 1 torch
thread; Tune runs trials with 1 CPU each, ``--max-concurrent`` at a time. The last line holds
``ratio_tune_vs_plain`` (goal >= 0.5).

    python benchmarks/search_throughput.py [--samples 200]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _machine import machine  # noqa: E402

from raynas.nas import generate_search_space  # noqa: E402
from raynas.search import SearchSetup, build_searcher, run_search_tune  # noqa: E402
from raynas.zoo import mnist1d  # noqa: E402
from searchers import RandomTuner  # noqa: E402,F401  (the searcher below, by import path)
from searchers.space import parse_search_space, sample_architecture, to_parameters  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--max-concurrent", type=int, default=2)
    parser.add_argument("--bn-batches", type=int, default=10)
    args = parser.parse_args()
    print(json.dumps({"benchmark": "search_throughput", **machine(), "samples": args.samples}), flush=True)

    torch.manual_seed(0)
    weights = mnist1d.build_supernet().state_dict()
    space = generate_search_space(mnist1d.build_supernet())
    setup = SearchSetup(
        model_factory=mnist1d.build_supernet,
        data_factory=mnist1d.load_data,
        space=space,
        bn_batches=args.bn_batches,
        bn_batch_size=64,
        batch_size=256,
        seed=0,
        token="bench",
    )

    import numpy as np

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    choices = parse_search_space(space)
    archs = [to_parameters(sample_architecture(choices, rng), choices) for _ in range(args.samples)]
    evaluator = setup.evaluator(weights)
    evaluator.evaluate(archs[0])  # data and weights loaded once, as in a reused actor
    start = time.perf_counter()
    for arch in archs:
        evaluator.evaluate(arch)
    plain = args.samples / (time.perf_counter() - start)
    print(json.dumps({"plain_evals_per_s": round(plain, 2), "torch_threads": 1}), flush=True)

    import ray

    ray.init(num_cpus=args.max_concurrent, include_dashboard=False, log_to_driver=False)
    results = {}
    for concurrent in sorted({1, args.max_concurrent}):
        searcher = build_searcher(
            "searchers:RandomTuner", space=space, metric="val_accuracy", mode="max", kwargs={}, seed=0
        )
        with tempfile.TemporaryDirectory() as storage:
            start = time.perf_counter()
            rows = run_search_tune(
                searcher=searcher,
                setup=setup,
                weights=weights,
                storage=storage,
                name="bench",
                num_samples=args.samples,
                max_concurrent=concurrent,
                metric="val_accuracy",
                mode="max",
                resources={"cpu": 1},
                resume=False,
            )
            wall = time.perf_counter() - start
        assert len(rows) == args.samples
        results[concurrent] = args.samples / wall
        print(json.dumps({"tune_evals_per_s": round(results[concurrent], 2), "max_concurrent": concurrent,
                          "wall_s_incl_experiment_start": round(wall, 2)}), flush=True)
    ray.shutdown()
    best = results[args.max_concurrent]
    print(json.dumps({
        "ratio_tune_vs_plain": round(best / plain, 3),
        "ratio_tune_1_concurrent_vs_plain": round(results[1] / plain, 3),
        "tune_evals_per_s": round(best, 2),
        "plain_evals_per_s": round(plain, 2),
        "goal": ">= 0.5",
    }))


if __name__ == "__main__":
    main()
