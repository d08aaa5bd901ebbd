"""``SupernetConfig``: every setting of supernet training, as one frozen dataclass.

The field names are plain so that a YAML ``supernet:`` section maps onto them one to one
(:meth:`SupernetConfig.from_dict`). Every field carries its rule (:mod:`raynas._rules`), checked
when the config is built; a bad value raises :class:`ConfigError` (a ``ValueError``) naming the
key, the value and the valid options.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from raynas._rules import IMPORT_PATH, check_fields, check_keys, rule
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
LEARNABLE_ALGORITHMS = ("darts", "enas", "proxylessnas")
#: supernet epochs per algorithm when ``supernet.epochs`` is null
DEFAULT_EPOCHS = {"random": 100, "fair": 100, "spos": 100, "darts": 20, "enas": 100, "proxylessnas": 120}
DARTS_ORDERS = (1, 2)
PRECISIONS = ("fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
SPOS_CONSTRAINTS = ("params", "flops", "both")
ALLREDUCES = ("auto", "shm", "backend")


def _is_flops_spec(value: str) -> bool:
    """A method name (``get_candidate_flops``) or ``package.module:function``."""
    if value.count(":") == 0:
        return value.isidentifier()
    if value.count(":") != 1:
        return False
    module, name = value.split(":")
    return name.isidentifier() and all(part.isidentifier() for part in module.split("."))


_FLOPS_SPEC = (_is_flops_spec, "a method name of the model (e.g. get_candidate_flops) or 'package.module:function'")
#: how messages name the settings (``supernet.lr``) and the section (``section 'supernet'``)
SECTION = "section 'supernet'"


@dataclass(frozen=True, kw_only=True)
class SupernetConfig:
    """Settings of one supernet training run.

    Attributes:
        replicas: number of replicas (Ray actors) training data-parallel; local mode uses 1.
        epochs: passes over the training split (over its weight half for a learnable algorithm);
            ``None``: the algorithm's default, ``DEFAULT_EPOCHS`` (100; ``proxylessnas``: 120, NNI's
            ``n_epochs``; ``darts``: 20, because
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
            LSTM controller trained by REINFORCE) or ``proxylessnas`` (NNI's ProxylessNAS binary
            gates: one sampled op per step, architecture weights trained by Adam in ``full_v2``
            mode). The last three (learnable) split the training data
            into two seeded halves: the weights train on one, the architecture on the other;
            each step is an architecture step then a weight step.
        arch_lr: Adam learning rate of the architecture parameters (``darts``, ``proxylessnas``) or of the
            controller (``enas``).
        arch_weight_decay: their L2 weight decay.
        arch_warmup_epochs: epochs of weight steps only before architecture steps start
            (``darts``, ``enas``, ``proxylessnas``; fractions allowed).
        darts_order: 1 (first-order DARTS) or 2 (unrolled, second order).
        enas_entropy_weight: weight of the sample's entropy added to the ENAS reward.
        enas_baseline_decay: decay of ENAS' moving-average reward baseline.
        enas_lstm_size: hidden size of the ENAS controller's LSTM.
        enas_tanh_constant: ENAS logits are ``c * tanh(logits)`` (bounds the policy's confidence).
        proxylessnas_arch_every: ``proxylessnas`` takes an architecture step every this many
            steps (NNI's ``grad_update_arch_param_every``).
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

    replicas: int = field(default=2, metadata=rule("int", min=1))
    epochs: int | None = field(default=None, metadata=rule("int", min=0, optional=True))
    batch_size: int = field(default=64, metadata=rule("int", min=1))
    optimizer: str = field(default="adam", metadata=rule("choice", valid=OPTIMIZERS))
    lr: float = field(default=0.01, metadata=rule("number", min=0.0, strict=True))
    momentum: float = field(default=0.9, metadata=rule("number", min=0.0, max=1.0, max_strict=True))
    nesterov: bool = field(default=False, metadata=rule("bool"))
    weight_decay: float = field(default=0.0, metadata=rule("number", min=0.0))
    lr_schedule: str = field(default="cosine", metadata=rule("choice", valid=LR_SCHEDULES))
    warmup_epochs: float = field(default=0.0, metadata=rule("number", min=0.0))
    grad_clip: float | None = field(default=5.0, metadata=rule("number", min=0.0, strict=True, optional=True))
    sampling: str = field(default="shared", metadata=rule("choice", valid=SAMPLINGS))
    algorithm: str = field(default="random", metadata=rule("choice", valid=_ALGORITHM_REGISTRY))  # read live
    arch_lr: float = field(default=3e-3, metadata=rule("number", min=0.0, strict=True))
    arch_weight_decay: float = field(default=1e-3, metadata=rule("number", min=0.0))
    arch_warmup_epochs: float = field(default=0.0, metadata=rule("number", min=0.0))
    darts_order: int = field(default=1, metadata=rule("choice", valid=DARTS_ORDERS))
    enas_entropy_weight: float = field(default=1e-4, metadata=rule("number", min=0.0))
    enas_baseline_decay: float = field(default=0.95, metadata=rule("number", min=0.0, max=1.0))
    enas_lstm_size: int = field(default=64, metadata=rule("int", min=1))
    enas_tanh_constant: float = field(default=1.5, metadata=rule("number", min=0.0, strict=True))
    proxylessnas_arch_every: int = field(default=5, metadata=rule("int", min=1))
    spos_bins: int = field(default=4, metadata=rule("int", min=1))
    spos_constraint: str = field(default="params", metadata=rule("choice", valid=SPOS_CONSTRAINTS))
    spos_lower: float = field(default=0.0, metadata=rule("number", min=0.0))
    spos_upper: float = field(default=1.0, metadata=rule("number", min=0.0))
    spos_max_tries: int = field(default=100, metadata=rule("int", min=1))
    flops_func: str | None = field(default=None, metadata=rule("str", form=_FLOPS_SPEC, optional=True))
    flops_lb: float | None = field(default=None, metadata=rule("number", optional=True))
    flops_ub: float | None = field(default=None, metadata=rule("number", optional=True))
    flops_bin_num: int = field(default=7, metadata=rule("int", min=1))
    flops_sample_timeout: int = field(default=500, metadata=rule("int", min=1))
    precision: str = field(default="fp32", metadata=rule("choice", valid=PRECISIONS))
    seed: int = field(default=0, metadata=rule("int", min=0))
    threads: int = field(default=1, metadata=rule("int", min=1))
    device: str = field(default="auto", metadata=rule("choice", valid=DEVICES))
    cpus_per_replica: float = field(default=1.0, metadata=rule("number", min=0.0))
    bn_sync_buffers: bool = field(default=True, metadata=rule("bool"))
    max_failures: int = field(default=3, metadata=rule("int", min=0))
    log_every: int = field(default=20, metadata=rule("int", min=1))
    checkpoint_every: int = field(default=1, metadata=rule("int", min=1))
    keep_checkpoints: int = field(default=2, metadata=rule("int", min=0))
    progress: bool = field(default=True, metadata=rule("bool"))
    tensorboard: bool = field(default=True, metadata=rule("bool"))
    dist_timeout_s: float = field(default=120.0, metadata=rule("number", min=0.0, strict=True))
    distill: float = field(default=0.0, metadata=rule("number", min=0.0, max=1.0))
    allreduce: str = field(default="auto", metadata=rule("choice", valid=ALLREDUCES))
    loss: str | None = field(default=None, metadata=rule("str", form=IMPORT_PATH, optional=True))
    metrics: str | None = field(default=None, metadata=rule("str", form=IMPORT_PATH, optional=True))

    def __post_init__(self) -> None:
        check_fields(self, "supernet")  # each field's rule, then the rules between fields
        if not self.spos_lower < self.spos_upper <= 1.0:
            raise ConfigError(
                "supernet.spos_lower < supernet.spos_upper <= 1.0 must hold, got "
                f"spos_lower={self.spos_lower!r}, spos_upper={self.spos_upper!r}"
            )
        self._check_flops()
        if self.distill > 0 and self.algorithm in LEARNABLE_ALGORITHMS:
            raise ConfigError(
                f"supernet.distill works with sampled paths (random, fair, spos), not with "
                f"supernet.algorithm={self.algorithm!r}; got distill={self.distill!r}"
            )

    @property
    def total_epochs(self) -> int:
        """``epochs``, or the algorithm's default (``DEFAULT_EPOCHS``) when it is ``None``."""
        return DEFAULT_EPOCHS[self.algorithm] if self.epochs is None else self.epochs

    # -- rules between fields --------------------------------------------------------------

    def _check_flops(self) -> None:
        """``flops_func`` needs ``spos`` and both bounds, ``flops_lb < flops_ub``; bounds need it."""
        if self.flops_func is None:
            for name in ("flops_lb", "flops_ub"):
                if getattr(self, name) is not None:
                    raise ConfigError(
                        f"supernet.{name} bounds the FLOPs of supernet.flops_func, which is not set; "
                        f"got {name}={getattr(self, name)!r}"
                    )
            return
        if self.algorithm != "spos":
            raise ConfigError(
                f"supernet.flops_func works with supernet.algorithm 'spos', got algorithm={self.algorithm!r} "
                f"with flops_func={self.flops_func!r}"
            )
        for name in ("flops_lb", "flops_ub"):
            if getattr(self, name) is None:
                raise ConfigError(f"supernet.{name} must be a number when supernet.flops_func is set, got None")
        if not self.flops_lb < self.flops_ub:
            raise ConfigError(
                "supernet.flops_lb < supernet.flops_ub must hold, got "
                f"flops_lb={self.flops_lb!r}, flops_ub={self.flops_ub!r}"
            )

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
        return cls(**dict(check_keys(data, cls.field_names(), SECTION)))

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (JSON-able; the inverse of :meth:`from_dict`)."""
        return {name: getattr(self, name) for name in self.field_names()}

    def replace(self, **changes: Any) -> SupernetConfig:
        """A copy with some settings changed (checked like a fresh config)."""
        check_keys(changes, self.field_names(), SECTION)
        return dataclasses.replace(self, **changes)
