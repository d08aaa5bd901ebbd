"""Helpers of the replica tests: every replica's whole state at each epoch's end."""

from __future__ import annotations

import torch

from raynas.train import Callback


class EpochEndStates(Callback):
    """Every replica's whole model state (parameters and buffers) at each epoch's end, after the
    BatchNorm statistics were averaged (``bn_sync_buffers``)."""

    def __init__(self):
        self.states: list[list[dict]] = []

    def on_epoch_end(self, run, metrics):
        import ray

        self.states.append([s["model"] for s in ray.get([a.state.remote(True) for a in run.replicas])])


def disagreeing(states: list[dict], *, integers: bool = True) -> list[str]:
    """The state entries on which the replicas differ (integer buffers such as
    ``num_batches_tracked`` only when ``integers``)."""
    first, *others = states
    return sorted(
        k
        for k, v in first.items()
        if (v.is_floating_point() or integers) and any(not torch.equal(v, o[k]) for o in others)
    )
