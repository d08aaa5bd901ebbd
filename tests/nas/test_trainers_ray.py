"""NNI's trainers with ``replicas=2`` on a real local Ray, written the way NNI's example scripts
are (darts/search.py, enas/search.py, spos/supernet.py, proxylessnas/main.py) with only the
imports changed and ``replicas=2`` added: replicas bit-identical after every step, callbacks in
the caller with the replicas' weights, export and checkpoints by the caller, recovery from a
killed replica."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from raynas.nas import apply_fixed_architecture
from raynas.nas.callbacks import ArchitectureCheckpoint, Callback, LRSchedulerCallback, ModelCheckpoint
from raynas.nas.darts import DartsTrainer
from raynas.nas.enas import EnasMutator, EnasTrainer
from raynas.nas.proxylessnas import ProxylessNasTrainer
from raynas.nas.spos import SPOSSupernetTrainer, SPOSSupernetTrainingMutator
from raynas.nas.utils import mutable_counting_scope
from raynas.train.reports import parameter_digest
from tests.models import build_darts, build_enas, build_spos, image_data
from tests.nas.test_trainers import acc, nni_rules, reward

pytestmark = pytest.mark.slow

DATA = image_data()
RAY = {"replicas": 2, "trace": True, "dist_timeout_s": 30.0}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def _build(factory):
    with mutable_counting_scope():
        return factory()


def _in_step(trainer, model, mutator=None) -> int:
    """Every replica's digests agree at every step, and the caller holds the last ones."""
    first, second = trainer.replica_trace
    assert len(first) == len(second) > 0
    for a, b in zip(first, second):
        assert a == b, f"replicas diverged at {a['unit']} step {a['step']}"
    assert first[-1]["digest"] == parameter_digest(model)
    if mutator is not None:
        assert first[-1]["arch_digest"] == parameter_digest(mutator)
    return len(first)


def test_darts_search_script_with_two_replicas(ray_local, tmp_path):
    torch.manual_seed(0)
    model = _build(build_darts)
    criterion = nn.CrossEntropyLoss()
    optim = torch.optim.SGD(model.parameters(), 0.025, momentum=0.9, weight_decay=3.0e-4)
    lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optim, 2, eta_min=0.001)
    trainer = DartsTrainer(
        model,
        loss=criterion,
        metrics=acc,
        optimizer=optim,
        num_epochs=2,
        dataset_train=DATA["train"],
        dataset_valid=DATA["test"],
        batch_size=4,
        workers=0,
        log_frequency=1,
        callbacks=[LRSchedulerCallback(lr_scheduler), ArchitectureCheckpoint(str(tmp_path / "checkpoints"))],
        checkpoint_dir=str(tmp_path / "run"),
        **RAY,
    )
    alphas = [a.detach().clone() for a in trainer.mutator.choices.values()]
    trainer.train()
    trainer.export(str(tmp_path / "final_architecture.json"))
    # 20 weight-half items: 10 per replica, batches of 4, 4, 2: three steps an epoch
    assert _in_step(trainer, model, trainer.mutator) == 6
    assert any(not torch.equal(a, b) for a, b in zip(alphas, trainer.mutator.choices.values()))
    assert optim.param_groups[0]["lr"] == pytest.approx(0.001)  # the scheduler stepped in the caller
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["epoch_0.json", "epoch_1.json"]
    arch = json.loads((tmp_path / "final_architecture.json").read_text())
    assert arch == trainer.mutator.export()
    apply_fixed_architecture(_build(build_darts), arch)
    nni_rules(_build(build_darts), arch)
    from raynas.train import final_architecture, load_checkpoint

    assert final_architecture(tmp_path / "run") == arch and load_checkpoint(tmp_path / "run")["epoch"] == 2
    assert [h["unit"] for h in trainer.history] == [0, 1]


def test_enable_visualization_with_two_replicas_writes_rank_0s_status_log(ray_local, tmp_path, monkeypatch):
    # NNI's naive/train.py: enable_visualization() before train(); the status writer stays in the caller
    monkeypatch.chdir(tmp_path)  # logs/<time>/ in the working directory, as NNI
    model = _build(build_darts)
    trainer = DartsTrainer(
        model,
        loss=nn.CrossEntropyLoss(),
        metrics=acc,
        optimizer=torch.optim.SGD(model.parameters(), 0.01),
        num_epochs=2,
        dataset_train=DATA["train"],
        dataset_valid=DATA["test"],
        batch_size=4,
        workers=0,
        **RAY,
    )
    trainer.enable_visualization()
    trainer.train()
    lines = (tmp_path / trainer.log_dir / "log").read_text().splitlines()
    assert len(lines) == len(trainer.replica_trace[0]) == 6  # one status a weight step of rank 0, both epochs
    assert set(json.loads(lines[-1])) == set(trainer.mutator.status())


def test_enas_search_script_with_two_replicas(ray_local, tmp_path):
    torch.manual_seed(0)
    model = _build(build_enas)
    mutator = EnasMutator(model, tanh_constant=1.1, cell_exit_extra_step=True)
    optimizer = torch.optim.SGD(model.parameters(), 0.05, momentum=0.9, weight_decay=1.0e-4)
    lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=2, eta_min=0.001)
    trainer = EnasTrainer(
        model,
        loss=nn.CrossEntropyLoss(),
        metrics=acc,
        reward_function=reward,
        optimizer=optimizer,
        callbacks=[LRSchedulerCallback(lr_scheduler), ArchitectureCheckpoint(str(tmp_path / "checkpoints"))],
        batch_size=4,
        num_epochs=2,
        dataset_train=DATA["train"],
        dataset_valid=DATA["test"],
        log_frequency=1,
        mutator=mutator,
        workers=0,
        child_steps=2,
        mutator_steps=2,
        mutator_steps_aggregate=2,
        **RAY,
    )
    trainer.train()
    assert _in_step(trainer, model, mutator) == 2 * (2 + 2)  # weight steps and controller steps
    assert trainer.baseline != 0.0
    arch = json.loads((tmp_path / "checkpoints" / "epoch_1.json").read_text())
    apply_fixed_architecture(_build(build_enas), arch)
    nni_rules(_build(build_enas), arch)


class FreezeAfterFirstEpoch(Callback):
    """Record the weights the caller holds at each epoch end (the replicas' weights)."""

    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch):
        self.weights.append({k: v.detach().clone() for k, v in self.model.named_parameters()})


def test_spos_supernet_script_with_two_replicas_callbacks_reach_the_replicas(ray_local, tmp_path):
    torch.manual_seed(42)
    model = _build(build_spos)
    mutator = SPOSSupernetTrainingMutator(model, flops_func=model.get_candidate_flops, flops_lb=0, flops_ub=10**9)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=4e-5)
    # the learning rate drops to 0 after the first epoch: the second must not move any weight
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 if step == 0 else 0.0)
    recorder = FreezeAfterFirstEpoch()
    trainer = SPOSSupernetTrainer(
        model, nn.CrossEntropyLoss(), acc, optimizer, 2,
        DataLoader(DATA["train"], batch_size=8, shuffle=True), DataLoader(DATA["val"], batch_size=8),
        mutator=mutator, batch_size=8, log_frequency=1, workers=0,
        callbacks=[LRSchedulerCallback(scheduler), ModelCheckpoint(str(tmp_path / "checkpoints")), recorder],
        **RAY,
    )
    trainer.train()
    assert _in_step(trainer, model) == 2 * 3  # 40 items, 20 per replica, batches of 8, 8, 4
    first, second = recorder.weights
    assert all(torch.equal(first[k], second[k]) for k in first), "the caller's lr=0 did not reach the replicas"
    saved = torch.load(tmp_path / "checkpoints" / "epoch_0.pth.tar", weights_only=True)
    assert all(torch.equal(saved[k], first[k]) for k in first)


def test_proxylessnas_main_script_with_two_replicas(ray_local, tmp_path):
    torch.manual_seed(0)
    model = _build(build_spos)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    trainer = ProxylessNasTrainer(
        model,
        model_optim=optimizer,
        train_loader=DataLoader(DATA["train"], batch_size=4, shuffle=True),
        valid_loader=DataLoader(DATA["val"], batch_size=4),
        device=torch.device("cpu"),
        warmup=True,
        warmup_epochs=1,
        n_epochs=2,
        grad_update_arch_param_every=2,
        ckpt_path=str(tmp_path / "search_mobile_net.pt"),
        arch_path=str(tmp_path / "arch_path.pt"),
        **RAY,
    )
    alphas = [a.detach().clone() for a in trainer.mutator.get_architecture_parameters()]
    trainer.train()
    trainer.export(str(tmp_path / "arch_path.pt"))
    # 40 items, 20 per replica, batches of 4: 5 weight steps an epoch, 2 architecture steps in the last
    assert _in_step(trainer, trainer.model) == 3 * 5 + 2
    assert any(not torch.equal(a, b) for a, b in zip(alphas, trainer.mutator.get_architecture_parameters()))
    arch = json.loads((tmp_path / "arch_path.pt").read_text())
    apply_fixed_architecture(_build(build_spos), arch)
    nni_rules(_build(build_spos), arch)
    assert torch.load(tmp_path / "search_mobile_net.pt", weights_only=True)["train_curr_epoch"] == 2


class KillOnce:
    """A metrics function that kills the replica process calling it the ``at``-th time, once per
    marker file (never in the caller's process)."""

    def __init__(self, marker: str, at: int):
        self.marker, self.at, self.caller, self.calls = marker, at, os.getpid(), 0

    def __call__(self, output, target):
        self.calls += 1
        if os.getpid() != self.caller and self.calls == self.at:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
                os._exit(1)
            except FileExistsError:
                pass
        return acc(output, target)


def test_a_killed_replica_reruns_its_epoch_and_ends_as_an_uninterrupted_run(ray_local, tmp_path):
    def run(metrics):
        torch.manual_seed(0)
        model = _build(build_darts)
        optim = torch.optim.SGD(model.parameters(), 0.025, momentum=0.9, weight_decay=3.0e-4)
        trainer = DartsTrainer(
            model, nn.CrossEntropyLoss(), metrics, optim, 2, DATA["train"], DATA["test"], batch_size=4, workers=0,
            replicas=2, dist_timeout_s=30.0,
        )
        trainer.train(validate=False)
        return trainer, parameter_digest(model), parameter_digest(trainer.mutator)

    plain, plain_model, plain_arch = run(acc)
    killed, killed_model, killed_arch = run(KillOnce(str(tmp_path / "killed"), at=5))  # epoch 1, step 2
    assert (tmp_path / "killed").exists() and killed.restarts == 1 and plain.restarts == 0
    assert (killed_model, killed_arch) == (plain_model, plain_arch)


def score_on_supernet(config, weights):
    from ray import tune

    from raynas.train import evaluate_architecture

    scores = evaluate_architecture(
        "tests.models:build_spos", config["arch"], weights=weights, data="tests.models:image_data", bn_batches=2,
        batch_size=8, device="cpu",
    )
    tune.report({"val_accuracy": scores["val_accuracy"]})


def test_spos_flow_supernet_then_evolution_through_tune(ray_local, tmp_path):
    """NNI's SPOS flow: SPOSSupernetTrainer, then SPOSEvolution over architectures scored on the
    supernet's weights, as a real Tune run through TunerSearcher."""
    from ray import tune

    from raynas.nas import generate_search_space
    from searchers import SPOSEvolution, canonical_hash
    from searchers.tune import TunerSearcher

    torch.manual_seed(0)
    model = _build(build_spos)
    trainer = SPOSSupernetTrainer(
        model, nn.CrossEntropyLoss(), acc, torch.optim.SGD(model.parameters(), lr=0.1), 1,
        DataLoader(DATA["train"], batch_size=8, shuffle=True), DataLoader(DATA["val"], batch_size=8),
        checkpoint_dir=str(tmp_path / "supernet"),
    )
    trainer.train(validate=False)
    space = generate_search_space(model)
    tuner = SPOSEvolution(
        max_epochs=2, num_select=2, num_population=4, num_mutation=1, num_crossover=1,
        checkpoint_dir=str(tmp_path / "evolution"),
    )
    searcher = TunerSearcher(tuner, search_space=space, metric="val_accuracy", mode="max")
    results = tune.Tuner(
        tune.with_parameters(score_on_supernet, weights=str(tmp_path / "supernet")),
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=50, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), name="spos", verbose=0),
    ).fit()
    assert len(results) == 8 and not results.errors  # two epochs of four, then the tuner is done
    hashes = [canonical_hash(r.config["arch"], space) for r in results]
    assert len(set(hashes)) == 8
    files = sorted(p.name for p in (tmp_path / "evolution").iterdir())
    assert files == [f"000_{i:03d}.json" for i in range(4)] + [f"{e:03d}_{i:03d}.json" for e in (1, 2) for i in range(2)]
    best = json.loads((tmp_path / "evolution" / "002_000.json").read_text())
    apply_fixed_architecture(_build(build_spos), best)
