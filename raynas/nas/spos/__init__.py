"""Single Path One-Shot, as NNI v1.9's ``nni.nas.pytorch.spos``: the training mutators, the supernet
trainer and NNI's evolution tuner (:class:`searchers.SPOSEvolution`, torch-free)."""

from raynas.nas.spos.mutator import SposMutator, SPOSSupernetTrainingMutator

__all__ = ["SPOSSupernetTrainingMutator", "SposMutator"]
