"""Small self-contained SVG charts (no scripts, no external assets) for the status page and `analyze --html`."""

from __future__ import annotations

import html
import math

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")


def _finite(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(x, y) for x, y in points if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]


def sparkline(values: list[float], width: int = 120, height: int = 28, color: str = "#1f77b4") -> str:
    points = _finite(list(enumerate(values)))
    if len(points) < 2:
        return f'<svg width="{width}" height="{height}" role="img" aria-label="no data"></svg>'
    ys = [y for _, y in points]
    lo, hi = min(ys), max(ys)
    span = (hi - lo) or 1.0
    n = len(points) - 1
    path = " ".join(f"{i / n * (width - 2) + 1:.1f},{height - 1 - (y - lo) / span * (height - 2):.1f}"
                    for i, (_, y) in enumerate(points))
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="trend">'
            f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/></svg>')


def line_chart(series: list[tuple[str, list[tuple[float, float]]]], title: str, width: int = 720, height: int = 260,
               band: tuple[float, float] | None = None, band_label: str = "",
               hlines: list[tuple[str, float, str]] = (), x_label: str = "", log_y: bool = False) -> str:
    """Lines over x, an optional shaded band (the healthy range) and labelled horizontal lines (targets, limits)."""
    left, right, top, bottom = 60, 160, 28, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    all_points = [p for _, pts in series for p in _finite(pts)]
    if log_y:
        all_points = [(x, y) for x, y in all_points if y > 0]
    if not all_points:
        return (f'<svg width="{width}" height="{height}" role="img"><text x="10" y="20">{html.escape(title)}: '
                "no data</text></svg>")
    xs = [x for x, _ in all_points]
    ys = [y for _, y in all_points] + [v for _, v, _ in hlines] + (list(band) if band else [])

    def ty(v: float) -> float:
        return math.log10(v) if log_y and v > 0 else v

    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ty(y) for y in ys), max(ty(y) for y in ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return top + plot_h - (ty(y) - y0) / (y1 - y0) * plot_h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="{html.escape(title)}" style="font:11px sans-serif">',
           f'<text x="{left}" y="16" font-weight="bold">{html.escape(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ccc"/>']
    if band:
        ya, yb = py(band[1]), py(band[0])
        out.append(f'<rect x="{left}" y="{ya:.1f}" width="{plot_w}" height="{max(0.0, yb - ya):.1f}" fill="#2ca02c" '
                   f'fill-opacity="0.12"/><text x="{left + plot_w + 6}" y="{(ya + yb) / 2:.1f}" fill="#2ca02c">'
                   f"{html.escape(band_label)}</text>")
    for k in range(5):  # y ticks
        v = y0 + (y1 - y0) * k / 4
        label = 10**v if log_y else v
        out.append(f'<text x="{left - 6}" y="{py(10**v if log_y else v) + 4:.1f}" text-anchor="end" fill="#555">'
                   f"{label:.3g}</text>")
    out.append(f'<text x="{left}" y="{height - 8}" fill="#555">{x0:.6g}</text>'
               f'<text x="{left + plot_w}" y="{height - 8}" text-anchor="end" fill="#555">{x1:.6g} {html.escape(x_label)}</text>')
    for label, value, color in hlines:
        y = py(value)
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{color}" '
                   f'stroke-dasharray="6 4"/><text x="{left + plot_w + 6}" y="{y + 4:.1f}" fill="{color}">'
                   f"{html.escape(label)} {value:.4g}</text>")
    for i, (name, pts) in enumerate(series):
        pts = [(x, y) for x, y in _finite(pts) if not log_y or y > 0]
        color = PALETTE[i % len(PALETTE)]
        if pts:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
            marker = "".join(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{color}"/>' for x, y in pts) \
                if len(pts) <= 30 else ""
            out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>{marker}')
        out.append(f'<text x="{left + plot_w + 6}" y="{top + 12 + 14 * i}" fill="{color}">{html.escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)
