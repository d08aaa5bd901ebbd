"""Tiny supernets written with the forward idioms of NNI v1.9's example models, and their data.

Each model is our own, a few thousand parameters, but is built and called the way NNI's examples
(``examples/nas/darts``, ``enas``, ``spos``, ``textnas``) build and call theirs:

- :class:`DartsNet` (``build_darts``): DARTS cells of nodes, one unkeyed ``LayerChoice`` per edge
  and an ``InputChoice(n_chosen=2)`` whose ``choose_from`` lists the edges' keys, read from
  ``.key`` in ``__init__``; a reduction cell; NNI's pruned edges (``[]``) apply to it.
- :class:`EnasMicroNet` (``build_enas``): ENAS micro cells; each node's ``InputChoice`` gets the
  list of earlier outputs, which the layer appends to after the call; ``return_mask=True``
  choices whose ``choose_from`` names earlier nodes' keys; the mask decides which outputs the
  layer combines; a reduction layer.
- :class:`ShuffleNet` (``build_spos``): SPOS choice blocks built in a loop, the model reading each
  block's ``.key`` in ``__init__`` (a per-key table of candidate costs), BatchNorm without affine.
- :class:`TextNet` (``build_text``): a TextNAS-style model whose input is a tuple ``(ids, mask)``
  (called ``model(inputs)``, as NNI's trainers call it), candidates called ``op(x, mask)``, an
  embedding, and ``InputChoice``s over earlier layers' outputs.

Data functions return ``{"train", "val", "test"}`` splits: :func:`image_data` (TensorDatasets,
or with ``plain=True`` a map-style Dataset of ``(image, int label)``) and :func:`text_data`
(a map-style Dataset of ``((ids, mask), int label)``, collated as NNI's DataLoaders collate it).

From the command line (the repository root on ``PYTHONPATH``)::

    raynas search --set model.factory=tests.models:build_darts --set data.name=tests.models:image_data
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset, TensorDataset

from raynas.nas import InputChoice, LayerChoice, MutableScope

__all__ = [
    "DartsNet",
    "EnasMicroNet",
    "ShuffleNet",
    "TextNet",
    "build_darts",
    "build_enas",
    "build_spos",
    "build_text",
    "image_data",
    "text_data",
    "TextDataset",
    "ImageDataset",
]


# -- shared pieces -------------------------------------------------------------------------------


def _relu_conv_bn(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.ReLU(), nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out, affine=False)
    )


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset 1x1 convolutions of stride 2 (even sizes only)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.a = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.b = nn.Conv2d(c_in, c_out - c_out // 2, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        return self.bn(torch.cat([self.a(x), self.b(x[:, :, 1:, 1:])], dim=1))


# -- DARTS cells ---------------------------------------------------------------------------------


def _darts_ops(c: int, stride: int) -> OrderedDict:
    return OrderedDict(
        maxpool=nn.MaxPool2d(3, stride, 1),
        skipconnect=nn.Identity() if stride == 1 else FactorizedReduce(c, c),
        conv3x3=_relu_conv_bn(c, c, 3, stride),
    )


class DartsNode(MutableScope):
    """One node: an unkeyed LayerChoice per incoming edge, then two of the edges' outputs summed."""

    def __init__(self, key: str, n_prev: int, channels: int, reduction: bool):
        super().__init__(key)
        self.edges = nn.ModuleList(
            LayerChoice(_darts_ops(channels, 2 if reduction and i < 2 else 1)) for i in range(n_prev)
        )
        # the edges' keys are read in __init__: NNI's counter keys, given at construction
        self.input_switch = InputChoice(choose_from=[edge.key for edge in self.edges], n_chosen=2)

    def forward(self, prev_nodes: list[torch.Tensor]) -> torch.Tensor:
        outs = [edge(node) for edge, node in zip(self.edges, prev_nodes)]  # a pruned edge gives None
        return self.input_switch(outs)


class DartsCell(nn.Module):
    def __init__(self, index: int, c_pp: int, c_p: int, c: int, *, reduction: bool, reduction_prev: bool, nodes: int):
        super().__init__()
        self.preproc0 = FactorizedReduce(c_pp, c) if reduction_prev else _relu_conv_bn(c_pp, c, 1)
        self.preproc1 = _relu_conv_bn(c_p, c, 1)
        self.nodes = nn.ModuleList(DartsNode(f"cell{index}_node{i}", 2 + i, c, reduction) for i in range(nodes))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        tensors = [self.preproc0(s0), self.preproc1(s1)]
        for node in self.nodes:
            tensors.append(node(tensors))  # the node got the list it grows
        return torch.cat(tensors[2:], dim=1)


class DartsNet(nn.Module):
    """Stem, a normal cell and a reduction cell (2 nodes each), global pooling, a linear head.

    In a fresh process its keys are NNI's: ``LayerChoice1, LayerChoice2, InputChoice3, LayerChoice4,
    ..., InputChoice7`` (cell 0) and ``LayerChoice8 ... InputChoice14`` (cell 1).
    """

    def __init__(self, channels: int = 4, nodes: int = 2, classes: int = 4, in_channels: int = 3):
        super().__init__()
        stem = 2 * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem))
        self.cells = nn.ModuleList()
        c_pp = c_p = stem
        reduction_prev = False
        for i, reduction in enumerate((False, True)):
            self.cells.append(
                DartsCell(i, c_pp, c_p, channels, reduction=reduction, reduction_prev=reduction_prev, nodes=nodes)
            )
            c_pp, c_p, reduction_prev = c_p, channels * nodes, reduction
        self.head = nn.Linear(c_p, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.head(F.adaptive_avg_pool2d(s1, 1).flatten(1))


def build_darts(**kwargs) -> DartsNet:
    """``tests.models:build_darts``."""
    return DartsNet(**kwargs)


# -- ENAS micro cells ----------------------------------------------------------------------------


class EnasCell(nn.Module):
    """Pick one earlier output (with its mask), run one op on it."""

    def __init__(self, name: str, prev_labels: list[str], channels: int):
        super().__init__()
        self.input_choice = InputChoice(choose_from=prev_labels, n_chosen=1, return_mask=True, key=name + "_input")
        self.op_choice = LayerChoice(
            [
                _relu_conv_bn(channels, channels, 3),
                nn.AvgPool2d(3, 1, 1),
                nn.MaxPool2d(3, 1, 1),
                nn.Identity(),
            ],
            key=name + "_op",
        )

    def forward(self, prev_layers: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        chosen, mask = self.input_choice(prev_layers)
        return self.op_choice(chosen), mask


class EnasNode(MutableScope):
    def __init__(self, name: str, prev_labels: list[str], channels: int):
        super().__init__(name)
        self.cell_x = EnasCell(name + "_x", prev_labels, channels)
        self.cell_y = EnasCell(name + "_y", prev_labels, channels)

    def forward(self, prev_layers: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, mask_x = self.cell_x(prev_layers)
        y, mask_y = self.cell_y(prev_layers)
        return x + y, mask_x | mask_y


class EnasLayer(nn.Module):
    """Nodes choose among the layer's two inputs and the earlier nodes; the outputs no node
    used are combined by a 1x1 convolution whose weight is sliced by the mask."""

    def __init__(self, nodes: int, channels: int, reduction: bool):
        super().__init__()
        prefix = "reduce" if reduction else "normal"
        labels = [InputChoice.NO_KEY, InputChoice.NO_KEY]
        self.nodes = nn.ModuleList()
        for i in range(nodes):
            labels.append(f"{prefix}_node_{i}")
            self.nodes.append(EnasNode(labels[-1], labels[:-1], channels))
        self.final_conv_w = nn.Parameter(torch.randn(channels, nodes + 2, channels, 1, 1) * 0.3)
        self.bn = nn.BatchNorm2d(channels, affine=False)

    def forward(self, pprev: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        prev_nodes = [pprev, prev]
        used = torch.zeros(len(self.nodes) + 2, dtype=torch.bool, device=prev.device)
        for node in self.nodes:
            out, mask = node(prev_nodes)
            used[: mask.size(0)] |= mask.to(out.device)
            prev_nodes.append(out)  # appended after the InputChoices got the list
        loose = [i for i, u in enumerate(used.tolist()) if not u]
        x = torch.cat([prev_nodes[i] for i in loose], dim=1)
        w = self.final_conv_w[:, loose].reshape(self.final_conv_w.shape[0], -1, 1, 1)
        return self.bn(F.conv2d(x, w))


class EnasMicroNet(nn.Module):
    """Stem, a normal layer, a factorized reduction, a reduction layer, global pooling, a head."""

    def __init__(self, channels: int = 4, nodes: int = 2, classes: int = 4, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        self.normal = EnasLayer(nodes, channels, reduction=False)
        self.reduce0 = FactorizedReduce(channels, channels)
        self.reduce1 = FactorizedReduce(channels, channels)
        self.reduction = EnasLayer(nodes, channels, reduction=True)
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        n = self.normal(s, s)
        r = self.reduction(self.reduce0(s), self.reduce1(n))
        return self.head(F.adaptive_avg_pool2d(r, 1).flatten(1))


def build_enas(**kwargs) -> EnasMicroNet:
    """``tests.models:build_enas``."""
    return EnasMicroNet(**kwargs)


# -- SPOS ShuffleNet blocks ----------------------------------------------------------------------


def _channel_split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n, c, h, w = x.shape
    x = x.reshape(n, c // 2, 2, h, w).transpose(1, 2).reshape(n, c, h, w)  # shuffle, then halve
    return x[:, : c // 2], x[:, c // 2 :]


class ShuffleBlock(nn.Module):
    """A ShuffleNetV2-style unit: stride 1 passes half the channels through and transforms the
    other half; stride 2 transforms everything on two branches. ``xception`` stacks three
    depthwise-separable 3x3 convolutions instead of one k x k."""

    def __init__(self, c_in: int, c_out: int, *, ksize: int, stride: int, xception: bool = False):
        super().__init__()
        self.stride = stride
        branch_in = c_in // 2 if stride == 1 else c_in
        main_out = c_out - (c_in // 2 if stride == 1 else c_in)
        mid = max(main_out // 2, 2)
        layers: list[nn.Module] = []
        if xception:
            c = branch_in
            for i, out in enumerate((mid, mid, main_out)):
                layers += [
                    nn.Conv2d(c, c, 3, stride if i == 0 else 1, 1, groups=c, bias=False),
                    nn.BatchNorm2d(c, affine=False),
                    nn.Conv2d(c, out, 1, bias=False),
                    nn.BatchNorm2d(out, affine=False),
                    nn.ReLU(),
                ]
                c = out
        else:
            layers = [
                nn.Conv2d(branch_in, mid, 1, bias=False),
                nn.BatchNorm2d(mid, affine=False),
                nn.ReLU(),
                nn.Conv2d(mid, mid, ksize, stride, ksize // 2, groups=mid, bias=False),
                nn.BatchNorm2d(mid, affine=False),
                nn.Conv2d(mid, main_out, 1, bias=False),
                nn.BatchNorm2d(main_out, affine=False),
                nn.ReLU(),
            ]
        self.main = nn.Sequential(*layers)
        self.proj = None
        if stride == 2:
            self.proj = nn.Sequential(
                nn.Conv2d(c_in, c_in, ksize, 2, ksize // 2, groups=c_in, bias=False),
                nn.BatchNorm2d(c_in, affine=False),
                nn.Conv2d(c_in, c_in, 1, bias=False),
                nn.BatchNorm2d(c_in, affine=False),
                nn.ReLU(),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            keep, x = _channel_split(x)
            return torch.cat([keep, self.main(x)], dim=1)
        return torch.cat([self.proj(x), self.main(x)], dim=1)


class ShuffleNet(nn.Module):
    """First conv, SPOS choice blocks (``shufflenet_3x3/5x5/7x7``, ``xception_3x3``) built in a
    loop, a last 1x1 conv, average pooling over the whole map, a linear classifier.

    ``_parsed_flops[block.key]`` (filled in ``__init__`` from each candidate's parameter count, as
    NNI's SPOS model fills its FLOPs table) prices a candidate dict with
    :meth:`get_candidate_flops`.
    """

    block_keys = ("shufflenet_3x3", "shufflenet_5x5", "shufflenet_7x7", "xception_3x3")

    def __init__(
        self,
        input_size: int = 8,
        stages: tuple[int, ...] = (2, 2),
        channels: tuple[int, ...] = (8, 16),
        classes: int = 4,
        in_channels: int = 3,
    ):
        super().__init__()
        first = channels[0] // 2
        self.first_conv = nn.Sequential(
            nn.Conv2d(in_channels, first, 3, 1, 1, bias=False), nn.BatchNorm2d(first, affine=False), nn.ReLU()
        )
        self._parsed_flops: dict[str, list[int]] = {}
        size = input_size
        blocks = []
        c_prev = first
        for n_blocks, c in zip(stages, channels):
            for i in range(n_blocks):
                stride = 2 if i == 0 else 1
                c_in = c_prev if i == 0 else c
                block = LayerChoice(
                    [
                        ShuffleBlock(c_in, c, ksize=3, stride=stride),
                        ShuffleBlock(c_in, c, ksize=5, stride=stride),
                        ShuffleBlock(c_in, c, ksize=7, stride=stride),
                        ShuffleBlock(c_in, c, ksize=3, stride=stride, xception=True),
                    ]
                )
                blocks.append(block)
                # NNI's SPOS model reads each block's key here to price its candidates
                self._parsed_flops[block.key] = [sum(p.numel() for p in c.parameters()) * size * size for c in block]
                if stride == 2:
                    size = (size + 1) // 2
            c_prev = c
        self.features = nn.Sequential(*blocks)
        self.conv_last = nn.Sequential(
            nn.Conv2d(c_prev, 16, 1, bias=False), nn.BatchNorm2d(16, affine=False), nn.ReLU()
        )
        self.globalpool = nn.AvgPool2d(size)
        self.classifier = nn.Linear(16, classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bs = x.size(0)
        x = self.globalpool(self.conv_last(self.features(self.first_conv(x))))
        return self.classifier(x.contiguous().view(bs, -1))

    def get_candidate_flops(self, candidate: dict) -> int:
        """The table's cost of a candidate in tuner form (``{"_idx": i}``) or as one-hot tensors."""
        total = 0
        for key, value in candidate.items():
            index = value["_idx"] if isinstance(value, dict) else int(torch.as_tensor(value).float().argmax())
            total += self._parsed_flops[key][index]
        return total


def build_spos(**kwargs) -> ShuffleNet:
    """``tests.models:build_spos``."""
    return ShuffleNet(**kwargs)


# -- TextNAS-style model on (ids, mask) ----------------------------------------------------------


class _MaskedConv(nn.Module):
    def __init__(self, hidden: int, k: int):
        super().__init__()
        self.conv = nn.Conv1d(hidden, hidden, k, padding=k // 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x)) * mask.unsqueeze(1)


class _MaskedPool(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        self.pool = nn.MaxPool1d(3, 1, 1) if kind == "max" else nn.AvgPool1d(3, 1, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.pool(x) * mask.unsqueeze(1)


class _MaskedGRU(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.gru = nn.GRU(hidden, hidden, batch_first=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out, _h = self.gru(x.transpose(1, 2))
        return out.transpose(1, 2) * mask.unsqueeze(1)


class TextLayer(MutableScope):
    """A TextNAS-style layer: pick the previous output to transform (``n_chosen=1``), run an op
    ``op(x, mask)``, add any skip connections from earlier layers (``n_chosen=None``)."""

    def __init__(self, key: str, prev_keys: list[str], hidden: int, choose_from_k: int = 2):
        super().__init__(key)
        self.prec = InputChoice(choose_from=prev_keys[-choose_from_k:], n_chosen=1) if prev_keys else None
        self.op = LayerChoice(
            [_MaskedConv(hidden, 1), _MaskedConv(hidden, 3), _MaskedPool("avg"), _MaskedPool("max"), _MaskedGRU(hidden)]
        )
        self.skipconnect = InputChoice(choose_from=prev_keys) if prev_keys else None
        self.bn = nn.BatchNorm1d(hidden)

    def forward(self, last: torch.Tensor, prev_layers: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        prec = last if self.prec is None else self.prec(prev_layers[-self.prec.n_candidates :])
        out = self.op(prec, mask)
        if self.skipconnect is not None:
            connection = self.skipconnect(prev_layers)  # the growing list itself
            if connection is not None:
                out = out + connection
        return self.bn(out)


class TextNet(nn.Module):
    """Embedding, a 1x1 conv, TextNAS-style layers, a learned mix of every layer, masked mean
    pooling, a linear head. Called ``model((ids, mask))``."""

    def __init__(self, vocab: int = 32, embed: int = 8, hidden: int = 8, layers: int = 3, classes: int = 2):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.init_conv = nn.Conv1d(embed, hidden, 1)
        self.layers = nn.ModuleList()
        keys: list[str] = []
        for i in range(layers):
            self.layers.append(TextLayer(f"layer_{i}", list(keys), hidden))
            keys.append(f"layer_{i}")
        self.combine = nn.Parameter(torch.full((layers,), 1.0 / layers))
        self.linear_out = nn.Linear(hidden, classes)

    def forward(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        ids, mask = inputs
        mask = mask.float()
        x = self.init_conv(self.embedding(ids.long()).transpose(1, 2)) * mask.unsqueeze(1)
        prev_layers: list[torch.Tensor] = []
        for layer in self.layers:
            x = layer(x, prev_layers, mask)
            prev_layers.append(x)
        x = torch.einsum("l,lncs->ncs", self.combine, torch.stack(prev_layers))
        x = (x * mask.unsqueeze(1)).sum(-1) / mask.sum(-1, keepdim=True).clamp(min=1.0)
        return self.linear_out(x)


def build_text(**kwargs) -> TextNet:
    """``tests.models:build_text``."""
    return TextNet(**kwargs)


# -- data ----------------------------------------------------------------------------------------

_SPLITS = (("train", 40), ("val", 12), ("test", 12))


class ImageDataset(Dataset):
    """A map-style dataset of ``(image, int label)`` (not a TensorDataset)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])


def image_data(
    *, shape: tuple[int, ...] | list[int] = (3, 8, 8), classes: int = 4, plain: bool = False, seed: int = 0
) -> dict:
    """64 images of ``shape`` (class prototypes plus noise): 40 train, 12 val, 12 test.

    Args:
        shape: one image's shape, e.g. ``(3, 8, 8)``.
        classes: number of classes.
        plain: map-style :class:`ImageDataset`s instead of TensorDatasets.
        seed: the data's seed.
    """
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    prototypes = rng.normal(size=(classes, *shape)).astype(np.float32)
    n = sum(size for _, size in _SPLITS)
    labels = np.arange(n) % classes
    rng.shuffle(labels)
    images = prototypes[labels] + 0.5 * rng.normal(size=(n, *shape)).astype(np.float32)
    x, y = torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))
    out, start = {}, 0
    for name, size in _SPLITS:
        part = slice(start, start + size)
        out[name] = ImageDataset(x[part], y[part]) if plain else TensorDataset(x[part], y[part])
        start += size
    return out


class TextDataset(Dataset):
    """A map-style dataset of ``((ids, mask), int label)``, as NNI's TextNAS reads SST."""

    def __init__(self, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor):
        self.ids, self.mask, self.labels = ids, mask, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[tuple[torch.Tensor, torch.Tensor], int]:
        return (self.ids[index], self.mask[index]), int(self.labels[index])


def text_data(*, length: int = 12, vocab: int = 32, seed: int = 0) -> dict:
    """64 padded token sequences (lengths 4..``length``): 40 train, 12 val, 12 test; the label
    says whether the sequence holds more tokens from the lower half of the vocabulary."""
    rng = np.random.default_rng(seed)
    n = sum(size for _, size in _SPLITS)
    lengths = rng.integers(4, length + 1, size=n)
    ids = rng.integers(1, vocab, size=(n, length))
    mask = np.arange(length)[None, :] < lengths[:, None]
    ids = np.where(mask, ids, 0)
    low = ((ids > 0) & (ids < vocab // 2)).sum(1)
    labels = (2 * low > lengths).astype(np.int64)
    t_ids, t_mask, t_y = torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(mask), torch.from_numpy(labels)
    out, start = {}, 0
    for name, size in _SPLITS:
        part = slice(start, start + size)
        out[name] = TextDataset(t_ids[part], t_mask[part], t_y[part])
        start += size
    return out
