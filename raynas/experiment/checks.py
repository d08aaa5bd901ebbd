"""Checks of an experiment that need its model and data, run before anything is written.

:func:`check_objective`: the ``loss`` and ``metrics`` import paths of ``supernet``, ``search``
and ``retrain`` import, the losses return a scalar and ``search.metric`` is among what the search
(and the retraining) will report, all on one batch of two training examples.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from raynas.experiment.config import METRICS, ConfigError, ExperimentConfig

__all__ = ["callables_as_paths", "check_objective", "importable_path"]


def importable_path(value: Any, *, key: str) -> Any:
    """A callable given for an import-path setting (Python API), as its ``module:name`` path.

    Raises:
        ConfigError: a callable that another process could not import by that path (a lambda, a
            nested function, a function of ``__main__``).
    """
    if isinstance(value, str) or not callable(value):
        return value
    from searchers.imports import import_object

    module, name = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    path = f"{module}:{name}"
    try:
        ok = module not in (None, "__main__") and "<" not in str(name) and import_object(path) is value
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(
            f"{key} must be importable by name in every process (a module-level function of an "
            f"importable module, not __main__), got {value!r}"
        )
    return path


def callables_as_paths(key: Any, value: Any) -> Any:
    """An override's (or a section's) loss / metrics callables as import paths (config.yaml holds them)."""
    if isinstance(value, Mapping) and isinstance(key, str) and "." not in key:
        return {k: callables_as_paths(f"{key}.{k}", v) for k, v in value.items()}
    if isinstance(key, str) and key.rsplit(".", 1)[-1] in ("loss", "metrics"):
        return importable_path(value, key=key)
    return value


def check_objective(config: ExperimentConfig, model_factory: Callable, data: Any) -> None:
    """Resolve every phase's loss and metrics and, when any is custom or ``search.metric`` is not a
    default one, call them on the model's output for two training examples.

    Raises:
        ConfigError: a path that does not import, a loss that is not a scalar, metrics that are not
            a dict of numbers, or a ``search.metric`` that the search or retrain metrics do not return.
    """
    from raynas.train.objective import resolve_loss, resolve_metrics

    c = config
    phases = {
        "supernet": (c.supernet.loss, c.supernet.metrics, False),
        "search": (c.search.loss, c.search.metrics, c.search.num_samples > 0),
        "retrain": (c.retrain.loss, c.retrain.metrics, c.retrain.top_k > 0),
    }
    resolved = {
        name: (resolve_loss(loss, key=f"{name}.loss"), resolve_metrics(metrics, key=f"{name}.metrics"))
        for name, (loss, metrics, _ranked) in phases.items()
    }
    custom = any(loss is not None or metrics is not None for loss, metrics, _ in phases.values())
    if not custom and c.search.metric in METRICS:
        return
    output, target = _probe(model_factory, data)
    from raynas.train.objective import check_objective as check_one

    for name, (loss, metrics) in resolved.items():
        names = check_one(
            output, target, loss=loss, metrics=metrics, loss_key=f"{name}.loss", metrics_key=f"{name}.metrics"
        )
        reported = ["val_loss"] + [f"val_{n}" for n in names]
        if phases[name][2] and c.search.metric not in reported:
            spec = phases[name][1] or "the default accuracy"
            raise ConfigError(
                f"search.metric {c.search.metric!r} is not reported with {name}.metrics {spec!r} "
                f"(it reports: {', '.join(reported)})"
            )


def _probe(model_factory: Callable, data: Any) -> tuple[Any, Any]:
    """The output of a freshly built model (a random path) on two training examples, and their targets."""
    import torch

    from raynas.nas import RandomMutator
    from raynas.train.data import Batches, resolve_data

    train = resolve_data(data)["train"]
    x, y = Batches(train, torch.device("cpu")).take(torch.arange(min(2, len(train))))
    model = model_factory()
    RandomMutator(model, seed=0).reset()
    model.eval()
    with torch.no_grad():
        return model(x), y
