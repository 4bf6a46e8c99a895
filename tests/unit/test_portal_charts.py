"""Server-side SVG charts: counts, scaling and escaping."""

from __future__ import annotations

import re

from services.portal.charts import Bar, histogram, histogram_counts, horizontal_bars


def test_histogram_counts_put_each_score_in_its_range():
    assert histogram_counts([0, 9.99, 10, 55, 100, 100, -1, 101, None]) == [2, 1, 0, 0, 0, 1, 0, 0, 0, 2]


def test_histogram_draws_one_bar_per_range_scaled_to_the_tallest():
    svg = str(histogram([95, 95, 45], title="分布"))
    heights = [float(h) for h in re.findall(r'<rect class="bar"[^>]*height="([\d.]+)"', svg)]
    assert len(heights) == 10
    assert heights[9] == max(heights) and heights[4] == heights[9] / 2 and heights[0] == 0
    assert "<title>分布</title>" in svg


def test_bars_are_proportional_and_show_their_text():
    svg = str(horizontal_bars([Bar("预算", 1000, "¥10.00"), Bar("可用", 250, "¥2.50"), Bar("空", 0, "¥0.00")],
                              title="t"))
    widths = [float(w) for w in re.findall(r'<rect class="bar" x="\d+" y="[\d.]+" width="([\d.]+)"', svg)]
    assert widths[0] == 4 * widths[1] and widths[2] == 0
    assert "¥2.50" in svg


def test_labels_are_escaped():
    svg = str(horizontal_bars([Bar("<script>alert(1)</script>", 1, "&")], title='"><b>'))
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "<b>" not in svg
