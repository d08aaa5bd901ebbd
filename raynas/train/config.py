"""``SupernetConfig``: every setting of supernet training, as one frozen dataclass.

The field names are plain so that a YAML ``supernet:`` section maps onto them one to one
(:meth:`SupernetConfig.from_dict`). Every field is checked when the config is built; a bad value
raises :class:`ConfigError` (a ``ValueError``) naming the key, the value and the valid options.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raynas.nas.algorithms import ALGORITHMS as _ALGORITHM_REGISTRY
from searchers.errors import ConfigError  # one class for every raynas config error

__all__ = [
    "ConfigError",
    "SupernetConfig",
    "OPTIMIZERS",
    "LR_SCHEDULES",
    "SAMPLINGS",
    "ALGORITHMS",
    "DARTS_ORDERS",
    "PRECISIONS",
    "DEVICES",
    "SPOS_CONSTRAINTS",
    "LEARNABLE_ALGORITHMS",
    "DEFAULT_EPOCHS",
    "ALLREDUCES",
]

OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("cosine", "constant")
SAMPLINGS = ("shared", "independent")
#: the names of :data:`raynas.nas.algorithms.ALGORITHMS` (its registry of builders)
ALGORITHMS = tuple(_ALGORITHM_REGISTRY)
LEARNABLE_ALGORITHMS = ("darts", "enas")
#: supernet epochs per algorithm when ``supernet.epochs`` is null
DEFAULT_EPOCHS = {"random": 100, "fair": 100, "spos": 100, "darts": 20, "enas": 100}
DARTS_ORDERS = (1, 2)
PRECISIONS = ("fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
SPOS_CONSTRAINTS = ("params", "flops", "both")
ALLREDUCES = ("auto", "shm", "backend")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_import_path(value: Any) -> bool:
    """Whether ``value`` is written ``package.module:name`` (``name`` may be dotted)."""
    if not isinstance(value, str) or value.count(":") != 1:
        return False
    module, name = value.split(":")
    return all(p.isidentifier() for p in module.split(".")) and all(p.isidentifier() for p in name.split("."))


def _is_flops_spec(value: str) -> bool:
    """A method name (``get_candidate_flops``) or ``package.module:function``."""
    if value.count(":") == 0:
        return value.isidentifier()
    if value.count(":") != 1:
        return False
    module, name = value.split(":")
    return name.isidentifier() and all(part.isidentifier() for part in module.split("."))


@dataclass(frozen=True, kw_only=True)
class SupernetConfig:
    """Settings of one supernet training run.

    Attributes:
        replicas: number of replicas (Ray actors) training data-parallel; local mode uses 1.
        epochs: passes over the training split (over its weight half for ``darts``/``enas``);
            ``None``: the algorithm's default, ``DEFAULT_EPOCHS`` (100; ``darts``: 20, because
            DARTS' architecture weights drift toward parameter-free operations when the weights
            train on for long; see :attr:`total_epochs`).
        batch_size: samples per step *per replica* (the global batch is ``replicas * batch_size``).
        optimizer: ``sgd`` or ``adam``.
        lr: peak learning rate.
        momentum: SGD momentum (ignored by Adam).
        nesterov: SGD Nesterov momentum.
        weight_decay: L2 weight decay.
        lr_schedule: ``cosine`` (to 0 over all epochs, after the warm-up) or ``constant``.
        warmup_epochs: linear warm-up length in epochs (fractions allowed).
        grad_clip: clip the global gradient norm to this value (``None``: no clipping).
        sampling: ``shared`` (every replica trains the same path each step) or ``independent``
            (each replica its own path); both deterministic given ``seed``.
        algorithm: how paths are decided. ``random`` (``RandomMutator``, one uniform path per
            step), ``fair`` (FairNAS strict fairness: each step accumulates the gradients of as
            many paths as the largest LayerChoice has candidates, every candidate once), ``spos``
            (uniform paths constrained to cost bins; NNI's ``SPOSSupernetTrainingMutator`` with
            ``flops_func``), ``darts`` (``DartsMutator``: softmax-weighted candidates,
            architecture parameters trained by Adam) or ``enas`` (``EnasMutator``: an
            LSTM controller trained by REINFORCE). ``darts`` and ``enas`` split the training data
            into two seeded halves: the weights train on one, the architecture on the other;
            each step is an architecture step then a weight step.
        arch_lr: Adam learning rate of the architecture parameters (``darts``) or of the
            controller (``enas``).
        arch_weight_decay: their L2 weight decay.
        arch_warmup_epochs: epochs of weight steps only before architecture steps start
            (``darts``, ``enas``; fractions allowed).
        darts_order: 1 (first-order DARTS) or 2 (unrolled, second order).
        enas_entropy_weight: weight of the sample's entropy added to the ENAS reward.
        enas_baseline_decay: decay of ENAS' moving-average reward baseline.
        enas_lstm_size: hidden size of the ENAS controller's LSTM.
        enas_tanh_constant: ENAS logits are ``c * tanh(logits)`` (bounds the policy's confidence).
        spos_bins: number of cost bins between the lower and the upper bound.
        spos_constraint: ``params``, ``flops`` or ``both``: which path cost the bins constrain.
        spos_lower: lower bound of the bins as a fraction of the way from the cheapest to the
            most expensive path (0.0 = cheapest).
        spos_upper: upper bound, same scale (1.0 = most expensive path).
        spos_max_tries: uniform draws tried per step to hit the chosen bin before the fallback
            (the draw closest to the bin) is taken.
        flops_func: ``spos`` under the user's FLOPs function, with NNI's
            ``SPOSSupernetTrainingMutator`` (:mod:`raynas.nas.spos`) instead of the profiled costs
            and the ``spos_*`` settings: the name of a method of the model (``get_candidate_flops``,
            as in NNI's ``flops_func=model.get_candidate_flops``) or ``package.module:function``,
            called as ``f(candidate) -> number`` with ``{key: bool mask}``. ``None``: profiled costs.
        flops_lb: lower bound of the FLOPs bins (with ``flops_func``, in its units).
        flops_ub: upper bound of the FLOPs bins (with ``flops_func``; above ``flops_lb``).
        flops_bin_num: number of equal-width FLOPs bins between the bounds (NNI's default 7).
        flops_sample_timeout: random paths tried per step before the fallback to a plain random
            path, with a logged warning (NNI's default 500).
        precision: ``fp32``, ``bf16`` (autocast, CPU or CUDA) or ``fp16`` (autocast and a grad
            scaler; CUDA only).
        seed: the experiment seed (weights, data order, paths).
        threads: torch threads per replica (``torch.set_num_threads``).
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        cpus_per_replica: Ray CPUs reserved per replica actor.
        bn_sync_buffers: average BatchNorm running statistics across replicas at each epoch end.
        max_failures: restarts from the last checkpoint allowed after replica failures.
        log_every: steps between progress reports (a replica runs this many steps per call).
        checkpoint_every: epochs between checkpoints (the last epoch is always saved).
        keep_checkpoints: per-epoch checkpoint files kept (``last.pt`` is always kept).
        progress: show a progress line on the terminal.
        tensorboard: write TensorBoard event files under ``<out_dir>/tensorboard``.
        dist_timeout_s: timeout of the collective operations (a hung peer fails after it).
        distill: in-place distillation with the sandwich rule (BigNAS): when > 0, each step
            first trains the largest path (every LayerChoice's candidate with the most
            parameters, every InputChoice's inputs all taken) on the plain loss, then the sampled
            path on ``(1 - distill) * loss + distill * KL(largest path's softened outputs)``; the
            model's outputs must be classification logits. Costs about one more forward and
            backward per step. ``random``, ``fair`` and ``spos`` only.
        allreduce: how replicas average gradients. ``backend``: the process group's all-reduce
            (gloo on the CPU, nccl on CUDA). ``shm``: replicas on the same node meet in shared
            memory (the nodes' first replicas combine over gloo); CPU training on x86-64 only.
            ``auto``: ``shm`` where it applies and some node hosts two or more replicas, else
            ``backend``.
        loss: the loss, ``package.module:name`` of ``f(output, target) -> scalar tensor`` (or a
            class built without arguments, ``torch.nn:CrossEntropyLoss``); it receives the model's
            output as it is. ``None``: cross-entropy (on the first element of a tuple output).
        metrics: ``package.module:name`` of ``f(output, target) -> {name: number}``, averaged
            per epoch into the supernet's metrics. ``None``: only the accuracy.
    """

    replicas: int = 2
    epochs: int | None = None
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"
    warmup_epochs: float = 0.0
    grad_clip: float | None = 5.0
    sampling: str = "shared"
    algorithm: str = "random"
    arch_lr: float = 3e-3
    arch_weight_decay: float = 1e-3
    arch_warmup_epochs: float = 0.0
    darts_order: int = 1
    enas_entropy_weight: float = 1e-4
    enas_baseline_decay: float = 0.95
    enas_lstm_size: int = 64
    enas_tanh_constant: float = 1.5
    spos_bins: int = 4
    spos_constraint: str = "params"
    spos_lower: float = 0.0
    spos_upper: float = 1.0
    spos_max_tries: int = 100
    flops_func: str | None = None
    flops_lb: float | None = None
    flops_ub: float | None = None
    flops_bin_num: int = 7
    flops_sample_timeout: int = 500
    precision: str = "fp32"
    seed: int = 0
    threads: int = 1
    device: str = "auto"
    cpus_per_replica: float = 1.0
    bn_sync_buffers: bool = True
    max_failures: int = 3
    log_every: int = 20
    checkpoint_every: int = 1
    keep_checkpoints: int = 2
    progress: bool = True
    tensorboard: bool = True
    dist_timeout_s: float = 120.0
    distill: float = 0.0
    allreduce: str = "auto"
    loss: str | None = None
    metrics: str | None = None

    def __post_init__(self) -> None:
        self._check_int("replicas", minimum=1)
        if self.epochs is not None:
            self._check_int("epochs", minimum=0)
        self._check_int("batch_size", minimum=1)
        self._check_choice("optimizer", OPTIMIZERS)
        self._check_number("lr", minimum=0.0, strict=True)
        self._check_number("momentum", minimum=0.0)
        if self.momentum >= 1.0:
            raise ConfigError(f"supernet.momentum must be in [0, 1), got {self.momentum!r}")
        self._check_bool("nesterov")
        self._check_number("weight_decay", minimum=0.0)
        self._check_choice("lr_schedule", LR_SCHEDULES)
        self._check_number("warmup_epochs", minimum=0.0)
        if self.grad_clip is not None:
            self._check_number("grad_clip", minimum=0.0, strict=True)
        self._check_choice("sampling", SAMPLINGS)
        self._check_choice("algorithm", tuple(_ALGORITHM_REGISTRY))  # the registry, read live
        self._check_number("arch_lr", minimum=0.0, strict=True)
        self._check_number("arch_weight_decay", minimum=0.0)
        self._check_number("arch_warmup_epochs", minimum=0.0)
        if not _is_int(self.darts_order) or self.darts_order not in DARTS_ORDERS:
            raise ConfigError(f"supernet.darts_order must be one of 1, 2, got {self.darts_order!r}")
        self._check_number("enas_entropy_weight", minimum=0.0)
        self._check_number("enas_baseline_decay", minimum=0.0)
        if self.enas_baseline_decay > 1.0:
            raise ConfigError(f"supernet.enas_baseline_decay must be <= 1.0, got {self.enas_baseline_decay!r}")
        self._check_int("enas_lstm_size", minimum=1)
        self._check_number("enas_tanh_constant", minimum=0.0, strict=True)
        self._check_int("spos_bins", minimum=1)
        self._check_choice("spos_constraint", SPOS_CONSTRAINTS)
        self._check_number("spos_lower", minimum=0.0)
        self._check_number("spos_upper", minimum=0.0)
        if not self.spos_lower < self.spos_upper <= 1.0:
            raise ConfigError(
                "supernet.spos_lower < supernet.spos_upper <= 1.0 must hold, got "
                f"spos_lower={self.spos_lower!r}, spos_upper={self.spos_upper!r}"
            )
        self._check_int("spos_max_tries", minimum=1)
        self._check_flops()
        self._check_choice("precision", PRECISIONS)
        self._check_int("seed", minimum=0)
        self._check_int("threads", minimum=1)
        self._check_choice("device", DEVICES)
        self._check_number("cpus_per_replica", minimum=0.0)
        self._check_bool("bn_sync_buffers")
        self._check_int("max_failures", minimum=0)
        self._check_int("log_every", minimum=1)
        self._check_int("checkpoint_every", minimum=1)
        self._check_int("keep_checkpoints", minimum=0)
        self._check_bool("progress")
        self._check_bool("tensorboard")
        self._check_number("dist_timeout_s", minimum=0.0, strict=True)
        self._check_number("distill", minimum=0.0)
        if self.distill > 1.0:
            raise ConfigError(f"supernet.distill must be between 0 and 1, got {self.distill!r}")
        if self.distill > 0 and self.algorithm in LEARNABLE_ALGORITHMS:
            raise ConfigError(
                f"supernet.distill works with sampled paths (random, fair, spos), not with "
                f"supernet.algorithm={self.algorithm!r}; got distill={self.distill!r}"
            )
        self._check_choice("allreduce", ALLREDUCES)
        for name in ("loss", "metrics"):
            value = getattr(self, name)
            if value is not None and not is_import_path(value):
                raise ConfigError(f"supernet.{name} must be written 'package.module:name', got {value!r}")

    @property
    def total_epochs(self) -> int:
        """``epochs``, or the algorithm's default (``DEFAULT_EPOCHS``) when it is ``None``."""
        return DEFAULT_EPOCHS[self.algorithm] if self.epochs is None else self.epochs

    # -- checks ---------------------------------------------------------------------------

    def _check_flops(self) -> None:
        self._check_int("flops_bin_num", minimum=1)
        self._check_int("flops_sample_timeout", minimum=1)
        func = self.flops_func
        if func is None:
            for name in ("flops_lb", "flops_ub"):
                if getattr(self, name) is not None:
                    raise ConfigError(
                        f"supernet.{name} bounds the FLOPs of supernet.flops_func, which is not set; "
                        f"got {name}={getattr(self, name)!r}"
                    )
            return
        if not isinstance(func, str) or not _is_flops_spec(func):
            raise ConfigError(
                "supernet.flops_func must be a method name of the model (e.g. get_candidate_flops) or "
                f"'package.module:function', got {func!r}"
            )
        if self.algorithm != "spos":
            raise ConfigError(
                f"supernet.flops_func works with supernet.algorithm 'spos', got algorithm={self.algorithm!r} "
                f"with flops_func={func!r}"
            )
        for name in ("flops_lb", "flops_ub"):
            value = getattr(self, name)
            if value is None:
                raise ConfigError(f"supernet.{name} must be a number when supernet.flops_func is set, got None")
            if not _is_number(value) or not math.isfinite(value):
                raise ConfigError(f"supernet.{name} must be a finite number, got {value!r}")
        if not self.flops_lb < self.flops_ub:
            raise ConfigError(
                "supernet.flops_lb < supernet.flops_ub must hold, got "
                f"flops_lb={self.flops_lb!r}, flops_ub={self.flops_ub!r}"
            )

    def _check_int(self, name: str, *, minimum: int) -> None:
        value = getattr(self, name)
        if not _is_int(value):
            raise ConfigError(f"supernet.{name} must be an integer, got {value!r}")
        if value < minimum:
            raise ConfigError(f"supernet.{name} must be >= {minimum}, got {value!r}")

    def _check_number(self, name: str, *, minimum: float, strict: bool = False) -> None:
        value = getattr(self, name)
        if not _is_number(value):
            raise ConfigError(f"supernet.{name} must be a number, got {value!r}")
        if value < minimum or (strict and value == minimum):
            rule = ">" if strict else ">="
            raise ConfigError(f"supernet.{name} must be {rule} {minimum}, got {value!r}")

    def _check_bool(self, name: str) -> None:
        value = getattr(self, name)
        if not isinstance(value, bool):
            raise ConfigError(f"supernet.{name} must be true or false, got {value!r}")

    def _check_choice(self, name: str, valid: tuple[str, ...]) -> None:
        value = getattr(self, name)
        if value not in valid:
            raise ConfigError(f"supernet.{name} must be one of {', '.join(valid)}, got {value!r}")

    # -- conversions ----------------------------------------------------------------------

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The public field names (what a YAML ``supernet:`` section may hold)."""
        return tuple(f.name for f in dataclasses.fields(cls) if not f.name.startswith("_"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SupernetConfig:
        """Build a config from a mapping (e.g. a YAML ``supernet:`` section).

        Raises:
            ConfigError: an unknown key (the valid ones are listed) or a bad value.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError(f"the supernet section must be a mapping of settings, got {type(data).__name__}")
        valid = cls.field_names()
        for key in data:
            if key not in valid:
                raise ConfigError(f"unknown supernet setting {key!r} (valid: {', '.join(valid)})")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (JSON-able; the inverse of :meth:`from_dict`)."""
        return {name: getattr(self, name) for name in self.field_names()}

    def replace(self, **changes: Any) -> SupernetConfig:
        """A copy with some settings changed (checked like a fresh config)."""
        valid = self.field_names()
        for key in changes:
            if key not in valid:
                raise ConfigError(f"unknown supernet setting {key!r} (valid: {', '.join(valid)})")
        return dataclasses.replace(self, **changes)
