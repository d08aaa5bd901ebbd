"""The real ``raynas`` CLI, in a subprocess."""

import json
import subprocess
import sys

import pytest

from raynas.nas import generate_search_space
from raynas.zoo.mnist1d import build_supernet


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "raynas.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_ss_gen_writes_the_mnist1d_space(tmp_path):
    out = tmp_path / "s.json"
    result = run_cli("ss-gen", "raynas.zoo.mnist1d:build_supernet", "-o", str(out))
    assert result.returncode == 0, result.stderr
    space = json.loads(out.read_text())
    assert space == generate_search_space(build_supernet())
    assert len(space) == 7 and space["skip3"]["_value"]["n_chosen"] is None
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]  # no temp file left behind


def test_ss_gen_to_stdout_with_kwargs(tmp_path):
    (tmp_path / "usermodel.py").write_text(
        "from torch import nn\n"
        "from raynas.nas import LayerChoice\n"
        "def build(width=4):\n"
        "    return nn.Sequential(LayerChoice([nn.Linear(width, width), nn.Identity()], key='op'))\n"
    )
    result = run_cli("ss-gen", "usermodel:build", "--kwargs", '{"width": 8}', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"op": {"_type": "layer_choice", "_value": ["0", "1"]}}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nomodule"], "a factory must be written 'package.module:name', got 'nomodule'"),
        (["no_such_module_xyz:build"], "cannot import module 'no_such_module_xyz'"),
        (["raynas.zoo.mnist1d:nope"], "has no attribute 'nope'"),
        (["raynas.zoo.mnist1d:build_supernet", "--kwargs", "[1]"], "--kwargs must be a JSON object"),
        (["raynas.zoo.mnist1d:build_supernet", "--kwargs", "{bad"], "--kwargs must be a JSON object"),
        (["raynas.zoo.mnist1d:build_supernet", "--kwargs", '{"depth": 3}'], "rejected kwargs {'depth': 3}"),
        (["raynas.zoo.mnist1d:OPS"], "is a tuple, not a callable"),
        (["raynas.zoo.mnist1d:load_data"], "returned a dict, not a torch.nn.Module"),
    ],
)
def test_ss_gen_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    out = tmp_path / "s.json"
    result = run_cli("ss-gen", *args, "-o", str(out))
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not out.exists()


BUGGY_FACTORY = (
    "from torch import nn\n"
    "from raynas.nas import LayerChoice\n"
    "WIDTHS = {'small': 4}\n"
    "def build_keyerror(size='small'):\n"
    "    width = WIDTHS[size.upper()]  # the bug: the table's keys are lower case\n"
    "    return nn.Sequential(LayerChoice([nn.Linear(width, width), nn.Identity()], key='op'))\n"
    "def build_typeerror(width=4):\n"
    "    return nn.Sequential(LayerChoice([nn.Linear(width, str(width)), nn.Identity()], key='op'))\n"
)


@pytest.mark.parametrize(("factory", "error"), [("buggy:build_keyerror", "KeyError"), ("buggy:build_typeerror", "TypeError")])
def test_a_bug_in_the_factory_shows_its_traceback_but_bad_kwargs_are_one_line(tmp_path, factory, error):
    (tmp_path / "buggy.py").write_text(BUGGY_FACTORY)
    result = run_cli("ss-gen", factory, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" in result.stderr and "raynas: error" not in result.stderr
    assert 'buggy.py", line' in result.stderr and result.stderr.strip().splitlines()[-1].startswith(error)
    result = run_cli("ss-gen", factory, "--kwargs", '{"depth": 3}', cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"raynas: error: factory '{factory}' rejected kwargs {{'depth': 3}}: got an unexpected keyword argument 'depth'"
    ]
