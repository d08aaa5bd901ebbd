"""NNI v1.9's ``nni.nas.pytorch.base_mutator`` path: ``BaseMutator`` (defined in
:mod:`raynas.nas.mutator`), so ``from nni.nas.pytorch.base_mutator import BaseMutator`` ports by
changing ``nni.nas.pytorch`` to ``raynas.nas``."""

from raynas.nas.mutator import BaseMutator

__all__ = ["BaseMutator"]
