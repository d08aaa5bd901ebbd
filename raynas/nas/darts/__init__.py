"""DARTS (Liu et al. 2019), as NNI v1.9's ``nni.nas.pytorch.darts``: :class:`DartsMutator` and :class:`DartsTrainer`."""

from raynas.nas.darts.mutator import DartsConfigError, DartsMutator
from raynas.nas.darts.trainer import DartsTrainer

__all__ = ["DartsConfigError", "DartsMutator", "DartsTrainer"]
