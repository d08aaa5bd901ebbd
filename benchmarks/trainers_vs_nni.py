"""raynas' NNI trainers side by side with NNI 2.5's, on one DARTS-cell CNN (32x32 inputs).

Each side runs in its own process with one torch thread: raynas in this interpreter, NNI in a
separate virtualenv (``--nni-python``, default ``/work/nni-venv/bin/python``; ``--make-venv``
makes it with ``pip install torch==2.13.0`` then ``pip install nni==2.5``). NNI is a benchmark
dependency only. In each process the same network with every choice fixed to its first
candidate (plain modules, no mutables) is timed too, before and after the trainers, and every
trainer figure is a ratio to that fixed step, so the comparison across processes survives
machine noise. Figures:

- ``darts``: seconds per ``DartsTrainer`` step (first order: architecture step + weight step);
- ``enas_child`` / ``enas_ctrl``: ``EnasTrainer``'s child step and controller step
  (``mutator_steps_aggregate=1``);
- ``darts_peak_rss_mb``: growth of the process' peak resident memory over the DARTS epochs
  (the trainer built, before its first step);
- raynas only: ``DartsTrainer(replicas=2)`` throughput over ``replicas=1`` (epoch time, the
  second of two epochs), beside the machine's two-process ceiling (two fixed-network loops at
  once over one alone).

- ``spos``: seconds per ``SPOSSupernetTrainer`` step (a uniform path per step, as NNI's
  ``SPOSSupernetTrainingMutator`` samples). NNI's constructor asserts ``torch.cuda.is_available()``
  (only that: given ``device="cpu"`` it trains on the CPU), so the NNI side answers that one
  check with ``True`` while its trainer is built.

    python benchmarks/trainers_vs_nni.py [--steps 20] [--nni-python PATH] [--make-venv]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_NNI_PYTHON = "/work/nni-venv/bin/python"
C, BATCH, NODES = 8, 16, 3


def build(side: str):  # -> nn.Module
    """The DARTS-cell CNN with ``side``'s mutables (``raynas``, ``nni``) or fixed (``fixed``)."""
    import torch
    from torch import nn

    if side == "raynas":
        from raynas.nas.mutables import InputChoice, LayerChoice
    elif side == "nni":
        from nni.nas.pytorch.mutables import InputChoice, LayerChoice
    else:

        def LayerChoice(ops, key=None):  # noqa: N802 - the first candidate, as a plain module
            return ops[0]

        class InputChoice(nn.Module):  # every input, summed
            def __init__(self, n_candidates=None, n_chosen=None, key=None):
                super().__init__()

            def forward(self, inputs):
                return sum(inputs)

    def ops():
        return [
            nn.Sequential(
                nn.Conv2d(C, C, 3, padding=1, groups=C, bias=False), nn.Conv2d(C, C, 1, bias=False), nn.BatchNorm2d(C)
            ),
            nn.Sequential(nn.Conv2d(C, C, 3, padding=1, bias=False), nn.BatchNorm2d(C)),
            nn.Sequential(
                nn.Conv2d(C, C, 5, padding=2, groups=C, bias=False), nn.Conv2d(C, C, 1, bias=False), nn.BatchNorm2d(C)
            ),
            nn.MaxPool2d(3, 1, 1),
            nn.AvgPool2d(3, 1, 1),
        ]

    class Node(nn.Module):
        def __init__(self, key: str, n_prev: int):
            super().__init__()
            self.edges = nn.ModuleList(LayerChoice(ops(), key=f"{key}_e{j}") for j in range(n_prev))
            self.input = InputChoice(n_candidates=n_prev, n_chosen=1, key=f"{key}_in")

        def forward(self, prev):
            return self.input([edge(p) for edge, p in zip(self.edges, prev)])

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
            self.nodes = nn.ModuleList(Node(f"n{i}", i + 1) for i in range(NODES))
            self.head = nn.Linear(C, 10)

        def forward(self, x):
            states = [self.stem(x)]
            for node in self.nodes:
                states.append(node(states))
            return self.head(torch.relu(states[-1]).mean(dim=(2, 3)))

    return Net()


def _data(n: int):
    import torch
    from torch.utils.data import TensorDataset

    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g))


def _fixed_step_s(steps: int) -> float:
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = build("fixed")
    opt = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9)
    x, y = _data(BATCH).tensors
    for i in range(steps + 3):
        if i == 3:
            start = time.perf_counter()
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def _accuracy(logits, y):
    return {"acc": float((logits.argmax(1) == y).float().mean())}


def _reward(logits, y):
    return float((logits.argmax(1) == y).float().mean())


def _trainers(side: str):
    if side == "nni":
        from nni.algorithms.nas.pytorch.darts import DartsTrainer
        from nni.algorithms.nas.pytorch.enas import EnasTrainer
        from nni.algorithms.nas.pytorch.spos import SPOSSupernetTrainer
    else:
        from raynas.nas.darts import DartsTrainer
        from raynas.nas.enas import EnasTrainer
        from raynas.nas.spos import SPOSSupernetTrainer
    return DartsTrainer, EnasTrainer, SPOSSupernetTrainer


def _darts_trainer(trainer_cls, side: str, *, epochs: int, n_train: int, weight_decay: float = 0.0, **extra):
    """``side``'s ``DartsTrainer`` on a fresh seeded network: SGD (lr 0.025, momentum 0.9),
    ``n_train`` random training samples, batch :data:`BATCH`, no loader workers, the CPU."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = build(side)
    opt = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, weight_decay=weight_decay)
    return trainer_cls(model, nn.CrossEntropyLoss(), _accuracy, opt, epochs, _data(n_train), _data(BATCH),
                       batch_size=BATCH, workers=0, device="cpu", **extra)  # fmt: skip


def _spos_step_s(side: str, trainer_cls, steps: int) -> float:
    """Seconds per ``SPOSSupernetTrainer`` step (its second epoch of ``steps`` batches)."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    model = build(side)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = DataLoader(_data(BATCH * steps), batch_size=BATCH)
    available = torch.cuda.is_available
    if side == "nni":
        torch.cuda.is_available = lambda: True  # NNI's constructor asserts it; device="cpu" is what it uses
    try:
        trainer = trainer_cls(model, nn.CrossEntropyLoss(), _accuracy, opt, 1, loader, loader, batch_size=BATCH,
                              workers=0, device=torch.device("cpu"))  # fmt: skip
    finally:
        torch.cuda.is_available = available
    trainer.train_one_epoch(0)
    return _timed(lambda: trainer.train_one_epoch(1)) / steps


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def worker(side: str, steps: int) -> dict:
    """The figures of one side, in this process."""
    import torch
    from torch import nn

    torch.set_num_threads(1)
    DartsTrainer, EnasTrainer, SPOSSupernetTrainer = _trainers(side)
    fixed_before = _fixed_step_s(steps)
    loss = nn.CrossEntropyLoss()

    darts = _darts_trainer(DartsTrainer, side, epochs=1, n_train=2 * BATCH * steps, weight_decay=3e-4)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    darts.train_one_epoch(0)  # warm-up
    darts_s = _timed(lambda: darts.train_one_epoch(1)) / steps
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024

    torch.manual_seed(0)
    model = build(side)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    common = dict(batch_size=BATCH, workers=0, device="cpu", mutator_steps_aggregate=1)
    child = EnasTrainer(
        model,
        loss,
        _accuracy,
        _reward,
        opt,
        1,
        _data(12 * BATCH),
        _data(BATCH),
        child_steps=steps,
        mutator_steps=0,
        **common,
    )
    child.train_one_epoch(0)
    child_s = _timed(lambda: child.train_one_epoch(1)) / steps
    ctrl = EnasTrainer(
        model,
        loss,
        _accuracy,
        _reward,
        opt,
        1,
        _data(12 * BATCH),
        _data(BATCH),
        mutator=child.mutator,
        child_steps=0,
        mutator_steps=steps,
        **common,
    )
    ctrl.train_one_epoch(0)
    ctrl_s = _timed(lambda: ctrl.train_one_epoch(1)) / steps
    spos_s = _spos_step_s(side, SPOSSupernetTrainer, steps)
    fixed = (fixed_before + _fixed_step_s(steps)) / 2
    return {
        "side": side,
        "fixed_step_s": fixed,
        "darts_step_s": darts_s,
        "enas_child_step_s": child_s,
        "enas_ctrl_step_s": ctrl_s,
        "spos_step_s": spos_s,
        "darts_peak_rss_mb": peak_mb,
        "torch": torch.__version__,
    }


def replicas_worker(steps: int) -> dict:
    """raynas' DartsTrainer epoch time with replicas=1 and 2 (the second epoch of two)."""
    import ray
    import torch

    from raynas.nas.callbacks import Callback
    from raynas.nas.darts import DartsTrainer

    torch.set_num_threads(1)

    class Ends(Callback):
        def __init__(self):
            super().__init__()
            self.ends = []

        def on_epoch_end(self, epoch):
            self.ends.append(time.perf_counter())

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    out = {}
    try:
        for replicas in (1, 2):
            ends = Ends()
            trainer = _darts_trainer(DartsTrainer, "raynas", epochs=2, n_train=4 * BATCH * steps, callbacks=[ends],
                                     replicas=replicas)  # fmt: skip
            trainer.train(validate=False)
            out[f"epoch_s_replicas_{replicas}"] = ends.ends[1] - ends.ends[0]
    finally:
        ray.shutdown()
    return out


def _run(python: str, *args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as cwd:  # NNI's Trainer makes logs/<time>/ in the working directory
        proc = subprocess.run(
            [python, os.path.abspath(__file__), *args], capture_output=True, text=True, env=env, check=False, cwd=cwd
        )
    if proc.returncode != 0:
        raise RuntimeError(f"{python} {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _ceiling(steps: int) -> float:
    one = _timed(lambda: _run(sys.executable, "--worker", "fixed", "--steps", str(4 * steps)))
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "fixed", "--steps", str(4 * steps)]
    start = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=env) for _ in range(2)]
    for p in procs:
        p.wait()
    return 2 * one / (time.perf_counter() - start)


def make_venv(python: str) -> None:
    venv = os.path.dirname(os.path.dirname(python))
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([python, "-m", "pip", "install", "torch==2.13.0"], check=True)
    subprocess.run([python, "-m", "pip", "install", "nni==2.5"], check=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--nni-python", default=DEFAULT_NNI_PYTHON)
    parser.add_argument("--make-venv", action="store_true")
    parser.add_argument("--worker", choices=("raynas", "nni", "fixed", "replicas"))
    args = parser.parse_args()
    if args.worker == "fixed":
        print(json.dumps({"fixed_step_s": _fixed_step_s(args.steps)}))
        return
    if args.worker == "replicas":
        print(json.dumps(replicas_worker(args.steps)))
        return
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps)))
        return
    sys.path.insert(0, HERE)
    from _machine import machine

    print(json.dumps({"benchmark": "trainers_vs_nni", **machine(), "torch_threads": 1, "batch": BATCH}), flush=True)
    if args.make_venv and not os.path.exists(args.nni_python):
        make_venv(args.nni_python)
    steps = str(args.steps)
    ours = _run(sys.executable, "--worker", "raynas", "--steps", steps)
    nni = _run(args.nni_python, "--worker", "nni", "--steps", steps)
    print(json.dumps(ours), flush=True)
    print(json.dumps(nni), flush=True)
    rep = _run(sys.executable, "--worker", "replicas", "--steps", steps)
    rep["ratio_2_vs_1"] = rep["epoch_s_replicas_1"] / rep["epoch_s_replicas_2"]
    rep["ceiling_2_vs_1"] = _ceiling(args.steps)
    print(json.dumps(rep), flush=True)
    headline = {
        f"{k}_raynas_vs_nni": round(
            (ours[f"{k}_step_s"] / ours["fixed_step_s"]) / (nni[f"{k}_step_s"] / nni["fixed_step_s"]), 3
        )
        for k in ("darts", "enas_child", "enas_ctrl", "spos")
    }
    headline["darts_peak_rss_raynas_vs_nni"] = round(ours["darts_peak_rss_mb"] / max(nni["darts_peak_rss_mb"], 1e-3), 3)
    headline["ratio_2_vs_1"] = round(rep["ratio_2_vs_1"], 3)
    headline["ceiling_2_vs_1"] = round(rep["ceiling_2_vs_1"], 3)
    headline["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(headline), flush=True)


if __name__ == "__main__":
    main()
