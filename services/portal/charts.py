"""Charts as inline SVG, drawn on the server (no script, no CDN). Pure: data in, markup out.

Colours and text sizes come from the stylesheet through classes, so the charts follow the page's theme,
and every chart carries a <title> and a text table beside it for screen readers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from markupsafe import Markup, escape


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    text: str  # the value as shown (e.g. formatted yuan)
    css: str = "bar"


def horizontal_bars(bars: Sequence[Bar], *, title: str, width: int = 640, row_height: int = 34,
                    label_width: int = 150) -> Markup:
    """One bar per row, scaled to the largest value; labels left, values at the bar's end."""
    height = row_height * len(bars) + 8
    top = max((b.value for b in bars), default=0) or 1
    plot = width - label_width - 130
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for index, bar in enumerate(bars):
        y = 4 + index * row_height
        length = 0 if bar.value <= 0 else max(2.0, plot * bar.value / top)
        parts.append(
            f'<text class="chart-label" x="{label_width - 8}" y="{y + row_height * 0.62:.1f}" '
            f'text-anchor="end">{escape(bar.label)}</text>'
            f'<rect class="{escape(bar.css)}" x="{label_width}" y="{y + 4}" width="{length:.1f}" '
            f'height="{row_height - 10}" rx="3"/>'
            f'<text class="chart-value" x="{label_width + length + 6:.1f}" y="{y + row_height * 0.62:.1f}">'
            f'{escape(bar.text)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def histogram_counts(values: Sequence[float], *, low: float = 0, high: float = 100, bins: int = 10) -> list[int]:
    """How many values fall in each of `bins` equal ranges of low..high; the top edge belongs to the last."""
    counts = [0] * bins
    step = (high - low) / bins
    for value in values:
        if value is None or value < low or value > high:
            continue
        counts[min(bins - 1, int((value - low) // step))] += 1
    return counts


def histogram(values: Sequence[float], *, title: str, width: int = 640, height: int = 220,
              low: float = 0, high: float = 100, bins: int = 10) -> Markup:
    """Vertical bars of how many scores fall in each range, with the range under each bar."""
    counts = histogram_counts(values, low=low, high=high, bins=bins)
    top = max(counts) or 1
    base, left = height - 28, 30
    slot = (width - left - 10) / bins
    step = (high - low) / bins
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
             f'<line class="chart-axis" x1="{left}" y1="{base}" x2="{width - 10}" y2="{base}"/>']
    for index, count in enumerate(counts):
        x = left + index * slot
        bar_height = (base - 20) * count / top
        start = low + index * step
        parts.append(
            f'<rect class="bar" x="{x + 3:.1f}" y="{base - bar_height:.1f}" width="{slot - 6:.1f}" '
            f'height="{bar_height:.1f}" rx="2"><title>{start:g}-{start + step:g}: {count}</title></rect>'
            f'<text class="chart-tick" x="{x + slot / 2:.1f}" y="{base + 16}" text-anchor="middle">{start:g}</text>')
        if count:
            parts.append(f'<text class="chart-value" x="{x + slot / 2:.1f}" y="{base - bar_height - 5:.1f}" '
                         f'text-anchor="middle">{count}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
