"""The one reader of user JSON / YAML files and the one ``module:name`` importer."""

import os

import pytest

from raynas._io import read_json, read_yaml
from searchers.imports import import_object


def test_read_json_errors_name_the_file_and_the_line(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"architecture file '.*none.json' does not exist"):
        read_json(tmp_path / "none.json", what="architecture")
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "a": 1,\n  oops\n}')
    with pytest.raises(ValueError, match=r"architecture file '.*bad.json' is not valid JSON: .* at line 3$"):
        read_json(bad, what="architecture")
    wrong = tmp_path / "list.json"
    wrong.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"'.*list.json' must hold a JSON object, got list$"):
        read_json(wrong, what="architecture")
    assert read_json(wrong, what="architecture", expect=(list, dict)) == [1, 2]


def test_read_yaml_reads_an_empty_file_as_no_settings(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert read_yaml(empty, what="config") == {}
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\nb: 2\n")
    with pytest.raises(ValueError, match=r"config file '.*bad.yaml' is not valid YAML: .* at line \d+$"):
        read_yaml(bad, what="config")


def test_import_object_follows_dotted_names_and_raises_the_given_error():
    assert import_object("os:path.join") is os.path.join

    class Oops(ValueError):
        pass

    with pytest.raises(Oops, match=r"module 'json' has no attribute 'nope' \(thing 'json:nope'\); it has: .*loads"):
        import_object("json:nope", what="thing", error=Oops)


def test_a_failed_torch_write_is_the_file_systems_oserror_and_leaves_nothing(tmp_path):
    """torch's own writer turns a failed write into a RuntimeError; the CLI's one line needs the
    OSError (here EFBIG from a file-size limit, as ENOSPC from a full disk)."""
    import errno
    import resource
    import signal

    import torch

    from raynas._io import write_torch_atomic

    target = tmp_path / "state.pt"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))
    try:
        with pytest.raises(OSError) as info:
            write_torch_atomic(target, {"w": torch.zeros(100_000)})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert info.value.errno == errno.EFBIG
    assert list(tmp_path.iterdir()) == []  # no half-written file, no temporary left
    write_torch_atomic(target, {"w": torch.zeros(3)})
    assert torch.equal(torch.load(target)["w"], torch.zeros(3))
