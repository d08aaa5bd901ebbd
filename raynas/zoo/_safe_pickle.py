"""Reading data pickles without running code: plain values and numeric numpy arrays only.

A pickle is a program: unpickling calls whatever functions it names. Data files with a known layout
(CIFAR-10's ``cifar-10-batches-py`` batches: dicts of ``bytes`` keys, ``list`` of ``int`` labels and
``uint8`` numpy arrays) need none of that, so :func:`load_data_pickle` lets a pickle name only

- ``builtins`` ``dict``, ``list``, ``bytes``, ``str``, ``int`` (the constructors, harmless);
- ``_codecs.encode(text, "latin1")`` (how Python 3 writes ``bytes`` at protocols 0-2);
- the three numpy names an ``ndarray`` pickles through (``_reconstruct``, ``ndarray``, ``dtype``,
  or ``_frombuffer`` at protocol 5), each replaced by a stand-in here that only builds a plain
  array of a boolean, integer or floating dtype from its raw bytes (no object dtype, no fields).

Anything else is refused by :class:`UnsafePickleError` before it is called, so a tampered file
cannot run code.
"""

from __future__ import annotations

import io
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from searchers.errors import ConfigError

__all__ = ["UnsafePickleError", "load_data_pickle"]

_NUMERIC_KINDS = "biuf"


class UnsafePickleError(ConfigError, pickle.UnpicklingError):
    """A data pickle names something other than plain values and numeric arrays (refused unrun)."""


class _Refused(Exception):
    """Internal: a stand-in met a value outside the data layout (reported with the file's name)."""


class _NdarrayClass:
    """Stands for ``numpy.ndarray`` as ``_reconstruct``'s first argument (and nothing else)."""

    __slots__ = ()


_NDARRAY = _NdarrayClass()


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin1")
    if isinstance(value, str):
        return value
    raise _Refused(f"expected a string, got {type(value).__name__}")


class _Dtype:
    """``numpy.dtype(spec, align, copy)`` restricted to numeric dtypes; ``__setstate__`` sets the byte order."""

    __slots__ = ("dtype",)

    def __init__(self, spec: Any, align: Any = False, copy: Any = False):
        try:
            dtype = np.dtype(_text(spec))
        except TypeError as exc:
            raise _Refused(f"bad dtype {spec!r}") from exc
        if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise _Refused(f"dtype {dtype.str!r} is not a plain numeric dtype")
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        # numpy's dtype state: (version, byteorder, subarray, names, fields, elsize, alignment, flags[, meta])
        if not isinstance(state, tuple) or len(state) < 5 or any(s is not None for s in state[2:5]):
            raise _Refused("dtype state with fields or subarrays")
        order = _text(state[1])
        if order not in ("|", "<", ">", "="):
            raise _Refused(f"bad byte order {order!r}")
        if order in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(order)


def _shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, tuple) or not all(isinstance(n, int) and n >= 0 for n in value):
        raise _Refused(f"bad array shape {value!r}")
    return value


def _array(raw: Any, dtype: Any, shape: Any, fortran: bool) -> np.ndarray:
    if not isinstance(dtype, _Dtype):
        raise _Refused("array without a numeric dtype")
    if isinstance(raw, str):
        raw = raw.encode("latin1")  # a Python 2 str read with encoding="latin1"
    if not isinstance(raw, (bytes, bytearray)):
        raise _Refused(f"array data of type {type(raw).__name__}")
    shape = _shape(shape)
    if len(raw) != math.prod(shape) * dtype.dtype.itemsize:
        raise _Refused(f"array data of {len(raw)} bytes for shape {shape} and dtype {dtype.dtype.str}")
    return np.frombuffer(raw, dtype=dtype.dtype).reshape(shape, order="F" if fortran else "C")


class _ArrayState:
    """What ``_reconstruct`` returns: the array is made when the pickle's ``BUILD`` gives its state."""

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused("bad ndarray state")
        shape, dtype, fortran, raw = state[-4:]
        self.array = _array(raw, dtype, shape, bool(fortran))


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> _ArrayState:
    if cls is not _NDARRAY:
        raise _Refused("_reconstruct of something other than numpy.ndarray")
    return _ArrayState()


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    return _array(buffer, dtype, shape, _text(order) == "F")


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Any] = {
    **{("builtins", t.__name__): t for t in (dict, list, bytes, str, int)},
    ("_codecs", "encode"): _encode,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Dtype,
    **{(f"numpy.{core}.multiarray", "_reconstruct"): _reconstruct for core in ("core", "_core")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): _frombuffer for core in ("core", "_core")},
}


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        module = "builtins" if module == "__builtin__" else module  # Python 2's name (protocols 0-2)
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(f"it names {module}.{name}, which a data file never needs") from None


def _arrays(value: Any) -> Any:
    """The loaded value with every array stand-in replaced by its array."""
    if isinstance(value, _ArrayState):
        if value.array is None:
            raise _Refused("an ndarray without data")
        return value.array
    if isinstance(value, dict):
        return {k: _arrays(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_arrays(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_arrays(v) for v in value)
    return value


def load_data_pickle(path: str | Path) -> Any:
    """Unpickle a data file (``encoding="bytes"``: Python 2's ``str`` become ``bytes``) refusing code.

    Args:
        path: the file.

    Returns:
        Its value: dicts, lists, tuples, bytes, str, int, float, bool, None and numpy arrays of a
        numeric dtype (read-only views of the file's bytes).

    Raises:
        UnsafePickleError: the pickle names anything else, or its arrays are malformed; nothing it
            names is called. Also for a file that is not a pickle at all.
    """
    data = Path(path).read_bytes()
    try:
        return _arrays(_DataUnpickler(io.BytesIO(data), encoding="bytes").load())
    except _Refused as exc:
        raise UnsafePickleError(f"refused to unpickle {path}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UnsafePickleError(f"{path} is not a readable data pickle: {reason}") from None
