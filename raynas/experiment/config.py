"""The experiment config: one YAML file in six sections, every key with a default.

The defaults are the embedded built-in experiment (the ``mnist1d`` space), so ``raynas search``
with no file runs it. A file and ``--set section.key=value`` overrides change what they name;
unknown sections or keys and bad values raise :class:`ConfigError`, naming the key and listing
what is valid.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from raynas._io import read_yaml
from raynas._rules import IMPORT_PATH, check_fields, check_keys, rule
from raynas.train.config import DEVICES, LR_SCHEDULES, PRECISIONS, ConfigError, SupernetConfig
from raynas.zoo import BUILTINS

__all__ = [
    "ConfigError",
    "build_config",
    "ExperimentSection",
    "ModelSection",
    "DataSection",
    "SearchSection",
    "RetrainSection",
    "ExperimentConfig",
    "load_config",
    "parse_override",
    "METRICS",
    "MODES",
    "SCHEDULERS",
]

#: what ``search.metric`` may name without custom metrics (``val_<name>`` of any metric they return)
METRICS = ("val_accuracy", "val_loss")
MODES = ("max", "min")
SCHEDULERS = ("none", "asha")
RETRAIN_OPTIMIZERS = ("adam", "sgd")
RETRAIN_SELECTIONS = ("top", "diverse")

_FOLDER_NAME = (lambda v: "/" not in v and v not in (".", ".."), "a plain folder name")
_DATA_NAME = (
    lambda v: ":" in v or v in BUILTINS,
    f"a built-in ({', '.join(BUILTINS)}) or 'package.module:function'",
)
_METRIC = (lambda v: v.startswith("val_") and len(v) > 4, "val_loss or val_<name of a metric>")


@dataclass(frozen=True, kw_only=True)
class _Section:
    """A config section: every field carries a rule (:mod:`raynas._rules`) that ``__post_init__`` checks."""

    _name = ""

    def __post_init__(self) -> None:
        check_fields(self, self._name)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> _Section:
        """Build the section from a mapping; unknown keys are errors that list the valid ones."""
        if data is None:
            return cls()
        valid = [f.name for f in dataclasses.fields(cls)]
        return cls(**dict(check_keys(data, valid, f"section {cls._name!r}")))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True, kw_only=True)
class ExperimentSection(_Section):
    """``experiment``: where results go.

    Attributes:
        name: the experiment folder name under ``storage``.
        storage: a local or shared path (``~`` expanded), or a URI pyarrow understands
            (``s3://bucket/prefix``) for the Tune experiments.
        seed: the experiment seed; search and retrain derive theirs from it, and so does the
            supernet unless ``supernet.seed`` is set.
    """

    _name = "experiment"
    name: str = field(default="mnist1d", metadata=rule("str", form=_FOLDER_NAME))
    storage: str = field(default="./raynas_results", metadata=rule("str"))
    seed: int = field(default=0, metadata=rule("int", min=0))


@dataclass(frozen=True, kw_only=True)
class ModelSection(_Section):
    """``model``: the supernet factory ``MODULE:FACTORY`` and its keyword arguments."""

    _name = "model"
    factory: str = field(default="raynas.zoo.mnist1d:build_supernet", metadata=rule("str", form=IMPORT_PATH))
    kwargs: dict = field(default_factory=dict, metadata=rule("dict"))


@dataclass(frozen=True, kw_only=True)
class DataSection(_Section):
    """``data``: where the datasets come from and how they are read.

    Attributes:
        name: a built-in (``mnist1d``, ``digits``) or ``MODULE:FUNCTION`` returning
            ``{"train", "val", "test"}`` map-style datasets; called in each replica and trial.
        kwargs: keyword arguments for the function.
        workers: DataLoader worker processes per replica / trial (``None``: the CPUs Ray gives
            it minus one, at most 8; 0: read in the training process).
        prefetch_factor: batches each worker reads ahead.
    """

    _name = "data"
    name: str = field(default="mnist1d", metadata=rule("str", form=_DATA_NAME))
    kwargs: dict = field(default_factory=dict, metadata=rule("dict"))
    workers: int | None = field(default=None, metadata=rule("int", min=0, optional=True))
    prefetch_factor: int = field(default=2, metadata=rule("int", min=1))


@dataclass(frozen=True, kw_only=True)
class SearchSection(_Section):
    """``search``: the architecture search (a Ray Tune experiment scoring by weight sharing).

    Attributes:
        searcher: ``MODULE:NAME`` of a ``searchers.Tuner`` (NNI protocol) or a Tune ``Searcher``.
        searcher_kwargs: keyword arguments for it (a tuner's ``seed`` defaults to the experiment's).
        num_samples: architectures to score (0 skips the search: the exported architecture of
            a learnable mutator, or none, goes to retraining).
        max_concurrent: trials running at once.
        metric: ``val_loss`` or ``val_<name>`` of a metric ``metrics`` returns (default
            ``val_accuracy``); retraining reports and ranks by it too.
        mode: ``max`` or ``min``.
        bn_batches: training batches to recalibrate BatchNorm on per architecture.
        batch_size: evaluation batch size.
        max_params: reject architectures with more parameters, without spending a trial.
        max_flops: reject architectures with more FLOPs per sample, without spending a trial.
        cpus_per_trial: Ray CPUs per search trial.
        gpus_per_trial: Ray GPUs per search trial.
        loss: ``package.module:name`` of ``f(output, target) -> scalar tensor`` (``None``:
            cross-entropy).
        metrics: ``package.module:name`` of ``f(output, target) -> {name: number}`` (``None``:
            ``{"accuracy": ...}``).
    """

    _name = "search"
    searcher: str = field(default="searchers:RegularizedEvolutionTuner", metadata=rule("str", form=IMPORT_PATH))
    searcher_kwargs: dict = field(
        default_factory=lambda: {"population_size": 20, "sample_size": 5}, metadata=rule("dict")
    )
    num_samples: int = field(default=200, metadata=rule("int", min=0))
    max_concurrent: int = field(default=2, metadata=rule("int", min=1))
    metric: str = field(default="val_accuracy", metadata=rule("str", form=_METRIC))
    mode: str = field(default="max", metadata=rule("choice", valid=MODES))
    bn_batches: int = field(default=10, metadata=rule("int", min=0))
    batch_size: int = field(default=256, metadata=rule("int", min=1))
    max_params: int | None = field(default=None, metadata=rule("int", min=1, optional=True))
    max_flops: int | None = field(default=None, metadata=rule("int", min=1, optional=True))
    cpus_per_trial: float = field(default=1.0, metadata=rule("number", min=0.0))
    gpus_per_trial: float = field(default=0.0, metadata=rule("number", min=0.0))
    loss: str | None = field(default=None, metadata=rule("str", form=IMPORT_PATH, optional=True))
    metrics: str | None = field(default=None, metadata=rule("str", form=IMPORT_PATH, optional=True))


@dataclass(frozen=True, kw_only=True)
class RetrainSection(_Section):
    """``retrain``: the top-k architectures trained from scratch as Tune trials.

    Attributes:
        top_k: distinct architectures to retrain (best search scores first).
        select: ``top`` (the ``top_k`` best scores) or ``diverse`` (the best of each different
            combination of ops first, so not ``top_k`` skip-variants of one op sequence).
        epochs: training epochs per architecture.
        optimizer: ``adam`` or ``sgd``.
        lr: peak learning rate.
        momentum: SGD momentum (ignored by Adam).
        nesterov: SGD Nesterov momentum.
        weight_decay: L2 weight decay.
        lr_schedule: ``cosine`` (to 0 over all epochs, after the warm-up) or ``constant``.
        warmup_epochs: linear warm-up length in epochs (fractions allowed).
        grad_clip: clip the global gradient norm to this value (``None``: no clipping).
        precision: ``fp32``, ``bf16`` (autocast) or ``fp16`` (autocast and a grad scaler; CUDA).
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        batch_size: training batch size.
        scheduler: ``none`` or ``asha`` (early stopping on the search metric, per epoch).
        grace_period: ASHA's minimum epochs before a trial may be stopped.
        cpus_per_trial: Ray CPUs per retrain trial.
        gpus_per_trial: Ray GPUs per retrain trial.
        max_failures: retries of a failed trial (from its last checkpoint).
        loss: as ``search.loss``.
        metrics: as ``search.metrics`` (``search.metric`` must be among what they return).
    """

    _name = "retrain"
    top_k: int = field(default=5, metadata=rule("int", min=0))
    select: str = field(default="top", metadata=rule("choice", valid=RETRAIN_SELECTIONS))
    epochs: int = field(default=30, metadata=rule("int", min=1))
    optimizer: str = field(default="adam", metadata=rule("choice", valid=RETRAIN_OPTIMIZERS))
    lr: float = field(default=3e-3, metadata=rule("number", min=0.0, strict=True))
    momentum: float = field(default=0.9, metadata=rule("number", min=0.0, max=1.0, max_strict=True))
    nesterov: bool = field(default=False, metadata=rule("bool"))
    weight_decay: float = field(default=0.0, metadata=rule("number", min=0.0))
    lr_schedule: str = field(default="cosine", metadata=rule("choice", valid=LR_SCHEDULES))
    warmup_epochs: float = field(default=0.0, metadata=rule("number", min=0.0))
    grad_clip: float | None = field(default=None, metadata=rule("number", min=0.0, strict=True, optional=True))
    precision: str = field(default="fp32", metadata=rule("choice", valid=PRECISIONS))
    device: str = field(default="auto", metadata=rule("choice", valid=DEVICES))
    batch_size: int = field(default=128, metadata=rule("int", min=1))
    scheduler: str = field(default="none", metadata=rule("choice", valid=SCHEDULERS))
    grace_period: int = field(default=5, metadata=rule("int", min=1))
    cpus_per_trial: float = field(default=1.0, metadata=rule("number", min=0.0))
    gpus_per_trial: float = field(default=0.0, metadata=rule("number", min=0.0))
    max_failures: int = field(default=2, metadata=rule("int", min=0))
    loss: str | None = field(default=None, metadata=rule("str", form=IMPORT_PATH, optional=True))
    metrics: str | None = field(default=None, metadata=rule("str", form=IMPORT_PATH, optional=True))


_SECTIONS: dict[str, Any] = {
    "experiment": ExperimentSection,
    "model": ModelSection,
    "data": DataSection,
    "supernet": SupernetConfig,
    "search": SearchSection,
    "retrain": RetrainSection,
}


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    """The whole experiment: one frozen section per phase."""

    experiment: ExperimentSection = field(default_factory=ExperimentSection)
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    supernet: SupernetConfig = field(default_factory=SupernetConfig)
    search: SearchSection = field(default_factory=SearchSection)
    retrain: RetrainSection = field(default_factory=RetrainSection)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ExperimentConfig:
        """Build from ``{section: {key: value}}``; unknown sections and keys are errors."""
        data = {} if data is None else data
        if not isinstance(data, Mapping):
            raise ConfigError(f"a config must be a mapping of sections, got {type(data).__name__}")
        for section in data:
            if section not in _SECTIONS:
                raise ConfigError(f"unknown section {section!r} (valid: {', '.join(_SECTIONS)})")
        return cls(**{name: kind.from_dict(data.get(name)) for name, kind in _SECTIONS.items()})

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``{section: {key: value}}``: what ``config.yaml`` holds (``from_dict`` inverts it)."""
        return {name: getattr(self, name).to_dict() for name in _SECTIONS}

    @property
    def experiment_dir(self) -> str:
        """``<storage>/<name>`` (``~`` expanded for local paths)."""
        storage = self.experiment.storage
        if "://" not in storage:
            storage = os.path.abspath(os.path.expanduser(storage))
        return f"{storage.rstrip('/')}/{self.experiment.name}"


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=value"`` -> ``(["a", "b"], value)``, the value read as YAML (``3``, ``true``, ``[1]``).

    Raises:
        ConfigError: no ``=``, or an empty key part.
    """
    if "=" not in text:
        raise ConfigError(f"--set takes section.key=value, got {text!r}")
    path, raw = text.split("=", 1)
    parts = path.strip().split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"--set takes section.key=value, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def _apply_override(data: dict, parts: Sequence[str], value: Any, text: str) -> None:
    section, *rest = parts
    if section not in _SECTIONS:
        raise ConfigError(f"unknown section {section!r} in --set {text!r} (valid: {', '.join(_SECTIONS)})")
    node = data.setdefault(section, {})
    for i, part in enumerate(rest[:-1]):
        child = node.get(part)
        if child is None and i == 0:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {text!r}: {'.'.join(parts[: i + 2])} is not a mapping")
        node = child
    node[rest[-1]] = value


def _read_yaml(path: str | os.PathLike) -> dict:
    return read_yaml(
        path, what="config", expect_text="a mapping of sections", error=ConfigError, missing_error=ConfigError
    )


def load_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """The embedded defaults, then the YAML file (if any), then ``--set`` overrides.

    Args:
        path: a YAML config file, or ``None`` for the built-in experiment.
        overrides: ``section.key=value`` strings (nested keys of mappings allowed:
            ``model.kwargs.width=32``).

    Returns:
        The checked :class:`ExperimentConfig`.

    Raises:
        ConfigError: a missing or unparsable file, an unknown section or key, or a bad value.
    """
    user = {} if path is None else _read_yaml(path)
    data = _merge(ExperimentConfig().to_dict(), user)
    seed_given = isinstance(user.get("supernet"), Mapping) and "seed" in user["supernet"]
    for text in overrides:
        parts, value = parse_override(text)
        _apply_override(data, parts, value, text)
        seed_given = seed_given or parts[:2] == ["supernet", "seed"]
    if not seed_given and isinstance(data.get("supernet"), dict):
        data["supernet"]["seed"] = data["experiment"].get("seed")  # one seed drives every phase
    return ExperimentConfig.from_dict(data)


def _merge(base: dict, update: Mapping) -> dict:
    """Sections of ``update`` replace keys of ``base`` (kwargs mappings are replaced whole)."""
    out = {k: dict(v) for k, v in base.items()}
    for section, values in update.items():
        if section not in out:
            out[section] = values  # reported as unknown by from_dict
        elif values is None:
            continue
        elif not isinstance(values, Mapping):
            raise ConfigError(f"section {section!r} must be a mapping of settings, got {values!r}")
        else:
            out[section].update(values)
    return out


def build_config(
    config: str | os.PathLike | Mapping[str, Any] | ExperimentConfig | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ExperimentConfig:
    """An :class:`ExperimentConfig` from Python values (what :func:`raynas.create_experiment` takes).

    Args:
        config: ``None`` (the built-in experiment), a YAML file, a mapping of sections
            (``{"supernet": {"epochs": 5}}``; unset keys keep their defaults) or a config.
        overrides: settings applied on top, by dotted key (``{"supernet.epochs": 5}``) or as
            nested sections (``{"supernet": {"epochs": 5}}``).

    Returns:
        The checked config; ``supernet.seed`` follows ``experiment.seed`` unless set.

    Raises:
        ConfigError: an unknown section or key, or a bad value (the message names both).
    """
    from raynas.experiment.checks import callables_as_paths

    if isinstance(config, ExperimentConfig):
        user: dict = {}
        base = config.to_dict()
    else:
        user = _read_yaml(config) if isinstance(config, (str, os.PathLike)) else dict(config or {})
        user = {k: callables_as_paths(k, v) for k, v in user.items()}
        base = ExperimentConfig().to_dict()
    data = _merge(base, user)
    seed_given = isinstance(config, ExperimentConfig) or (
        isinstance(user.get("supernet"), Mapping) and "seed" in user["supernet"]
    )
    for key, value in dict(overrides or {}).items():
        value = callables_as_paths(key, value)
        if not isinstance(key, str) or not key:
            raise ConfigError(f"override keys are 'section.key' strings or section names, got {key!r}")
        if "." not in key:
            if not isinstance(value, Mapping):
                raise ConfigError(f"override {key!r} names a section, so its value must be a mapping, got {value!r}")
            data = _merge(data, {key: value})
            seed_given = seed_given or (key == "supernet" and "seed" in value)
            continue
        parts = key.split(".")
        _apply_override(data, parts, value, f"{key}={value!r}")
        seed_given = seed_given or parts[:2] == ["supernet", "seed"]
    if not seed_given and isinstance(data.get("supernet"), dict):
        data["supernet"]["seed"] = data["experiment"].get("seed")
    return ExperimentConfig.from_dict(data)
