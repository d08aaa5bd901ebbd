import pytest
import torch

from raynas.nas import RandomMutator, apply_fixed_architecture, generate_search_space
from raynas.zoo import BUILTINS, builtin, mnist1d
from tests.zoo.cifar_files import write_cifar_folder


def test_mnist1d_data_splits_and_shapes():
    data = mnist1d.load_data()
    assert {k: len(v) for k, v in data.items()} == {"train": 3500, "val": 500, "test": 1000}
    x, y = data["train"].tensors
    assert x.shape == (3500, 1, 40) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and set(y.tolist()) == set(range(10))
    again = mnist1d.load_data()  # cached: the same arrays
    assert torch.equal(again["test"].tensors[0], data["test"].tensors[0])


def test_mnist1d_supernet_structure():
    model = mnist1d.build_supernet()
    assert model.stem[0].kernel_size == (5,) and model.stem[0].bias is None
    assert [lc.names for lc in model.ops] == [list(mnist1d.OPS)] * 4
    assert model.ops[0]["sepconv5"][0].groups == 16 and model.ops[0]["maxpool3"].stride == 1
    assert model.head.in_features == 16 and model.head.out_features == 10
    mutator = RandomMutator(model, seed=0)
    for _ in range(5):
        mutator.reset()
        assert model(torch.randn(3, 1, 40)).shape == (3, 10)


def test_all_identity_without_skips_is_stem_then_head():
    model = mnist1d.build_supernet()
    apply_fixed_architecture(model, {**{f"op{i}": "identity" for i in range(4)}, **{f"skip{i}": [] for i in (1, 2, 3)}})
    x = torch.randn(2, 1, 40)
    model.eval()
    assert torch.allclose(model(x), model.head(model.stem(x).mean(-1)))


@pytest.mark.parametrize("name", BUILTINS)
def test_builtins_build_a_model_and_data(name, tmp_path, monkeypatch):
    kwargs = {}
    if name == "cifar10":  # read from a local folder: a tiny one in the official format
        write_cifar_folder(tmp_path / "cifar-10-batches-py", per_batch=4)
        monkeypatch.setenv("RAYNAS_CIFAR10", str(tmp_path / "cifar-10-batches-py"))
        kwargs = {"val_size": 4}  # of 20 training images
    module = builtin(name)
    model = module.build_supernet()
    data = module.load_data(**kwargs)
    assert set(data) == {"train", "val", "test"}
    mutator = RandomMutator(model, seed=0)
    mutator.reset()
    x = torch.stack([data["train"][i][0] for i in range(4)])
    assert model(x).shape == (4, 10)
    assert generate_search_space(model)


def test_unknown_builtin_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown built-in dataset 'cifar' \\(valid: mnist1d, digits, cifar10\\)"):
        builtin("cifar")
