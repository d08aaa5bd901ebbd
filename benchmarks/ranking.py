"""Ranking quality of weight sharing on ``mnist1d``: Kendall tau between supernet scores and
stand-alone accuracy of the same random architectures.

1. Train the supernet with the default :class:`raynas.train.SupernetConfig` (on a local Ray,
   ``--local`` for local mode); report its wall time.
2. Score ``--archs`` random architectures (uniform, as ``RandomMutator`` samples) by weight sharing
   (BatchNorm recalibration, validation accuracy), plus the all-``conv7``-no-skip and the
   all-``identity`` paths.
3. Train the same architectures alone (the mnist1d protocol: Adam 3e-3, batch 128, 30 epochs, cosine
   schedule) and take their test accuracy. Stand-alone results are cached on disk (keyed by the
   architecture and the protocol), so re-running after a change of supernet settings only
   re-trains the supernet.
4. Print the Kendall tau (tau-b) between the two rankings.

Prints one JSON object per line; the last line holds ``kendall_tau``.

    python benchmarks/ranking.py [--archs 30] [--seed 0] [--local] [--set epochs=40 lr=0.003 ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _machine import machine  # noqa: E402
from _standalone import _train_one  # noqa: E402

FACTORY = "raynas.zoo.mnist1d:build_supernet"
DATA = "raynas.zoo.mnist1d:load_data"
PROTOCOL = {
    "optimizer": "adam", "lr": 3e-3, "batch_size": 128, "epochs": 30, "schedule": "cosine", "impl": "train_fixed"
}


def emit(**row: object) -> None:
    print(json.dumps(row), flush=True)


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-b (ties in either list handled)."""
    n = len(a)
    concordant = discordant = ties_a = ties_b = 0
    for i in range(n):
        for j in range(i + 1, n):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif (da > 0) == (db > 0):
                concordant += 1
            else:
                discordant += 1
    denom = ((concordant + discordant + ties_a) * (concordant + discordant + ties_b)) ** 0.5
    return (concordant - discordant) / denom if denom else 0.0


def sample_archs(n: int, seed: int) -> list[dict]:
    from raynas.nas import RandomMutator
    from raynas.zoo.mnist1d import build_supernet

    mutator = RandomMutator(build_supernet(), seed=seed)
    return [mutator.export() for _ in range(n)]


CONV7 = {"op0": "conv7", "op1": "conv7", "op2": "conv7", "op3": "conv7", "skip1": [], "skip2": [], "skip3": []}
IDENTITY = {k: ("identity" if k.startswith("op") else []) for k in CONV7}


def standalone(arch: dict, seed: int = 0) -> dict:
    """Train one architecture alone (the mnist1d stand-alone protocol, ``raynas.retrain.train_fixed``)."""
    return _train_one(arch, 0, seed, PROTOCOL["epochs"])


def standalone_all(archs: list[dict], *, seed: int, cache: Path) -> list[dict]:
    import ray

    results = json.loads(cache.read_text()) if cache.is_file() else {}
    keys = [hashlib.sha1(json.dumps([a, PROTOCOL, seed], sort_keys=True).encode()).hexdigest() for a in archs]
    todo = [(k, a) for k, a in zip(keys, archs) if k not in results]
    if todo:
        task = ray.remote(num_cpus=1)(standalone)
        refs = {k: task.remote(a, seed) for k, a in todo}
        for k, ref in refs.items():
            results[k] = ray.get(ref)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1, sort_keys=True))
        os.replace(tmp, cache)
    return [results[k] for k in keys]


def parse_sets(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled architectures")
    parser.add_argument(
        "--standalone-seeds",
        type=int,
        nargs="+",
        default=[0, 1],
        help="stand-alone training seeds: the first gives the headline ranking (test accuracy), "
        "all of them the mean-accuracy ranking; a second seed also gives the reference tau",
    )
    parser.add_argument("--local", action="store_true", help="train the supernet in local mode")
    parser.add_argument("--set", nargs="*", default=[], help="supernet settings to override (key=value)")
    parser.add_argument(
        "--cache",
        default=str(
            Path(os.environ.get("RAYNAS_CACHE_DIR", Path.home() / ".cache" / "raynas")) / "ranking-standalone.json"
        ),
    )
    args = parser.parse_args()

    import ray

    from raynas.train import SupernetConfig, WeightSharingEvaluator, train_supernet

    ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False)
    config = SupernetConfig.from_dict({"progress": False, **parse_sets(args.set)})
    emit(benchmark="ranking", machine=machine(), archs=args.archs, seed=args.seed, supernet=config.to_dict())

    archs = sample_archs(args.archs, args.seed)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = train_supernet(FACTORY, DATA, config, out_dir=out, local=args.local)
        supernet_wall = time.perf_counter() - start
        emit(phase="supernet", wall_s=round(supernet_wall, 1), epochs=result.epochs, steps=result.steps,
             final_train_loss=round(result.history[-1]["loss"], 4) if result.history else None)
        start = time.perf_counter()
        evaluator = WeightSharingEvaluator(
            factory=FACTORY, weights=result.state_dict(), data=DATA, bn_batches=config.bn_recalibration_batches,
            batch_size=config.batch_size,
        )
        ws = [evaluator.evaluate(a) for a in archs]
        conv7 = evaluator.evaluate(CONV7)
        identity = evaluator.evaluate(IDENTITY)
        eval_wall = time.perf_counter() - start
    emit(phase="weight_sharing", wall_s=round(eval_wall, 2), conv7_val_accuracy=conv7["val_accuracy"],
         identity_val_accuracy=identity["val_accuracy"])
    start = time.perf_counter()
    runs = [standalone_all(archs, seed=seed, cache=Path(args.cache)) for seed in args.standalone_seeds]
    emit(phase="standalone", wall_s=round(time.perf_counter() - start, 1), seeds=args.standalone_seeds)
    alone = runs[0]
    mean_test = [sum(r[i]["test_accuracy"] for r in runs) / len(runs) for i in range(len(archs))]
    for i, (arch, w) in enumerate(zip(archs, ws)):
        emit(arch=arch, ws_val_accuracy=w["val_accuracy"],
             standalone_test_accuracy=[r[i]["test_accuracy"] for r in runs],
             params=w["params"], flops=w["flops"])
    scores = [w["val_accuracy"] for w in ws]
    tau = kendall_tau(scores, [a["test_accuracy"] for a in alone])
    extra = {"kendall_tau_vs_mean_of_seeds": round(kendall_tau(scores, mean_test), 3)}
    if len(runs) > 1:
        # the noise ceiling: a fresh stand-alone training of every architecture, scored on the
        # validation split as weight sharing is, against the headline ranking
        extra["reference_tau_standalone_seed2_val"] = round(
            kendall_tau([a["val_accuracy"] for a in runs[1]], [a["test_accuracy"] for a in alone]), 3
        )
        extra["standalone_seed_agreement_tau"] = round(
            kendall_tau([a["test_accuracy"] for a in runs[1]], [a["test_accuracy"] for a in alone]), 3
        )
    ray.shutdown()
    emit(
        headline="ranking",
        kendall_tau=round(tau, 3),
        **extra,
        archs=args.archs,
        conv7_val_accuracy=conv7["val_accuracy"],
        identity_val_accuracy=identity["val_accuracy"],
        supernet_wall_s=round(supernet_wall, 1),
        mode="local" if args.local else f"ray x{config.replicas}",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
