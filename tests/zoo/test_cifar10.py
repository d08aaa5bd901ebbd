"""``raynas.zoo.cifar10``: the loader on a tiny folder in the official format, its augmentation,
its restricted unpickler, the DARTS-cell supernet, and a search end to end."""

from __future__ import annotations

import inspect
import json
import os
import pickle
import re
import shlex

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from raynas.experiment.config import load_config
from raynas.nas import (
    DartsMutator,
    RandomMutator,
    apply_fixed_architecture,
    copy_supernet_weights,
    generate_search_space,
    to_exported,
)
from raynas.zoo import cifar10
from raynas.zoo._safe_pickle import UnsafePickleError, load_data_pickle
from searchers.errors import ConfigError
from tests.experiment.cli_helpers import REPO, run_cli, sets
from tests.zoo.cifar_files import write_cifar_folder

TINY_NET = {"channels": 4, "layers": 3, "nodes": 2}
PER_BATCH = 20  # 100 training images, 20 test images
VAL = 10


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py"
    return root, write_cifar_folder(root, per_batch=PER_BATCH)


@pytest.fixture(scope="module")
def data(folder):
    return cifar10.load_data(root=folder[0], val_size=VAL)


def _normalised(images: np.ndarray) -> torch.Tensor:
    mean = torch.tensor(cifar10.MEAN).view(3, 1, 1)
    std = torch.tensor(cifar10.STD).view(3, 1, 1)
    return (torch.from_numpy(images).float() / 255 - mean) / std


# -- the data ------------------------------------------------------------------------------------


def test_splits_shapes_dtypes_and_labels(folder, data):
    _root, expected = folder
    train_x, train_y = expected["train"]
    assert {k: len(v) for k, v in data.items()} == {"train": 90, "val": VAL, "test": PER_BATCH}
    assert isinstance(data["train"], cifar10.Cifar10Images) and isinstance(data["val"], TensorDataset)
    x, y = data["train"][3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(data["train"].images, torch.from_numpy(train_x[:90]))  # batches 1..5 in order
    assert torch.equal(data["train"].labels, torch.from_numpy(train_y[:90]))
    test_x, test_y = data["test"].tensors
    assert torch.allclose(test_x, _normalised(expected["test"][0]), atol=1e-6)
    assert torch.equal(test_y, torch.from_numpy(expected["test"][1]))
    assert test_x.dtype == torch.float32 and test_y.dtype == torch.int64


def test_val_is_the_last_training_images(folder, data):
    root, expected = folder
    train_x, train_y = expected["train"]
    val_x, val_y = data["val"].tensors
    assert torch.allclose(val_x, _normalised(train_x[-VAL:]), atol=1e-6)
    assert torch.equal(val_y, torch.from_numpy(train_y[-VAL:]))
    again = cifar10.load_data(root=root.parent, val_size=25)  # the folder holding it works too
    assert len(again["train"]) == 75 and torch.equal(again["val"].tensors[1], torch.from_numpy(train_y[-25:]))
    with pytest.raises(ConfigError, match=r"val_size must be a positive integer in 1\.\.99 \(the training images\), got 100"):
        cifar10.load_data(root=root, val_size=100)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_python3_pickles_of_the_same_layout_load_the_same(tmp_path, protocol):
    expected = write_cifar_folder(tmp_path, per_batch=3, protocol=protocol)
    data = cifar10.load_data(root=tmp_path, val_size=2)
    assert torch.equal(data["train"].images, torch.from_numpy(expected["train"][0][:13]))
    assert torch.equal(data["test"].tensors[1], torch.from_numpy(expected["test"][1]))


def test_augmentation_changes_train_samples_only(folder, data):
    root, expected = folder
    torch.manual_seed(0)
    train = data["train"]
    plain = cifar10.load_data(root=root, val_size=VAL, augment=False)["train"]
    changed = [not torch.equal(train[i][0], train[i][0]) for i in range(20)]
    assert sum(changed) >= 15  # 1/162 of draws repeat the previous one
    for i in range(20):
        assert torch.allclose(plain[i][0], _normalised(expected["train"][0][i]), atol=1e-6)
        assert torch.equal(plain[i][0], plain[i][0]) and torch.equal(data["val"][i % VAL][0], data["val"][i % VAL][0])
        assert torch.equal(train[i][1], plain[i][1])


def _window(image: torch.Tensor, out: torch.Tensor, pad: int = 4) -> tuple[int, int, bool]:
    """The (top, left, flipped) of ``out`` among the crops of ``image`` padded by zeros."""
    padded = torch.nn.functional.pad(image, (pad, pad, pad, pad))
    found = [
        (top, left, flip)
        for top in range(2 * pad + 1)
        for left in range(2 * pad + 1)
        for flip in (False, True)
        if torch.equal(out, (lambda w: w.flip(-1) if flip else w)(padded[:, top : top + 32, left : left + 32]))
    ]
    assert len(found) == 1, found
    return found[0]


def test_crops_keep_the_shape_and_flips_happen_half_the_time(data):
    image = data["train"].images[0]
    torch.manual_seed(0)
    draws = [_window(image, out) for out in (data["train"].crop_and_flip(image) for _ in range(1500))]
    assert {(t, left) for t, left, _f in draws} == {(t, left) for t in range(9) for left in range(9)}
    flipped = sum(f for _t, _l, f in draws) / len(draws)
    assert 0.45 < flipped < 0.55, flipped
    torch.manual_seed(0)
    assert [_window(image, data["train"].crop_and_flip(image)) for _ in range(20)] == draws[:20]  # seeded


def test_loader_workers_draw_their_own_augmentations(data):
    """The per-worker seed drives the draws: two workers never replay one stream (as an RNG seeded
    once in the parent and copied into each worker would), and a seeded loader repeats itself."""
    one = data["train"].images[:1].expand(16, 3, 32, 32).contiguous()  # one image, 16 times
    same = cifar10.Cifar10Images(one, torch.zeros(16, dtype=torch.int64))

    def batches(seed: int) -> list[torch.Tensor]:
        loader = DataLoader(same, batch_size=8, num_workers=2, generator=torch.Generator().manual_seed(seed))
        return [x for x, _y in loader]

    first, second = batches(0)  # batch 0 from worker 0, batch 1 from worker 1
    assert not torch.equal(first, second)
    assert all(torch.equal(a, b) for a, b in zip(batches(0), [first, second]))
    assert not torch.equal(batches(1)[0], first)


# -- bad folders and files -----------------------------------------------------------------------


def test_a_missing_folder_says_where_to_put_it_and_where_to_get_it(tmp_path, monkeypatch):
    with pytest.raises(ConfigError) as info:
        cifar10.load_data(root=tmp_path / "nowhere")
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "nowhere") in message and cifar10.URL in message
    assert "data_batch_1" in message and "cifar-10-batches-py" in message and "RAYNAS_CIFAR10" in message
    monkeypatch.setenv("RAYNAS_CIFAR10", str(tmp_path / "elsewhere"))
    assert cifar10.default_root() == tmp_path / "elsewhere"
    with pytest.raises(ConfigError, match="elsewhere lacks data_batch_1"):
        cifar10.load_data()
    write_cifar_folder(tmp_path / "elsewhere", per_batch=2)
    (tmp_path / "elsewhere" / "test_batch").unlink()
    with pytest.raises(ConfigError, match=r"elsewhere lacks test_batch; download https://www\.cs\.toronto"):
        cifar10.load_data(val_size=1)


@pytest.mark.parametrize(
    "kwargs, says",
    [
        ("{root: ROOT}", "CIFAR-10 not found: ROOT lacks data_batch_1"),
        ("{root: ROOT, val_size: 0}", None),  # the folder is checked first
        ("{val_sise: 10}", "data.kwargs {'val_sise': 10} do not fit data.name 'cifar10': got an unexpected keyword"),
    ],
)
def test_the_cli_refuses_missing_files_and_bad_kwargs_before_writing_anything(tmp_path, kwargs, says):
    root = str(tmp_path / "nowhere")
    extra = ["data.name=cifar10", f"data.kwargs={kwargs.replace('ROOT', root)}",
             "model.factory=raynas.zoo.cifar10:build_supernet", f"model.kwargs={json.dumps(TINY_NET)}"]  # fmt: skip
    result = run_cli("search", "--local", *sets(tmp_path, "cifar", extra), RAYNAS_CIFAR10=root)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert (says or "CIFAR-10 not found: ROOT").replace("ROOT", root) in lines[0]
    assert not (tmp_path / "cifar").exists()


class _RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Evaluates:
    def __reduce__(self):
        return eval, ("1 + 1",)


@pytest.mark.parametrize("protocol", [2, 5])
@pytest.mark.parametrize(
    "payload, refused",
    [
        (lambda marker: _RunsACommand(marker), r"names posix\.system"),
        (lambda marker: {b"data": _RunsACommand(marker), b"labels": []}, r"names posix\.system"),
        (lambda marker: _Evaluates(), r"names builtins\.eval"),
        (lambda marker: {b"data": np.array([1, "x"], dtype=object), b"labels": [0, 1]}, "not a plain numeric dtype"),
    ],
    ids=["os.system", "os.system-in-a-batch", "eval", "object-array"],
)
def test_the_unpickler_refuses_anything_but_data(tmp_path, payload, refused, protocol):
    marker = tmp_path / "ran"
    root = tmp_path / "cifar"
    write_cifar_folder(root, per_batch=2)
    (root / "data_batch_3").write_bytes(pickle.dumps(payload(marker), protocol=protocol))
    with pytest.raises(UnsafePickleError, match=f"refused to unpickle {root / 'data_batch_3'}: it {refused}|{refused}") as info:
        cifar10.load_data(root=root, val_size=1)
    assert "\n" not in str(info.value) and isinstance(info.value, ConfigError)
    assert not marker.exists()  # nothing ran


def test_files_that_are_not_batches(tmp_path):
    (tmp_path / "junk").write_bytes(b"not a pickle")
    with pytest.raises(UnsafePickleError, match="junk is not a readable data pickle"):
        load_data_pickle(tmp_path / "junk")
    (tmp_path / "list").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ConfigError, match="is not a CIFAR-10 batch: it holds a list"):
        cifar10.read_batch(tmp_path / "list")
    (tmp_path / "floats").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072)), b"labels": [0, 1]}))
    with pytest.raises(ConfigError, match=r"b'data' must be a uint8 \(N, 3072\) array, got float64 \(2, 3072\)"):
        cifar10.read_batch(tmp_path / "floats")
    (tmp_path / "labels").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}))
    with pytest.raises(ConfigError, match="b'labels' must be 2 class indices in 0..9"):
        cifar10.read_batch(tmp_path / "labels")


# -- the supernet --------------------------------------------------------------------------------


def test_supernet_keys_are_explicit_and_shared_by_cells_of_a_kind():
    RandomMutator(cifar10.build_supernet(), seed=0)  # another model first: keys do not count models
    model = cifar10.build_supernet(**TINY_NET)
    assert [cell.reduction for cell in model.cells] == [False, True, True]
    space = generate_search_space(model)
    edges = [f"{kind}_n{j}_p{i}" for kind in ("normal", "reduce") for j in (2, 3) for i in range(j)]
    switches = [f"{kind}_n{j}_switch" for kind in ("normal", "reduce") for j in (2, 3)]
    assert sorted(space) == sorted(edges + switches)
    assert space["reduce_n3_p2"] == {"_type": "layer_choice", "_value": list(cifar10.OPS)}
    assert space["normal_n3_switch"]["_value"] == {
        "candidates": ["normal_n3_p0", "normal_n3_p1", "normal_n3_p2"], "n_chosen": 2}
    assert generate_search_space(cifar10.build_supernet(**TINY_NET)) == space
    assert len(generate_search_space(cifar10.build_supernet())) == 2 * (2 + 3 + 4 + 3)
    with pytest.raises(ConfigError, match="cifar10 supernet: nodes must be a positive integer, got 0"):
        cifar10.build_supernet(nodes=0)


def _fixed(arch: dict) -> torch.nn.Module:
    model = cifar10.build_supernet(**TINY_NET)
    assert apply_fixed_architecture(model, arch).export() == arch
    return model


@pytest.mark.parametrize("how", ["random", "darts"])
def test_exported_architectures_fix_run_and_reload_strictly(how):
    torch.manual_seed(0)
    supernet = cifar10.build_supernet(**TINY_NET)
    x = torch.randn(4, 3, 32, 32)
    if how == "darts":  # NNI's DARTS export: the strongest op per kept edge, [] for pruned edges
        mutator = DartsMutator(supernet, seed=0)
        mutator.reset()
        supernet(x)
        arch = mutator.export()
        assert [] in arch.values()
    else:
        mutator = RandomMutator(supernet, seed=0)
        decisions = mutator.sample_search()
        mutator.apply_decisions(decisions)
        supernet.train()
        supernet(x)  # BatchNorm statistics to copy
        arch = to_exported(decisions, supernet)
    arch = json.loads(json.dumps(arch))  # as written to best_architecture.json
    fixed = _fixed(arch)
    if how == "random":
        copy_supernet_weights(supernet, fixed)
        supernet.eval()
        fixed.eval()
        with torch.no_grad():
            assert torch.allclose(fixed(x), supernet(x), atol=1e-5)
    assert not any(p.numel() == 0 for p in fixed.parameters())
    fixed.eval()
    again = _fixed(arch)
    again.load_state_dict(fixed.state_dict(), strict=True)
    again.eval()
    with torch.no_grad():
        assert fixed(x).shape == (4, 10) and torch.equal(again(x), fixed(x))
    assert sum(p.numel() for p in fixed.parameters()) < sum(p.numel() for p in supernet.parameters())


def test_ss_gen_writes_the_space(tmp_path):
    out = tmp_path / "space.json"
    result = run_cli("ss-gen", "raynas.zoo.cifar10:build_supernet", "--kwargs", json.dumps(TINY_NET), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text()) == generate_search_space(cifar10.build_supernet(**TINY_NET))


# -- end to end ----------------------------------------------------------------------------------


def test_the_readme_cluster_command_is_a_valid_cifar10_config():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### CIFAR-10") :]
    command = next(b for b in re.findall(r"```bash\n(.*?)```", section, flags=re.S) if "raynas search" in b)
    words = shlex.split(command.replace("\\\n", " "))
    overrides = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    config = load_config(overrides=overrides)
    assert (config.data.name, config.model.factory) == ("cifar10", "raynas.zoo.cifar10:build_supernet")
    assert (config.supernet.device, config.supernet.replicas) == ("cuda", 8) and config.search.gpus_per_trial > 0
    inspect.signature(cifar10.load_data).bind(**config.data.kwargs)
    assert len(generate_search_space(cifar10.build_supernet(**config.model.kwargs))) == 2 * (2 + 3 + 4 + 5 + 4)  # edges + switches


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["local", "ray"])
def test_a_search_on_the_cifar10_loader_finishes_with_results(folder, tmp_path, mode):
    root, _expected = folder
    extra = [
        "data.name=cifar10",
        f"data.kwargs={{root: {root}, val_size: 20}}",
        "model.factory=raynas.zoo.cifar10:build_supernet",
        f"model.kwargs={json.dumps(TINY_NET)}",
        "supernet.batch_size=16",
        "search.num_samples=2",
        "search.bn_batches=1",
        "search.batch_size=20",
        "retrain.top_k=1",
        "retrain.epochs=1",
        "retrain.batch_size=16",
    ]
    result = run_cli("search", *(["--local"] if mode == "local" else []), *sets(tmp_path, "cifar", extra))
    assert result.returncode == 0, result.stderr[-3000:]
    experiment = tmp_path / "cifar"
    rows = pq.read_table(experiment / "results" / "search.parquet").to_pylist()
    assert len(rows) == 2 and all(0.0 <= r["val_accuracy"] <= 1.0 for r in rows)
    retrained = pq.read_table(experiment / "results" / "retrain.parquet").to_pylist()
    assert len(retrained) == 1 and 0.0 <= retrained[0]["test_accuracy"] <= 1.0
    best = json.loads((experiment / "best_architecture.json").read_text())
    assert _fixed(best)(torch.randn(2, 3, 32, 32)).shape == (2, 10)
