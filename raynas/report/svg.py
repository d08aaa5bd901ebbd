"""Charts as inline SVG text: lines, steps and points on linear or log axes, and a heat table.

No plotting library: the report is one self-contained HTML file with no script, so these few
chart kinds are drawn here directly. Every data mark has the class ``mark`` (the report's test
counts them) and a ``<title>`` that a browser shows on hover.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

__all__ = ["Series", "chart", "heat_table", "PALETTE"]

#: colour-blind friendly (Okabe-Ito)
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")

_FONT = 'font-family="system-ui, sans-serif"'


@dataclass
class Series:
    """One series of a chart.

    Attributes:
        name: the legend entry.
        xs: x values.
        ys: y values (``None`` / NaN values are skipped).
        kind: ``line``, ``step`` (a running best) or ``points``.
        color: a CSS colour (default: the palette in order).
        tips: hover text per point (``points`` only).
        radius: point radius (``points``).
        ring: draw points as rings (to mark a subset over other points).
    """

    name: str
    xs: Sequence[float]
    ys: Sequence[float | None]
    kind: str = "line"
    color: str | None = None
    tips: Sequence[str] = field(default_factory=list)
    radius: float = 3.0
    ring: bool = False


def _ok(v: float | None) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:g}M"
    if a >= 1e4:
        return f"{v / 1e3:g}k"
    if a >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


class _Axis:
    def __init__(self, values: list[float], lo_px: float, hi_px: float, log: bool, pad: float):
        vals = [v for v in values if _ok(v) and (v > 0 or not log)] or [0.0, 1.0]
        lo, hi = min(vals), max(vals)
        self.log = log
        if log:
            lo, hi = math.log10(lo), math.log10(hi)
        span = (hi - lo) or (abs(hi) or 1.0)
        self.lo, self.hi = lo - pad * span, hi + pad * span
        self.lo_px, self.hi_px = lo_px, hi_px

    def __call__(self, v: float) -> float:
        t = math.log10(v) if self.log else v
        return self.lo_px + (t - self.lo) / (self.hi - self.lo) * (self.hi_px - self.lo_px)

    def ticks(self) -> list[float]:
        if not self.log:
            return [t for t in _nice_ticks(self.lo, self.hi) if self.lo <= t <= self.hi]
        out = []
        for e in range(math.floor(self.lo), math.ceil(self.hi) + 1):
            out += [m * 10**e for m in (1, 2, 5) if self.lo <= math.log10(m * 10**e) <= self.hi]
        return out


def chart(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    width: int = 560,
    height: int = 320,
    x_log: bool = False,
) -> str:
    """An SVG chart of ``series`` with axes, grid, legend and a title.

    Returns:
        The ``<svg>`` element as text (class ``chart``).
    """
    left, right, top, bottom = 62, 16, 30, 46 + 16 * ((len(series) + 2) // 3)
    xs = [x for s in series for x, y in zip(s.xs, s.ys) if _ok(x) and _ok(y)]
    ys = [y for s in series for x, y in zip(s.xs, s.ys) if _ok(x) and _ok(y)]
    ax = _Axis(xs, left, width - right, x_log, 0.03)
    ay = _Axis(ys, height - bottom, top, False, 0.06)
    out = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{left}" y="18" font-size="14" font-weight="600" {_FONT}>{escape(title)}</text>',
    ]
    integers = all(float(x).is_integer() for x in xs)
    for t in ax.ticks():
        if integers and not float(t).is_integer():
            continue
        x = ax(t)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}" stroke="#eee"/>')
        out.append(
            f'<text x="{x:.1f}" y="{height - bottom + 14}" font-size="11" text-anchor="middle" {_FONT}>{_fmt(t)}</text>'
        )
    for t in ay.ticks():
        y = ay(t)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" {_FONT}>{_fmt(t)}</text>')
    out.append(
        f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - bottom - top}" '
        'fill="none" stroke="#999"/>'
    )
    out.append(
        f'<text x="{(left + width - right) / 2}" y="{height - bottom + 30}" font-size="12" text-anchor="middle" '
        f"{_FONT}>{escape(x_label)}</text>"
    )
    out.append(
        f'<text transform="translate(14 {(top + height - bottom) / 2}) rotate(-90)" font-size="12" '
        f'text-anchor="middle" {_FONT}>{escape(y_label)}</text>'
    )
    for i, s in enumerate(series):
        color = s.color or PALETTE[i % len(PALETTE)]
        out.append(_marks(s, color, ax, ay))
        lx, ly = left + (i % 3) * ((width - left) // 3), height - bottom + 46 + 16 * (i // 3)
        out.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{lx + 14}" y="{ly}" font-size="11" {_FONT}>{escape(s.name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _marks(s: Series, color: str, ax: _Axis, ay: _Axis) -> str:
    pts = [(x, y, i) for i, (x, y) in enumerate(zip(s.xs, s.ys)) if _ok(x) and _ok(y) and (x > 0 or not ax.log)]
    if not pts:
        return ""
    if s.kind == "points":
        fill = "none" if s.ring else color
        out = []
        for x, y, i in pts:
            tip = f"<title>{escape(s.tips[i])}</title>" if i < len(s.tips) else ""
            out.append(
                f'<circle class="mark" cx="{ax(x):.1f}" cy="{ay(y):.1f}" r="{s.radius}" fill="{fill}" '
                f'stroke="{color}" stroke-width="{1.6 if s.ring else 0.5}" fill-opacity="0.75">{tip}</circle>'
            )
        return "\n".join(out)
    coords = []
    for j, (x, y, _i) in enumerate(pts):
        if s.kind == "step" and j:
            coords.append(f"{ax(x):.1f},{ay(pts[j - 1][1]):.1f}")
        coords.append(f"{ax(x):.1f},{ay(y):.1f}")
    dots = (
        "".join(f'<circle class="mark" cx="{ax(x):.1f}" cy="{ay(y):.1f}" r="2" fill="{color}"/>' for x, y, _ in pts)
        if len(pts) <= 60
        else ""
    )
    return (
        f'<polyline class="mark" points="{" ".join(coords)}" fill="none" stroke="{color}" stroke-width="2">'
        f"<title>{escape(s.name)}</title></polyline>{dots}"
    )


def heat_table(rows: Sequence[tuple[str, Sequence[tuple[str, float]]]], *, title: str, cell: int = 104) -> str:
    """A table of shares as an SVG: one row per key, one cell per candidate (darker = more often).

    Args:
        rows: ``(key, [(candidate, share in 0..1), ...])``.
        title: the title.
        cell: cell width in pixels.
    """
    label_w, row_h, top = 70, 26, 30
    n = max((len(c) for _k, c in rows), default=1)
    width, height = label_w + n * cell + 10, top + row_h * len(rows) + 8
    out = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="4" y="18" font-size="14" font-weight="600" {_FONT}>{escape(title)}</text>',
    ]
    for r, (key, cells) in enumerate(rows):
        y = top + r * row_h
        out.append(f'<text x="4" y="{y + 17}" font-size="12" font-weight="600" {_FONT}>{escape(key)}</text>')
        for c, (name, share) in enumerate(cells):
            x = label_w + c * cell
            ink = "#fff" if share > 0.55 else "#222"
            out.append(
                f'<rect class="mark" x="{x}" y="{y}" width="{cell - 3}" height="{row_h - 3}" rx="3" '
                f'fill="{PALETTE[0]}" fill-opacity="{0.08 + 0.92 * share:.3f}">'
                f"<title>{escape(key)} = {escape(name)}: {share:.0%}</title></rect>"
            )
            out.append(
                f'<text x="{x + 5}" y="{y + 16}" font-size="11" fill="{ink}" {_FONT}>'
                f"{escape(name[:11])} {share:.0%}</text>"
            )
    out.append("</svg>")
    return "\n".join(out)
