"""NNI's SPOSEvolution: its epochs through NNI's dispatcher protocol (st_callback) and through
TunerSearcher's Searcher protocol, its files, its _is_legal hook, its errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from searchers import NoMoreTrialError, SPOSEvolution
from searchers.errors import ConfigError
from searchers.space import SearchSpaceError, canonical_hash
from searchers.tune import TunerSearcher

SPACE = {f"op{i}": {"_type": "layer_choice", "_value": ["a", "b", "c", "d"]} for i in range(3)}  # 64 archs


def score(params: dict) -> float:
    return float(sum(p["_idx"] for p in params.values()))


def _tuner(tmp_path, **kw) -> SPOSEvolution:
    kw = {"max_epochs": 3, "num_select": 2, "num_population": 6, "num_mutation": 2, "num_crossover": 2, **kw}
    return SPOSEvolution(checkpoint_dir=str(tmp_path / "checkpoints"), **kw)


def test_nni_dispatcher_protocol_runs_epochs_and_writes_nni_files(tmp_path):
    tuner = _tuner(tmp_path, m_prob=0.0)  # no mutant differs from its parent: epoch 1 starts with crossovers
    tuner.update_search_space(SPACE)
    sent: list[tuple[int, dict]] = []
    assert tuner.generate_multiple_parameters(range(100), st_callback=lambda pid, p: sent.append((pid, p))) == []
    epochs = []
    while True:
        batch, sent[:] = list(sent), []
        if not batch:
            break
        epochs.append([p for _pid, p in batch])
        for pid, params in batch:
            tuner.receive_trial_result(pid, params, score(params))
            tuner.trial_end(pid, True)
    assert [len(e) for e in epochs] == [6, 6, 6] and tuner.epoch == 3
    proposed = [canonical_hash(p, SPACE) for e in epochs for p in e]
    assert len(set(proposed)) == len(proposed), "a candidate was proposed twice"
    files = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert files == [f"000_{i:03d}.json" for i in range(6)] + [f"{e:03d}_{i:03d}.json" for e in (1, 2, 3) for i in range(2)]
    survivors = [json.loads((tmp_path / "checkpoints" / f"001_{i:03d}.json").read_text()) for i in range(2)]
    best = sorted(epochs[0], key=score, reverse=True)[:2]
    assert survivors == [{k: [j == v["_idx"] for j in range(4)] for k, v in b.items()} for b in best]
    first = epochs[1][0]  # crossovers are queued first: each key from one of the two survivors
    assert all(first[k] in (best[0][k], best[1][k]) for k in first)


def test_tuner_searcher_protocol_waits_for_each_epoch_and_finishes(tmp_path):
    searcher = TunerSearcher(_tuner(tmp_path, max_epochs=2), search_space=SPACE, metric="score", mode="max")
    running, seen, waits = {}, [], 0
    for n in range(40):
        config = searcher.suggest(f"t{n}")
        if config == TunerSearcher.FINISHED:
            break
        if config is None:
            waits += 1
            for trial_id, arch in list(running.items()):  # the epoch's last results arrive
                searcher.on_trial_complete(trial_id, {"score": score(arch)})
                del running[trial_id]
            continue
        running[f"t{n}"] = config["arch"]
        seen.append(canonical_hash(config["arch"], SPACE))
        if len(running) > 2:  # results arrive out of order while the epoch is handed out
            trial_id = sorted(running)[0]
            searcher.on_trial_complete(trial_id, {"score": score(running.pop(trial_id))})
    assert config == TunerSearcher.FINISHED
    assert len(seen) == 12 == len(set(seen)) and waits == 2


def test_is_legal_is_the_hook_nni_examples_override(tmp_path):
    class EvolutionWithFlops(SPOSEvolution):  # NNI's examples/nas/spos/tuner.py, with a toy cost
        def __init__(self, flops_limit=3, **kwargs):
            super().__init__(**kwargs)
            self.flops_limit = flops_limit

        def _is_legal(self, cand):
            return super()._is_legal(cand) and score(cand) <= self.flops_limit

    tuner = EvolutionWithFlops(
        max_epochs=2, num_select=2, num_population=5, num_mutation=2, num_crossover=2,
        checkpoint_dir=str(tmp_path / "ck"),
    )
    tuner.update_search_space(SPACE)
    for epoch in range(2):
        proposals = []
        while True:
            try:
                proposals.append((len(proposals) + 10 * epoch, tuner.generate_parameters(len(proposals) + 10 * epoch)))
            except NoMoreTrialError:  # the epoch is handed out
                break
        assert proposals and all(score(p) <= 3 for _pid, p in proposals)
        for pid, p in proposals:
            tuner.receive_trial_result(pid, p, {"default": score(p)})
            tuner.trial_end(pid, True)


def test_errors_name_the_rule(tmp_path):
    with pytest.raises(ConfigError, match="num_population >= num_select, got num_population=2, num_select=3"):
        SPOSEvolution(num_select=3, num_population=2)
    with pytest.raises(ConfigError, match="m_prob must be a probability in \\[0, 1\\], got 2"):
        SPOSEvolution(m_prob=2)
    tuner = _tuner(tmp_path)
    with pytest.raises(SearchSpaceError, match="layer choices only.*input choice 'skip'"):
        tuner.update_search_space({"skip": {"_type": "input_choice", "_value": {"candidates": ["a"], "n_chosen": 1}}})


def test_torch_free():
    code = "import sys, searchers, searchers.spos_evolution; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_loads_as_a_raynas_search_searcher(tmp_path, monkeypatch):
    from searchers.tune import load_searcher

    monkeypatch.chdir(tmp_path)  # NNI's default checkpoint_dir is ./checkpoints
    searcher = load_searcher(
        "searchers:SPOSEvolution", search_space=SPACE, metric="score", mode="max", seed=3, max_epochs=1,
        num_population=2, num_select=1,
    )
    assert isinstance(searcher.tuner, SPOSEvolution) and searcher.tuner.max_epochs == 1
    config = searcher.suggest("t0")
    assert set(config["arch"]) == set(SPACE)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["000_000.json", "000_001.json"]
