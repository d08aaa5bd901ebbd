"""Stand-alone training of mnist1d architectures (the mnist1d protocol: Adam 3e-3, batch 128,
30 epochs, cosine), in parallel Ray tasks with one torch thread each."""

from __future__ import annotations

from collections.abc import Sequence


def _train_one(arch: dict, rank: int, seed: int, epochs: int) -> dict:
    import torch

    from raynas.retrain import RetrainSetup, train_fixed
    from raynas.zoo import mnist1d

    torch.set_num_threads(1)
    setup = RetrainSetup(
        model_factory=mnist1d.build_supernet,
        data_factory=mnist1d.load_data,
        archs=[arch],
        search_scores=[None],
        epochs=epochs,
        optimizer="adam",
        lr=3e-3,
        weight_decay=0.0,
        batch_size=128,
        seed=seed * 100_003 + rank,
    )
    last: dict = {}
    train_fixed(setup, 0, report=lambda metrics, _state: last.update(metrics))
    return {"val_accuracy": last["val_accuracy"], "test_accuracy": last["test_accuracy"], "params": last["params"]}


def standalone_accuracies(archs: Sequence[dict], *, seed: int = 0, epochs: int = 30) -> list[dict]:
    """Train every architecture alone from scratch; ``{"val_accuracy", "test_accuracy", "params"}`` each."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1)(_train_one)
        return ray.get([task.remote(dict(a), i, seed, epochs) for i, a in enumerate(archs)])
    finally:
        if started:
            ray.shutdown()
