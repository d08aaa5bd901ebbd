"""Any map-style Dataset through DataLoaders: seeded shards, per-batch seeded transforms (the same
batches with any number of workers, on resume and on every replica), the TensorDataset fast path,
tuple and dict inputs, NNI's DARTS split, custom losses and metrics from Python."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from raynas.retrain import RetrainSetup, train_fixed
from raynas.train import WeightSharingEvaluator, train_supernet
from raynas.train.data import DataSpec, ReplicaData
from raynas.train.loader import Loader, OrderSampler, ShardSampler
from tests.datasets import aux_loss, aux_supernet, load_files, top_metrics, write_files
from tests.train.conftest import FACTORY, small_config

ARCH = {"op0": "conv3", "op1": "conv5", "op2": "identity", "op3": "conv3", "skip1": [], "skip2": ["stem"], "skip3": []}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> str:
    return str(write_files(tmp_path_factory.mktemp("files")))


def _spec(files: str, source: str = "tests.datasets:load_files", **kwargs) -> DataSpec:
    workers = kwargs.pop("workers", 0)
    return DataSpec(source=source, kwargs={"root": files, **kwargs}, workers=workers)


def _train(tmp_path, name: str, data, **changes):
    config = small_config(**{"replicas": 1, "epochs": 2, "log_every": 4, **changes})
    return train_supernet(FACTORY, data, config, out_dir=tmp_path / name, local=True, trace=True)


def _digests(result) -> list[str]:
    return [entry["digest"] for entry in result.trace[0]]


def test_shards_follow_distributed_sampler_semantics():
    n, world, batch = 103, 3, 5
    samplers = [ShardSampler(n, batch_size=batch, seed=[7, 1], rank=r, world_size=world) for r in range(world)]
    assert {s.steps for s in samplers} == {(n // world) // batch}
    for epoch in (0, 1):
        shards = [s.shard(epoch) for s in samplers]
        joined = np.concatenate(shards)
        assert len(set(joined.tolist())) == len(joined) == world * (n // world)  # disjoint, equal, one permutation
        perm = np.random.default_rng([7, 1, epoch]).permutation(n)
        assert joined.tolist() == perm[: len(joined)].tolist()
        for s in samplers:
            s.set_epoch(epoch)
            full = list(s)
            s.set_epoch(epoch, start=2)
            assert [list(b) for b in s] == [list(b) for b in full[2:]]  # a resumed epoch reads the rest
            assert len({b.seed for b in full}) == len(full)
    assert samplers[0].shard(0).tolist() != samplers[0].shard(1).tolist()


def test_default_workers_are_the_cpus_given_but_the_training_one_at_most_8(monkeypatch):
    """Outside a Ray actor (no CPUs assigned) the process's CPU affinity counts."""
    import os

    from raynas.train.loader import default_workers

    for cpus, workers in ((1, 0), (2, 1), (4, 3), (9, 8), (64, 8)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda _pid, n=cpus: set(range(n)), raising=False)
        assert default_workers() == workers, cpus


def test_nni_darts_split_trains_weights_on_the_first_half(files):
    train = load_files(files)["train"]
    data = ReplicaData(
        train,
        small_config(batch_size=16),
        spec=_spec(files),
        device=torch.device("cpu"),
        rank=1,
        world_size=2,
        learnable=True,
    )
    half = len(train) // 2
    assert data.steps_per_epoch == (half // 2) // 16
    assert set(data.shard(0).tolist()) <= set(range(half))
    assert set(data.arch_sampler.shard(0).tolist()) <= set(range(half, len(train)))
    (x, y), (xa, ya) = data.next(0, 0)
    assert x.shape == xa.shape == (16, 1, 40)


def test_file_dataset_through_loaders_trains_like_its_tensors(files, tmp_path):
    """The DataLoader path (0 or 2 workers) and the TensorDataset fast path read the same batches."""
    fast = _train(tmp_path, "fast", DataSpec(source="tests.datasets:load_tensors", kwargs={"root": files}))
    plain = _train(tmp_path, "w0", _spec(files, augment=False))
    workers = _train(tmp_path, "w2", _spec(files, augment=False, workers=2))
    assert _digests(fast) == _digests(plain) == _digests(workers)
    assert len(_digests(fast)) == 2 * 8


def test_augmented_batches_are_the_same_with_any_workers_and_after_resume(files, tmp_path):
    spec0, spec2 = _spec(files), _spec(files, workers=2)
    constant = {"lr_schedule": "constant"}  # the same learning rate whether the run is 1 or 2 epochs long
    straight = _train(tmp_path, "straight", spec0, **constant)
    with_workers = _train(tmp_path, "workers", spec2, **constant)
    assert _digests(straight) == _digests(with_workers)
    first = _train(tmp_path, "resumed", spec2, epochs=1, **constant)
    resumed = train_supernet(
        FACTORY, spec2, small_config(replicas=1, epochs=2, log_every=4, **constant), out_dir=first.out_dir,
        local=True, resume=True, trace=True,
    )
    assert _digests(first) + _digests(resumed) == _digests(straight)
    # the transforms are random: without them, training differs
    assert _digests(_train(tmp_path, "plain", _spec(files, augment=False), **constant)) != _digests(straight)


def test_reads_leave_the_training_process_generators_alone(files):
    train = load_files(files)["train"]
    sampler = ShardSampler(len(train), batch_size=32, seed=[0])
    torch.manual_seed(3)
    np.random.seed(3)
    before = torch.get_rng_state(), np.random.get_state()[1].copy()
    batches = [x for x, _y in Loader(train, sampler, device=torch.device("cpu"), workers=0)]
    assert torch.equal(torch.get_rng_state(), before[0]) and (np.random.get_state()[1] == before[1]).all()
    sampler.set_epoch(1)
    later = [x for x, _y in Loader(train, sampler, device=torch.device("cpu"), workers=1)]
    assert len(batches) == len(later) == 8 and not torch.equal(batches[0], later[0])


@pytest.mark.parametrize("form", ["tuple", "dict"])
def test_tuple_and_dict_inputs_in_every_phase(files, tmp_path, form):
    spec = _spec(files, source=f"tests.datasets:load_{form}s", workers=1)
    factory = f"tests.datasets:{form}_supernet"
    config = small_config(replicas=1, epochs=1, log_every=4)
    result = train_supernet(factory, spec, config, out_dir=tmp_path / form, local=True)
    assert result.steps == 8
    evaluator = WeightSharingEvaluator(factory=factory, weights=result, data=spec, bn_batches=2, batch_size=32)
    scores = evaluator.evaluate({**ARCH})
    assert 0.0 <= scores["val_accuracy"] <= 1.0 and scores["params"] > 0
    from raynas.nas.space import load_factory

    reports = []
    setup = RetrainSetup(
        model_factory=load_factory(factory), data_factory=spec, archs=[ARCH], search_scores=[None], epochs=1,
        optimizer="adam", lr=3e-3, weight_decay=0.0, batch_size=64, seed=0,
    )
    train_fixed(setup, 0, report=lambda metrics, state: reports.append(metrics))
    assert reports[0]["epoch"] == 1 and 0.0 <= reports[0]["test_accuracy"] <= 1.0


class Broken(torch.utils.data.Dataset):
    """Item ``bad`` raises; the others are ``(index, 0)``."""

    def __init__(self, n: int, bad: int):
        self.n, self.bad = n, bad

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.bad:
            raise LookupError(f"item {i} is unreadable")
        return torch.tensor([float(i)]), torch.tensor(0)


def test_worker_batches_come_through_the_fetch_thread_in_order_and_a_loader_error_reaches_the_step():
    loader = Loader(Broken(40, bad=-1), OrderSampler(40, batch_size=4), device=torch.device("cpu"), workers=1)
    whole = [x.flatten().tolist() for x, _y in loader]
    assert whole == [[float(i) for i in range(k, k + 4)] for k in range(0, 40, 4)]
    abandoned = iter(loader)
    assert next(abandoned)[0].flatten().tolist() == whole[0]
    again = [x.flatten().tolist() for x, _y in loader]  # a new epoch while the old one is not collected
    assert again == whole
    with pytest.raises(RuntimeError, match="a newer one took over"):
        next(abandoned)
    assert [t.name for t in threading.enumerate() if t.name == "raynas-batch-fetcher"] == []

    broken = Loader(Broken(40, bad=21), OrderSampler(40, batch_size=4), device=torch.device("cpu"), workers=1)
    seen = []
    with pytest.raises(LookupError, match="item 21 is unreadable"):
        for x, _y in broken:
            seen.append(x)
    assert len(seen) == 5  # the batches before the one holding item 21


def test_custom_loss_and_metrics_from_python(files, tmp_path):
    """The loss gets the model's output as it is (``(logits, aux)``); metrics are NNI-style dicts."""
    spec = _spec(files, augment=False)
    config = small_config(replicas=1, epochs=1, log_every=4)
    result = train_supernet(aux_supernet, spec, config, out_dir=tmp_path / "aux", local=True,
                            criterion=aux_loss, metrics=top_metrics)
    epoch = result.history[0]
    assert set(epoch["metrics"]) == {"acc1", "top2"} and epoch["metrics"]["acc1"] <= epoch["metrics"]["top2"]
    assert epoch["accuracy"] == pytest.approx(epoch["metrics"]["acc1"])  # the main logits' accuracy
    evaluator = WeightSharingEvaluator(
        factory=aux_supernet, weights=result, data=spec, bn_batches=1, batch_size=32, criterion=aux_loss,
        metrics="tests.datasets:top_metrics",
    )
    scores = evaluator.evaluate(ARCH)
    assert set(scores) == {"val_loss", "val_acc1", "val_top2", "params", "flops"}
    plain = WeightSharingEvaluator(factory=aux_supernet, weights=result, data=spec, bn_batches=1, batch_size=32)
    assert plain.evaluate(ARCH)["val_accuracy"] == pytest.approx(scores["val_acc1"])
    assert plain.evaluate(ARCH)["val_loss"] < scores["val_loss"]  # the auxiliary term adds to the loss


def test_evaluation_split_is_read_once_when_it_fits(files):
    from raynas.train.loader import CachedBatches

    val = load_files(files)["val"]
    calls = []

    class Counting(torch.utils.data.Dataset):
        def __len__(self):
            return len(val)

        def __getitem__(self, i):
            calls.append(i)
            return val[i]

    loader = Loader(Counting(), OrderSampler(len(val), batch_size=10), device=torch.device("cpu"), workers=0)
    cached = CachedBatches(loader)
    first, second = [y for _x, y in cached], [y for _x, y in cached]
    assert len(calls) == len(val) and all(torch.equal(a, b) for a, b in zip(first, second))
    streamed = CachedBatches(loader, budget=100)
    calls.clear()
    list(streamed), list(streamed)
    assert len(calls) == 2 * len(val)


@pytest.mark.slow
def test_replicas_stay_bit_identical_with_loader_workers_on_ray(files, tmp_path, ray_local):
    """Dict inputs, augmented, read by a loader worker in each replica actor."""
    spec = _spec(files, source="tests.datasets:load_dicts", workers=1)
    config = small_config(replicas=2, epochs=2, batch_size=16, log_every=4)
    result = train_supernet("tests.datasets:dict_supernet", spec, config, out_dir=tmp_path / "ray", trace=True)
    assert result.replicas == 2 and len(result.trace[0]) == 2 * 8
    assert [e["digest"] for e in result.trace[0]] == [e["digest"] for e in result.trace[1]]
