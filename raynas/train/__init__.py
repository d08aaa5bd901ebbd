"""Supernet training on Ray: replicas under ``mutator.reset()`` sampling, kept in step by
gradient all-reduce; SPOS constrained sampling; learnable mutators (DARTS, ENAS) whose
architecture parameters are all-reduced too; atomic checkpoints, resume and recovery;
TensorBoard and a progress line; local mode; weight-sharing evaluation.

Entry points: :func:`train_supernet` and :func:`evaluate_architecture` (or, to score many
architectures on one set of weights, :class:`WeightSharingEvaluator`).
"""

from raynas.nas.costs import PathCosts, profile_costs
from raynas.nas.fair import FairMutator
from raynas.nas.spos import SposMutator
from raynas.train.callbacks import ArchitectureCheckpoint, Callback, EpochMetrics, MetricsHistory, Progress, RunInfo
from raynas.train.checkpoint import (
    CheckpointError,
    final_architecture,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from raynas.train.config import ConfigError, SupernetConfig
from raynas.train.data import DataSpec
from raynas.train.evaluate import (
    WeightSharingEvaluator,
    evaluate_architecture,
    load_supernet_weights,
    recalibrate_batchnorm,
)
from raynas.train.logging import ProgressLine, TensorBoardLogger
from raynas.train.replica import SupernetReplica
from raynas.train.replicas import LocalReplicas, RayReplicas, ReplicaFailure
from raynas.train.reports import parameter_digest
from raynas.train.sampling import build_mutator
from raynas.train.step import lr_at
from raynas.train.trainer import CheckpointExistsError, SupernetResult, train_supernet

__all__ = [
    "ArchitectureCheckpoint",
    "Callback",
    "CheckpointError",
    "CheckpointExistsError",
    "ConfigError",
    "DataSpec",
    "EpochMetrics",
    "FairMutator",
    "LocalReplicas",
    "MetricsHistory",
    "PathCosts",
    "Progress",
    "ProgressLine",
    "RayReplicas",
    "ReplicaFailure",
    "RunInfo",
    "SposMutator",
    "SupernetConfig",
    "SupernetReplica",
    "SupernetResult",
    "TensorBoardLogger",
    "WeightSharingEvaluator",
    "build_mutator",
    "evaluate_architecture",
    "final_architecture",
    "latest_checkpoint",
    "load_checkpoint",
    "load_supernet_weights",
    "lr_at",
    "parameter_digest",
    "profile_costs",
    "recalibrate_batchnorm",
    "save_checkpoint",
    "train_supernet",
]
