"""NNI's classic one-shot NAS API: mutables, mutators, search-space export, fixed architectures.

Port an NNI model by changing ``from nni.nas.pytorch.mutables import ...`` (and friends) to
``from raynas.nas import ...``; NNI's trainers keep their modules (``raynas.nas.darts.DartsTrainer``,
``raynas.nas.callbacks``, ...).
"""

from raynas.nas.algorithms import ALGORITHMS
from raynas.nas.base_trainer import BaseTrainer
from raynas.nas.costs import PathCosts, largest_path, module_flops, profile_costs
from raynas.nas.darts import DartsMutator
from raynas.nas.enas import EnasMutator
from raynas.nas.fair import FairMutator
from raynas.nas.fixed import FixedArchitecture, apply_fixed_architecture, copy_supernet_weights, load_architecture
from raynas.nas.learnable import ArchTrainer, LearnableMutator
from raynas.nas.mutables import NO_KEY, REDUCTIONS, InputChoice, LayerChoice, Mutable, MutableScope
from raynas.nas.mutator import (
    BaseMutator,
    DecisionError,
    MutableTreeNode,
    Mutator,
    MutatorBindingError,
    ParsedModel,
    parse_model,
)
from raynas.nas.random import RandomMutator
from raynas.nas.space import (
    SearchSpaceError,
    generate_search_space,
    model_choices,
    to_decisions,
    to_exported,
    to_parameters,
)
from raynas.nas.spos import SposMutator, SPOSSupernetTrainingMutator
from raynas.nas.trainer import Trainer

__all__ = [
    "ALGORITHMS",
    "NO_KEY",
    "REDUCTIONS",
    "ArchTrainer",
    "BaseMutator",
    "BaseTrainer",
    "DartsMutator",
    "DecisionError",
    "EnasMutator",
    "FairMutator",
    "FixedArchitecture",
    "InputChoice",
    "LayerChoice",
    "LearnableMutator",
    "Mutable",
    "MutableScope",
    "MutableTreeNode",
    "Mutator",
    "MutatorBindingError",
    "ParsedModel",
    "PathCosts",
    "RandomMutator",
    "SPOSSupernetTrainingMutator",
    "SposMutator",
    "SearchSpaceError",
    "Trainer",
    "apply_fixed_architecture",
    "copy_supernet_weights",
    "generate_search_space",
    "largest_path",
    "load_architecture",
    "model_choices",
    "module_flops",
    "parse_model",
    "profile_costs",
    "to_decisions",
    "to_exported",
    "to_parameters",
]
