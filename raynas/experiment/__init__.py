"""Experiments: the YAML config, the experiment directory, and the phases that fill it."""

from raynas.experiment.config import (
    ConfigError,
    DataSection,
    ExperimentConfig,
    ExperimentSection,
    ModelSection,
    RetrainSection,
    SearchSection,
    build_config,
    load_config,
)
from raynas.experiment.directory import PHASES, ExperimentDir, ExperimentDirError
from raynas.experiment.runner import (
    Experiment,
    ExperimentExistsError,
    SpaceMismatchError,
    create_experiment,
    init_ray,
    leaderboard,
    resume_experiment,
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
    "build_config",
    "create_experiment",
    "resume_experiment",
    "init_ray",
    "leaderboard",
    "load_config",
    "top_architectures",
]
