"""Search quality against the alternative a user has: random search with the same wall clock.

For each seed:

1. **raynas**: ``raynas search`` (the default mnist1d experiment, ``experiment.seed=SEED``, plus any
   ``--set``) through the real CLI; its wall time ``W`` is the budget. Its pick is
   ``best_architecture.json`` (the best retrained architecture by validation accuracy); the figure
   is that architecture's test accuracy from ``results/retrain.parquet``.
2. **random search**: on the same machine, random mnist1d architectures (numpy seed ``SEED``) are
   trained alone with the retrain protocol (Adam 3e-3, batch 128, 30 epochs, cosine; the same
   ``raynas.retrain.train_fixed``), one per CPU in parallel (Ray tasks), new ones started as
   others finish, until ``W`` has passed since it started (Ray start-up included, as in raynas' ``W``);
   trainings not finished by then are cancelled and do not count. Its pick is the finished
   architecture with the best validation accuracy; the figure is its test accuracy.

The two run one after the other per seed, so both see the machine in about the same state.
Prints one JSON line per method and seed, then the headline: mean and spread of each method's
test accuracy, and on how many seeds raynas is ahead.

    python benchmarks/vs_random.py [--seeds 0 1 2] [--set key=value ...] [--label NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _machine import machine  # noqa: E402


def run_raynas(seed: int, overrides: list[str], keep: str | None = None) -> dict:
    """The default search through the CLI; its wall time, pick and the pick's figures (``keep``: copy
    its ``report.html`` and ``state.json`` there)."""
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as storage:
        cmd = [
            sys.executable,
            "-m",
            "raynas.cli",
            "search",
            "--set",
            f"experiment.storage={storage}",
            "--set",
            f"experiment.seed={seed}",
        ]
        for item in overrides:
            cmd += ["--set", item]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"raynas search failed ({proc.returncode}): {proc.stderr[-3000:]}")
        root = Path(storage) / "mnist1d"
        state = json.loads((root / "state.json").read_text())["done"]
        best = json.loads((root / "best_architecture.json").read_text())
        retrained = pq.read_table(root / "results" / "retrain.parquet").to_pylist()
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(root / "report.html", Path(keep) / f"report-seed{seed}.html")
    picked = next(r for r in retrained if json.loads(r["arch"]) == best)
    return {
        "wall_s": round(wall, 1),
        "phase_wall_s": {k: v.get("wall_s") for k, v in state.items()},
        "picked": best,
        "val_accuracy": picked["val_accuracy"],
        "test_accuracy": picked["test_accuracy"],
        "retrained": [
            {
                k: r[k]
                for k in ("rank", "search_val_accuracy", "val_accuracy", "val_loss", "test_accuracy", "params", "arch")
            }
            for r in retrained
        ],
        "retrained_test_best": max(r["test_accuracy"] for r in retrained),
    }


def _space_choices():
    from raynas.nas import generate_search_space
    from raynas.zoo import mnist1d
    from searchers.space import parse_search_space

    return parse_search_space(generate_search_space(mnist1d.build_supernet()))


def run_random(seed: int, budget_s: float) -> dict:
    """Random architectures trained alone, in parallel, until ``budget_s`` has passed."""
    import numpy as np
    import ray
    from _standalone import _train_one

    from searchers.space import sample_architecture, to_exported

    start = time.perf_counter()
    deadline = start + budget_s
    ray.init(include_dashboard=False, log_to_driver=False)
    try:
        choices = _space_choices()
        rng = np.random.default_rng(seed)
        task = ray.remote(num_cpus=1)(_train_one)
        slots = max(1, int(ray.available_resources().get("CPU", 1)))
        pending, archs, done = {}, [], []
        while True:
            while len(pending) < slots and time.perf_counter() < deadline:
                arch = to_exported(sample_architecture(choices, rng), choices)
                archs.append(arch)
                pending[task.remote(arch, len(archs) - 1, seed, 30)] = arch
            left = deadline - time.perf_counter()
            if left <= 0 or not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=left)
            for ref in ready:
                done.append({"arch": pending.pop(ref), **ray.get(ref)})
        for ref in pending:
            ray.cancel(ref, force=True)
    finally:
        ray.shutdown()
    if not done:
        return {"n_trained": 0, "started": len(archs), "test_accuracy": None, "val_accuracy": None}
    picked = max(done, key=lambda r: r["val_accuracy"])
    return {
        "budget_s": round(budget_s, 1),
        "n_trained": len(done),
        "started": len(archs),
        "picked": picked["arch"],
        "val_accuracy": picked["val_accuracy"],
        "test_accuracy": picked["test_accuracy"],
        "trained_test_best": max(r["test_accuracy"] for r in done),
        "trained": [(r["val_accuracy"], r["test_accuracy"]) for r in done],
        "trained_test_median": statistics.median(r["test_accuracy"] for r in done),
    }


def _spread(values: list[float]) -> dict:
    return {
        "mean": round(statistics.mean(values), 4),
        "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--label", default="defaults", help="names the configuration in the output")
    parser.add_argument("--keep", default=None, help="copy each raynas run's report.html into this folder")
    args = parser.parse_args()
    print(
        json.dumps({"benchmark": "vs_random", "label": args.label, "overrides": args.overrides, **machine()}),
        flush=True,
    )
    ours, theirs = [], []
    for seed in args.seeds:
        r = run_raynas(seed, args.overrides, args.keep)
        print(json.dumps({"method": "raynas", "seed": seed, **r}), flush=True)
        q = run_random(seed, r["wall_s"])
        print(json.dumps({"method": "random", "seed": seed, **q}), flush=True)
        ours.append(r["test_accuracy"])
        theirs.append(q["test_accuracy"] if q["test_accuracy"] is not None else 0.0)
    wins = sum(a > b for a, b in zip(ours, theirs))
    print(
        json.dumps(
            {
                "label": args.label,
                "raynas_test_accuracy": _spread(ours),
                "random_test_accuracy": _spread(theirs),
                "raynas_ahead_on_seeds": f"{wins}/{len(ours)}",
                "goal_met": statistics.mean(ours) > statistics.mean(theirs) and wins >= min(2, len(ours)),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
