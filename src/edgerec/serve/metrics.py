"""Prometheus text-format metrics, written by hand (no dependency): counters, gauges
and histograms with labels. Every update happens on the server's event loop thread,
so plain dicts suffice."""

from __future__ import annotations

import bisect
import os

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def _labels(names: tuple[str, ...], values: tuple) -> str:
    if not names:
        return ""
    parts = []
    for n, v in zip(names, values, strict=True):
        s = str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        parts.append(f'{n}="{s}"')
    return "{" + ",".join(parts) + "}"


def _num(x: float) -> str:
    if x == float("inf"):
        return "+Inf"
    return repr(float(x)) if isinstance(x, float) and not x.is_integer() else str(int(x))


class Counter:
    kind = "counter"

    def __init__(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.values: dict[tuple, float] = {}

    def inc(self, *label_values, by: float = 1) -> None:
        self.values[label_values] = self.values.get(label_values, 0) + by

    def get(self, *label_values) -> float:
        return self.values.get(label_values, 0)

    def lines(self) -> list[str]:
        return [
            f"{self.name}{_labels(self.labels, k)} {_num(v)}"
            for k, v in sorted(self.values.items())
        ]


class Gauge(Counter):
    kind = "gauge"

    def set(self, *label_values, value: float) -> None:
        self.values[label_values] = value

    def clear(self) -> None:
        self.values.clear()


class Histogram:
    kind = "histogram"

    def __init__(self, name: str, doc: str, buckets, labels: tuple[str, ...] = ()) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.buckets = tuple(buckets)
        self.series: dict[tuple, list] = {}  # labels -> [counts per bucket..., sum, count]

    def observe(self, value: float, *label_values) -> None:
        s = self.series.get(label_values)
        if s is None:
            s = self.series[label_values] = [0] * (len(self.buckets) + 2)
        i = bisect.bisect_left(self.buckets, value)
        if i < len(self.buckets):
            s[i] += 1
        s[-2] += value
        s[-1] += 1

    def lines(self) -> list[str]:
        out = []
        names = (*self.labels, "le")
        for key, s in sorted(self.series.items()):
            total = 0
            for b, c in zip(self.buckets, s, strict=False):
                total += c
                out.append(f"{self.name}_bucket{_labels(names, (*key, _num(b)))} {total}")
            out.append(f"{self.name}_bucket{_labels(names, (*key, '+Inf'))} {s[-1]}")
            out.append(f"{self.name}_sum{_labels(self.labels, key)} {s[-2]!r}")
            out.append(f"{self.name}_count{_labels(self.labels, key)} {s[-1]}")
        return out


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class Metrics:
    def __init__(self) -> None:
        self.requests = Counter(
            "edgerec_requests_total", "HTTP requests answered", ("endpoint", "status")
        )
        self.errors = Counter("edgerec_errors_total", "Requests answered with an error", ("kind",))
        self.latency = Histogram(
            "edgerec_request_latency_seconds",
            "Time from the request's arrival to its answer",
            LATENCY_BUCKETS,
            ("endpoint",),
        )
        self.batch_size = Histogram(
            "edgerec_batch_size", "Histories per recommend_batch call", BATCH_BUCKETS
        )
        self.reloads = Counter("edgerec_reloads_total", "Bundle reloads", ("result",))
        self.bundle = Gauge(
            "edgerec_bundle_info",
            "The bundle being served (value 1)",
            ("version", "created_at", "precision", "path"),
        )
        self.items = Gauge("edgerec_items", "Items that can be recommended now")
        self.in_flight = Gauge("edgerec_requests_in_flight", "Requests being answered now")
        self.rss = Gauge("process_resident_memory_bytes", "Resident memory of the server")
        self.all = [
            self.requests,
            self.errors,
            self.latency,
            self.batch_size,
            self.reloads,
            self.bundle,
            self.items,
            self.in_flight,
            self.rss,
        ]

    def render(self) -> str:
        self.rss.set(value=rss_bytes())
        out = []
        for m in self.all:
            out.append(f"# HELP {m.name} {m.doc}")
            out.append(f"# TYPE {m.name} {m.kind}")
            out.extend(m.lines())
        return "\n".join(out) + "\n"
