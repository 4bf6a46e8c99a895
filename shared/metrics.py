"""A small Prometheus text-format registry (counters and histograms) for one process."""

from __future__ import annotations

import bisect
import itertools
import threading
from collections import defaultdict
from typing import Callable

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Registry:
    def __init__(self, prefix: str = "socorg"):
        self.prefix = prefix
        self._lock = threading.Lock()
        self._counters: dict[str, dict[tuple, float]] = defaultdict(lambda: defaultdict(float))
        self._hist: dict[str, dict[tuple, list]] = defaultdict(dict)
        self._gauges: dict[str, Callable[[], float]] = {}
        self._help: dict[str, str] = {}

    def inc(self, name: str, labels: dict[str, str], amount: float = 1.0, help: str = "") -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._counters[name][key] += amount
            self._help.setdefault(name, help)

    def observe(self, name: str, labels: dict[str, str], value: float, help: str = "") -> None:
        key = tuple(sorted(labels.items()))
        bucket = bisect.bisect_left(BUCKETS, value)  # the smallest bound >= value; len(BUCKETS) past the last
        with self._lock:
            # Each observation counts in its own bucket only; render() adds them up into Prometheus's
            # cumulative `le` buckets, so an observation costs one increment, not one per bucket.
            cell = self._hist[name].setdefault(key, [[0] * len(BUCKETS), 0, 0.0])
            if bucket < len(BUCKETS):
                cell[0][bucket] += 1
            cell[1] += 1
            cell[2] += value
            self._help.setdefault(name, help)

    def gauge(self, name: str, read: Callable[[], float], help: str = "") -> None:
        """A gauge read at scrape time (for example the outbox backlog from the database)."""
        self._gauges[name] = read
        self._help[name] = help

    def render(self) -> str:
        lines = []
        with self._lock:
            for name, cells in self._counters.items():
                full = f"{self.prefix}_{name}"
                lines += [f"# HELP {full} {self._help.get(name, '')}", f"# TYPE {full} counter"]
                lines += [f"{full}{_labels(k)} {v}" for k, v in cells.items()]
            for name, cells in self._hist.items():
                full = f"{self.prefix}_{name}"
                lines += [f"# HELP {full} {self._help.get(name, '')}", f"# TYPE {full} histogram"]
                for key, (counts, count, total) in cells.items():
                    for bound, c in zip(BUCKETS, itertools.accumulate(counts)):
                        lines.append(f"{full}_bucket{_labels(key + (('le', str(bound)),))} {c}")
                    lines.append(f"{full}_bucket{_labels(key + (('le', '+Inf'),))} {count}")
                    lines.append(f"{full}_count{_labels(key)} {count}")
                    lines.append(f"{full}_sum{_labels(key)} {total}")
        for name, read in self._gauges.items():
            full = f"{self.prefix}_{name}"
            try:
                value = read()
            except Exception:  # noqa: BLE001 - a scrape must not fail because one source is away
                value = float("nan")
            lines += [f"# HELP {full} {self._help.get(name, '')}", f"# TYPE {full} gauge", f"{full} {value}"]
        return "\n".join(lines) + "\n"


def _labels(key: tuple) -> str:
    if not key:
        return ""
    inner = ",".join(f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for k, v in key)
    return "{" + inner + "}"
