"""NNI-protocol tuners and their Ray Tune adapter. Torch-free: numpy only.

The Ray Tune adapter lives in :mod:`searchers.tune` (imported on demand, so that ``import
searchers`` loads neither torch nor ray); the conformance suite in :mod:`searchers.testing`.
"""

from searchers.base import (
    OPTIMIZE_MODES,
    ArchTuner,
    CallLog,
    CheckpointError,
    NoMoreTrialError,
    Tuner,
    check_optimize_mode,
    metric_value,
)
from searchers.evolution import EvolutionTuner
from searchers.random import RandomTuner
from searchers.regularized_evolution import RegularizedEvolutionTuner
from searchers.space import (
    INPUT_CHOICE,
    LAYER_CHOICE,
    Choice,
    SearchSpaceError,
    Selection,
    Weights,
    canonical_hash,
    choice_size,
    crossover_architectures,
    enumerate_architectures,
    from_index_form,
    mutate_architecture,
    neighbour_choice,
    parse_search_space,
    resolve_architecture,
    sample_architecture,
    sample_choice,
    space_size,
    to_exported,
    to_index_form,
    to_parameters,
)
from searchers.spos_evolution import SPOSEvolution

__all__ = [
    "INPUT_CHOICE",
    "LAYER_CHOICE",
    "Choice",
    "SearchSpaceError",
    "Selection",
    "Weights",
    "canonical_hash",
    "from_index_form",
    "parse_search_space",
    "resolve_architecture",
    "to_exported",
    "to_index_form",
    "to_parameters",
    "choice_size",
    "space_size",
    "sample_choice",
    "neighbour_choice",
    "sample_architecture",
    "mutate_architecture",
    "crossover_architectures",
    "enumerate_architectures",
    "OPTIMIZE_MODES",
    "ArchTuner",
    "CallLog",
    "CheckpointError",
    "NoMoreTrialError",
    "Tuner",
    "check_optimize_mode",
    "metric_value",
    "RandomTuner",
    "EvolutionTuner",
    "RegularizedEvolutionTuner",
    "SPOSEvolution",
]
