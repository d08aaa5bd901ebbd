"""The closing summary of a run: the best architecture, its figures, and where everything is."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["summary_lines"]


def _figures(row: dict[str, Any], metric: str) -> str:
    parts = []
    for key in dict.fromkeys((metric, "val_accuracy", "test_accuracy", "params", "flops")):
        value = row.get(key)
        if isinstance(value, float):
            parts.append(f"{key} {value:.4f}")
        elif isinstance(value, int):
            parts.append(f"{key} {value:,}")
    return ", ".join(parts)


def summary_lines(xdir: Any, metric: str, mode: str, *, wall_s: float | None = None) -> list[str]:
    """What ``raynas search`` prints when it ends.

    Args:
        xdir: the :class:`~raynas.experiment.ExperimentDir`.
        metric: the search metric (the pick is by it, on validation data).
        mode: ``max`` or ``min``.
        wall_s: the run's wall time, if known.

    Returns:
        The lines: the best architecture (retrained, else searched) with its figures, then the
        results folder, the HTML report and the Ray log.
    """
    from raynas.experiment.results import leaderboard
    from raynas.report.console import format_seconds

    rows = leaderboard(xdir, metric, mode)
    lines = [f"finished in {format_seconds(wall_s)}"] if wall_s is not None else []
    if rows:
        best = rows[0]
        how = f"best of {len(rows)} retrained" if best["source"] == "retrain" else f"best of {len(rows)} scored"
        lines.append(f"best architecture ({how}, by {metric}): {_figures(best, metric)}")
        lines.append(f"  {json.dumps(json.loads(best['arch']), sort_keys=True)}")
    else:
        lines.append("no architecture scored yet")
    lines.append(f"results: {xdir.location}")
    if xdir.best_architecture.is_file():
        lines.append(f"best architecture: {xdir.location}/best_architecture.json")
    if xdir.report_html.is_file():
        lines.append(f"report: {xdir.location}/report.html")
    if xdir.ray_log.is_file():
        lines.append(f"Ray and Tune log: {xdir.location}/ray.log")
    return lines
