"""Mutator overhead: a supernet training step under ``RandomMutator.reset()`` vs the same path
as a plain network.

For each of N sampled mnist1d paths it times, interleaved, (a) ``mutator.reset()`` (applying
that path) + forward + backward + SGD step of the supernet, and (b) forward + backward + SGD
step of a hand-written plain network made of the very same modules (no mutables, no mutator).
Batch 128, 1 torch thread. Prints JSON lines; the last holds ``ratio_supernet_vs_fixed``.

    python benchmarks/mutator_overhead.py [--steps 400]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
from _machine import machine  # noqa: E402

from raynas.nas import Mutator, RandomMutator  # noqa: E402
from raynas.zoo.mnist1d import build_supernet, load_data  # noqa: E402


class PlainPath(nn.Module):
    """One mnist1d path written out by hand from the supernet's own modules."""

    def __init__(self, supernet: nn.Module, status: dict[str, list[float]]):
        super().__init__()
        self.stem = supernet.stem
        self.ops = nn.ModuleList(
            supernet.ops[i].choices[status[f"op{i}"].index(1.0)] for i in range(4)
        )
        self.skips = [[j for j, v in enumerate(status[f"skip{i}"]) if v] for i in range(1, 4)]
        self.head = supernet.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [self.stem(x)]
        for i, op in enumerate(self.ops):
            y = op(outs[-1])
            if i >= 1:
                for j in self.skips[i - 1]:
                    y = y + outs[j]
            outs.append(y)
        return self.head(outs[-1].mean(dim=-1))


class Replay(Mutator):
    """Replays recorded decisions, so both sides run the same paths in the same order."""

    def __init__(self, model: nn.Module, paths: list):
        super().__init__(model)
        self.paths, self.i = paths, 0

    def sample_search(self):
        decision = self.paths[self.i % len(self.paths)]
        self.i += 1
        return decision

    def sample_final(self):
        return self.sample_search()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(json.dumps({"benchmark": "mutator_overhead", **machine(), "torch_threads": 1, "batch": 128}), flush=True)

    x_all, y_all = load_data()["train"].tensors
    supernet = build_supernet()
    sampler = RandomMutator(build_supernet(), seed=0)
    paths = [sampler.sample_search() for _ in range(args.steps + args.warmup)]
    mutator = Replay(supernet, paths)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(supernet.parameters(), lr=0.01, momentum=0.9)

    plain_nets = []
    for p in paths:
        mutator.apply_decisions(p)
        plain_nets.append(PlainPath(supernet, mutator.status()))
    mutator.i = 0

    def batch(step: int):
        i = (step * 128) % (len(x_all) - 128)
        return x_all[i : i + 128], y_all[i : i + 128]

    def supernet_step(step: int) -> float:
        x, y = batch(step)
        t = time.perf_counter()
        mutator.reset()
        opt.zero_grad(set_to_none=True)
        loss_fn(supernet(x), y).backward()
        opt.step()
        return time.perf_counter() - t

    plain_opts = [torch.optim.SGD(n.parameters(), lr=0.01, momentum=0.9) for n in plain_nets]

    def plain_step(step: int) -> float:
        x, y = batch(step)
        net, popt = plain_nets[step], plain_opts[step]
        t = time.perf_counter()
        popt.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        popt.step()
        return time.perf_counter() - t

    sup, plain = [], []
    for step in range(args.steps + args.warmup):
        # alternate which side runs first so drifts in machine load hit both alike
        if step % 2:
            a, b = supernet_step(step), plain_step(step)
        else:
            b, a = plain_step(step), supernet_step(step)
        if step >= args.warmup:
            sup.append(a)
            plain.append(b)

    reset_mutator = RandomMutator(build_supernet(), seed=1)
    n = 5000
    t = time.perf_counter()
    for _ in range(n):
        reset_mutator.reset()
    reset_us = (time.perf_counter() - t) / n * 1e6

    mean_sup = sum(sup) / len(sup) * 1e3
    mean_plain = sum(plain) / len(plain) * 1e3
    print(json.dumps(
        {"supernet_step_ms": round(mean_sup, 4), "fixed_step_ms": round(mean_plain, 4), "steps": len(sup)}
    ))
    print(json.dumps({"reset_us": round(reset_us, 2)}))
    ratio = round(mean_sup / mean_plain, 4)
    print(json.dumps({"ratio_supernet_vs_fixed": ratio, "goal": "<= 1.05", "reset_us": round(reset_us, 2)}))


if __name__ == "__main__":
    main()
