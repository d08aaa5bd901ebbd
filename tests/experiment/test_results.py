"""Which searched architectures go to retraining: the top scores, or the best of each op sequence."""

from __future__ import annotations

import json

from raynas.experiment.results import diverse_architectures, top_architectures

SPACE = {"op0": {"_type": "layer_choice"}, "op1": {"_type": "layer_choice"}, "skip1": {"_type": "input_choice"}}


def _rows(*entries):
    return [
        {"arch": json.dumps({"op0": a, "op1": b, "skip1": s}, sort_keys=True), "val_accuracy": v}
        for a, b, s, v in entries
    ]


ROWS = _rows(
    ("conv7", "conv3", [], 0.91),
    ("conv7", "conv3", ["stem"], 0.90),  # a skip-variant of the best op sequence
    ("conv7", "conv3", [], 0.89),  # the same architecture scored twice
    ("conv5", "conv3", [], 0.85),
    ("conv7", "conv3", ["op0"], 0.84),
    ("identity", "conv3", [], 0.70),
)


def test_top_takes_the_best_distinct_architectures():
    picked = [(a["op0"], a["skip1"], v) for a, v in top_architectures(ROWS, "val_accuracy", "max", 3)]
    assert picked == [("conv7", [], 0.91), ("conv7", ["stem"], 0.90), ("conv5", [], 0.85)]


def test_diverse_takes_one_per_op_sequence_first_then_fills_by_score():
    picked = [(a["op0"], a["skip1"], v) for a, v in diverse_architectures(ROWS, "val_accuracy", "max", 3, SPACE)]
    assert picked == [("conv7", [], 0.91), ("conv5", [], 0.85), ("identity", [], 0.70)]
    four = [(a["op0"], a["skip1"]) for a, _v in diverse_architectures(ROWS, "val_accuracy", "max", 4, SPACE)]
    assert four == [("conv7", []), ("conv7", ["stem"]), ("conv5", []), ("identity", [])]  # best score first
    low = diverse_architectures(ROWS, "val_accuracy", "min", 2, SPACE)
    assert [a["op0"] for a, _v in low] == ["identity", "conv7"]
