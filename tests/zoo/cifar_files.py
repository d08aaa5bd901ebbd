"""A tiny ``cifar-10-batches-py`` folder, byte for byte in the layout of the official files.

The official batches were pickled by Python 2's cPickle at protocol 2 with numpy arrays: ``str``
values as ``BINSTRING`` opcodes (read back as ``bytes`` with ``encoding="bytes"``) and ``b"data"``
as ``numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), "b")`` plus its state (version,
shape, ``numpy.dtype("u1", 0, 1)`` with its state, Fortran flag, raw bytes). :func:`py2_pickle`
writes that stream directly (Python 3's pickler writes ``bytes`` differently at protocol 2).
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np


class _Global:
    def __init__(self, module: str, name: str):
        self.code = b"c" + f"{module}\n{name}\n".encode()


def _array_ops(array: np.ndarray) -> bytes:
    dtype = _Global("numpy", "dtype").code + _enc(("u1", 0, 1)) + b"R" + _enc((3, "|", None, None, None, -1, -1, 0)) + b"b"
    state = b"(" + _enc(1) + _enc(array.shape) + dtype + b"\x89" + _enc(array.tobytes()) + b"t"
    reconstruct = _Global("numpy.core.multiarray", "_reconstruct").code
    return reconstruct + b"(" + _Global("numpy", "ndarray").code + _enc((0,)) + _enc("b") + b"tR" + state + b"b"


def _enc(value) -> bytes:
    """Python 2 cPickle's opcodes (protocol 2) for the values a CIFAR-10 batch holds."""
    if value is None:
        return b"N"
    if isinstance(value, np.ndarray):
        return _array_ops(value)
    if isinstance(value, int):
        return b"K" + bytes([value]) if 0 <= value < 256 else b"J" + struct.pack("<i", value)
    if isinstance(value, (str, bytes)):  # a Python 2 str
        raw = value.encode("latin1") if isinstance(value, str) else value
        return (b"U" + bytes([len(raw)]) if len(raw) < 256 else b"T" + struct.pack("<I", len(raw))) + raw
    if isinstance(value, tuple):
        return b"(" + b"".join(map(_enc, value)) + b"t"
    if isinstance(value, list):
        return b"](" + b"".join(map(_enc, value)) + b"e"
    if isinstance(value, dict):
        return b"}(" + b"".join(_enc(k) + _enc(v) for k, v in value.items()) + b"u"
    raise TypeError(type(value))


def py2_pickle(value) -> bytes:
    return b"\x80\x02" + _enc(value) + b"."


def write_cifar_folder(root: Path, per_batch: int = 20, seed: int = 0, protocol: int | None = None) -> dict:
    """Write ``data_batch_1..5``, ``test_batch`` and ``batches.meta`` of random images under ``root``.

    Args:
        protocol: ``None``: Python 2's stream (the official files); a number: Python 3's pickler
            at that protocol (``bytes`` keys, numpy arrays as numpy pickles them).

    Returns:
        ``{"train": (images, labels), "test": (images, labels)}``: uint8 ``(N, 3, 32, 32)`` and int64 arrays.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    images, labels = [], []
    for name in names:
        x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, per_batch)]
        batch = {
            b"batch_label": f"{name} of 6",
            b"labels": y,
            b"data": x,
            b"filenames": [f"img_{name}_{i}.png" for i in range(per_batch)],
        }
        if protocol is None:
            data = py2_pickle(batch)
        else:
            batch[b"batch_label"] = batch[b"batch_label"].encode()
            batch[b"filenames"] = [f.encode() for f in batch[b"filenames"]]
            data = pickle.dumps(batch, protocol=protocol)
        (root / name).write_bytes(data)
        images.append(x.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(y, dtype=np.int64))
    meta = {b"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
            b"num_cases_per_batch": per_batch, b"num_vis": 3072}
    (root / "batches.meta").write_bytes(py2_pickle(meta))
    out["train"] = (np.concatenate(images[:5]), np.concatenate(labels[:5]))
    out["test"] = (images[5], labels[5])
    return out
