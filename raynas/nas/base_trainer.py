"""NNI's ``nni.nas.pytorch.base_trainer``: the four methods every one-shot trainer has."""

from __future__ import annotations

import abc
from typing import Any

__all__ = ["BaseTrainer"]


class BaseTrainer(abc.ABC):
    """The contract of a one-shot NAS trainer (NNI v1.9's ``BaseTrainer``).

    :class:`raynas.nas.trainer.Trainer` implements it for the epoch-based trainers (DARTS, ENAS,
    SPOS); :class:`raynas.nas.proxylessnas.ProxylessNasTrainer` implements it directly, as in NNI.
    """

    @abc.abstractmethod
    def train(self) -> Any:
        """Train (the supernet and, for a learnable mutator, the architecture)."""

    @abc.abstractmethod
    def validate(self) -> Any:
        """Validate once."""

    @abc.abstractmethod
    def export(self, file: str) -> None:
        """Write the chosen architecture to ``file`` (JSON).

        Args:
            file: the path to write.
        """

    @abc.abstractmethod
    def checkpoint(self) -> Any:
        """Dump (and return) a checkpoint of the trainer."""
