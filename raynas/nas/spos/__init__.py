"""Single Path One-Shot, as NNI v1.9's ``nni.nas.pytorch.spos``: the training mutators, the supernet
trainer and NNI's evolution tuner (:class:`searchers.SPOSEvolution`, torch-free, re-exported here)."""

from raynas.nas.spos.mutator import SposMutator, SPOSSupernetTrainingMutator
from raynas.nas.spos.trainer import SPOSSupernetTrainer
from searchers.spos_evolution import SPOSEvolution

__all__ = ["SPOSEvolution", "SPOSSupernetTrainer", "SPOSSupernetTrainingMutator", "SposMutator"]
