"""DARTS overhead: a DARTS supernet step over a random-sampling supernet step (mnist1d).

Per step, interleaved (alternating which runs first so drifts in machine load hit all alike):

- ``random``: ``RandomMutator.reset()`` + forward + backward + Adam step (one path), i.e. what a
  ``supernet.algorithm: random`` replica does per step;
- ``darts``: ``DartsMutator.arch_step`` on a batch of the architecture half (forward and backward
  of every candidate, weighted, gradient in alpha, Adam on alpha) + the weight step under the
  detached softmax weights (every candidate runs) + Adam step: what a ``darts`` replica does;
- ``darts2``: the same with ``order=2`` (unrolled: three more forward/backward passes);
- ``enas``: ``EnasMutator.arch_step`` (controller sample with gradient, a no-grad forward of the
  sampled path, REINFORCE step) + the weight step on a sampled path.

Batch 64 (the default ``supernet.batch_size``), 1 torch thread, no all-reduce (one replica: the
data-parallel cost is the same per step for every algorithm, plus one all-reduce of the few
architecture parameters). Prints JSON lines; the last holds ``ratio_darts_vs_random``.

    python benchmarks/darts_overhead.py [--steps 200]
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

from raynas.nas import DartsMutator, EnasMutator, RandomMutator  # noqa: E402
from raynas.zoo.mnist1d import build_supernet, load_data  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(json.dumps({"benchmark": "darts_overhead", **machine(), "torch_threads": 1, "batch": args.batch}), flush=True)

    x_all, y_all = load_data()["train"].tensors
    half = len(x_all) // 2
    bs = args.batch
    loss_fn = nn.functional.cross_entropy

    def batch(step: int, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = offset + (step * bs) % (half - bs)
        return x_all[i : i + bs], y_all[i : i + bs]

    sides = {}
    for name in ("random", "darts", "darts2", "enas"):
        torch.manual_seed(0)
        model = build_supernet()
        if name == "random":
            mutator = RandomMutator(model, seed=0)
        elif name == "enas":
            mutator = EnasMutator(model, seed=0)
        else:
            mutator = DartsMutator(model, order=2 if name == "darts2" else 1)
        sides[name] = (model, mutator, torch.optim.Adam(model.parameters(), lr=0.01))

    def step(name: str, s: int) -> float:
        model, mutator, opt = sides[name]
        x, y = batch(s, 0)
        t = time.perf_counter()
        if name == "random":
            mutator.reset()
        else:
            mutator.arch_step(batch(s, half), train_batch=(x, y), criterion=loss_fn, lr=0.01)
            mutator.weight_reset()
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], 5.0)
        opt.step()
        return time.perf_counter() - t

    names = list(sides)
    times: dict[str, list[float]] = {n: [] for n in names}
    for s in range(args.steps + args.warmup):
        order = names if s % 2 == 0 else names[::-1]
        for name in order:
            dt = step(name, s)
            if s >= args.warmup:
                times[name].append(dt)

    ms = {n: sum(v) / len(v) * 1e3 for n, v in times.items()}
    for name in names:
        print(json.dumps({"algorithm": name, "step_ms": round(ms[name], 3), "steps": len(times[name])}), flush=True)
    print(
        json.dumps(
            {
                "ratio_darts_vs_random": round(ms["darts"] / ms["random"], 3),
                "ratio_darts2_vs_random": round(ms["darts2"] / ms["random"], 3),
                "ratio_enas_vs_random": round(ms["enas"] / ms["random"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
