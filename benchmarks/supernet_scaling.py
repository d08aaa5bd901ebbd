"""Supernet training throughput: R replicas on Ray vs 1, and 1 replica vs a plain in-process loop.

Every configuration trains the ``mnist1d`` supernet under ``RandomMutator.reset()`` sampling with
Adam, ``batch_size`` samples per replica per step and one torch thread per replica. Throughput is
samples/s measured by the driver per epoch, after a warm-up epoch (start-up excluded); the
configurations are interleaved and repeated, and the headline ratios are medians over repeats.

Prints one JSON object per line; the last line holds ``ratio_2_vs_1`` and ``ratio_1_vs_plain``.

    python benchmarks/supernet_scaling.py [--epochs 4] [--repeats 3] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from _machine import machine  # noqa: E402


def emit(**row: object) -> None:
    print(json.dumps(row), flush=True)


def plain_loop(*, epochs: int, batch_size: int, seed: int = 0) -> float:
    """A plain in-process loop (no raynas trainer): samples/s after one warm-up epoch."""
    import numpy as np
    import torch

    from raynas.nas import RandomMutator
    from raynas.zoo.mnist1d import build_supernet, load_data

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x, y = load_data()["train"].tensors
        torch.manual_seed(seed)
        model = build_supernet()
        mutator = RandomMutator(model, seed=seed)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        steps = len(x) // batch_size
        rates = []
        for epoch in range(epochs):
            perm = torch.from_numpy(np.random.default_rng(epoch).permutation(len(x)))
            start = time.perf_counter()
            for s in range(steps):
                idx = perm[s * batch_size : (s + 1) * batch_size]
                mutator.reset()
                opt.zero_grad(set_to_none=True)
                loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], 5.0)
                opt.step()
                float(loss.detach())
            rates.append(steps * batch_size / (time.perf_counter() - start))
        return statistics.median(rates[1:]) if len(rates) > 1 else rates[0]
    finally:
        torch.set_num_threads(threads)


def raynas_run(*, replicas: int, epochs: int, batch_size: int, local: bool = False) -> float:
    """``train_supernet`` on Ray (or local): median driver-measured samples/s after epoch 1."""
    from raynas.train import SupernetConfig, train_supernet
    from raynas.zoo.mnist1d import load_data

    config = SupernetConfig(
        replicas=replicas,
        epochs=epochs,
        batch_size=batch_size,
        threads=1,
        progress=False,
        tensorboard=False,
        log_every=1000,
        keep_checkpoints=0,
        grad_clip=5.0,
    )
    with tempfile.TemporaryDirectory() as out:
        result = train_supernet("raynas.zoo.mnist1d:build_supernet", load_data, config, out_dir=out, local=local)
    rates = [h["samples_per_s"] for h in result.history]
    return statistics.median(rates[1:]) if len(rates) > 1 else rates[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    # Ray starts its workers at niceness 15; the plain loop runs in this process at 0. On a machine
    # shared with other work that alone skews the comparison, so the workers run at 0 here too.
    os.environ.setdefault("RAY_worker_niceness", "0")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    emit(
        benchmark="supernet_scaling",
        machine=machine(),
        epochs=args.epochs,
        batch_size=args.batch_size,
        worker_niceness=os.environ["RAY_worker_niceness"],
    )
    ratios_2_1, ratios_1_plain = [], []
    for rep in range(args.repeats):
        plain = plain_loop(epochs=args.epochs, batch_size=args.batch_size)
        emit(repeat=rep, config="plain", samples_per_s=round(plain, 1))
        local = raynas_run(replicas=1, epochs=args.epochs, batch_size=args.batch_size, local=True)
        emit(repeat=rep, config="local_1", samples_per_s=round(local, 1))
        one = raynas_run(replicas=1, epochs=args.epochs, batch_size=args.batch_size)
        emit(repeat=rep, config="ray_1", samples_per_s=round(one, 1))
        two = raynas_run(replicas=2, epochs=args.epochs, batch_size=args.batch_size)
        emit(repeat=rep, config="ray_2", samples_per_s=round(two, 1))
        ratios_2_1.append(two / one)
        ratios_1_plain.append(one / plain)
        emit(repeat=rep, ratio_2_vs_1=round(two / one, 3), ratio_1_vs_plain=round(one / plain, 3))
    ray.shutdown()
    emit(
        headline="supernet_scaling",
        ratio_2_vs_1=round(statistics.median(ratios_2_1), 3),
        ratio_1_vs_plain=round(statistics.median(ratios_1_plain), 3),
        repeats=args.repeats,
        loadavg_end=os.getloadavg() if hasattr(os, "getloadavg") else None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
