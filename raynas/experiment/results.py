"""Reading an experiment's result tables: the best distinct architectures, the leaderboard, and
their TensorBoard scalars."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from raynas.experiment.directory import ExperimentDir

__all__ = ["top_architectures", "leaderboard", "log_tensorboard"]


def top_architectures(rows: Sequence[dict], metric: str, mode: str, k: int) -> list[tuple[dict, float | None]]:
    """The ``k`` best distinct architectures of ``rows`` (``(arch, score)``, best first)."""
    scored = [r for r in rows if isinstance(r.get(metric), (int, float)) and math.isfinite(r[metric])]
    scored.sort(key=lambda r: r[metric], reverse=(mode == "max"))
    out, seen = [], set()
    for row in scored:
        if row["arch"] in seen:
            continue
        seen.add(row["arch"])
        out.append((json.loads(row["arch"]), row[metric]))
        if len(out) == k:
            break
    return out


def leaderboard(xdir: ExperimentDir, metric: str, mode: str) -> list[dict]:
    """Rows of the leaderboard, best first: retrained architectures (by the validation metric),
    else the search's."""
    import pyarrow.parquet as pq

    for path, source in ((xdir.retrain_results, "retrain"), (xdir.search_results, "search")):
        if path.is_file():
            rows = [r for r in pq.read_table(path).to_pylist() if isinstance(r.get(metric), (int, float))]
            if rows:
                rows.sort(key=lambda r: r[metric], reverse=(mode == "max"))
                return [{**r, "source": source} for r in rows]
    return []


def log_tensorboard(xdir: ExperimentDir, phase: str, rows: Sequence[dict], metric: str) -> None:
    """One TensorBoard scalar per row and figure (``<phase>/<metric>``, ``test_accuracy``, ``params``,
    ``flops``) in ``tensorboard/<phase>``."""
    from tensorboardX import SummaryWriter

    with SummaryWriter(logdir=str(xdir.tensorboard / phase)) as writer:
        for i, row in enumerate(rows):
            for key in (metric, "test_accuracy", "params", "flops"):
                value = row.get(key)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    writer.add_scalar(f"{phase}/{key}", value, i)
