"""DARTS, ENAS and ProxylessNAS trained by ``train_supernet``: replicas on Ray keep weights AND architecture
parameters bit-identical, local mode, resume, the exported architecture, and the CLI end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from raynas.nas import to_decisions
from raynas.train import Callback, CheckpointError, final_architecture, load_checkpoint, train_supernet
from raynas.train.sampling import build_mutator
from raynas.zoo.mnist1d import build_supernet
from tests.train.conftest import FACTORY, small_config
from tests.train.helpers import EpochEndStates, disagreeing

KEYS = {"op0", "op1", "op2", "op3", "skip1", "skip2", "skip3"}


def _arch_state(checkpoint: dict, rank: int = 0) -> dict:
    return {k: v for k, v in checkpoint["rank_states"][rank]["mutator"].items() if k != "_extra_state"}


def _equal(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize(
    ("algorithm", "changes"),
    [
        ("darts", {}),
        ("darts", {"darts_order": 2}),
        ("enas", {"sampling": "independent"}),
        ("proxylessnas", {"sampling": "independent", "proxylessnas_arch_every": 1}),
    ],
    ids=["darts", "darts-order2", "enas-independent", "proxylessnas-independent"],
)
def test_two_ray_replicas_keep_weights_and_arch_parameters_bit_identical(tmp_path, small_data, algorithm, changes):
    """640 samples -> two halves of 320 -> 5 steps per epoch per replica at batch 32."""
    config = small_config(algorithm=algorithm, epochs=2, arch_lr=0.01, **changes)
    ends = EpochEndStates()
    result = train_supernet(FACTORY, small_data, config, out_dir=tmp_path, trace=True, callbacks=[ends])
    rank0, rank1 = result.trace
    assert [t["step"] for t in rank0] == [t["step"] for t in rank1] == list(range(1, 11))
    assert [t["digest"] for t in rank0] == [t["digest"] for t in rank1]
    # and every buffer at each epoch's end (BatchNorm statistics averaged; ENAS' independent
    # paths count different batches per replica)
    assert len(ends.states) == 2
    for states in ends.states:
        assert disagreeing(states, integers=algorithm == "darts") == []
    arch_digests = [t["arch_digest"] for t in rank0]
    assert arch_digests == [t["arch_digest"] for t in rank1]
    assert len(set(arch_digests)) == 10  # every step moved the architecture parameters
    assert len({t["digest"] for t in rank0}) == 10
    checkpoint = load_checkpoint(result.checkpoint)
    assert _equal(_arch_state(checkpoint, 0), _arch_state(checkpoint, 1))
    architecture = final_architecture(tmp_path)
    assert set(architecture) == KEYS
    to_decisions(architecture, build_supernet())  # a valid architecture of the space
    saved = json.loads((tmp_path / "architectures" / "epoch-0002.json").read_text())
    assert saved["architecture"] == architecture
    assert set(result.history[-1]["arch"]) >= ({"reward", "baseline"} if algorithm == "enas" else {"arch_loss"})
    if algorithm == "darts":  # float decisions: every candidate trains every step, every input connected
        weights = rank0[-1]["path"]
        assert all(0.0 < w < 1.0 for key in KEYS if key.startswith("op") for w in weights[key])
        assert all(weights[key] == [1.0] * int(key[-1]) for key in KEYS if key.startswith("skip"))
        assert rank0[-1]["path"] == rank1[-1]["path"]
    else:  # independent sampling: each replica its own path, one controller / one set of gates
        assert sum(a["path"] == b["path"] for a, b in zip(rank0, rank1)) < 10


def _alphas(checkpoint: dict) -> torch.Tensor:
    state = _arch_state(checkpoint)
    assert set(state) == {f"choices.op{i}" for i in range(4)}  # NNI: one alpha per LayerChoice
    return torch.cat([state[f"choices.op{i}"] for i in range(4)])


def test_local_darts_moves_alpha_and_exports(tmp_path, small_data):
    config = small_config(algorithm="darts", epochs=2, replicas=1, arch_lr=0.01)
    result = train_supernet(FACTORY, small_data, config, out_dir=tmp_path, local=True)
    assert result.local and result.steps == 20  # 320 weight-half samples / batch 32, twice
    alphas = _alphas(load_checkpoint(result.checkpoint))
    assert alphas.abs().max() > 0.01
    assert set(final_architecture(result.checkpoint)) == KEYS


def test_local_proxylessnas_steps_the_gates_every_nth_step_and_exports(tmp_path, small_data):
    """NNI's grad_update_arch_param_every: an architecture step on every 3rd step only; the
    export is each LayerChoice's most probable op, every input of the n_chosen=None skips."""
    config = small_config(algorithm="proxylessnas", epochs=1, replicas=1, arch_lr=0.05, proxylessnas_arch_every=3)
    result = train_supernet(FACTORY, small_data, config, out_dir=tmp_path, local=True, trace=True)
    assert result.local and result.steps == 10
    digests = [t["arch_digest"] for t in result.trace[0]]
    moved = [i + 1 for i in range(10) if digests[i] != (digests[i - 1] if i else None)]
    assert moved[1:] == [3, 6, 9]  # step 1 differs from "nothing"; then every 3rd step moves them
    assert all(sum(t["path"][f"op{i}"]) == 1.0 for t in result.trace[0] for i in range(4))  # one op per step
    state = _arch_state(load_checkpoint(result.checkpoint))
    alphas = {k: v for k, v in state.items() if k.endswith("ap_path_alpha")}
    assert len(alphas) == 4
    names = build_supernet().ops[0].names
    architecture = final_architecture(tmp_path)
    for i in range(4):
        assert architecture[f"op{i}"] == names[int(alphas[f"mixed_ops.{i}.ap_path_alpha"].argmax())]
    assert architecture["skip3"] == ["stem", "op0", "op1"]
    to_decisions(architecture, build_supernet())


def test_proxylessnas_refuses_an_input_choice_with_n_chosen():
    from raynas.nas.proxylessnas.supernet import ProxylessSupernetMutator
    from searchers.errors import ConfigError
    from tests.models import build_enas

    with pytest.raises(ConfigError, match="proxylessnas.*n_chosen"):
        ProxylessSupernetMutator(build_enas(), seed=0)


class _Interrupt(Exception):
    pass


class _StopAfter(Callback):
    def on_epoch_end(self, run, metrics):
        if metrics.epoch == 0:
            raise _Interrupt("stop after the first epoch")


@pytest.mark.parametrize("algorithm", ["darts", "enas", "proxylessnas"])
def test_local_resume_continues_the_mutator_exactly(tmp_path, small_data, algorithm):
    """Alpha / controller, its Adam moments, its RNG and the ENAS baseline travel in the checkpoint."""
    config = small_config(algorithm=algorithm, epochs=2, replicas=1, arch_lr=0.01, proxylessnas_arch_every=3)
    whole = load_checkpoint(train_supernet(FACTORY, small_data, config, out_dir=tmp_path / "a", local=True).checkpoint)
    with pytest.raises(_Interrupt):
        train_supernet(FACTORY, small_data, config, out_dir=tmp_path / "b", local=True, callbacks=[_StopAfter()])
    resumed = train_supernet(FACTORY, small_data, config, out_dir=tmp_path / "b", local=True, resume=True)
    final = load_checkpoint(resumed.checkpoint)
    assert _equal(final["model"], whole["model"])
    assert _equal(_arch_state(final), _arch_state(whole))
    extra, extra_whole = (c["rank_states"][0]["mutator"]["_extra_state"] for c in (final, whole))
    assert extra["rng"] == extra_whole["rng"]
    assert extra.get("baseline") == extra_whole.get("baseline")
    moments = [s["exp_avg"] for s in extra["arch_optimizer"]["state"].values()]
    moments_whole = [s["exp_avg"] for s in extra_whole["arch_optimizer"]["state"].values()]
    assert all(torch.equal(a, b) for a, b in zip(moments, moments_whole)) and moments
    assert final["architecture"] == whole["architecture"]


def test_arch_warmup_epochs_hold_the_architecture_still(tmp_path, small_data):
    config = small_config(algorithm="darts", epochs=1, replicas=1, arch_warmup_epochs=1.0)
    result = train_supernet(FACTORY, small_data, config, out_dir=tmp_path, local=True)
    initial = build_mutator(build_supernet(), config=config, rank=0, example=None)
    assert torch.equal(_alphas(load_checkpoint(result.checkpoint)), torch.cat(list(initial.choices.values())))
    assert "arch" not in result.history[-1]


def test_a_random_run_exports_no_architecture(tmp_path, small_data):
    result = train_supernet(FACTORY, small_data, small_config(epochs=1, replicas=1), out_dir=tmp_path, local=True)
    with pytest.raises(CheckpointError, match="algorithm 'random'"):
        final_architecture(result.checkpoint)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["darts", "proxylessnas"])
def test_cli_search_with_a_learnable_algorithm_and_no_samples_retrains_the_exported_architecture(tmp_path, algorithm):
    """The real CLI in a subprocess (local mode, tiny): supernet (DARTS / ProxylessNAS) -> no
    search -> the exported architecture is retrained -> report."""
    import pyarrow.parquet as pq

    sets = [
        f"supernet.algorithm={algorithm}",
        "supernet.proxylessnas_arch_every=2",
        "search.num_samples=0",
        "supernet.epochs=2",
        "supernet.progress=false",
        "retrain.epochs=1",
        f"experiment.storage={tmp_path}",
        "experiment.name=darts",
    ]
    args = [sys.executable, "-m", "raynas.cli", "search", "--local"]
    for item in sets:
        args += ["--set", item]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    root = tmp_path / "darts"
    exported = final_architecture(root / "supernet")
    rows = pq.read_table(root / "results" / "retrain.parquet").to_pylist()
    assert len(rows) == 1 and json.loads(rows[0]["arch"]) == exported
    assert rows[0]["test_accuracy"] is not None and rows[0]["search_val_accuracy"] is None
    assert json.loads((root / "best_architecture.json").read_text()) == exported
    assert pq.read_table(root / "results" / "search.parquet").num_rows == 0
