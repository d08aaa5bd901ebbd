"""Data pipeline: supernet samples/s of raynas' DataLoader path against a plain PyTorch loop.

Part ``cifar``: a CIFAR-shaped dataset (32x32x3 uint8 in memory, 10k samples) with per-sample
random crop (padding 4), horizontal flip and normalisation, the small DARTS-cell supernet of
``tests/models.py`` (3 input channels, 10 classes), one replica, batch 64, random paths. For
``workers`` 0, 1, 2: raynas ``train_supernet(local=True)`` and a plain loop (a ``DataLoader`` with
the same workers, ``shuffle=True``, persistent workers, the same model, mutator, Adam, clipping)
run the same number of steps; samples/s after a warm-up epoch, and the fraction of step time
spent waiting for a batch. Goal: raynas / plain >= 0.95 at the best worker count.

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


def build_model() -> nn.Module:
    from tests.models import build_darts

    return build_darts(channels=8, nodes=2, classes=10, in_channels=3)


def _raynas(workers: int, epochs: int, steps: int, batch: int) -> dict:
    from raynas.train import train_supernet
    from raynas.train.data import DataSpec

    spec = DataSpec(source=load_cifar_shaped, workers=workers)
    with tempfile.TemporaryDirectory() as out:
        config = dict(replicas=1, epochs=epochs, batch_size=batch, log_every=steps, progress=False,
                      tensorboard=False, threads=1)
        result = train_supernet(build_model, spec, config, out_dir=out, local=True)
    timed = result.history[1:]  # after the warm-up epoch (worker start, first allocations)
    samples = sum(h["samples_per_s"] * h["time_s"] for h in timed)
    seconds = sum(h["time_s"] for h in timed)
    return {"samples_per_s": samples / seconds, "wait_fraction": sum(h["data_wait_s"] for h in timed) / seconds}


def _plain(workers: int, epochs: int, steps: int, batch: int) -> dict:
    from torch.utils.data import DataLoader

    from raynas.nas import RandomMutator

    torch.manual_seed(0)
    model = build_model()
    mutator = RandomMutator(model, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loader = DataLoader(load_cifar_shaped()["train"], batch_size=batch, shuffle=True, drop_last=True,
                        num_workers=workers, persistent_workers=workers > 0)
    times, waits = [], []
    for _epoch in range(epochs):
        began, wait = time.perf_counter(), 0.0
        it = iter(loader)
        for _ in range(steps):
            t = time.perf_counter()
            x, y = next(it)
            wait += time.perf_counter() - t
            mutator.reset()
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], 5.0)
            optimizer.step()
        del it
        times.append(time.perf_counter() - began)
        waits.append(wait)
    seconds = sum(times[1:])
    return {"samples_per_s": (epochs - 1) * steps * batch / seconds, "wait_fraction": sum(waits[1:]) / seconds}


def cifar(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    steps = 10_000 // args.batch
    best = {}
    for workers in args.workers:
        row = {"workers": workers}
        for name, fn in (("raynas", _raynas), ("plain", _plain)) if workers % 2 == 0 else (
            ("plain", _plain), ("raynas", _raynas)
        ):  # alternate which goes first
            row[name] = {k: round(v, 4) for k, v in fn(workers, args.epochs, steps, args.batch).items()}
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
    args = parser.parse_args()
    print(json.dumps({"benchmark": "data_pipeline", **machine()}), flush=True)
    if args.part in ("cifar", "both"):
        cifar(args)
    if args.part in ("mnist1d", "both"):
        mnist1d(args)


if __name__ == "__main__":
    main()
