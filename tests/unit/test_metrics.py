"""The Prometheus registry: counters by label set, histograms with cumulative `le` buckets."""

from shared.metrics import Registry


def rendered(registry: Registry) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in registry.render().splitlines() if line and not line.startswith("#")}


def test_histogram_buckets_are_cumulative_and_bounds_inclusive():
    registry = Registry()
    for seconds in (0.001, 0.005, 0.007, 0.3, 0.3, 7.0):  # 0.005 sits on a bound: it counts as <= 0.005
        registry.observe("latency", {"endpoint": "/x"}, seconds)
    lines = rendered(registry)
    bucket = lambda le: lines[f'socorg_latency_bucket{{endpoint="/x",le="{le}"}}']  # noqa: E731
    assert [bucket(le) for le in ("0.005", "0.01", "0.025", "0.25", "0.5", "5.0", "+Inf")] == [2, 3, 3, 3, 5, 5, 6]
    assert lines['socorg_latency_count{endpoint="/x"}'] == 6
    assert abs(lines['socorg_latency_sum{endpoint="/x"}'] - 7.613) < 1e-9


def test_counters_are_kept_per_label_set_whatever_the_labels_order():
    registry = Registry()
    registry.inc("requests", {"method": "GET", "status": "200"})
    registry.inc("requests", {"status": "200", "method": "GET"})
    registry.inc("requests", {"method": "POST", "status": "201"}, amount=3)
    lines = rendered(registry)
    assert lines['socorg_requests{method="GET",status="200"}'] == 2
    assert lines['socorg_requests{method="POST",status="201"}'] == 3
