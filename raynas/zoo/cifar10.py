"""``cifar10``: CIFAR-10 read from a local ``cifar-10-batches-py`` folder, and a small DARTS-cell supernet.

Data (:func:`load_data`): the standard Python version of CIFAR-10, the folder that
https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz extracts to (``data_batch_1`` .. ``data_batch_5``,
``test_batch``: pickled dicts whose ``b"data"`` is a ``(N, 3072)`` uint8 array, rows of 1024 red, green,
blue pixels, and ``b"labels"`` a list of class indices). Nothing is downloaded. The pickles are read
by :func:`raynas.zoo._safe_pickle.load_data_pickle`, which refuses anything but plain data.

- ``train``: the first 50,000 - ``val_size`` training images, a map-style :class:`Cifar10Images` whose
  ``__getitem__`` augments each sample as the DARTS papers do (random 32x32 crop of the image padded
  by 4 zero pixels, horizontal flip with probability 0.5), then normalises with CIFAR-10's mean and
  standard deviation;
- ``val``: the last ``val_size`` training images, normalised only (a ``TensorDataset``);
- ``test``: the 10,000 test images, normalised only (a ``TensorDataset``).

Supernet (:func:`build_supernet`): NNI's DARTS search network in small (NNI v1.9
``examples/nas/darts/model.py``): a stem convolution, ``layers`` cells (the ones at 1/3 and 2/3 of
the depth are reduction cells: stride 2, twice the channels), each with ``nodes`` nodes; node ``j``
has a ``LayerChoice`` over :data:`OPS` on the edge from each earlier node (the cell's two inputs
included) and an ``InputChoice`` keeping 2 edges (summed). Keys are NNI's:
``normal_n{j}_p{i}`` / ``reduce_n{j}_p{i}`` for the edges, ``..._n{j}_switch`` for the inputs; every
normal cell shares one set of decisions and every reduction cell another, as in DARTS.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset, TensorDataset

from raynas.nas.mutables import InputChoice, LayerChoice
from raynas.zoo._cache import cache_dir
from raynas.zoo._safe_pickle import load_data_pickle
from searchers.errors import ConfigError

__all__ = [
    "CLASSES",
    "Cifar10Images",
    "Cifar10Supernet",
    "ENV_VAR",
    "MEAN",
    "OPS",
    "STD",
    "URL",
    "build_supernet",
    "default_root",
    "load_data",
    "normalize",
    "read_batch",
]

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ENV_VAR = "RAYNAS_CIFAR10"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN = (0.49139968, 0.48215827, 0.44653124)
STD = (0.24703233, 0.24348505, 0.26158768)
OPS = ("maxpool", "avgpool", "skipconnect", "sepconv3x3", "sepconv5x5", "dilconv3x3", "dilconv5x5")

# -- data ----------------------------------------------------------------------------------------


def default_root() -> Path:
    """``$RAYNAS_CIFAR10``, else ``cifar-10-batches-py`` in raynas' cache folder (``~/.cache/raynas``)."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else cache_dir() / FOLDER


def _folder(root: str | os.PathLike | None) -> Path:
    """The folder holding the batches: ``root`` itself, or its ``cifar-10-batches-py`` sub-folder."""
    base = default_root() if root is None else Path(root).expanduser()
    for folder in (base, base / FOLDER):
        if all((folder / name).is_file() for name in (*TRAIN_FILES, TEST_FILE)):
            return folder
    missing = [name for name in (*TRAIN_FILES, TEST_FILE) if not (base / name).is_file()]
    raise ConfigError(
        f"CIFAR-10 not found: {base} lacks {', '.join(missing)}; download {URL}, extract it and put its "
        f"{FOLDER} folder there (or pass data.kwargs.root=FOLDER, or set ${ENV_VAR})"
    )


def read_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One batch file: images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64.

    Raises:
        ConfigError: the file is not a CIFAR-10 batch (``UnsafePickleError``, a ConfigError, when
            the pickle names anything but plain data).
    """
    batch = load_data_pickle(path)
    if not isinstance(batch, dict):
        raise ConfigError(f"{path} is not a CIFAR-10 batch: it holds a {type(batch).__name__}, not a dict")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ConfigError(f"{path} is not a CIFAR-10 batch: b'data' must be a uint8 (N, 3072) array, got {got}")
    labels = np.asarray(labels if isinstance(labels, (list, np.ndarray)) else [], dtype=np.int64)
    if labels.shape != (len(data),) or (len(labels) and (labels.min() < 0 or labels.max() >= len(CLASSES))):
        raise ConfigError(f"{path} is not a CIFAR-10 batch: b'labels' must be {len(data)} class indices in 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 images ``(..., 3, H, W)`` as float32, scaled to [0, 1] and normalised by :data:`MEAN` / :data:`STD`."""
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return (images.float() / 255.0 - mean) / std


class Cifar10Images(Dataset):
    """CIFAR-10 images as ``(x, y)``: ``x`` a normalised float32 ``(3, 32, 32)`` tensor, ``y`` an int64 label.

    With ``augment``, each ``__getitem__`` crops a random 32x32 window of the image padded by
    ``padding`` zero pixels on every side and flips it horizontally with probability 0.5 before
    normalising. The draws come from torch's default generator: inside a ``DataLoader`` worker
    process that is seeded by the loader for each worker (its base seed plus the worker id, so
    workers draw differently), in the main process by ``torch.manual_seed``.

    Args:
        images: ``(N, 3, 32, 32)`` uint8.
        labels: ``(N,)`` int64.
        augment: crop and flip (the training split) or not (normalise only).
        padding: the crop's zero padding.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, augment: bool = True, padding: int = 4):
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3 or len(images) != len(labels):
            raise ConfigError(
                f"images must be uint8 (N, 3, H, W) with N labels, got {images.dtype} {tuple(images.shape)}"
            )
        self.images = images
        self.labels = labels
        self.augment = augment
        self.padding = padding
        self._scale = (1.0 / (255.0 * torch.tensor(STD))).view(3, 1, 1)
        self._shift = (-torch.tensor(MEAN) / torch.tensor(STD)).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        if self.augment:
            image = self.crop_and_flip(image)
        return torch.addcmul(self._shift, image.float(), self._scale), self.labels[index]

    def crop_and_flip(self, image: torch.Tensor) -> torch.Tensor:
        """A random crop of ``image`` zero-padded by ``padding``, flipped left-right with p = 0.5."""
        pad = self.padding
        height, width = image.shape[-2:]
        span = 2 * pad + 1
        draw = int(torch.randint(0, span * span * 2, ()))  # one draw: top, left and the flip, each uniform
        top, left, flip = draw % span, draw // span % span, draw // (span * span)
        if pad:
            image = F.pad(image, (pad, pad, pad, pad))[:, top : top + height, left : left + width]
        return image.flip(-1) if flip else image


def load_data(
    *, root: str | os.PathLike | None = None, val_size: int = 5000, augment: bool = True
) -> dict[str, Dataset]:
    """CIFAR-10 from a local ``cifar-10-batches-py`` folder: ``{"train", "val", "test"}``.

    Args:
        root: the folder (or the folder holding it); default :func:`default_root`.
        val_size: the last ``val_size`` training images form ``val`` (deterministic).
        augment: crop and flip the training images (``train`` is always a :class:`Cifar10Images`).

    Returns:
        ``train`` (:class:`Cifar10Images`), ``val`` and ``test`` (normalised ``TensorDataset``s).

    Raises:
        ConfigError: the folder or a batch file is missing (the message says where to get it), a
            file is not a CIFAR-10 batch, or ``val_size`` leaves no training image.
    """
    folder = _folder(root)
    train = [read_batch(folder / name) for name in TRAIN_FILES]
    images = torch.from_numpy(np.concatenate([x for x, _ in train]))
    labels = torch.from_numpy(np.concatenate([y for _, y in train]))
    _check_val_size(val_size, len(images))
    test_x, test_y = read_batch(folder / TEST_FILE)
    cut = len(images) - val_size
    return {
        "train": Cifar10Images(images[:cut].clone(), labels[:cut].clone(), augment=augment),
        "val": TensorDataset(normalize(images[cut:]), labels[cut:].clone()),
        "test": TensorDataset(normalize(torch.from_numpy(test_x.copy())), torch.from_numpy(test_y)),
    }


def _check_val_size(val_size: object, n_train: int | None = None) -> None:
    top = "" if n_train is None else f" in 1..{n_train - 1} (the training images)"
    if isinstance(val_size, bool) or not isinstance(val_size, int) or val_size < 1 or (n_train and val_size >= n_train):
        raise ConfigError(f"cifar10 load_data: val_size must be a positive integer{top}, got {val_size!r}")


def check(*, root: str | os.PathLike | None = None, val_size: int = 5000, augment: bool = True) -> None:
    """:func:`load_data`'s pre-flight (its ``check`` hook, run by raynas in the driver before
    anything is written): the folder holds every batch file, ``val_size`` is a positive integer.

    Raises:
        ConfigError: as :func:`load_data` would, without reading the images.
    """
    _folder(root)
    _check_val_size(val_size)


load_data.check = check

# -- supernet ------------------------------------------------------------------------------------


def _dil_conv(c: int, k: int, stride: int, dilation: int) -> nn.Sequential:
    """ReLU, depthwise (dilated) conv, pointwise conv, BatchNorm without affine (NNI's DilConv)."""
    return nn.Sequential(
        nn.ReLU(),
        nn.Conv2d(c, c, k, stride, dilation * (k - 1) // 2, dilation=dilation, groups=c, bias=False),
        nn.Conv2d(c, c, 1, bias=False),
        nn.BatchNorm2d(c, affine=False),
    )


def _std_conv(c_in: int, c_out: int) -> nn.Sequential:
    """ReLU, 1x1 conv, BatchNorm without affine (a cell's input preprocessing)."""
    return nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out, affine=False))


class FactorizedReduce(nn.Module):
    """Halve the resolution with two 1x1 convolutions of stride 2, the second offset by one pixel."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.conv2 = nn.Conv2d(c_in, c_out - c_out // 2, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        return self.bn(torch.cat([self.conv1(x), self.conv2(x[:, :, 1:, 1:])], dim=1))


def _candidates(c: int, stride: int) -> OrderedDict:
    pool_bn = lambda pool: nn.Sequential(pool, nn.BatchNorm2d(c, affine=False))  # noqa: E731
    return OrderedDict(
        maxpool=pool_bn(nn.MaxPool2d(3, stride, 1)),
        avgpool=pool_bn(nn.AvgPool2d(3, stride, 1, count_include_pad=False)),
        skipconnect=nn.Identity() if stride == 1 else FactorizedReduce(c, c),
        sepconv3x3=nn.Sequential(_dil_conv(c, 3, stride, 1), _dil_conv(c, 3, 1, 1)),
        sepconv5x5=nn.Sequential(_dil_conv(c, 5, stride, 1), _dil_conv(c, 5, 1, 1)),
        dilconv3x3=_dil_conv(c, 3, stride, 2),
        dilconv5x5=_dil_conv(c, 5, stride, 2),
    )


class Node(nn.Module):
    """A node: one ``LayerChoice`` per incoming edge, then an ``InputChoice`` summing 2 of the edges."""

    def __init__(self, key: str, n_prev: int, channels: int, reduction: bool):
        super().__init__()
        self.edges = nn.ModuleList(
            LayerChoice(_candidates(channels, 2 if reduction and i < 2 else 1), key=f"{key}_p{i}")
            for i in range(n_prev)
        )
        self.input_switch = InputChoice(
            choose_from=[edge.key for edge in self.edges], n_chosen=2, key=f"{key}_switch"
        )

    def forward(self, prev: list[torch.Tensor]) -> torch.Tensor:
        return self.input_switch([edge(x) for edge, x in zip(self.edges, prev)])  # a pruned edge gives None


class Cell(nn.Module):
    """Two preprocessed inputs (the two previous cells' outputs), ``nodes`` nodes, their outputs concatenated."""

    def __init__(self, nodes: int, c_pp: int, c_p: int, c: int, *, reduction: bool, reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.preproc0 = FactorizedReduce(c_pp, c) if reduction_prev else _std_conv(c_pp, c)
        self.preproc1 = _std_conv(c_p, c)
        kind = "reduce" if reduction else "normal"
        self.nodes = nn.ModuleList(Node(f"{kind}_n{j}", j, c, reduction) for j in range(2, nodes + 2))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preproc0(s0), self.preproc1(s1)]
        for node in self.nodes:
            states.append(node(states))
        return torch.cat(states[2:], dim=1)


class Cifar10Supernet(nn.Module):
    """The DARTS-cell supernet for 32x32 RGB images (see the module docstring).

    Args:
        channels: the first cells' node width (doubled at each reduction cell).
        layers: cells; those at ``layers // 3`` and ``2 * layers // 3`` reduce.
        nodes: nodes per cell.
        stem_multiplier: the stem's width in ``channels``.
        classes: outputs of the linear head.

    Raises:
        ConfigError: a size that is not a positive integer.
    """

    def __init__(
        self, *, channels: int = 8, layers: int = 5, nodes: int = 3, stem_multiplier: int = 3, classes: int = 10
    ):
        super().__init__()
        sizes = {"channels": channels, "layers": layers, "nodes": nodes, "stem_multiplier": stem_multiplier,
                 "classes": classes}
        for name, value in sizes.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"cifar10 supernet: {name} must be a positive integer, got {value!r}")
        c_stem = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(3, c_stem, 3, 1, 1, bias=False), nn.BatchNorm2d(c_stem))
        self.cells = nn.ModuleList()
        c_pp, c_p, c = c_stem, c_stem, channels
        reduction = False
        for i in range(layers):
            reduction_prev, reduction = reduction, i in (layers // 3, 2 * layers // 3)
            c = c * 2 if reduction else c
            self.cells.append(Cell(nodes, c_pp, c_p, c, reduction=reduction, reduction_prev=reduction_prev))
            c_pp, c_p = c_p, c * nodes
        self.head = nn.Linear(c_p, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.head(F.adaptive_avg_pool2d(s1, 1).flatten(1))


def build_supernet(**kwargs) -> Cifar10Supernet:
    """The ``cifar10`` supernet (``raynas.zoo.cifar10:build_supernet``); ``kwargs`` as :class:`Cifar10Supernet`."""
    return Cifar10Supernet(**kwargs)
