"""Checkpoint files: atomic writes, contents, errors, resume rules."""

from __future__ import annotations

import pytest
import torch

from raynas.train import (
    CheckpointError,
    CheckpointExistsError,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    train_supernet,
)
from tests.train.conftest import FACTORY, small_config


def _payload(epoch: int) -> dict:
    return {
        "model": {"w": torch.full((3,), float(epoch))},
        "optimizer": {},
        "rank_states": [],
        "epoch": epoch,
        "step": 10 * epoch,
        "config": {},
    }


def test_save_is_atomic_and_keeps_the_newest(tmp_path):
    for epoch in range(1, 5):
        save_checkpoint(_payload(epoch), tmp_path, keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["epoch-0003.pt", "epoch-0004.pt", "last.pt"]  # no temporary files left
    data = load_checkpoint(tmp_path)  # a run directory resolves to its last.pt
    assert data["epoch"] == 4 and torch.equal(data["model"]["w"], torch.full((3,), 4.0))
    assert load_checkpoint(tmp_path / "checkpoints" / "epoch-0003.pt")["step"] == 30
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "last.pt"
    assert latest_checkpoint(tmp_path / "nothing") is None


def test_errors(tmp_path):
    with pytest.raises(CheckpointError, match="needs the entry 'model'"):
        save_checkpoint({"epoch": 1}, tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"hello": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a raynas supernet checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_text("junk")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "junk.pt")


def test_checkpoint_contents_and_resume_rules(tmp_path, small_data):
    config = small_config(epochs=1, algorithm="spos")
    train_supernet(FACTORY, small_data, config, out_dir=tmp_path, local=True)
    data = load_checkpoint(tmp_path)
    assert {"model", "optimizer", "scaler", "rank_states", "epoch", "step", "config", "history"} <= set(data)
    assert data["epoch"] == 1 and data["step"] == 20 and data["replicas"] == 1
    assert data["config"]["algorithm"] == "spos"
    rank = data["rank_states"][0]
    assert "_extra_state" in rank["mutator"] and "rng" in rank["mutator"]["_extra_state"]
    assert isinstance(rank["torch_rng"], torch.Tensor)
    assert all(t.device.type == "cpu" for t in data["model"].values())
    with pytest.raises(CheckpointExistsError, match="already holds a supernet checkpoint.*resume=True"):
        train_supernet(FACTORY, small_data, config, out_dir=tmp_path, local=True)
    # resume=True with nothing left to train keeps the weights as they are
    again = train_supernet(FACTORY, small_data, config, out_dir=tmp_path, local=True, resume=True)
    assert again.epochs == 1
    weights = again.state_dict()
    assert all(torch.equal(weights[k], v) for k, v in data["model"].items())
