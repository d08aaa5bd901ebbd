"""raynas: one-shot neural architecture search with NNI's classic API, on Ray.

The front door (``optuna.create_study`` / ``tune.Tuner(...).fit()`` / ``Tuner.restore`` in
raynas' terms)::

    import raynas

    experiment = raynas.create_experiment(overrides={"supernet.epochs": 5})  # or a YAML file / dict
    experiment.run(local=True)                   # Ray is started for you unless local=True
    experiment = raynas.resume_experiment("raynas_results/mnist1d")  # after an interruption
    experiment.run()

NNI's one-shot API lives in :mod:`raynas.nas`; the tuners in the torch-free :mod:`searchers`.
Names here load lazily, so ``import raynas`` imports neither torch nor Ray.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "create_experiment": "raynas.experiment.runner",
    "resume_experiment": "raynas.experiment.runner",
    "Experiment": "raynas.experiment.runner",
    "ExperimentConfig": "raynas.experiment.config",
    "build_config": "raynas.experiment.config",
    "train_supernet": "raynas.train.trainer",
    "SupernetConfig": "raynas.train.config",
    "RaynasError": "searchers.errors",
    "ConfigError": "searchers.errors",
    "ConfigTypeError": "searchers.errors",
    "CheckpointError": "searchers.errors",
    "Interrupted": "searchers.errors",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'raynas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
