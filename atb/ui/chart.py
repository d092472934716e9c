"""Server-side SVG charts: the equity curve (min–max band and last value per bucket) and the
drawdown below its running peak. Plain SVG elements and presentation attributes only, so they
draw with no script and under a strict Content-Security-Policy."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

from markupsafe import Markup, escape

from .queries import EquityBucket

WIDTH, LEFT, RIGHT, TOP, BOTTOM = 860, 110, 16, 12, 26


def _scale(value: float, low: float, high: float, start: float, end: float) -> float:
    if high == low:
        return (start + end) / 2
    return start + (value - low) * (end - start) / (high - low)


def _time(value: dt.datetime) -> float:
    return value.timestamp()


def _label(value: Decimal) -> str:
    text = format(value.normalize(), "f") if value == value.to_integral() else format(value, "f")
    return text


def _frame(height: int, top_label: str, bottom_label: str, left: str, right: str) -> list[str]:
    bottom = height - BOTTOM
    return [
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" stroke="#888" />',
        f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}" stroke="#888" />',
        f'<text x="{LEFT - 6}" y="{TOP + 10}" text-anchor="end" font-size="11">{escape(top_label)}</text>',
        f'<text x="{LEFT - 6}" y="{bottom}" text-anchor="end" font-size="11">{escape(bottom_label)}</text>',
        f'<text x="{LEFT}" y="{height - 6}" font-size="11">{escape(left)}</text>',
        f'<text x="{WIDTH - RIGHT}" y="{height - 6}" text-anchor="end" font-size="11">{escape(right)}</text>',
    ]


def _stamp(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _empty(title: str, height: int) -> Markup:
    return Markup(
        f'<svg class="chart" role="img" data-points="0" viewBox="0 0 {WIDTH} {height}" '
        f'width="100%" height="{height}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>"
        f'<text x="{WIDTH / 2}" y="{height / 2}" text-anchor="middle" font-size="13">'
        "no account snapshots yet</text></svg>"
    )


def equity_svg(curve: Sequence[EquityBucket], height: int = 240) -> Markup:
    """The equity curve: a shaded band from each bucket's lowest to highest equity, and a line
    through each bucket's last equity."""
    title = "Equity curve"
    if not curve:
        return _empty(title, height)
    t0, t1 = _time(curve[0].start), _time(curve[-1].end)
    low = min(bucket.low for bucket in curve)
    high = max(bucket.high for bucket in curve)
    lo, hi = float(low), float(high)
    bottom = height - BOTTOM

    def x(when: dt.datetime) -> float:
        return _scale(_time(when), t0, t1, LEFT, WIDTH - RIGHT)

    def y(value: Decimal) -> float:
        return _scale(float(value), lo, hi, bottom, TOP)

    line = " ".join(f"{x(b.end):.1f},{y(b.last):.1f}" for b in curve)
    upper = [f"{x(b.end):.1f},{y(b.high):.1f}" for b in curve]
    lower = [f"{x(b.end):.1f},{y(b.low):.1f}" for b in reversed(curve)]
    parts = [
        f'<svg class="chart" id="equity-chart" role="img" data-points="{len(curve)}" '
        f'viewBox="0 0 {WIDTH} {height}" width="100%" height="{height}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}: {len(curve)} points, {sum(b.count for b in curve)} snapshots</title>",
        *_frame(height, _label(high), _label(low), _stamp(curve[0].start), _stamp(curve[-1].end)),
        f'<polygon class="band" points="{" ".join(upper + lower)}" fill="#9cc3e6" '
        'fill-opacity="0.45" stroke="none" />',
        f'<polyline class="equity" points="{line}" fill="none" stroke="#1f5f99" stroke-width="1.6" />',
        "</svg>",
    ]
    return Markup("".join(parts))


def drawdown_svg(
    curve: Sequence[EquityBucket], drawdowns: Sequence[Decimal], height: int = 150
) -> Markup:
    """Drawdown (percent below the running peak) per bucket, as a filled area from 0 down."""
    title = "Drawdown"
    if not curve:
        return _empty(title, height)
    t0, t1 = _time(curve[0].start), _time(curve[-1].end)
    deepest = max(drawdowns) if drawdowns else Decimal(0)
    bottom = height - BOTTOM
    depth = float(deepest) or 1.0

    def x(when: dt.datetime) -> float:
        return _scale(_time(when), t0, t1, LEFT, WIDTH - RIGHT)

    def y(value: Decimal) -> float:
        return _scale(float(value), 0.0, depth, TOP, bottom)

    points = [f"{x(b.end):.1f},{y(d):.1f}" for b, d in zip(curve, drawdowns, strict=True)]
    area = [f"{x(curve[0].end):.1f},{TOP}", *points, f"{x(curve[-1].end):.1f},{TOP}"]
    parts = [
        f'<svg class="chart" id="drawdown-chart" role="img" data-points="{len(points)}" '
        f'viewBox="0 0 {WIDTH} {height}" width="100%" height="{height}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}: deepest {deepest:.2f}% below the running peak</title>",
        *_frame(height, "0%", f"-{deepest:.2f}%", _stamp(curve[0].start), _stamp(curve[-1].end)),
        f'<polygon class="drawdown" points="{" ".join(area)}" fill="#e39a9a" fill-opacity="0.6" '
        'stroke="#a33" stroke-width="1" />',
        "</svg>",
    ]
    return Markup("".join(parts))
