"""One key of a search space: :class:`Choice`, and its value in every form a user may write (torch-free).

A *choice value* for one key may be written in any of these forms:

- a candidate name (``"conv5"``) or an index (``1``);
- a list of names and/or indices (``["stem", 1]``);
- a multi-hot list of bools, one per candidate (``[False, True]``);
- a list of float weights, one per candidate (``[0.2, 0.8]``);
- the tuner parameter form ``{"_value": ..., "_idx": ...}`` (``_idex`` is read as ``_idx``).

:meth:`Choice.resolve` turns each into a :class:`Selection` (sorted candidate indices) or
:class:`Weights`; :func:`choice_parameter` and :func:`choice_exported` write a selection back as
the parameter and the exported form.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from searchers.checks import is_bool, is_float, is_int
from searchers.errors import SearchSpaceError

__all__ = [
    "LAYER_CHOICE",
    "INPUT_CHOICE",
    "CHOICE_TYPES",
    "Choice",
    "Selection",
    "Weights",
    "Resolved",
    "choice_parameter",
    "choice_exported",
]

LAYER_CHOICE = "layer_choice"
INPUT_CHOICE = "input_choice"
CHOICE_TYPES = (LAYER_CHOICE, INPUT_CHOICE)  # the valid '_type' values


class Selection(tuple):
    """Sorted, distinct indices of the chosen candidates."""


class Weights(tuple):
    """One non-negative float weight per candidate (0 skips the candidate)."""


Resolved = Union[Selection, Weights]


@dataclass(frozen=True)
class Choice:
    """One key of a search space.

    Args:
        key: the mutable key.
        type: ``"layer_choice"`` or ``"input_choice"``.
        candidates: candidate names (layer choice) or labels (input choice; ``""`` = no label).
        n_chosen: for an input choice, how many candidates are chosen (``None``: any number).
            Always ``1`` for a layer choice.
    """

    key: str
    type: str
    candidates: tuple[str, ...]
    n_chosen: int | None

    @property
    def length(self) -> int:
        """Number of candidates."""
        return len(self.candidates)

    @property
    def has_names(self) -> bool:
        """Whether every candidate has a distinct, non-empty name (else indices stand for them)."""
        return all(self.candidates) and len(set(self.candidates)) == len(self.candidates)

    @property
    def max_chosen(self) -> int:
        """The most candidates an architecture may choose for this key."""
        if self.type == INPUT_CHOICE and self.n_chosen is not None:
            return self.n_chosen
        return self.length

    def label(self, index: int) -> str | int:
        """The readable form of one candidate: its name where names are usable, else its index."""
        return self.candidates[index] if self.has_names else index

    def spec(self) -> dict:
        """This choice as a search-space JSON entry."""
        if self.type == LAYER_CHOICE:
            return {"_type": LAYER_CHOICE, "_value": list(self.candidates)}
        return {
            "_type": INPUT_CHOICE,
            "_value": {"candidates": list(self.candidates), "n_chosen": self.n_chosen},
        }

    # -- resolving values ----------------------------------------------------------------------

    def _fail(self, rule: str, value: Any) -> SearchSpaceError:
        return SearchSpaceError(f"{rule}, got {value!r} for key {self.key!r}")

    def _index_of(self, item: Any, value: Any) -> int:
        if isinstance(item, str):
            hits = [i for i, name in enumerate(self.candidates) if name == item]
            if not hits:
                valid = ", ".join(repr(c) for c in self.candidates)
                raise self._fail(f"unknown candidate name {item!r} (valid: {valid})", value)
            if len(hits) > 1:
                raise self._fail(f"candidate name {item!r} is ambiguous; use its index", value)
            return hits[0]
        if is_int(item):
            if not 0 <= int(item) < self.length:
                raise self._fail(f"candidate index must be in [0, {self.length - 1}]", value)
            return int(item)
        raise SearchSpaceError(
            f"a candidate must be a name (str) or an index (int), got {item!r} "
            f"({type(item).__name__}) for key {self.key!r}"
        )

    def _resolve_plain(self, value: Any) -> Resolved:
        if is_bool(value):
            raise self._fail("a single bool is not a choice; use a name, an index or a list", value)
        if isinstance(value, (str, numbers.Integral)):
            return Selection((self._index_of(value, value),))
        if isinstance(value, np.ndarray):
            value = value.tolist()
        if not isinstance(value, Sequence):
            raise SearchSpaceError(
                f"a choice must be a name, an index, a list or a {{'_value', '_idx'}} dict, "
                f"got {value!r} ({type(value).__name__}) for key {self.key!r}"
            )
        items = list(value)
        if items and all(is_bool(x) for x in items):
            if len(items) != self.length:
                raise self._fail(f"a bool mask needs {self.length} entries", value)
            return Selection(i for i, x in enumerate(items) if x)
        if items and any(is_float(x) for x in items):
            if len(items) != self.length:
                raise self._fail(f"a weight list needs {self.length} entries", value)
            if not all(isinstance(x, numbers.Real) and not is_bool(x) for x in items):
                raise self._fail("a weight list holds numbers only", value)
            weights = [float(x) for x in items]
            if not all(math.isfinite(w) and w >= 0 for w in weights):
                raise self._fail("weights must be finite and >= 0", value)
            return Weights(weights)
        indices = [self._index_of(x, value) for x in items]
        if len(set(indices)) != len(indices):
            raise self._fail("a candidate is chosen twice", value)
        return Selection(sorted(indices))

    def resolve(self, value: Any, *, exact: bool = False) -> Resolved:
        """Resolve a value in any admitted form.

        Args:
            value: the value for this key (see the module docstring for the forms).
            exact: demand what a tuner must propose: one candidate for a layer choice, exactly
                ``n_chosen`` for an input choice, and no weights.

        Returns:
            A :class:`Selection` or :class:`Weights`.

        Raises:
            SearchSpaceError: the value breaks a rule of this key.
        """
        if isinstance(value, Mapping):
            resolved = self._resolve_parameter(value)
        else:
            resolved = self._resolve_plain(value)
        if isinstance(resolved, Weights):
            if exact:
                raise self._fail("a tuner parameter chooses candidates, not weights", value)
            return resolved
        n = len(resolved)
        if self.type == LAYER_CHOICE:
            # n == 0 is NNI's pruned edge (its DARTS export writes []): the LayerChoice gives None
            if exact and n != 1:
                raise self._fail("a layer choice chooses exactly 1 candidate", value)
        elif self.n_chosen is not None and (n > self.n_chosen or (exact and n != self.n_chosen)):
            bound = "exactly" if exact else "at most"
            raise self._fail(f"n_chosen={self.n_chosen} allows {bound} {self.n_chosen} candidates", value)
        return resolved

    def _resolve_parameter(self, value: Mapping) -> Resolved:
        unknown = sorted(set(value) - {"_value", "_idx", "_idex"})
        if unknown:
            raise self._fail(f"a parameter holds '_value' and '_idx' only, not {unknown}", value)
        if "_idx" in value and "_idex" in value and value["_idx"] != value["_idex"]:
            raise self._fail("'_idx' and its alias '_idex' disagree", value)
        idx = value["_idx"] if "_idx" in value else value.get("_idex")
        if idx is None:
            if "_value" not in value:
                raise self._fail("a parameter needs '_value' or '_idx'", value)
            return self._resolve_plain(value["_value"])
        if not (is_int(idx) or (isinstance(idx, Sequence) and not isinstance(idx, str))):
            raise self._fail("'_idx' must be an index or a list of indices", value)
        if isinstance(idx, Sequence) and not all(is_int(i) for i in idx):
            raise self._fail("'_idx' must be an index or a list of indices", value)
        resolved = self._resolve_plain(idx)
        if "_value" in value:
            names = value["_value"]
            names = [names] if isinstance(names, str) else names
            if not isinstance(names, Sequence) or not _value_order_ok(self, names, idx):
                raise self._fail("'_value' and '_idx' disagree", value)
        return resolved


def _value_order_ok(choice: Choice, names: Sequence, idx: Sequence | int) -> bool:
    idx_list = [idx] if is_int(idx) else list(idx)
    if len(names) != len(idx_list):
        return False
    return all(isinstance(n, str) and choice.candidates[i] == n for n, i in zip(names, idx_list))


def choice_parameter(choice: Choice, resolved: Resolved) -> dict:
    """One key's NNI parameter ``{"_value": ..., "_idx": ...}`` for a resolved selection.

    Raises:
        SearchSpaceError: ``resolved`` is weights (they have no parameter form).
    """
    if isinstance(resolved, Weights):
        raise SearchSpaceError(
            f"weights {list(resolved)!r} have no parameter form for key {choice.key!r}; fix the choice first"
        )
    if choice.type == LAYER_CHOICE and len(resolved) == 1:
        return {"_value": choice.candidates[resolved[0]], "_idx": resolved[0]}
    return {"_value": [choice.candidates[i] for i in resolved], "_idx": list(resolved)}


def choice_exported(choice: Choice, resolved: Resolved) -> Any:
    """One key's exported (readable) value: a name or index, a list of them, or the weights."""
    if isinstance(resolved, Weights):
        return list(resolved)
    single = choice.type == LAYER_CHOICE or choice.n_chosen == 1
    if single and len(resolved) == 1:
        return choice.label(resolved[0])
    return [choice.label(i) for i in resolved]
