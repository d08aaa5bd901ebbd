"""The one-shot algorithms by name (``supernet.algorithm``): one builder per algorithm, in one place.

Each algorithm's mutator lives in its own module (``random``, ``fair``, ``spos``, ``darts``, ``enas``,
``proxylessnas``);
this registry maps the name a config gives to a builder of that mutator. ``supernet.algorithm`` is
validated against :data:`ALGORITHMS` (:mod:`raynas.train.config`) and
:func:`raynas.train.sampling.build_mutator` calls the builder it names.

A builder is ``builder(model, settings, *, seed, example, flops_func)``: ``settings`` is the
supernet settings object (:class:`raynas.train.SupernetConfig`; the builder reads the fields it
needs by name), ``seed`` the mutator's seed, ``example`` one input batch (SPOS profiles its costs
on it) and ``flops_func`` the resolved ``supernet.flops_func`` (``None`` when unset; SPOS only).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from raynas.nas.costs import profile_costs
from raynas.nas.darts import DartsMutator
from raynas.nas.enas import EnasMutator
from raynas.nas.fair import FairMutator
from raynas.nas.mutator import Mutator
from raynas.nas.proxylessnas.supernet import ProxylessSupernetMutator
from raynas.nas.random import RandomMutator
from raynas.nas.spos import SposMutator, SPOSSupernetTrainingMutator
from searchers.errors import ConfigError

__all__ = ["ALGORITHMS", "AlgorithmBuilder", "algorithm_builder"]

#: ``builder(model, settings, *, seed, example, flops_func) -> Mutator``
AlgorithmBuilder = Callable[..., Mutator]


def _random(model: nn.Module, settings: Any, *, seed: int, example: Any, flops_func: Any = None) -> Mutator:
    """``random``: one uniform path per step (:class:`~raynas.nas.RandomMutator`)."""
    return RandomMutator(model, seed=seed)


def _fair(model: nn.Module, settings: Any, *, seed: int, example: Any, flops_func: Any = None) -> Mutator:
    """``fair``: FairNAS' strict fairness (:class:`~raynas.nas.fair.FairMutator`)."""
    return FairMutator(model, seed=seed)


def _spos(model: nn.Module, settings: Any, *, seed: int, example: Any, flops_func: Any = None) -> Mutator:
    """``spos``: NNI's :class:`~raynas.nas.spos.SPOSSupernetTrainingMutator` from the ``flops_*`` settings
    when ``flops_func`` is given, else a :class:`~raynas.nas.spos.SposMutator` on the candidates'
    profiled costs and the ``spos_*`` settings."""
    if flops_func is not None:
        return SPOSSupernetTrainingMutator(
            model,
            flops_func,
            settings.flops_lb,
            settings.flops_ub,
            settings.flops_bin_num,
            settings.flops_sample_timeout,
            seed=seed,
        )
    probe = RandomMutator(model, seed=0)
    costs = profile_costs(probe, example)
    probe.detach()
    return SposMutator(
        model,
        costs=costs,
        bins=settings.spos_bins,
        constraint=settings.spos_constraint,
        lower=settings.spos_lower,
        upper=settings.spos_upper,
        max_tries=settings.spos_max_tries,
        seed=seed,
    )


def _darts(model: nn.Module, settings: Any, *, seed: int, example: Any, flops_func: Any = None) -> Mutator:
    """``darts``: :class:`~raynas.nas.DartsMutator` from the ``arch_*`` and ``darts_*`` settings."""
    return DartsMutator(
        model, lr=settings.arch_lr, weight_decay=settings.arch_weight_decay, order=settings.darts_order, seed=seed
    )


def _enas(model: nn.Module, settings: Any, *, seed: int, example: Any, flops_func: Any = None) -> Mutator:
    """``enas``: :class:`~raynas.nas.EnasMutator` from the ``arch_*`` and ``enas_*`` settings."""
    return EnasMutator(
        model,
        lr=settings.arch_lr,
        weight_decay=settings.arch_weight_decay,
        entropy_weight=settings.enas_entropy_weight,
        baseline_decay=settings.enas_baseline_decay,
        lstm_size=settings.enas_lstm_size,
        tanh_constant=settings.enas_tanh_constant,
        seed=seed,
    )


def _proxylessnas(model: nn.Module, settings: Any, *, seed: int, example: Any, flops_func: Any = None) -> Mutator:
    """``proxylessnas``: :class:`~raynas.nas.proxylessnas.supernet.ProxylessSupernetMutator` (the binary
    gates of NNI's ``ProxylessNasMutator``) from the ``arch_*`` and ``proxylessnas_*`` settings."""
    return ProxylessSupernetMutator(
        model,
        lr=settings.arch_lr,
        weight_decay=settings.arch_weight_decay,
        arch_every=settings.proxylessnas_arch_every,
        seed=seed,
    )


#: ``{name: builder}``: every value ``supernet.algorithm`` may take, in documentation order.
ALGORITHMS: dict[str, AlgorithmBuilder] = {
    "random": _random,
    "fair": _fair,
    "spos": _spos,
    "darts": _darts,
    "enas": _enas,
    "proxylessnas": _proxylessnas,
}


def algorithm_builder(name: str) -> AlgorithmBuilder:
    """The builder registered under ``name``.

    Raises:
        ConfigError: no algorithm has that name (the message lists the valid names).
    """
    try:
        return ALGORITHMS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"supernet.algorithm must be one of {', '.join(ALGORITHMS)}, got {name!r}") from None
