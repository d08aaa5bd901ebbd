"""NNI's trainer API in the calling process (replicas=1): each trainer against NNI v1.9's own loop
written out here (bit-identical weights), the callbacks, export files and the meters."""

from __future__ import annotations

import json
from itertools import cycle

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, SubsetRandomSampler

from raynas.nas import apply_fixed_architecture
from raynas.nas.callbacks import ArchitectureCheckpoint, Callback, LRSchedulerCallback, ModelCheckpoint
from raynas.nas.darts import DartsMutator, DartsTrainer
from raynas.nas.enas import EnasMutator, EnasTrainer
from raynas.nas.mutables import InputChoice, LayerChoice
from raynas.nas.spos import SPOSSupernetTrainer, SPOSSupernetTrainingMutator
from raynas.nas.trainer import Trainer
from raynas.nas.utils import AverageMeter, AverageMeterGroup, mutable_counting_scope
from searchers.errors import ConfigError
from tests.models import build_darts, build_enas, build_spos, image_data

DATA = image_data()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: tiny models on a shared machine are slower with more."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def acc(output, target):
    return {"acc1": (output.argmax(1) == target).float().mean().item()}


def reward(output, target):
    return (output.argmax(1) == target).sum().item() / target.size(0)


def _build(factory):
    with mutable_counting_scope():
        return factory()


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def nni_rules(model: nn.Module, arch: dict) -> dict:
    """NNI v1.9's FixedArchitecture reading of an exported file (keys, names, indices, bool lists)."""
    mutables = {}
    for m in model.modules():
        if isinstance(m, (LayerChoice, InputChoice)):
            mutables.setdefault(m.key, m)
    assert set(arch) == set(mutables), "NNI needs exactly the model's keys"
    out = {}
    for key, value in arch.items():
        mutable = mutables[key]
        values = value if isinstance(value, list) else [value]
        n = len(mutable) if isinstance(mutable, LayerChoice) else mutable.n_candidates
        if values and (all(isinstance(v, bool) for v in values) or all(isinstance(v, float) for v in values)):
            assert len(values) == n
            out[key] = values
            continue
        labels = mutable.names if isinstance(mutable, LayerChoice) else mutable.choose_from
        indices = [labels.index(v) if isinstance(v, str) else v for v in values]
        assert all(isinstance(i, int) and 0 <= i < n for i in indices), (key, value)
        out[key] = [i in indices for i in range(n)]
    return out


# -- DARTS ----------------------------------------------------------------------------------------


def _nni_darts_epoch(model, mutator, loss, optimizer, ctrl_optim, train_loader, valid_loader):
    model.train()
    mutator.train()
    for (tx, ty), (vx, vy) in zip(train_loader, valid_loader):
        ctrl_optim.zero_grad()
        mutator.reset()
        loss(model(vx), vy).backward()
        ctrl_optim.step()
        optimizer.zero_grad()
        mutator.reset()
        loss(model(tx), ty).backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()


def test_darts_trainer_epoch_is_nni_loop_bit_for_bit():
    torch.manual_seed(0)
    model = _build(build_darts)
    optimizer = torch.optim.SGD(model.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    trainer = DartsTrainer(
        model, nn.CrossEntropyLoss(), acc, optimizer, 1, DATA["train"], DATA["test"], batch_size=8, workers=0
    )
    torch.manual_seed(0)
    ref = _build(build_darts)
    ref_mutator = DartsMutator(ref)
    ref_opt = torch.optim.SGD(ref.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    ctrl = torch.optim.Adam(ref_mutator.parameters(), 3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    half = list(range(len(DATA["train"])))
    loaders = [DataLoader(DATA["train"], batch_size=8, sampler=SubsetRandomSampler(p)) for p in (half[:20], half[20:])]
    _same(model.state_dict(), ref.state_dict())
    torch.manual_seed(1)
    meters = trainer.train_one_epoch(0)
    torch.manual_seed(1)
    _nni_darts_epoch(ref, ref_mutator, nn.CrossEntropyLoss(), ref_opt, ctrl, *loaders)
    _same(model.state_dict(), ref.state_dict())
    for key in ref_mutator.choices:
        assert torch.equal(trainer.mutator.choices[key].detach(), ref_mutator.choices[key].detach()), key
    assert isinstance(meters, AverageMeterGroup) and set(meters.meters) == {"acc1", "loss"}
    assert trainer.ctrl_optim is trainer.mutator.arch_optimizer
    assert trainer.ctrl_optim.param_groups[0]["lr"] == 3e-4


def test_darts_trainer_unrolled_moves_alphas_differently_and_restores_weights(tmp_path):
    def run(unrolled: bool):
        torch.manual_seed(0)
        model = _build(build_darts)
        optimizer = torch.optim.SGD(model.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
        trainer = DartsTrainer(
            model, nn.CrossEntropyLoss(), acc, optimizer, 1, DATA["train"], DATA["test"],
            batch_size=8, workers=0, unrolled=unrolled, arc_learning_rate=0.01,
        )
        torch.manual_seed(1)
        trainer.train(validate=False)
        return trainer

    first, second = run(False), run(True)
    assert second.mutator.order == 2 and first.mutator.order == 1
    alphas = [(first.mutator.choices[k] - second.mutator.choices[k]).abs().max() for k in first.mutator.choices]
    assert max(alphas) > 0, "the unrolled gradient equals the first-order one"
    second.export(tmp_path / "arch.json")
    arch = json.loads((tmp_path / "arch.json").read_text())
    apply_fixed_architecture(_build(build_darts), arch)
    nni_rules(_build(build_darts), arch)


class TwoPaths(nn.Module):
    def __init__(self):
        super().__init__()
        self.choice = LayerChoice([nn.Linear(3, 3), nn.Sequential(nn.Linear(3, 3), nn.Tanh())], key="op")
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head(torch.tanh(self.choice(x)))


def test_unrolled_gradient_is_the_exact_second_order_gradient_with_momentum():
    from torch.func import functional_call

    from raynas.nas.darts.unrolled import unrolled_alpha_grads, virtual_step_settings

    torch.manual_seed(0)
    model = TwoPaths().double()
    mutator = DartsMutator(model, init_std=0.5).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9, weight_decay=0.01)
    for p in model.parameters():
        optimizer.state[p]["momentum_buffer"] = torch.randn_like(p)
    xt, xa = torch.randn(16, 3, dtype=torch.float64), torch.randn(16, 3, dtype=torch.float64)
    yt, ya = torch.randint(0, 2, (16,)), torch.randint(0, 2, (16,))
    lr, wd, momentum = virtual_step_settings(optimizer, model)
    _, grads = unrolled_alpha_grads(mutator, (xa, ya), (xt, yt), nn.functional.cross_entropy, None, lr, wd, momentum)
    mutator.reset()  # the softmax weights, with their graph, for both passes below
    params = dict(model.named_parameters())
    inner = nn.functional.cross_entropy(functional_call(model, params, (xt,)), yt)
    dw = torch.autograd.grad(inner, list(params.values()), create_graph=True)
    bufs = {k: optimizer.state[p]["momentum_buffer"] for k, p in params.items()}
    virtual = {k: p - lr * (0.9 * bufs[k] + d + wd * p) for (k, p), d in zip(params.items(), dw)}
    outer = nn.functional.cross_entropy(functional_call(model, virtual, (xa,)), ya)
    exact = torch.autograd.grad(outer, mutator.arch_parameters())
    for got, want in zip(grads, exact):
        assert torch.allclose(got, want, rtol=1e-3, atol=1e-6), (got, want)


def test_darts_trainer_refuses_a_foreign_mutator_and_unknown_extras():
    model = _build(build_darts)
    with pytest.raises(ConfigError, match="DartsTrainer mutator must be a DartsMutator"):
        DartsTrainer(model, nn.CrossEntropyLoss(), acc, None, 1, DATA["train"], DATA["test"], mutator=object())
    with pytest.raises(ConfigError, match="unknown keyword argument 'replica'.*replicas"):
        DartsTrainer(model, nn.CrossEntropyLoss(), acc, None, 1, DATA["train"], DATA["test"], replica=2)
    with pytest.raises(ConfigError, match="trainer option replicas must be an integer >= 1, got 0"):
        DartsTrainer(model, nn.CrossEntropyLoss(), acc, None, 1, DATA["train"], DATA["test"], replicas=0)


# -- ENAS -----------------------------------------------------------------------------------------


def _nni_enas_epoch(model, mutator, optimizer, mutator_optim, train_loader, valid_loader, *, child, steps, agg):
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    mutator.eval()
    for _ in range(child):
        x, y = next(train_loader)
        optimizer.zero_grad()
        with torch.no_grad():
            mutator.reset()
        loss = loss_fn(model(x), y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
    model.eval()
    mutator.train()
    baseline = 0.0
    for _ in range(steps):
        mutator_optim.zero_grad()
        for _ in range(agg):
            x, y = next(valid_loader)
            mutator.reset()
            with torch.no_grad():
                logits = model(x)
            r = reward(logits, y) + 1e-4 * mutator.sample_entropy.item()
            baseline = baseline * 0.999 + r * (1 - 0.999)
            loss = mutator.sample_log_prob * (r - baseline)
            loss += 0.8 * mutator.sample_skip_penalty
            loss /= agg
            loss.backward()
        nn.utils.clip_grad_norm_(mutator.parameters(), 5.0)
        mutator_optim.step()
    return baseline


def test_enas_trainer_epoch_is_nni_loop_bit_for_bit():
    def build():
        torch.manual_seed(0)
        model = _build(build_enas)
        return model, EnasMutator(model, tanh_constant=1.1, cell_exit_extra_step=True)

    model, mutator = build()
    optimizer = torch.optim.SGD(model.parameters(), 0.05, momentum=0.9, weight_decay=1e-4)
    trainer = EnasTrainer(
        model, nn.CrossEntropyLoss(), acc, reward, optimizer, 1, DATA["train"], DATA["test"], mutator=mutator,
        batch_size=8, workers=0, child_steps=3, mutator_steps=2, mutator_steps_aggregate=2,
    )
    ref, ref_mutator = build()
    ref_opt = torch.optim.SGD(ref.parameters(), 0.05, momentum=0.9, weight_decay=1e-4)
    ref_mopt = torch.optim.Adam(ref_mutator.parameters(), lr=0.00035)
    idx = list(range(len(DATA["train"])))
    loaders = [cycle(DataLoader(DATA["train"], batch_size=8, sampler=SubsetRandomSampler(p))) for p in (idx[:-4], idx[-4:])]
    torch.manual_seed(1)
    meters = trainer.train_one_epoch(0)
    torch.manual_seed(1)
    baseline = _nni_enas_epoch(ref, ref_mutator, ref_opt, ref_mopt, *loaders, child=3, steps=2, agg=2)
    _same(model.state_dict(), ref.state_dict())
    _same(dict(mutator.named_parameters()), dict(ref_mutator.named_parameters()))
    assert trainer.baseline == baseline
    assert {"reward", "loss", "ent", "log_prob", "baseline", "skip", "acc1"} == set(meters.meters)


class MacroSkips(nn.Module):
    """ENAS macro-style layers: an op choice plus skip connections from every earlier layer."""

    def __init__(self, width: int = 4, layers: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.ops = nn.ModuleList(
            LayerChoice([nn.Conv2d(width, width, 3, padding=1), nn.MaxPool2d(3, 1, 1)], key=f"op{i}") for i in range(layers)
        )
        self.skips = nn.ModuleList(
            InputChoice(choose_from=[f"op{j}" for j in range(i)], n_chosen=None, key=f"skip{i}") for i in range(1, layers)
        )
        self.head = nn.Linear(width, 4)

    def forward(self, x):
        outs = [self.stem(x)]
        for i, op in enumerate(self.ops):
            out = op(outs[-1])
            if i > 0:
                skip = self.skips[i - 1](outs[1:])
                if skip is not None:
                    out = out + skip
            outs.append(out)
        return self.head(outs[-1].mean((2, 3)))


def test_enas_trainer_logs_the_skip_penalty_without_a_requires_grad_warning():
    import warnings

    torch.manual_seed(0)
    model = MacroSkips()
    trainer = EnasTrainer(
        model, nn.CrossEntropyLoss(), acc, reward, torch.optim.SGD(model.parameters(), 0.05), 1, DATA["train"],
        DATA["test"], batch_size=8, workers=0, child_steps=1, mutator_steps=1, mutator_steps_aggregate=2,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        meters = trainer.train_one_epoch(0)
    assert not [w for w in caught if "requires_grad" in str(w.message)]
    assert meters.skip.avg > 0


def test_enas_trainer_settings_are_checked():
    model = _build(build_enas)
    with pytest.raises(ConfigError, match="EnasTrainer child_steps must be an integer >= 0, got -1"):
        EnasTrainer(model, nn.CrossEntropyLoss(), acc, reward, None, 1, DATA["train"], DATA["test"], child_steps=-1)
    with pytest.raises(ConfigError, match="at least 10 items in dataset_train"):
        EnasTrainer(model, nn.CrossEntropyLoss(), acc, reward, None, 1, [(0, 0)] * 9, DATA["test"])


# -- SPOS, callbacks, the base Trainer --------------------------------------------------------------


class Recorder(Callback):
    def __init__(self):
        super().__init__()
        self.events = []

    def on_epoch_begin(self, epoch):
        self.events.append(("begin", epoch, self.trainer.optimizer.param_groups[0]["lr"]))

    def on_epoch_end(self, epoch):
        self.events.append(("end", epoch, self.trainer.optimizer.param_groups[0]["lr"]))


def test_spos_trainer_with_nni_mutator_and_callbacks(tmp_path):
    torch.manual_seed(0)
    model = _build(build_spos)
    mutator = SPOSSupernetTrainingMutator(
        model, flops_func=model.get_candidate_flops, flops_lb=0, flops_ub=10**9, flops_bin_num=2
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / 4)
    recorder = Recorder()
    trainer = SPOSSupernetTrainer(
        model, nn.CrossEntropyLoss(), acc, optimizer, 2,
        DataLoader(DATA["train"], batch_size=16, shuffle=True), DataLoader(DATA["val"], batch_size=16),
        mutator=mutator, log_frequency=1,
        callbacks=[LRSchedulerCallback(scheduler), ModelCheckpoint(tmp_path / "models"), recorder],
    )
    assert recorder.model is model and recorder.mutator is mutator and recorder.trainer is trainer
    trainer.train()
    # the scheduler callback comes first: the recorder sees the stepped rate at the end
    assert recorder.events == [("begin", 0, 0.5), ("end", 0, 0.375), ("begin", 1, 0.375), ("end", 1, 0.25)]
    assert optimizer.param_groups[0]["lr"] == 0.25
    saved = torch.load(tmp_path / "models" / "epoch_1.pth.tar", weights_only=True)
    fresh = _build(build_spos)
    fresh.load_state_dict(saved, strict=True)
    _same(fresh.state_dict(), model.state_dict())
    assert [h["unit"] for h in trainer.history] == [0, 1] and "acc1" in trainer.history[0]
    assert set(trainer.validate().meters) == {"acc1", "loss"}


def test_architecture_checkpoint_files_apply_in_raynas_and_by_nni_rules(tmp_path):
    torch.manual_seed(0)
    model = _build(build_enas)
    trainer = EnasTrainer(
        model, nn.CrossEntropyLoss(), acc, reward, torch.optim.SGD(model.parameters(), 0.05), 2,
        DATA["train"], DATA["test"], batch_size=8, workers=0, child_steps=1, mutator_steps=1,
        mutator_steps_aggregate=1, callbacks=[ArchitectureCheckpoint(tmp_path / "ck")],
    )
    trainer.train(validate=False)
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["epoch_0.json", "epoch_1.json"]
    from raynas.cli import _read_archs

    for name in ("epoch_0.json", "epoch_1.json"):
        arch = json.loads((tmp_path / "ck" / name).read_text())
        apply_fixed_architecture(_build(build_enas), arch)
        nni_rules(_build(build_enas), arch)
        assert _read_archs(str(tmp_path / "ck" / name), _build(build_enas)) == [arch]


def test_lr_scheduler_callback_mode_and_callback_type_are_checked():
    with pytest.raises(ConfigError, match="LRSchedulerCallback mode must be 'epoch', got 'step'"):
        LRSchedulerCallback(None, mode="step")
    model = _build(build_darts)
    with pytest.raises(TypeError, match="callbacks must be raynas.nas.callbacks.Callback"):
        DartsTrainer(model, nn.CrossEntropyLoss(), acc, None, 1, DATA["train"], DATA["test"], callbacks=[object()])


class OneLinear(Trainer):
    """A subclass as NNI's docs describe: only train_one_epoch and validate_one_epoch."""

    def train_one_epoch(self, epoch):
        self.calls.append(("train", epoch))

    def validate_one_epoch(self, epoch):
        self.calls.append(("validate", epoch))


def test_custom_trainer_subclass_runs_nni_loop_and_checkpoints(tmp_path):
    model = _build(build_spos)
    from raynas.nas import RandomMutator

    trainer = OneLinear(model, RandomMutator(model), nn.CrossEntropyLoss(), acc, None, 2, None, None, 8, 0, None,
                        None, None, checkpoint_dir=str(tmp_path))
    trainer.calls = []
    trainer.train()
    trainer.validate()
    trainer.train(validate=False)  # finished: nothing left to train
    assert trainer.calls == [("train", 0), ("validate", 0), ("train", 1), ("validate", 1), ("validate", -1)]
    from raynas.train import load_checkpoint

    ckpt = load_checkpoint(tmp_path)
    assert ckpt["epoch"] == 2 and ckpt["config"]["trainer"] == "OneLinear"
    model = _build(build_spos)
    again = OneLinear(model, RandomMutator(model), nn.CrossEntropyLoss(), acc, None, 3, None, None, 8, 0, None,
                      None, None)
    again.calls = []
    again.resume_from(str(tmp_path))
    again.train(validate=False)
    assert again.calls == [("train", 2)]


_LOGGING_SCRIPT = """
import logging, sys
import torch
from torch import nn
from raynas.nas.darts import DartsTrainer
from raynas.nas.utils import mutable_counting_scope
from tests.models import build_darts, image_data
if sys.argv[1] == "configured":
    logging.basicConfig(level=logging.WARNING)
logger = logging.getLogger("nni")  # what NNI's example scripts log with
torch.manual_seed(0)
with mutable_counting_scope():
    model = build_darts()
data = image_data()
trainer = DartsTrainer(model, nn.CrossEntropyLoss(), lambda o, t: {"acc": 0.0},
                       torch.optim.SGD(model.parameters(), 0.01), 1, data["train"], data["test"],
                       batch_size=20, log_frequency=1, workers=0)
trainer.train()
logger.info("script line")
"""


@pytest.mark.parametrize("setup", ["none", "configured"])
def test_trainer_logs_to_stdout_as_nni_unless_logging_is_configured(setup):
    """NNI's ``import nni`` sends the ``nni`` loggers' INFO lines to stdout; a ported script whose
    application configured no logging prints its trainer's progress and its own lines the same
    way, once each; one that configured logging keeps its configuration."""
    import subprocess
    import sys

    from tests.experiment.cli_helpers import REPO, env

    out = subprocess.run([sys.executable, "-c", _LOGGING_SCRIPT, setup], capture_output=True, text=True, env=env(),
                         cwd=REPO, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    steps = [line for line in out.stdout.splitlines() if "INFO (raynas.nas.darts.trainer) Epoch [1/1] Step [" in line]
    script = [line for line in out.stdout.splitlines() if line.endswith("INFO (nni) script line")]
    if setup == "none":
        assert [len(steps), len(script)] == [2, 1], out.stdout  # 40 training samples: 2 steps of 20 per half
    else:
        assert steps == script == [] and "INFO" not in out.stderr, out.stdout + out.stderr


def test_meters_are_nni_meters():
    group = AverageMeterGroup()
    group.update({"acc1": 0.5, "loss": 2.0})
    group.update({"acc1": 1.0, "loss": 1.0})
    assert group.acc1.avg == 0.75 and group["loss"].val == 1.0
    assert str(group) == "acc1 1.000000 (0.750000)  loss 1.000000 (1.500000)"
    assert group.summary() == "acc1: 0.750000  loss: 1.500000"
    meter = AverageMeter("x", ":.2f")
    meter.update(3.0, n=3)
    meter.update(1.0)
    assert (meter.sum, meter.count, meter.avg) == (10.0, 4, 2.5) and str(meter) == "x 1.00 (2.50)"
    with pytest.raises(AttributeError, match="no meter named 'top5'"):
        _ = group.top5
