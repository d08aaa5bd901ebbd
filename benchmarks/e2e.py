"""End to end: the default ``raynas search`` (wall time) and the test accuracy of the
architecture it found, next to the stand-alone accuracy of 20 random mnist1d architectures.

Goal: the found architecture beats the best of the random ones. Prints JSON lines; the last
holds ``wall_s``, ``found_test_accuracy`` and ``best_random_test_accuracy``.

    python benchmarks/e2e.py [--random 20] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _machine import machine  # noqa: E402
from _standalone import standalone_accuracies  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--random", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    print(json.dumps({"benchmark": "e2e", **machine()}), flush=True)

    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as storage:
        cmd = [sys.executable, "-m", "raynas.cli", "search", "--set", f"experiment.storage={storage}"]
        for item in args.overrides:
            cmd += ["--set", item]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"raynas search failed ({proc.returncode}): {proc.stderr[-2000:]}")
        root = Path(storage) / "mnist1d"
        state = json.loads((root / "state.json").read_text())["done"]
        retrain = pq.read_table(root / "results" / "retrain.parquet").to_pylist()
        best = json.loads((root / "best_architecture.json").read_text())
    found = next(r for r in retrain if json.loads(r["arch"]) == best)
    print(json.dumps({"raynas_search_wall_s": round(wall, 1),
                      "phase_wall_s": {k: v.get("wall_s") for k, v in state.items()},
                      "found_arch": best, "found_val_accuracy": found["val_accuracy"],
                      "found_test_accuracy": found["test_accuracy"]}), flush=True)

    import numpy as np

    from raynas.nas import generate_search_space
    from raynas.zoo import mnist1d
    from searchers.space import parse_search_space, sample_architecture, to_exported

    choices = parse_search_space(generate_search_space(mnist1d.build_supernet()))
    rng = np.random.default_rng(args.seed)
    archs = [to_exported(sample_architecture(choices, rng), choices) for _ in range(args.random)]
    start = time.perf_counter()
    random_results = standalone_accuracies(archs, seed=args.seed)
    tests = sorted(r["test_accuracy"] for r in random_results)
    print(json.dumps({"random_test_accuracies": [round(t, 4) for t in tests],
                      "standalone_wall_s": round(time.perf_counter() - start, 1)}), flush=True)
    print(json.dumps({
        "wall_s": round(wall, 1),
        "found_test_accuracy": found["test_accuracy"],
        "best_random_test_accuracy": tests[-1],
        "median_random_test_accuracy": tests[len(tests) // 2],
        "found_beats_best_random": found["test_accuracy"] > tests[-1],
    }))


if __name__ == "__main__":
    main()
