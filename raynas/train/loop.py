"""Compatibility: what this module held now lives in one module per job; import from there.

- :mod:`raynas.train.replica`: :class:`SupernetReplica` (the training step), ``MutatorFactory``;
- :mod:`raynas.train.data`: :class:`~raynas.train.data.Batches`, ``resolve_data``, ``steps_per_epoch``;
- :mod:`raynas.train.step`: ``lr_at``, ``build_optimizer``, ``autocast``;
- :mod:`raynas.train.sync`: the gradient sync;
- :mod:`raynas.train.resolve`: ``resolve_device``, ``resolve_factory``;
- :mod:`raynas.train.reports`: ``parameter_digest`` and the reports.

Kept for code outside ``raynas.train`` that imports these names from here (tests/nas and
tests/experiment do).
"""

from raynas.train.data import Batches, resolve_data, steps_per_epoch
from raynas.train.replica import MutatorFactory, SupernetReplica
from raynas.train.reports import parameter_digest
from raynas.train.resolve import resolve_device, resolve_factory
from raynas.train.step import autocast, build_optimizer, lr_at

_Batches = Batches  # the former private name

__all__ = [
    "SupernetReplica",
    "MutatorFactory",
    "lr_at",
    "resolve_device",
    "resolve_factory",
    "resolve_data",
    "build_optimizer",
    "autocast",
    "parameter_digest",
    "steps_per_epoch",
]
