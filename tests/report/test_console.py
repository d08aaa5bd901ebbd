"""Progress without a terminal: bounded lines per phase, whatever the amount of work."""

from __future__ import annotations

import io

import pytest

from raynas.report.console import ConsoleProgress, format_info, format_seconds


@pytest.mark.parametrize("total", [3, 10, 57, 5000])
def test_a_phase_prints_at_most_ten_progress_lines(total):
    stream = io.StringIO()
    progress = ConsoleProgress(stream=stream)
    progress.phase_start("search", 3, 4)
    progress.begin(total, "trial")
    for done in range(1, total + 1):
        progress.update(done, f"best val_accuracy {done / total:.4f}")
    progress.phase_end("search", 3, 4, {"trials": total, "checkpoint": "/x"}, 12.5)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[raynas] [3/4] search ..."
    assert lines[-1] == f"[raynas] [3/4] search done in 12.5s: trials {total:,}"
    body = lines[1:-1]
    assert 1 <= len(body) <= 10 and all(line.startswith("[raynas] search ") for line in body)
    assert body[-1].startswith(f"[raynas] search {total}/{total} trials (100%)")
    assert "best val_accuracy 1.0000" in body[-1]


def test_resumed_work_counts_from_where_it_was():
    lines = []
    progress = ConsoleProgress(write=lines.append)  # a log function: never a bar
    assert not progress.tty
    progress.begin(100, "epoch")
    progress.update(60)  # finished before the interruption: no line for it alone
    assert lines == []
    for done in range(61, 101):
        progress.update(done)
    assert [line.split()[0] for line in lines] == ["61/100", "70/100", "80/100", "90/100", "100/100"]


def test_formats():
    assert format_seconds(9.94) == "9.9s" and format_seconds(72.4) == "1m 12s" and format_seconds(7300) == "2h 01m"
    assert format_info({"epochs": 100, "steps": 2800, "best_val_accuracy": 0.95, "wall_s": 3.0, "x": None}) == (
        "epochs 100, steps 2,800, best val accuracy 0.9500"
    )


def test_retrain_progress_reaches_100_percent_with_every_trial_done():
    """A retrain trial's last epoch result comes before the trial completes (it measures its test
    accuracy after it): the last progress line says every trial is done."""
    from raynas.report.hooks import RetrainTracker

    lines = []
    tracker = RetrainTracker(ConsoleProgress(write=lines.append), trials=2, epochs=3, metric="val_accuracy", mode="max")
    for trial in ("a", "b"):
        for epoch in (1, 2, 3):
            tracker.trial_result(trial, {"epoch": epoch, "val_accuracy": 0.5 + epoch / 10})
        tracker.trial_done(trial, {"epoch": 3, "val_accuracy": 0.8})
    assert lines[-1].startswith("6/6 epochs (100%)") and "trials 2/2 done" in lines[-1], lines
    assert not any("(100%)" in line for line in lines[:-1])
