"""Compatibility: the batch helpers now live in :mod:`raynas.train.data` (import them from there)."""

from raynas.train.data import batch_size, first_examples, snapshot, to_device

__all__ = ["to_device", "batch_size", "first_examples", "snapshot"]
