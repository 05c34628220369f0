"""A run page's figure as SVG text written directly: test accuracy against training time with the
threshold lines, and the run's TTMT curve beside it.

matplotlib draws the report's comparison figures; a run page shows one curve, and drawing it
directly takes microseconds instead of a second per run (a tree of a hundred runs).
"""

from __future__ import annotations

import math
from html import escape

W, H = 460, 300  # one panel, px
LEFT, RIGHT, TOP, BOTTOM = 52, 34, 28, 42
COLOR = "#1f77b4"


def _ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """About n round values (1, 2, 5 x 10^k apart) covering lo..hi."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:g}"


def _panel(x0: float, title: str, xlabel: str, ylabel: str, pts, ylim, xmax, hlines=()) -> list[str]:
    """One panel at x offset x0: axes, ticks, dotted threshold lines, the curve with its points."""
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    ylo, yhi = ylim

    def sx(x):
        return x0 + LEFT + pw * x / xmax

    def sy(y):
        return TOP + ph * (1 - (y - ylo) / (yhi - ylo))

    out = [
        f'<text x="{x0 + LEFT + pw / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>',
        f'<rect x="{x0 + LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#000" stroke-width="0.8"/>',
    ]
    for t in _ticks(0, xmax):
        if t <= xmax:
            out.append(
                f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{TOP}" y2="{TOP + ph}" stroke="#e5e5e5"/>'
            )
            out.append(
                f'<text x="{sx(t):.1f}" y="{TOP + ph + 14}" text-anchor="middle" font-size="10">{_fmt(t)}</text>'
            )
    for t in _ticks(ylo, yhi):
        if ylo <= t <= yhi:
            out.append(
                f'<line x1="{x0 + LEFT}" x2="{x0 + LEFT + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#e5e5e5"/>'
            )
            out.append(
                f'<text x="{x0 + LEFT - 4}" y="{sy(t) + 3:.1f}" text-anchor="end" font-size="10">{_fmt(t)}</text>'
            )
    for h in hlines:
        out.append(
            f'<line x1="{x0 + LEFT}" x2="{x0 + LEFT + pw}" y1="{sy(h):.1f}" y2="{sy(h):.1f}" stroke="#999" stroke-dasharray="2,2"/>'
        )
        out.append(
            f'<text x="{x0 + LEFT + pw + 3}" y="{sy(h) + 3:.1f}" font-size="8" fill="#666">{_fmt(h)}%</text>'
        )
    if pts:
        line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{line}" fill="none" stroke="{COLOR}" stroke-width="1.6"/>')
        out += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.2" fill="{COLOR}"/>' for x, y in pts]
    out.append(
        f'<text x="{x0 + LEFT + pw / 2}" y="{H - 8}" text-anchor="middle" font-size="11">{escape(xlabel)}</text>'
    )
    out.append(
        f'<text transform="translate({x0 + 14},{TOP + ph / 2}) rotate(-90)" text-anchor="middle" font-size="11">{escape(ylabel)}</text>'
    )
    return out


def run_figure(
    points: list[tuple[float, float]], ts: list[float] | None, ttmt: list[tuple[float, float]]
) -> bytes:
    """`points`: (training seconds, accuracy fraction); `ts`: thresholds (fractions) or None;
    `ttmt`: (seconds, threshold) the run reached."""
    acc = [(x, 100 * y) for x, y in points]
    lines = [100 * t for t in ts or []]
    ys = [y for _, y in acc] + lines
    pad = max(1.0, (max(ys) - min(ys)) * 0.06) if ys else 1.0
    ylim = (max(0.0, min(ys, default=0.0) - pad), min(100.0, max(ys, default=100.0) + pad))
    xmax = max((x for x, _ in acc), default=1.0) * 1.03 or 1.0
    parts = _panel(
        0,
        "Accuracy vs training time",
        "training time (s, evaluation excluded)",
        "test accuracy (%)",
        acc,
        ylim,
        xmax,
        lines,
    )
    width = W
    if ts:
        step = (lines[-1] - lines[0]) * 0.08 or 1.0
        parts += _panel(
            W,
            f"TTMT, {_fmt(lines[0])}..{_fmt(lines[-1])}%",
            "time to reach the threshold, TTA (s)",
            "threshold (%)",
            [(x, 100 * y) for x, y in ttmt],
            (lines[0] - step, lines[-1] + step),
            xmax,
        )
        width = 2 * W
    body = "\n".join(parts)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{H}" viewBox="0 0 {width} {H}" '
        f'font-family="DejaVu Sans, Arial, sans-serif">\n<rect width="100%" height="100%" fill="#fff"/>\n{body}\n</svg>\n'
    ).encode()
