"""ProxylessNAS in the calling process: binary gates, the gates' gradient, the architecture-step
schedule, warm-up, ckpt_path / arch_path and resume."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader

from raynas.nas import apply_fixed_architecture
from raynas.nas.proxylessnas import MixedOp, ProxylessNasMutator, ProxylessNasTrainer
from raynas.nas.utils import mutable_counting_scope
from searchers.errors import ConfigError
from tests.models import build_spos, image_data

DATA = image_data()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
    MixedOp.forward_mode = None


def _model():
    with mutable_counting_scope():
        return build_spos()


class CountingTrainer(ProxylessNasTrainer):
    """Records where architecture steps happen: (unit, weight steps so far in the unit)."""

    def run_unit(self, unit):
        self._unit, self._batches = unit, 0
        return super().run_unit(unit)

    def _weight_step(self, images, labels, meters):
        self._batches += 1
        return super()._weight_step(images, labels, meters)

    def _gradient_step(self):
        self.arch_steps.append((self._unit, self._batches))
        return super()._gradient_step()


def _trainer(cls=ProxylessNasTrainer, model=None, **kw):
    torch.manual_seed(0)
    model = model or _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    train = DataLoader(DATA["train"], batch_size=8, shuffle=True)  # 5 batches
    valid = DataLoader(DATA["val"], batch_size=6)
    kw = {"n_epochs": 2, "warmup_epochs": 1, "grad_update_arch_param_every": 2, **kw}
    return cls(model, model_optim=opt, device="cpu", train_loader=train, valid_loader=valid, **kw)


def test_binary_gates_are_one_hot_and_unused_ops_leave_the_model():
    model = _model()
    mutator = ProxylessNasMutator(model)
    for alpha in mutator.get_architecture_parameters():
        alpha.data.normal_(0, 1e-3)
    torch.manual_seed(0)
    mutator.reset_binary_gates()
    for choice, gates in zip(mutator.mutable_list, mutator.binary_gates()):
        active = choice.registered_module.active_index[0]
        assert gates.tolist() == [1.0 if i == active else 0.0 for i in range(len(choice))]
    mutator.unused_modules_off()
    for choice in mutator.mutable_list:
        active = choice.registered_module.active_index[0]
        assert [op is not None for op in choice] == [i == active for i in range(len(choice))]
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 4)
    mutator.unused_modules_back()
    assert all(op is not None for choice in mutator.mutable_list for op in choice)
    assert mutator.num_arch_params() == 4


def test_architecture_gradient_is_the_softmax_chain_rule():
    model = _model()
    mutator = ProxylessNasMutator(model)
    op = mutator.mutable_list[0].registered_module
    op.ap_path_alpha.data.normal_(0, 1.0)
    gates_grad = torch.randn(op.n_choices)
    op.ap_path_wb.grad = gates_grad.clone()
    op.active_index = [1]
    op.set_arch_param_grad(mutator.mutable_list[0])
    alpha = op.ap_path_alpha.detach().clone().requires_grad_(True)
    (torch.softmax(alpha, 0) * gates_grad).sum().backward()
    assert torch.allclose(op.ap_path_alpha.grad, alpha.grad, atol=1e-6)


def test_full_v2_gates_get_every_ops_contribution():
    model = _model()
    mutator = ProxylessNasMutator(model)
    choice = mutator.mutable_list[1]
    op = choice.registered_module
    mutator.arch_requires_grad()
    mutator.change_forward_mode("full_v2")
    try:
        torch.manual_seed(0)
        mutator.reset_binary_gates()
        x = torch.randn(2, 8, 4, 4, requires_grad=True)
        out = choice(x)
        grad_out = torch.randn_like(out)
        out.backward(grad_out)
        expected = torch.stack([(cand(x).detach() * grad_out).sum() for cand in choice])
        assert torch.allclose(op.ap_path_wb.grad, expected, rtol=1e-5, atol=1e-5)
    finally:
        mutator.change_forward_mode(None)
        mutator.arch_disable_grad()


@pytest.mark.parametrize("mode", ["full_v2", "full", "two"])
def test_trainer_schedule_warmup_exports_and_checkpoints(tmp_path, mode):
    trainer = _trainer(
        CountingTrainer, binary_mode=mode, ckpt_path=str(tmp_path / "ckpt.pt"), arch_path=str(tmp_path / "arch.json")
    )
    trainer.arch_steps = []
    before = [a.detach().clone() for a in trainer.mutator.get_architecture_parameters()]
    trainer.train()
    # no architecture step while warming up nor in the first search epoch; after batches 2 and 4 of the second
    assert trainer.arch_steps == [(("train", 1), 2), (("train", 1), 4)]
    after = list(trainer.mutator.get_architecture_parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    assert (trainer.warmup_curr_epoch, trainer.train_curr_epoch) == (1, 2)
    arch = json.loads((tmp_path / "arch.json").read_text())
    assert all(sum(v) == 1 and all(isinstance(b, bool) for b in v) for v in arch.values())
    apply_fixed_architecture(_model(), arch)
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert (ckpt["warmup_curr_epoch"], ckpt["train_curr_epoch"]) == (1, 2)
    assert any(k.startswith("module.") and k.endswith("registered_module.ap_path_alpha") for k in ckpt["model"])


def test_load_ckpt_resumes_where_the_checkpoint_ends(tmp_path):
    first = _trainer(CountingTrainer, n_epochs=1, ckpt_path=str(tmp_path / "ckpt.pt"))
    first.arch_steps = []
    first.train()
    second = _trainer(CountingTrainer, n_epochs=2, ckpt_path=str(tmp_path / "ckpt.pt"), load_ckpt=True)
    second.arch_steps = []
    second.train()
    assert [u for u, _ in second.arch_steps] == [("train", 1), ("train", 1)]  # no warm-up again
    assert second.history[0]["unit"] == ("train", 1) and len(second.history) == 1


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="binary_mode must be one of full_v2, full, two, got 'half'"):
        _trainer(binary_mode="half")
    with pytest.raises(ConfigError, match="train_loader must be a torch DataLoader"):
        ProxylessNasTrainer(_model(), None, "cpu", [1, 2], DataLoader(DATA["val"]))
    with pytest.raises(ConfigError, match="load_ckpt=True needs ckpt_path"):
        _trainer(load_ckpt=True).train()
    assert isinstance(_trainer().validate(), tuple)
