"""What `raynas search` prints, through the real CLI with its output piped (no terminal).

raynas' own lines only (phase headers, at most ~10 progress lines per phase, one summary); what
Ray and Tune print goes to DIR/ray.log, and `-v` shows it too.
"""

from __future__ import annotations

import pytest

from tests.experiment.cli_helpers import run_cli, sets

pytestmark = pytest.mark.slow

#: each phase has more units of work (steps, trials, epochs) than lines it may print
EXTRA = ["supernet.epochs=3", "search.num_samples=30", "retrain.epochs=8"]

#: what Ray and Tune print on the driver's console when nothing catches it
RAY_TUNE_MARKERS = (
    "Configuration for experiment",
    "View detailed results here",
    "tensorboard --logdir",
    "Started a local Ray instance",
    "INFO ",
    "WARNING",
    "snapshotting",
)


@pytest.fixture(scope="module")
def piped(tmp_path_factory):
    storage = tmp_path_factory.mktemp("console")
    result = run_cli("search", *sets(storage, "console", EXTRA))
    assert result.returncode == 0, result.stderr[-3000:]
    return storage / "console", result


def test_the_console_holds_raynas_lines_only(piped):
    root, result = piped
    for marker in RAY_TUNE_MARKERS:
        assert marker not in result.stdout + result.stderr, marker
    progress = result.stderr.strip().splitlines()
    assert all(line.startswith("[raynas] ") for line in progress), progress
    assert "\r" not in result.stderr and "\x1b" not in result.stderr  # no terminal control in a pipe
    for phase in ("space", "supernet", "search", "retrain"):
        assert sum(f" {phase} done in " in line for line in progress) == 1, phase
        assert sum(line.startswith(f"[raynas] {phase} ") for line in progress) <= 10, phase  # bounded
    assert any(line.startswith("[raynas] search 30/30 trials (100%)") for line in progress)
    assert len(progress) <= 4 * 2 + 3 * 10
    summary = result.stdout.strip().splitlines()
    assert len(summary) <= 8 and f"results: {root}" in summary and f"report: {root}/report.html" in summary
    assert (root / "report.html").is_file()  # a Ray run writes its report too
    assert any(line.startswith("best architecture (best of 2 retrained, by val_accuracy)") for line in summary)


def test_ray_and_tune_output_goes_to_the_experiments_log(piped):
    root, _result = piped
    log = (root / "ray.log").read_text()
    assert "Configuration for experiment" in log and "tune_retrain" in log
    # a trial checkpointing every epoch no longer forces a snapshot of the experiment every 2nd epoch
    assert "snapshotting has been triggered" not in log
    for trial in (root / "tune_retrain").iterdir():
        if trial.is_dir():  # every epoch was checkpointed; the last one is kept
            assert [p.name for p in trial.glob("checkpoint_*")] == ["checkpoint_000007"]


def test_verbose_shows_ray_output_too(tmp_path):
    result = run_cli("search", "-v", "--until", "supernet", *sets(tmp_path, "verbose"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Started a local Ray instance" in result.stderr
    assert "Started a local Ray instance" in (tmp_path / "verbose" / "ray.log").read_text()
    assert "[raynas] [2/4] supernet done in " in result.stderr
