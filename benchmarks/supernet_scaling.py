"""Supernet training throughput: R replicas on Ray vs 1, and 1 replica vs a plain in-process loop.

Every configuration trains the ``mnist1d`` supernet under ``RandomMutator.reset()`` sampling with
Adam, ``batch_size`` samples per replica per step, gradient clipping and one torch thread per
replica. Throughput is samples/s of one epoch as the driver sees it (``run`` of all the epoch's
steps plus ``end_epoch``, exactly what ``train_supernet`` reports; actor start-up excluded).

A small virtual machine's speed drifts by tens of percent from second to second, so runs measured
one after the other compare badly. Here every configuration stays alive at once (idle actors
sleep) and the configurations take turns epoch by epoch, in a shuffled order each round; each
round gives one ratio per pair, and the headline is the median over rounds:

- ``ratio_2_vs_1``: 2 replicas (default ``supernet.allreduce: auto``, i.e. shared memory on one
  node) over 1 replica, both on Ray;
- ``ratio_2_vs_1_gloo``: the same with ``allreduce: backend`` (gloo over TCP);
- ``ratio_1_vs_plain``: 1 replica on Ray over a plain hand-written loop in the driver;
- ``ceiling_2_vs_1``: the machine itself: two plain loops in two actors at once over one, i.e.
  what perfect scaling would give here.

Prints one JSON object per line; the last line holds the headline ratios.

    python benchmarks/supernet_scaling.py [--rounds 30] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _machine import machine  # noqa: E402

FACTORY = "raynas.zoo.mnist1d:build_supernet"


def emit(**row: object) -> None:
    print(json.dumps(row), flush=True)


class PlainLoop:
    """A plain loop (no raynas trainer): model, ``RandomMutator``, Adam; one epoch per call."""

    def __init__(self, *, batch_size: int, seed: int = 0):
        import torch

        from raynas.nas import RandomMutator
        from raynas.zoo.mnist1d import build_supernet, load_data

        torch.set_num_threads(1)
        self.x, self.y = load_data()["train"].tensors
        torch.manual_seed(seed)
        self.model = build_supernet()
        self.mutator = RandomMutator(self.model, seed=seed)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=3e-3)
        self.batch_size = batch_size
        self.epoch = 0

    def run_epoch(self) -> float:
        """Train one epoch; its samples/s."""
        import numpy as np
        import torch

        bs = self.batch_size
        steps = len(self.x) // bs
        perm = torch.from_numpy(np.random.default_rng(self.epoch).permutation(len(self.x)))
        self.epoch += 1
        start = time.perf_counter()
        for s in range(steps):
            idx = perm[s * bs : (s + 1) * bs]
            self.mutator.reset()
            self.opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(self.model(self.x[idx]), self.y[idx])
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.grad is not None], 5.0)
            self.opt.step()
            float(loss.detach())
        return steps * bs / (time.perf_counter() - start)


class Group:
    """One ``RayReplicas`` group (the code ``train_supernet`` drives), stepped an epoch at a time."""

    def __init__(self, *, replicas: int, batch_size: int, allreduce: str, cpus: float):
        from raynas.train import SupernetConfig
        from raynas.train.replicas import RayReplicas

        config = SupernetConfig(
            replicas=replicas,
            epochs=1000,
            batch_size=batch_size,
            threads=1,
            progress=False,
            tensorboard=False,
            grad_clip=5.0,
            allreduce=allreduce,
            cpus_per_replica=cpus,
        )
        self.group = RayReplicas(factory=FACTORY, data="raynas.zoo.mnist1d:load_data", config=config)
        infos = self.group.start(None)
        self.steps = int(infos[0]["steps_per_epoch"])
        self.allreduce = infos[0]["allreduce"]

    def run_epoch(self) -> float:
        start = time.perf_counter()
        reports = self.group.run(self.steps)
        self.group.end_epoch()
        return sum(r["samples"] for r in reports) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="seed of the turn order")
    args = parser.parse_args()

    # Ray starts its workers at niceness 15; the plain loop runs in this process at 0. On a machine
    # shared with other work that alone skews the comparison, so the workers run at 0 here too.
    os.environ.setdefault("RAY_worker_niceness", "0")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    emit(
        benchmark="supernet_scaling",
        machine=machine(),
        rounds=args.rounds,
        batch_size=args.batch_size,
        worker_niceness=os.environ["RAY_worker_niceness"],
    )
    bs = args.batch_size
    # every configuration lives at once: 5 replica actors and 2 plain actors share the 2 CPUs'
    # worth of Ray resources (they take turns, so at most 2 work at any moment)
    plain_actor = ray.remote(num_cpus=0.1)(PlainLoop)
    plain_actors = [plain_actor.remote(batch_size=bs, seed=i) for i in range(2)]
    configs = {
        "plain": PlainLoop(batch_size=bs).run_epoch,
        "ray_1": Group(replicas=1, batch_size=bs, allreduce="auto", cpus=0.3).run_epoch,
        "ray_2": Group(replicas=2, batch_size=bs, allreduce="auto", cpus=0.3).run_epoch,
        "ray_2_gloo": Group(replicas=2, batch_size=bs, allreduce="backend", cpus=0.3).run_epoch,
        "plain_x1_actor": lambda: ray.get(plain_actors[0].run_epoch.remote()),
        "plain_x2_actors": lambda: sum(ray.get([a.run_epoch.remote() for a in plain_actors])),
    }
    for run in configs.values():  # warm-up epoch
        run()
    rng = random.Random(args.seed)
    pairs = {
        "ratio_2_vs_1": ("ray_2", "ray_1"),
        "ratio_2_vs_1_gloo": ("ray_2_gloo", "ray_1"),
        "ratio_1_vs_plain": ("ray_1", "plain"),
        "ceiling_2_vs_1": ("plain_x2_actors", "plain_x1_actor"),
    }
    ratios: dict[str, list[float]] = {name: [] for name in pairs}
    rates_all: dict[str, list[float]] = {name: [] for name in configs}
    for rnd in range(args.rounds):
        order = list(configs)
        rng.shuffle(order)
        rates = {name: configs[name]() for name in order}
        for name, rate in rates.items():
            rates_all[name].append(rate)
        row = {name: rates[a] / rates[b] for name, (a, b) in pairs.items()}
        for name, value in row.items():
            ratios[name].append(value)
        emit(round=rnd, **{k: round(v) for k, v in rates.items()}, **{k: round(v, 3) for k, v in row.items()})
    ray.shutdown()
    emit(samples_per_s_median={k: round(statistics.median(v)) for k, v in rates_all.items()})
    headline = {k: round(statistics.median(v), 3) for k, v in ratios.items()}
    emit(
        headline="supernet_scaling",
        **headline,
        efficiency_2_vs_ceiling=round(headline["ratio_2_vs_1"] / headline["ceiling_2_vs_1"], 3),
        rounds=args.rounds,
        loadavg_end=os.getloadavg() if hasattr(os, "getloadavg") else None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
