"""What supernet training needs to set up its mutator: the seed of each replica, and the mutator a config names.

The algorithms themselves live in :mod:`raynas.nas` (one module each; the registry of names is
:data:`raynas.nas.algorithms.ALGORITHMS`); path costs in :mod:`raynas.nas.costs`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from raynas.nas.algorithms import ALGORITHMS
from raynas.nas.mutator import Mutator
from raynas.train.config import ConfigError, SupernetConfig

__all__ = ["build_mutator", "resolve_flops_func", "mutator_seed"]


def mutator_seed(config: SupernetConfig, rank: int) -> int:
    """The mutator seed of a replica: one for all ranks (``shared``) or one per rank."""
    stream = 0 if config.sampling == "shared" else 1 + rank
    return int(np.random.SeedSequence([config.seed, 0x5EED, stream]).generate_state(1)[0])


def resolve_flops_func(model: nn.Module, spec: str) -> Callable[[dict[str, torch.Tensor]], Any]:
    """The FLOPs function ``supernet.flops_func`` names, for ``model``.

    Args:
        model: the replica's model.
        spec: a method name of the model (``get_candidate_flops``, NNI's example's
            ``flops_func=model.get_candidate_flops``), or ``"package.module:function"``; either is
            called as ``f(candidate)`` with ``{key: bool mask}`` and returns a number.

    Raises:
        ConfigError: the model has no such method, or the function cannot be imported or called.
    """
    if ":" in spec:
        from raynas.nas.space import load_factory

        try:
            func = load_factory(spec)
        except ConfigError as exc:
            raise ConfigError(f"supernet.flops_func cannot be loaded ({exc}), got {spec!r}") from None
        if not callable(func):
            raise ConfigError(f"supernet.flops_func must name a function, got {spec!r} ({type(func).__name__})")
        return func
    func = getattr(model, spec, None)
    if not callable(func):
        raise ConfigError(
            f"supernet.flops_func must name a method of the model ({type(model).__name__} has no method "
            f"{spec!r}) or be 'package.module:function', got {spec!r}"
        )
    return func


def build_mutator(model: nn.Module, *, config: SupernetConfig, rank: int, example: torch.Tensor) -> Mutator:
    """The training mutator a config asks for (``config.algorithm``, a name of
    :data:`raynas.nas.algorithms.ALGORITHMS`), seeded for ``rank``.

    ``darts``, ``enas`` and ``proxylessnas`` build a :class:`~raynas.nas.DartsMutator` /
    :class:`~raynas.nas.EnasMutator` / :class:`~raynas.nas.proxylessnas.supernet.ProxylessSupernetMutator`
    from the ``arch_*``, ``darts_*``, ``enas_*`` and ``proxylessnas_*`` settings; their parameters are initialised
    the same on every rank (and broadcast from rank 0 by the replicas).
    ``spos`` builds NNI's :class:`~raynas.nas.spos.SPOSSupernetTrainingMutator` from the ``flops_*``
    settings when ``flops_func`` is set (see :func:`resolve_flops_func`), else a
    :class:`~raynas.nas.spos.SposMutator` on the candidates' profiled costs and the ``spos_*`` settings.

    Args:
        model: the replica's model.
        config: the supernet settings (``algorithm``, ``sampling``, ``seed``, ``spos_*``, ...).
        rank: the replica's rank.
        example: one input batch (SPOS profiles the candidates' costs on it).

    Raises:
        ConfigError: ``config.algorithm`` names no algorithm (the message lists the valid names), or
            ``config.flops_func`` cannot be used.
    """
    builder = ALGORITHMS.get(config.algorithm) if isinstance(config.algorithm, str) else None
    if builder is None:
        raise ConfigError(f"supernet.algorithm must be one of {', '.join(ALGORITHMS)}, got {config.algorithm!r}")
    seed = mutator_seed(config, rank)
    flops_func = None if config.flops_func is None else resolve_flops_func(model, config.flops_func)
    return builder(model, config, seed=seed, example=example, flops_func=flops_func)
