"""NNI-protocol tuners and their Ray Tune adapter. Torch-free: numpy only.

The Ray Tune adapter lives in :mod:`searchers.tune` (imported on demand, so that ``import
searchers`` loads neither torch nor ray); the conformance suite in :mod:`searchers.testing`.

Read first: :mod:`searchers.base` (the Tuner contract), then :mod:`searchers.arch_tuner` (the base
every shipped tuner builds on) and :mod:`searchers.random` (the smallest tuner). The modules, one
job each:

- ``errors``: every user-facing error, under ``RaynasError``;
- ``base``: the NNI tuner protocol (``Tuner``, ``NoMoreTrialError``);
- ``checks``: the checks of tuner and driver arguments (optimize mode, metric values, ints, seeds);
- ``codec``: JSON forms of architectures and parameter ids in checkpoints;
- ``signatures``: what a user's callable accepts, read from its signature;
- ``calllog``: recording a tuner's calls and replaying them (tuners without checkpoints);
- ``arch_tuner``: ``ArchTuner``, the shared machinery of tuners over a discrete space;
- ``random``, ``evolution``, ``regularized_evolution``: the shipped tuners;
- ``space``: the search-space format (``space.choice`` one key, ``space.forms`` a whole space and
  the architecture forms, ``space.sampling`` sizes, draws and variation);
- ``imports``: the one importer of ``"package.module:name"`` paths;
- ``tune``: the Ray Tune adapter (``tune.searcher``, ``tune.spaces``, ``tune.loading``);
- ``constrained``: a Tune searcher wrapper that never runs a proposal breaking a constraint;
- ``testing``: the pytest conformance suite for tuners.
"""

from searchers import space
from searchers.arch_tuner import ArchTuner
from searchers.base import NoMoreTrialError, Tuner
from searchers.calllog import CallLog
from searchers.checks import OPTIMIZE_MODES, check_optimize_mode, metric_value
from searchers.errors import (
    CheckpointError,
    ConfigError,
    ConfigKeyError,
    ConfigTypeError,
    Interrupted,
    RaynasError,
)
from searchers.evolution import EvolutionTuner
from searchers.random import RandomTuner
from searchers.regularized_evolution import RegularizedEvolutionTuner
from searchers.space import *  # noqa: F403  (every name of searchers.space, as its __all__ lists them)
from searchers.spos_evolution import SPOSEvolution

__all__ = [
    *space.__all__,
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
    "RaynasError",
    "ConfigError",
    "ConfigTypeError",
    "ConfigKeyError",
    "Interrupted",
    "SPOSEvolution",
]
