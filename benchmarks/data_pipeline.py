"""Data pipeline: supernet samples/s of raynas' DataLoader path against a plain PyTorch loop.

Part ``cifar``: a CIFAR-shaped dataset (32x32x3 uint8 in memory, 10k samples) with per-sample
random crop (padding 4), horizontal flip and normalisation, the small DARTS-cell supernet of
``tests/models.py`` (3 input channels, 10 classes), one replica, batch 64, random paths, 1 torch
thread. For ``workers`` 0, 1, 2: a raynas supernet replica (``SupernetReplica``, what
``train_supernet(local=True)`` drives, reading through a ``DataSpec``) and a plain loop (a
``DataLoader`` with the same workers, ``shuffle=True``, persistent workers; the same model, a
``RandomMutator`` seeded as the replica's so both train the same paths, Adam, clipping) run in
one process, alternating chunks of steps after a warm-up chunk; samples/s and the fraction of
step time spent waiting for a batch. Goal: raynas / plain >= 0.95 at the best worker count.

Part ``mnist1d``: the default mnist1d run's data paths (supernet samples/s, ms per
weight-sharing evaluation, seconds per retrain epoch) with APIs every version has, so the same
script measures a checkout before and after a change (run each in turn, alternating).

    python benchmarks/data_pipeline.py [--part cifar|mnist1d|both] [--epochs 3] [--workers 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _machine import machine  # noqa: E402

MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1)
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(3, 1, 1)


class CifarShaped(Dataset):
    """10k random 32x32x3 uint8 images in memory, labels from their mean colour (learnable),
    with the standard CIFAR augmentation per sample."""

    def __init__(self, n: int = 10_000, seed: int = 0, augment: bool = True):
        rng = np.random.default_rng(seed)
        self.images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        self.labels = (self.images.mean(axis=(1, 2, 3)) * 10 / 256).astype(np.int64) % 10
        self.augment = augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        x = torch.from_numpy(self.images[i]).permute(2, 0, 1).float().div_(255)
        if self.augment:
            padded = nn.functional.pad(x, (4, 4, 4, 4))
            top, left = (int(v) for v in torch.randint(0, 9, (2,)))
            x = padded[:, top : top + 32, left : left + 32]
            if torch.rand(()) < 0.5:
                x = x.flip(-1)
        return (x - MEAN) / STD, int(self.labels[i])


def load_cifar_shaped() -> dict:
    """``data.name`` for raynas: built in the training process, as a replica would."""
    return {"train": CifarShaped(), "val": CifarShaped(n=500, seed=1, augment=False)}


MODEL = "small"  # --model: which DARTS-cell supernet both loops train


def build_model() -> nn.Module:
    """``--model small``: the DARTS-cell supernet of ``tests/models.py`` (8 channels, 2 nodes);
    ``--model zoo``: ``raynas.zoo.cifar10``'s (8 channels, 5 cells, 3 nodes each)."""
    if MODEL == "zoo":
        from raynas.zoo.cifar10 import build_supernet

        return build_supernet()
    from tests.models import build_darts

    return build_darts(channels=8, nodes=2, classes=10, in_channels=3)


class _Raynas:
    """A raynas supernet replica (what ``train_supernet(local=True)`` drives) reading through a
    DataSpec with ``workers`` loader processes."""

    def __init__(self, config, workers: int):
        from raynas.train.data import DataSpec
        from raynas.train.replica import SupernetReplica

        self.replica = SupernetReplica(
            factory=build_model, data=DataSpec(source=load_cifar_shaped, workers=workers), config=config
        )
        self.replica.setup()
        self.steps_per_epoch = self.replica.steps_per_epoch

    def run(self, n: int) -> float:
        """Train ``n`` steps; the seconds waited for batches."""
        r = self.replica
        if r.pos == r.steps_per_epoch:
            r.end_epoch()
        return r.run(n).data_wait_s


class _Plain:
    """The plain PyTorch loop: a DataLoader (shuffle, same workers, persistent), the same model,
    a RandomMutator seeded as the replica's (so the same paths), Adam, clipping at 5."""

    def __init__(self, config, workers: int):
        from torch.utils.data import DataLoader

        from raynas.nas import RandomMutator
        from raynas.train.sampling import mutator_seed

        torch.manual_seed(config.seed)
        self.model = build_model()
        self.mutator = RandomMutator(self.model, seed=mutator_seed(config, 0))
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.loader = DataLoader(load_cifar_shaped()["train"], batch_size=config.batch_size, shuffle=True,
                                 drop_last=True, num_workers=workers, persistent_workers=workers > 0)
        self.it = iter(self.loader)

    def run(self, n: int) -> float:
        wait = 0.0
        for _ in range(n):
            t = time.perf_counter()
            try:
                x, y = next(self.it)
            except StopIteration:
                self.it = iter(self.loader)
                x, y = next(self.it)
            wait += time.perf_counter() - t
            self.mutator.reset()
            self.optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(self.model(x), y)
            loss.backward()
            nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.grad is not None], 5.0)
            self.optimizer.step()
        return wait


def _compare(workers: int, args: argparse.Namespace) -> dict:
    """Both loops in this process, alternating chunks of ``args.chunk`` steps (which goes first
    alternates too), after one warm-up chunk each."""
    from raynas.train import SupernetConfig

    config = SupernetConfig(replicas=1, epochs=100, batch_size=args.batch, progress=False, tensorboard=False)
    loops = {"raynas": _Raynas(config, workers), "plain": _Plain(config, workers)}
    totals = {name: [0.0, 0.0] for name in loops}
    for loop in loops.values():
        loop.run(args.chunk)  # warm-up: worker start, first allocations
    for i in range(args.rounds):
        for name in (("raynas", "plain") if i % 2 == 0 else ("plain", "raynas")):
            began = time.perf_counter()
            wait = loops[name].run(args.chunk)
            totals[name][0] += time.perf_counter() - began
            totals[name][1] += wait
    samples = args.rounds * args.chunk * args.batch
    return {name: {"samples_per_s": round(samples / t, 2), "wait_fraction": round(w / t, 4)}
            for name, (t, w) in totals.items()}


def cifar(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    best = {}
    for workers in args.workers:
        row = {"workers": workers, **_compare(workers, args)}
        row["ratio"] = round(row["raynas"]["samples_per_s"] / row["plain"]["samples_per_s"], 3)
        print(json.dumps(row), flush=True)
        best[workers] = row
    top = max(best.values(), key=lambda r: r["raynas"]["samples_per_s"])
    print(json.dumps({"headline": "cifar", "best_workers": top["workers"], "ratio_raynas_vs_plain": top["ratio"],
                      "raynas_wait_fraction": top["raynas"]["wait_fraction"]}), flush=True)


def mnist1d(args: argparse.Namespace) -> None:
    from raynas.retrain import RetrainSetup, train_fixed
    from raynas.train import WeightSharingEvaluator, train_supernet
    from raynas.zoo.mnist1d import build_supernet, load_data

    torch.set_num_threads(1)
    arch = {"op0": "conv3", "op1": "conv5", "op2": "identity", "op3": "conv7", "skip1": [], "skip2": [], "skip3": []}
    with tempfile.TemporaryDirectory() as out:
        config = dict(replicas=1, epochs=args.epochs, progress=False, tensorboard=False)
        result = train_supernet("raynas.zoo.mnist1d:build_supernet", "mnist1d", config, out_dir=out, local=True)
        supernet = sum(h["samples_per_s"] for h in result.history[1:]) / max(len(result.history) - 1, 1)
        evaluator = WeightSharingEvaluator(factory=build_supernet, weights=result, data=load_data, bn_batches=10)
        evaluator.evaluate(arch)
        began = time.perf_counter()
        for _ in range(20):
            evaluator.evaluate(arch)
        evaluate_ms = (time.perf_counter() - began) / 20 * 1000
    setup = RetrainSetup(model_factory=build_supernet, data_factory=load_data, archs=[arch], search_scores=[None],
                         epochs=2, optimizer="adam", lr=3e-3, weight_decay=0.0, batch_size=128, seed=0)
    walls = []
    train_fixed(setup, 0, report=lambda metrics, state: walls.append(metrics["wall_s"]))
    print(json.dumps({"headline": "mnist1d", "supernet_samples_per_s": round(supernet, 1),
                      "evaluate_ms": round(evaluate_ms, 2), "retrain_epoch_s": round(walls[-1] - walls[0], 3)}),
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=["cifar", "mnist1d", "both"], default="both")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--chunk", type=int, default=12, help="steps per alternation")
    parser.add_argument("--rounds", type=int, default=6, help="alternations per loop and worker count")
    parser.add_argument("--model", choices=["small", "zoo"], default="small", help="the cifar part's supernet")
    args = parser.parse_args()
    global MODEL
    MODEL = args.model
    print(json.dumps({"benchmark": "data_pipeline", "model": args.model, **machine()}), flush=True)
    if args.part in ("cifar", "both"):
        cifar(args)
    if args.part in ("mnist1d", "both"):
        mnist1d(args)


if __name__ == "__main__":
    main()
