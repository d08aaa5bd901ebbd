"""Experiments: the YAML config, the experiment directory, and the phases that fill it."""

from raynas.experiment.config import (
    ConfigError,
    DataSection,
    ExperimentConfig,
    ExperimentSection,
    ModelSection,
    RetrainSection,
    SearchSection,
    load_config,
)
from raynas.experiment.directory import PHASES, ExperimentDir, ExperimentDirError
from raynas.experiment.runner import (
    Experiment,
    ExperimentExistsError,
    SpaceMismatchError,
    init_ray,
    leaderboard,
    run_experiment,
    top_architectures,
)

__all__ = [
    "PHASES",
    "ConfigError",
    "DataSection",
    "Experiment",
    "ExperimentConfig",
    "ExperimentDir",
    "ExperimentDirError",
    "ExperimentExistsError",
    "ExperimentSection",
    "ModelSection",
    "RetrainSection",
    "SearchSection",
    "SpaceMismatchError",
    "init_ray",
    "leaderboard",
    "load_config",
    "run_experiment",
    "top_architectures",
]
