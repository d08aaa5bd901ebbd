"""Plug-ins of the data-pipeline tests, importable by path (``tests.datasets:load_files``) in Ray
workers and CLI subprocesses: a lazy on-disk dataset with random per-sample transforms, tuple and
dict inputs, and custom losses / metrics."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from raynas.zoo.mnist1d import build_supernet

SIZES = {"train": 256, "val": 64, "test": 64}


def write_files(root: str | os.PathLike, sizes: dict[str, int] | None = None) -> Path:
    """mnist1d samples as one ``.npy`` file each (``<root>/<split>/00012.npy``) and a labels file."""
    from raynas.zoo.mnist1d import load_data

    root = Path(root)
    data = load_data()
    for split, n in (sizes or SIZES).items():
        x, y = data[split].tensors
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            np.save(root / split / f"{i:05d}.npy", x[i].numpy())
        np.save(root / split / "labels.npy", y[:n].numpy())
    return root


class FileDataset(Dataset):
    """Reads one file per item when asked (nothing is loaded up front); with ``augment``, a random
    shift (torch's RNG), flip (python's) and noise (numpy's) per item, then a fixed normalisation."""

    def __init__(self, folder: str | os.PathLike, *, augment: bool):
        self.folder = Path(folder)
        self.augment = augment
        self.labels = np.load(self.folder / "labels.npy")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.load(self.folder / f"{i:05d}.npy"))
        if self.augment:
            x = torch.roll(x, int(torch.randint(-3, 4, ())), dims=-1)
            if random.random() < 0.5:
                x = x.flip(-1)
            x = x + torch.from_numpy(np.random.normal(0.0, 0.05, size=x.shape).astype(np.float32))
        return (x - 0.1) / 1.5, torch.tensor(int(self.labels[i]))


def load_files(root: str, augment: bool = True, pids: str | None = None) -> dict[str, Dataset]:
    """The on-disk splits; with ``pids``, the calling process leaves its pid there (a file)."""
    if pids:
        Path(pids, str(os.getpid())).touch()
    return {split: FileDataset(Path(root) / split, augment=augment and split == "train") for split in SIZES}


def load_tensors(root: str) -> dict[str, TensorDataset]:
    """The same files, read whole into TensorDatasets (no transforms)."""
    out = {}
    for split in SIZES:
        ds = FileDataset(Path(root) / split, augment=False)
        items = [ds[i] for i in range(len(ds))]
        out[split] = TensorDataset(torch.stack([x for x, _ in items]), torch.stack([y for _, y in items]))
    return out


class _Wrapped(Dataset):
    def __init__(self, dataset: Dataset, form: str):
        self.dataset, self.form = dataset, form

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        x, y = self.dataset[i]
        if self.form == "tuple":
            return (x, torch.ones_like(x)), y
        return {"signal": x, "scale": torch.tensor(1.0)}, y


def load_tuples(root: str, **kwargs) -> dict[str, Dataset]:
    """Items ``((x, mask), y)``: a tuple input, as NNI's TextNAS reads (``kwargs``: :func:`load_files`')."""
    return {k: _Wrapped(v, "tuple") for k, v in load_files(root, **kwargs).items()}


def load_dicts(root: str, **kwargs) -> dict[str, Dataset]:
    """Items ``({"signal": x, "scale": s}, y)``: a dict input (``kwargs``: :func:`load_files`')."""
    return {k: _Wrapped(v, "dict") for k, v in load_files(root, **kwargs).items()}


class _InputAdapter(nn.Module):
    def __init__(self, form: str, aux: bool = False):
        super().__init__()
        self.form, self.aux = form, aux
        self.net = build_supernet()

    def forward(self, x):
        if self.form == "tuple":
            signal, mask = x
            logits = self.net(signal * mask)
        elif self.form == "dict":
            logits = self.net(x["signal"] * x["scale"].view(-1, 1, 1))
        else:
            logits = self.net(x)
        return (logits, 0.5 * logits) if self.aux else logits  # (logits, auxiliary logits), as NNI's DARTS nets


def tuple_supernet() -> nn.Module:
    """The mnist1d supernet reading ``(x, mask)``."""
    return _InputAdapter("tuple")


def dict_supernet() -> nn.Module:
    """The mnist1d supernet reading ``{"signal", "scale"}``."""
    return _InputAdapter("dict")


def aux_supernet() -> nn.Module:
    """The mnist1d supernet returning ``(logits, aux_logits)``."""
    return _InputAdapter("tensor", aux=True)


def tuple_aux_supernet() -> nn.Module:
    """The mnist1d supernet reading ``(x, mask)`` and returning ``(logits, aux_logits)``."""
    return _InputAdapter("tuple", aux=True)


def aux_loss(output, target: torch.Tensor) -> torch.Tensor:
    """NNI's DARTS retrain loss: the main loss plus 0.4 times the auxiliary head's (output as it is)."""
    logits, aux = output
    return nn.functional.cross_entropy(logits, target) + 0.4 * nn.functional.cross_entropy(aux, target)


def top_metrics(output, target: torch.Tensor) -> dict[str, float]:
    """NNI-style metrics: ``{"acc1", "top2"}`` of the main logits (the output arrives as it is)."""
    logits = output[0] if isinstance(output, tuple) else output
    top2 = logits.topk(2, dim=-1).indices
    n = target.shape[0]
    return {
        "acc1": float((top2[:, 0] == target).sum()) / n,
        "top2": float((top2 == target[:, None]).any(dim=-1).sum()) / n,
    }


def vector_loss(output, target: torch.Tensor) -> torch.Tensor:
    """Not a scalar: one loss per example."""
    logits = output[0] if isinstance(output, tuple) else output
    return nn.functional.cross_entropy(logits, target, reduction="none")
