"""Mutables: the choices a supernet holds (NNI's classic ``LayerChoice`` / ``InputChoice``).

A mutable does nothing by itself: its forward asks the mutator bound to the model what was
decided for its key (``on_forward_layer_choice`` / ``on_forward_input_choice``). A key is either
given explicitly or NNI's counter key (``LayerChoice1``), fixed at construction; readers of
architectures also accept an unkeyed mutable's module path (``blocks.2.op``) as an alias.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import torch
from torch import nn

from raynas.nas.utils import construction_serial, global_mutable_counting
from searchers.errors import ConfigError, ConfigTypeError

_logger = logging.getLogger(__name__)
__all__ = [
    "Mutable",
    "LayerChoice",
    "InputChoice",
    "MutableScope",
    "MutatorHooks",
    "REDUCTIONS",
    "NO_KEY",
    "auto_key_serial",
    "bind_mutable",
    "unbind_mutable",
]

REDUCTIONS = ("sum", "mean", "concat", "none")
NO_KEY = ""  # an input-choice candidate without a label (NNI's NO_KEY)
# LayerChoice attributes a candidate name may not take (NNI reserves the first six)
_RESERVED = frozenset({"length", "reduction", "return_mask", "_key", "key", "names", "choices", "name", "mutator"})


class MutatorHooks(Protocol):
    """What a mutable asks of the mutator bound to it (:class:`raynas.nas.BaseMutator` implements it).

    Mutables know their mutator only through this protocol, so this module imports no mutator.
    """

    def enter_mutable_scope(self, mutable_scope: MutableScope) -> None:
        """The forward pass enters ``mutable_scope``."""

    def exit_mutable_scope(self, mutable_scope: MutableScope) -> None:
        """The forward pass leaves ``mutable_scope`` (also on error)."""

    def on_forward_layer_choice(self, mutable: LayerChoice, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        """Run a LayerChoice: ``(output, mask)``."""

    def on_forward_input_choice(self, mutable: InputChoice, tensor_list: list) -> tuple[Any, Any]:
        """Run an InputChoice on its inputs in ``choose_from`` order: ``(output, mask)``."""


def bind_mutable(mutable: Mutable, mutator: MutatorHooks, name: str) -> None:
    """Bind ``mutable`` to ``mutator`` under its module path ``name`` (what a mutator does when it binds).

    Kept out of the module's attributes (and its ``state_dict``): a mutator is not a submodule.
    """
    mutable.__dict__["_name"] = name
    mutable.__dict__["_mutator"] = mutator


def unbind_mutable(mutable: Mutable, mutator: MutatorHooks) -> None:
    """Unbind ``mutable`` if ``mutator`` is the one bound to it (what :meth:`BaseMutator.detach` does)."""
    if mutable.__dict__.get("_mutator") is mutator:
        mutable.__dict__["_mutator"] = None


def auto_key_serial(mutable: Mutable) -> int | None:
    """The construction serial of a mutable whose key NNI's counter gave, ``None`` for an explicit key.

    Orders unkeyed mutables by construction (for their NNI counter-key aliases, see
    :attr:`raynas.nas.ParsedModel.aliases`).
    """
    return mutable.__dict__["_serial"] if mutable._auto_key else None


def _check_key(key: Any) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str):  # NNI converts with a warning; so do we
        _logger.warning("mutable key %r is not a string; converted to %r", key, str(key))
        key = str(key)
    if not key:
        raise ConfigError("a mutable key must be a non-empty string or None, got ''")
    return key


def _check_reduction(reduction: Any, key: str | None) -> str:
    if reduction not in REDUCTIONS:
        raise ConfigError(
            f"unknown reduction {reduction!r} for mutable {key or '(unkeyed)'!r} "
            f"(valid: {', '.join(REDUCTIONS)})"
        )
    return reduction


class Mutable(nn.Module):
    """Base class of everything a mutator decides or observes.

    Args:
        key: the decision key. ``None`` gives NNI's key: the class name plus the mutable counter
            (``LayerChoice1``, ``InputChoice2``, ...), readable from construction on. raynas builds
            models from a factory inside :func:`raynas.nas.utils.mutable_counting_scope`, so these keys
            are the same in every process. Mutables that share a key share one decision.
    """

    def __init__(self, key: str | None = None):
        super().__init__()
        key = _check_key(key)
        self._auto_key = key is None
        self._key: str = key if key is not None else f"{type(self).__name__}{global_mutable_counting()}"
        self.__dict__["_serial"] = construction_serial()
        self.__dict__["_name"] = None
        self.__dict__["_mutator"] = None

    @property
    def key(self) -> str:
        """The decision key: the explicit one, else NNI's counter key given at construction."""
        return self._key

    @property
    def name(self) -> str:
        """The module path in the model, once a mutator has parsed it (NNI's ``mutable.name``)."""
        return self.__dict__.get("_name") or self._key

    @property
    def mutator(self) -> MutatorHooks | None:
        """The mutator bound to this mutable, or ``None``."""
        return self.__dict__.get("_mutator")

    def _require_mutator(self) -> MutatorHooks:
        mutator = self.__dict__.get("_mutator")
        if mutator is None:
            raise RuntimeError(
                f"{type(self).__name__} {self._key!r} has no mutator: create one for the model "
                "(e.g. RandomMutator(model)) or call apply_fixed_architecture(model, arch) first"
            )
        return mutator

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_mutator", None)
        self.__dict__.setdefault("_name", None)

    def extra_repr(self) -> str:
        return f"key={self._key!r}"


class MutableScope(Mutable):
    """A scope that tells the mutator when the forward pass enters and leaves it.

    Subclass it and write ``forward`` as usual. The mutator's ``enter_mutable_scope`` runs before
    the forward and ``exit_mutable_scope`` after it, also when the forward raises.

    Args:
        key: the scope key (scopes never appear in the search space).
    """

    def __init__(self, key: str | None = None):
        super().__init__(key)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        mutator = self._require_mutator()
        mutator.enter_mutable_scope(self)
        try:
            return super().__call__(*args, **kwargs)
        finally:
            mutator.exit_mutable_scope(self)


class LayerChoice(Mutable):
    """Choose one (or, under a multi-hot mask or weights, several) of some candidate modules.

    The candidates are registered as submodules under their names, as NNI does (``"0"``, ``"1"``,
    ... for a list), so a supernet ``state_dict`` has NNI's keys (``op.conv3.weight``). The choice
    is a container: ``len(choice)``, ``iter(choice)``, ``choice["conv3"]`` / ``choice[0]``,
    ``choice[i] = module`` and ``del choice["conv3"]``.

    Args:
        op_candidates: a list of modules (named ``"0"``, ``"1"``, ...) or a mapping of
            name -> module (an ``OrderedDict`` keeps its order).
        reduction: how several chosen outputs combine: ``sum``, ``mean``, ``concat`` or ``none``.
        return_mask: return ``(output, mask)`` instead of ``output``.
        key: the decision key (default: NNI's counter key, see :class:`Mutable`).
    """

    def __init__(
        self,
        op_candidates: Sequence[nn.Module] | Mapping[str, nn.Module],
        reduction: str = "sum",
        return_mask: bool = False,
        key: str | None = None,
    ):
        super().__init__(key)
        name = self._key
        if isinstance(op_candidates, (Mapping, nn.ModuleDict)):
            pairs = list(op_candidates.items())
        elif isinstance(op_candidates, (Sequence, nn.ModuleList, nn.Sequential)) and not isinstance(op_candidates, str):
            pairs = [(str(i), m) for i, m in enumerate(op_candidates)]
        else:
            raise ConfigTypeError(
                f"op_candidates must be a list or a dict of modules, got {type(op_candidates).__name__} "
                f"for LayerChoice {name!r}"
            )
        if not pairs:
            raise ConfigError(f"op_candidates must not be empty for LayerChoice {name!r}")
        self.reduction = _check_reduction(reduction, name)
        self.return_mask = bool(return_mask)
        self.names: list[str] = []
        for cand, module in pairs:
            if not isinstance(cand, str) or not cand or "." in cand:
                raise ConfigTypeError(
                    f"candidate names must be non-empty strings without '.', got {cand!r} in LayerChoice {name!r}"
                )
            if not isinstance(module, nn.Module):
                raise ConfigTypeError(
                    f"candidate {cand!r} of LayerChoice {name!r} must be an nn.Module, got {type(module).__name__}"
                )
            if cand in self.names:
                raise ConfigError(f"candidate names must be distinct, got {cand!r} twice in LayerChoice {name!r}")
            if cand in _RESERVED or cand in self.__dict__:
                raise ConfigError(
                    f"candidate name {cand!r} of LayerChoice {name!r} is reserved (valid: any name but "
                    f"{', '.join(sorted(_RESERVED))})"
                )
            self._modules[cand] = module  # not add_module: a name such as "double" may shadow a method
            self.names.append(cand)

    @property
    def length(self) -> int:
        """Number of candidates (NNI's name; ``len(choice)`` works too)."""
        return len(self.names)

    @property
    def choices(self) -> list[nn.Module]:
        """The candidate modules in order (NNI's deprecated ``choices``; ``list(choice)`` works too)."""
        return [self._modules[n] for n in self.names]

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[nn.Module]:
        return (self._modules[n] for n in self.names)

    def index(self, name_or_index: str | int) -> int:
        """The position of a candidate given by name or index.

        Raises:
            KeyError, IndexError, TypeError: as a subscript (NNI's ``choice[name]``: ``KeyError``); built-ins,
                not raynas errors, since a bad subscript is a bug in the calling code (its traceback shows it).
        """
        if isinstance(name_or_index, str):
            if name_or_index not in self.names:
                raise KeyError(
                    f"no candidate {name_or_index!r} in LayerChoice {self._key!r} (valid: {', '.join(self.names)})"
                )
            return self.names.index(name_or_index)
        if isinstance(name_or_index, int) and not isinstance(name_or_index, bool):
            if not -len(self) <= name_or_index < len(self):
                raise IndexError(
                    f"candidate index {name_or_index} out of range for {len(self)} candidates "
                    f"of LayerChoice {self._key!r}"
                )
            return name_or_index % len(self)
        raise TypeError(f"index a LayerChoice by name or int, got {name_or_index!r}")

    def __getitem__(self, idx: str | int | slice) -> Any:
        if isinstance(idx, slice):
            return [self._modules[n] for n in self.names[idx]]
        return self._modules[self.names[self.index(idx)]]

    def __setitem__(self, idx: str | int, module: nn.Module | None) -> None:
        self._modules[self.names[self.index(idx)]] = module

    def __delitem__(self, idx: str | int | slice) -> None:
        doomed = self.names[idx] if isinstance(idx, slice) else [self.names[self.index(idx)]]
        for cand in doomed:
            del self._modules[cand]
            self.names.remove(cand)

    def named_candidates(self) -> list[tuple[str, nn.Module]]:
        """``[(name, module), ...]`` in order."""
        return [(n, self._modules[n]) for n in self.names]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out, mask = self._require_mutator().on_forward_layer_choice(self, *args, **kwargs)
        return (out, mask) if self.return_mask else out


class InputChoice(Mutable):
    """Choose some of several input tensors (NNI's classic signature).

    Args:
        n_candidates: number of inputs; may be left out when ``choose_from`` is given.
        choose_from: labels of the inputs: keys of earlier mutables, or plain labels such as
            ``"stem"``; ``""`` means no label. Default: ``n_candidates`` empty labels.
        n_chosen: how many inputs are chosen; ``None`` means any number, none included.
        reduction: ``sum``, ``mean``, ``concat`` or ``none``.
        return_mask: return ``(output, mask)`` instead of ``output``.
        key: the decision key (default: NNI's counter key, see :class:`Mutable`).

    The forward takes a list of tensors, or a dict ``{label: tensor}`` ordered by ``choose_from``.
    With nothing chosen it returns ``None``.
    """

    NO_KEY = NO_KEY

    def __init__(
        self,
        n_candidates: int | None = None,
        choose_from: Sequence[str] | None = None,
        n_chosen: int | None = None,
        reduction: str = "sum",
        return_mask: bool = False,
        key: str | None = None,
    ):
        super().__init__(key)
        name = self._key
        if choose_from is not None:
            if isinstance(choose_from, str) or not isinstance(choose_from, Sequence):
                raise ConfigTypeError(
                    f"choose_from must be a list of labels, got {choose_from!r} for InputChoice {name!r}"
                )
            choose_from = list(choose_from)
            bad = [c for c in choose_from if not isinstance(c, str)]
            if bad:
                raise ConfigTypeError(f"choose_from labels must be strings, got {bad[0]!r} for InputChoice {name!r}")
            labelled = [c for c in choose_from if c]
            if len(set(labelled)) != len(labelled):
                raise ConfigError(f"choose_from labels must be distinct, got {choose_from!r} for InputChoice {name!r}")
            if n_candidates is not None and n_candidates != len(choose_from):
                raise ConfigError(
                    f"n_candidates={n_candidates!r} disagrees with len(choose_from)={len(choose_from)} "
                    f"for InputChoice {name!r}"
                )
            n_candidates = len(choose_from)
        if n_candidates is None:
            raise ConfigError(f"InputChoice {name!r} needs n_candidates or choose_from")
        if isinstance(n_candidates, bool) or not isinstance(n_candidates, int) or n_candidates < 1:
            raise ConfigError(f"n_candidates must be a positive int, got {n_candidates!r} for InputChoice {name!r}")
        if n_chosen is not None and (
            isinstance(n_chosen, bool) or not isinstance(n_chosen, int) or not 0 <= n_chosen <= n_candidates
        ):
            raise ConfigError(
                f"n_chosen must be None or between 0 and {n_candidates}, got {n_chosen!r} for InputChoice {name!r}"
            )
        self.n_candidates = n_candidates
        self.choose_from: list[str] = choose_from if choose_from is not None else [NO_KEY] * n_candidates
        self.n_chosen = n_chosen
        self.reduction = _check_reduction(reduction, name)
        self.return_mask = bool(return_mask)

    @property
    def length(self) -> int:
        """Number of candidates (alias of ``n_candidates``)."""
        return self.n_candidates

    def __len__(self) -> int:
        return self.n_candidates

    def candidate_inputs(self, optional_inputs: Any) -> list:
        """This choice's inputs as a list in ``choose_from`` order (what the mutator receives).

        Args:
            optional_inputs: what the forward got: a list of ``n_candidates`` inputs, or a dict
                keyed by the ``choose_from`` labels.

        Raises:
            TypeError: neither a list nor a dict, or a dict for unlabelled candidates.
            KeyError: a label has no input.
            ValueError: a list of the wrong length.
            All built-ins, as NNI's (a dict lookup): a bug in the calling forward, shown by its traceback.
        """
        if isinstance(optional_inputs, Mapping):
            if not all(self.choose_from):
                raise TypeError(
                    f"InputChoice {self.key!r} has unlabelled candidates; pass its inputs as a list, not a dict"
                )
            missing = [c for c in self.choose_from if c not in optional_inputs]
            if missing:
                raise KeyError(
                    f"InputChoice {self.key!r} got no input for label {missing[0]!r} "
                    f"(expected: {', '.join(self.choose_from)})"
                )
            return [optional_inputs[c] for c in self.choose_from]
        if isinstance(optional_inputs, torch.Tensor) or not isinstance(optional_inputs, Sequence):
            raise TypeError(
                f"InputChoice {self.key!r} takes a list or a dict of tensors, got {type(optional_inputs).__name__}"
            )
        if len(optional_inputs) != self.n_candidates:
            raise ValueError(
                f"InputChoice {self.key!r} expects {self.n_candidates} inputs, got {len(optional_inputs)}"
            )
        return list(optional_inputs)

    _as_list = candidate_inputs  # the old private name, kept for existing callers

    def forward(self, optional_inputs: Sequence[torch.Tensor] | Mapping[str, torch.Tensor]) -> Any:
        mutator = self._require_mutator()
        out, mask = mutator.on_forward_input_choice(self, self.candidate_inputs(optional_inputs))
        return (out, mask) if self.return_mask else out

