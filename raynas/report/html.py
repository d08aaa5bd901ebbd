"""``report.html``: one self-contained page (inline SVG and CSS, no script, nothing fetched) that
explains a run: supernet training, the search's trajectory, accuracy against cost with the Pareto
front, the retrained architectures, the best architecture as a graph, and which candidates the
best-scored architectures share.

It reads only the experiment directory (``state.json``, ``supernet/supernet_metrics.json``,
``results/*.parquet``, ``search_space.json``); the graph comes from the model, run once
(:mod:`raynas.report.graph`).
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Sequence
from html import escape
from typing import Any

from raynas.report import svg
from raynas.report.svg import Series

__all__ = ["render_report", "pareto_front", "candidate_shares", "read_results", "write_html_report"]


def _rows(path: Any) -> list[dict]:
    if not path.is_file():
        return []
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def read_results(xdir: Any) -> dict[str, Any]:
    """What the report shows, read from the experiment directory (missing parts are empty)."""
    history_path = xdir.supernet / "supernet_metrics.json"
    return {
        "state": xdir.state().get("done", {}),
        "space": xdir.read_search_space() if xdir.search_space.is_file() else {},
        "supernet": json.loads(history_path.read_text()) if history_path.is_file() else [],
        "search": sorted(_rows(xdir.search_results), key=lambda r: str(r.get("trial_id"))),
        "retrain": sorted(_rows(xdir.retrain_results), key=lambda r: r.get("rank") or 0),
    }


def _good(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def pareto_front(points: Sequence[tuple[float, float]], *, mode: str = "max") -> list[int]:
    """Indices of the points no other point beats on both cost (lower) and score (``mode``),
    cheapest first."""
    sign = 1.0 if mode == "max" else -1.0
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -sign * points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if sign * points[i][1] > best:
            front.append(i)
            best = sign * points[i][1]
    return front


def candidate_shares(space: dict, archs: Sequence[dict]) -> list[tuple[str, list[tuple[str, float]]]]:
    """Per key of ``space``, how often each candidate appears among ``archs`` (exported form)."""
    out = []
    n = max(len(archs), 1)
    for key, spec in sorted(space.items()):
        value = spec.get("_value")
        names = [str(c) for c in (value.get("candidates", []) if isinstance(value, dict) else value or [])]
        counts = dict.fromkeys(names, 0)
        for arch in archs:
            chosen = arch.get(key)
            for c in chosen if isinstance(chosen, list) else [chosen]:
                name = names[c] if isinstance(c, int) and not isinstance(c, bool) and 0 <= c < len(names) else str(c)
                if name in counts:
                    counts[name] += 1
        out.append((key, [(name, counts[name] / n) for name in names]))
    return out


def _none(text: str) -> str:
    return f'<p class="none">{escape(text)}</p>'


def _supernet_section(data: dict[str, Any]) -> str:
    history = data["supernet"]
    if not history:
        return _none("The supernet has not been trained yet.")
    info = data["state"].get("supernet", {})
    epochs = [h["epoch"] + 1 for h in history]
    charts = [
        svg.chart(
            [Series("training loss", epochs, [h.get("loss") for h in history])],
            title="supernet loss per epoch",
            x_label="epoch",
            y_label="loss",
        ),
        svg.chart(
            [Series("training accuracy (sampled paths)", epochs, [h.get("accuracy") for h in history])],
            title="supernet accuracy per epoch",
            x_label="epoch",
            y_label="accuracy",
        ),
        svg.chart(
            [
                Series(
                    f"samples/s, {info.get('replicas', '?')} replica(s)",
                    epochs,
                    [h.get("samples_per_s") for h in history],
                )
            ],
            title="throughput per epoch",
            x_label="epoch",
            y_label="samples/s",
        ),
    ]
    return _figures(charts)


def _search_section(data: dict[str, Any], metric: str, mode: str) -> str:
    rows = [r for r in data["search"] if r.get("status") == "ok" and _good(r.get(metric))]
    if not rows:
        return _none("No architecture has been scored yet.")
    sign = 1.0 if mode == "max" else -1.0
    scores = [r[metric] for r in rows]
    best, running = [], -math.inf
    for s in scores:
        running = max(running, sign * s)
        best.append(sign * running)
    xs = list(range(1, len(rows) + 1))
    tips = [f"trial {i}: {metric} {r[metric]:.4f}\n{r['arch']}" for i, r in zip(xs, rows)]
    failed = len(data["search"]) - len(rows)
    chart = svg.chart(
        [
            Series("score of each trial", xs, scores, kind="points", tips=tips, radius=2.5),
            Series("best so far", xs, best, kind="step"),
        ],
        title="search trajectory",
        x_label="trial (in order)",
        y_label=f"{metric} (weight sharing)",
        width=760,
    )
    note = f"<p>{len(rows)} architectures scored by weight sharing" + (f", {failed} failed" if failed else "") + ".</p>"
    return note + _figures([chart])


def _cost_section(data: dict[str, Any], metric: str, mode: str) -> str:
    rows = [r for r in data["search"] if r.get("status") == "ok" and _good(r.get(metric))]
    if not rows:
        return _none("No architecture has been scored yet.")
    retrained = {r["arch"] for r in data["retrain"]}
    charts = []
    for cost in ("params", "flops"):
        pts = [r for r in rows if _good(r.get(cost))]
        if not pts:
            continue
        front = [pts[i] for i in pareto_front([(r[cost], r[metric]) for r in pts], mode=mode)]
        picked = [r for r in pts if r["arch"] in retrained]
        log = max(r[cost] for r in pts) > 20 * max(min(r[cost] for r in pts), 1)
        tip = [f"{cost} {r[cost]:,}, {metric} {r[metric]:.4f}\n{r['arch']}" for r in pts]
        series = [
            Series(
                "scored architecture",
                [r[cost] for r in pts],
                [r[metric] for r in pts],
                kind="points",
                tips=tip,
                radius=2.5,
                color="#9aa9bb",
            ),
            Series(
                "Pareto front", [r[cost] for r in front], [r[metric] for r in front], kind="step", color=svg.PALETTE[3]
            ),
            Series(
                "retrained",
                [r[cost] for r in picked],
                [r[metric] for r in picked],
                kind="points",
                ring=True,
                radius=5,
                color=svg.PALETTE[0],
            ),
        ]
        charts.append(
            svg.chart(
                series,
                title=f"{metric} against {cost}",
                x_label=cost + (" (log)" if log else ""),
                y_label=metric,
                x_log=log,
            )
        )
    return _figures(charts)


def _retrain_section(data: dict[str, Any], metric: str) -> str:
    rows = data["retrain"]
    if not rows:
        return _none("No architecture has been retrained yet.")
    val, loss = [], []
    for r in rows:
        history = json.loads(r.get("history") or "[]")
        epochs = [h["epoch"] for h in history]
        val.append(Series(f"#{r['rank']}", epochs, [h.get("val_accuracy") for h in history]))
        loss.append(Series(f"#{r['rank']}", epochs, [h.get("train_loss") for h in history]))
    ranks = [r["rank"] for r in rows]
    charts = [
        svg.chart(val, title="retrain: validation accuracy per epoch", x_label="epoch", y_label="val_accuracy"),
        svg.chart(loss, title="retrain: training loss per epoch", x_label="epoch", y_label="train_loss"),
        svg.chart(
            [
                Series("validation", ranks, [r.get("val_accuracy") for r in rows], kind="points", radius=5),
                Series("test", ranks, [r.get("test_accuracy") for r in rows], kind="points", radius=5),
            ],
            title="final accuracy of each retrained architecture",
            x_label="rank in the search",
            y_label="accuracy",
        ),
    ]
    head = (
        "<tr><th>#</th><th>search score</th><th>val</th><th>test</th><th>params</th><th>epochs</th><th>status</th>"
        "<th>architecture</th></tr>"
    )
    body = "".join(
        f"<tr><td>{r['rank']}</td><td>{_num(r.get('search_val_accuracy'))}</td><td>{_num(r.get('val_accuracy'))}</td>"
        f"<td>{_num(r.get('test_accuracy'))}</td><td>{_num(r.get('params'))}</td><td>{r.get('epochs')}</td>"
        f"<td>{escape(str(r.get('status')))}</td><td><code>{escape(r['arch'])}</code></td></tr>"
        for r in rows
    )
    note = f"<p>Picked by {escape(metric)} on the validation split; test accuracy is only reported.</p>"
    return _figures(charts) + note + f"<table>{head}{body}</table>"


def _shares_section(data: dict[str, Any], metric: str, mode: str) -> str:
    rows = [r for r in data["search"] if r.get("status") == "ok" and _good(r.get(metric))]
    if not rows or not data["space"]:
        return _none("No architecture has been scored yet.")
    rows.sort(key=lambda r: r[metric], reverse=(mode == "max"))
    top = rows[: max(1, math.ceil(0.1 * len(rows)))]
    shares = candidate_shares(data["space"], [json.loads(r["arch"]) for r in top])
    title = f"candidates among the top 10% ({len(top)} of {len(rows)} scored architectures)"
    return _figures([svg.heat_table(shares, title=title)])


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "-"


def _figures(charts: Sequence[str]) -> str:
    return '<div class="figures">' + "".join(f"<figure>{c}</figure>" for c in charts) + "</div>"


def _phases(state: dict[str, Any]) -> str:
    from raynas.experiment.directory import PHASES
    from raynas.report.console import format_info, format_seconds

    cells = []
    for phase in PHASES:
        info = state.get(phase)
        took = format_seconds(info["wall_s"]) if info and _good(info.get("wall_s")) else ""
        text = format_info(info) if info else "not run yet"
        cells.append(f"<tr><td>{phase}</td><td>{took}</td><td>{escape(text)}</td></tr>")
    return "<table><tr><th>phase</th><th>wall time</th><th>summary</th></tr>" + "".join(cells) + "</table>"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1240px; color: #222; padding: 0 16px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
.figures { display: flex; flex-wrap: wrap; gap: 12px; } figure { margin: 0; overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
code { font-size: 12px; } .none { color: #777; font-style: italic; } .best { font-size: 15px; }
"""


def render_report(
    data: dict[str, Any], *, name: str, location: str, metric: str, mode: str, graph: str, best: dict | None
) -> str:
    """The whole page.

    Args:
        data: :func:`read_results`' output.
        name: the experiment's name.
        location: where it lives.
        metric: the search metric; ``mode``: ``max`` or ``min``.
        graph: the best architecture drawn (:func:`raynas.report.graph.graph_svg`), or a note.
        best: the leaderboard's first row (or ``None``).
    """
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    if best is not None:
        keys = dict.fromkeys((metric, "test_accuracy", "params", "flops"))
        figures = ", ".join(f"{k} {_num(best.get(k))}" for k in keys if best.get(k) is not None)
        headline = (
            f'<p class="best">Best architecture ({"retrained" if best["source"] == "retrain" else "searched"}, '
            f"by {escape(metric)}): {escape(figures)}</p><p><code>{escape(best['arch'])}</code></p>"
        )
    else:
        headline = _none("No architecture yet.")
    sections = [
        ("Best architecture", headline + graph),
        ("Supernet training", _supernet_section(data)),
        ("Search", _search_section(data, metric, mode)),
        ("Accuracy against cost", _cost_section(data, metric, mode)),
        ("Retrained architectures", _retrain_section(data, metric)),
        ("What the best architectures share", _shares_section(data, metric, mode)),
    ]
    body = "".join(f"<section><h2>{escape(title)}</h2>{html}</section>" for title, html in sections)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>raynas: {escape(name)}</title>'
        f"<style>{_CSS}</style></head><body><h1>raynas experiment {escape(name)}</h1>"
        f"<p><code>{escape(location)}</code>, report written {when}</p>{_phases(data['state'])}{body}</body></html>\n"
    )


def _graph(experiment: Any, arch: dict) -> str:
    from raynas.report.graph import architecture_graph, graph_svg

    try:
        graph = architecture_graph(experiment.model_factory, arch, experiment.example_input())
    except (RuntimeError, TypeError, ValueError, KeyError, IndexError) as exc:  # the page says why instead
        return _none(f"The architecture could not be traced on one training example: {exc}")
    idle = f"<p>Not on the path: {escape(', '.join(graph.idle))}.</p>" if graph.idle else ""
    return _figures([graph_svg(graph)]) + idle


def write_html_report(experiment: Any, path: Any = None) -> Any:
    """Write the report of ``experiment`` (an :class:`~raynas.experiment.Experiment`) to ``path``
    (default ``report.html`` in its directory), atomically; returns the path."""
    from raynas._io import write_text_atomic
    from raynas.experiment.results import leaderboard

    xdir, search = experiment.dir, experiment.config.search
    table = leaderboard(xdir, search.metric, search.mode)
    best = table[0] if table else None
    page = render_report(
        read_results(xdir),
        name=experiment.config.experiment.name,
        location=xdir.location,
        metric=search.metric,
        mode=search.mode,
        graph=_graph(experiment, json.loads(best["arch"])) if best else "",
        best=best,
    )
    return write_text_atomic(path if path is not None else xdir.report_html, page)
