"""Checkpoints are data, not code: a tampered file is refused and nothing in it runs; a truncated
``last.pt`` falls back to the newest readable epoch file; anything else unreadable fails with one
line naming the file; a payload with objects other than data is never written."""

from __future__ import annotations

import logging
import os
import pickle

import pytest
import torch

from raynas.retrain import RetrainSetup, run_retrain_local
from raynas.train import CheckpointError, load_checkpoint, save_checkpoint, train_supernet
from raynas.train.checkpoint import CorruptCheckpointError, UnsafeCheckpointError, read_data
from tests.train.conftest import FACTORY, slice_mnist1d, small_config


class WritesMarker:
    """Unpickling it would run ``open(marker, "w")``: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _tampered(path, marker, *, legacy: bool = False) -> None:
    payload = {"format": "raynas.supernet/1", "model": {"w": torch.ones(2)}, "epoch": 1, "hook": WritesMarker(marker)}
    if legacy:  # a plain pickle, as `pickle.dump` writes it
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    else:
        torch.save(payload, path)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 3-epoch local run keeping every epoch file: epoch-0001..3.pt and last.pt."""
    out = tmp_path_factory.mktemp("run")
    config = small_config(epochs=3, algorithm="spos", keep_checkpoints=3)
    train_supernet(FACTORY, slice_mnist1d(128, 32), config, out_dir=out, local=True)
    return out


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("legacy", [False, True])
def test_a_tampered_checkpoint_is_refused_and_nothing_runs(tmp_path, legacy):
    marker = tmp_path / "pwned"
    _tampered(tmp_path / "last.pt", marker, legacy=legacy)
    (tmp_path / "checkpoints").mkdir()
    os.replace(tmp_path / "last.pt", tmp_path / "checkpoints" / "last.pt")
    with pytest.raises(UnsafeCheckpointError) as info:
        train_supernet(FACTORY, {}, small_config(), out_dir=tmp_path, local=True, resume=True)
    message = str(info.value)
    assert "\n" not in message and "refused to load supernet checkpoint" in message and "last.pt" in message
    if not legacy:
        assert "'io.open'" in message  # what it would have called
    assert not marker.exists()


def test_a_truncated_last_checkpoint_falls_back_to_the_previous_one(tmp_path, run_dir, caplog):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    folder = out / "checkpoints"
    expected = load_checkpoint(folder / "epoch-0003.pt")
    _truncate(folder / "last.pt")
    with caplog.at_level(logging.WARNING, logger="raynas.train.checkpoint"):
        data = load_checkpoint(out)
    assert data["epoch"] == 3 and all(torch.equal(v, expected["model"][k]) for k, v in data["model"].items())
    (line,) = [r.getMessage() for r in caplog.records]
    assert "last.pt" in line and "truncated or corrupt" in line and "falling back to" in line and "epoch-0003.pt" in line

    _truncate(folder / "epoch-0003.pt")  # the previous one too: the one before it
    assert load_checkpoint(out)["epoch"] == 2
    # resume continues from there and finishes the run
    result = train_supernet(FACTORY, slice_mnist1d(128, 32), small_config(epochs=3, algorithm="spos",
                            keep_checkpoints=3), out_dir=out, local=True, resume=True)  # fmt: skip
    assert result.epochs == 3 and load_checkpoint(out)["epoch"] == 3

    for p in folder.glob("*.pt"):
        _truncate(p)
    with pytest.raises(CorruptCheckpointError) as info:
        load_checkpoint(out)
    assert "\n" not in str(info.value) and "last.pt" in str(info.value) and "no readable epoch" in str(info.value)


def test_an_unreadable_file_fails_with_one_line_naming_it(tmp_path, run_dir):
    path = tmp_path / "epoch-0002.pt"
    path.write_bytes((run_dir / "checkpoints" / "epoch-0002.pt").read_bytes()[:1000])
    with pytest.raises(CorruptCheckpointError) as info:
        load_checkpoint(path)  # an epoch file asked for by name: no fallback
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CorruptCheckpointError, match="empty.pt"):
        read_data(tmp_path / "empty.pt")


def test_only_data_is_written(tmp_path):
    import numpy as np

    payload = {"model": {}, "optimizer": {}, "rank_states": [{"mutator": {"n": np.int64(3)}}], "epoch": 1,
               "step": 1, "config": {"x": 1.5}}  # fmt: skip
    save_checkpoint(payload, tmp_path)
    assert load_checkpoint(tmp_path)["rank_states"][0]["mutator"]["n"] == 3  # a numpy scalar becomes an int
    with pytest.raises(CheckpointError, match=r"'checkpoint.config.hook' is a .*WritesMarker"):
        save_checkpoint({**payload, "config": {"hook": WritesMarker(tmp_path / "x")}}, tmp_path)


def test_a_tampered_retrain_checkpoint_is_refused(tmp_path):
    from raynas.zoo.mnist1d import build_supernet

    marker = tmp_path / "pwned"
    work = tmp_path / "retrain"
    work.mkdir()
    _tampered(work / "arch_000.pt", marker)
    setup = RetrainSetup(model_factory=build_supernet, data_factory=lambda: {}, archs=[{}], search_scores=[None],
                         epochs=1, optimizer="adam", lr=0.01, weight_decay=0.0, batch_size=32, seed=0)  # fmt: skip
    with pytest.raises(UnsafeCheckpointError, match="refused to load retrain checkpoint .*arch_000.pt"):
        run_retrain_local(setup=setup, work_dir=work, flops=[0])
    assert not marker.exists()
