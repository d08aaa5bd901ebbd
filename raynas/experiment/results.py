"""Reading an experiment's result tables: the best distinct architectures, the leaderboard, and
their TensorBoard scalars."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from raynas.experiment.directory import ExperimentDir

__all__ = ["top_architectures", "diverse_architectures", "leaderboard", "log_tensorboard"]


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


def diverse_architectures(
    rows: Sequence[dict], metric: str, mode: str, k: int, space: dict
) -> list[tuple[dict, float | None]]:
    """The ``k`` best architectures of ``rows`` with different ops: best first, one per combination
    of LayerChoice decisions (so not ``k`` skip-variants of one op sequence); if there are fewer
    combinations than ``k``, the next best distinct architectures fill up."""
    ops = sorted(key for key, spec in space.items() if spec.get("_type") == "layer_choice")
    ranked = top_architectures(rows, metric, mode, len(rows))
    out, seen = [], set()
    for arch, score in ranked:
        signature = json.dumps([arch.get(key) for key in ops])
        if signature not in seen:
            seen.add(signature)
            out.append((arch, score))
            if len(out) == k:
                break
    out += [pair for pair in ranked if pair not in out][: k - len(out)]
    return sorted(out, key=lambda pair: ranked.index(pair))  # best search score first, as ranks are


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
