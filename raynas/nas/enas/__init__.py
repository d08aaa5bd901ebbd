"""ENAS (Pham et al. 2018), as NNI v1.9's ``nni.nas.pytorch.enas``: :class:`EnasMutator` and :class:`EnasTrainer`."""

from raynas.nas.enas.controller import EnasConfigError
from raynas.nas.enas.mutator import EnasMutator
from raynas.nas.enas.trainer import EnasTrainer

__all__ = ["EnasConfigError", "EnasMutator", "EnasTrainer"]
