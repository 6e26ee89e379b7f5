"""Per-version request metrics: counts, errors, latency quantiles, mean prediction.

A version's server records every request it answers (it knows its predictions without parsing
them again); the router adds the requests that never reached it (serving/router.py). Latencies
go into a fixed log-scale histogram (buckets 5% apart from 10 µs to ~100 s), so memory stays
bounded however long a version serves, and a quantile is off by at most half a bucket (~2.5%).

The counters live in one float64 row per worker process (numpy), so that the workers of one
version can share a table in shared memory (`SharedMetrics`) and any of them can report the sum.
That one table is what every view of a version shows: `plinth model compare` (through the
router's /plinth/state), and GET /metrics in Prometheus' text format (`PrometheusCollector`),
which a cluster's Prometheus scrapes and `plinth model compare` reads back there
(`figures_from_prometheus`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

_MIN_S = 1e-5
_RATIO = 1.05
_LOG_RATIO = math.log(_RATIO)
_BUCKETS = int(math.log(1e2 / _MIN_S) / _LOG_RATIO) + 2  # ~332

# Batch sizes (rows per model call) are counted per power of two: 1, 2, 4, ... 512, more.
BATCH_BOUNDS = tuple(2 ** i for i in range(10))

# Column layout of a metrics row: the counters, the batch-size counts, then the latency histogram.
REQUESTS, ERRORS, REJECTED, IN_FLIGHT, PREDICTIONS, PREDICTION_SUM, LATENCY_SUM, BATCHES, BATCH_ROWS = range(9)
_BATCH_SIZES = 9
_HISTOGRAM = _BATCH_SIZES + len(BATCH_BOUNDS) + 1
WIDTH = _HISTOGRAM + _BUCKETS
# The latency buckets Prometheus gets: every 4th fine bucket's upper edge (21.6% apart) from
# 0.1 ms to ~60 s, so each count is exact (a sum of fine buckets), with few series per version.
_EXPORTED = tuple(range(48, _BUCKETS - 1, 4))


def bucket(seconds: float) -> int:
    """The histogram bucket of a latency."""
    return 0 if seconds <= _MIN_S else min(_BUCKETS - 1, 1 + int(math.log(seconds / _MIN_S) / _LOG_RATIO))


def quantile(counts: np.ndarray, q: float) -> float | None:
    """The q-quantile in seconds of a histogram (the geometric middle of its bucket), None when empty."""
    total = int(counts.sum())
    if not total:
        return None
    rank = max(1, math.ceil(q * total))
    index = int(np.searchsorted(np.cumsum(counts), rank))
    return _MIN_S if index == 0 else _MIN_S * _RATIO ** (index - 0.5)


class LatencyHistogram:
    """Latency counts per bucket (a view into a metrics row, or its own)."""

    def __init__(self, counts: np.ndarray | None = None) -> None:
        self.counts = np.zeros(_BUCKETS) if counts is None else counts

    def add(self, seconds: float) -> None:
        self.counts[bucket(seconds)] += 1

    def quantile(self, q: float) -> float | None:
        """The q-quantile in seconds (the geometric middle of its bucket), None when empty."""
        return quantile(self.counts, q)


class VersionMetrics:
    """What one version did since it joined the split, in one row of counters (its own by
    default, or a worker's row of a SharedMetrics table)."""

    def __init__(self, row: np.ndarray | None = None) -> None:
        self.row = np.zeros(WIDTH) if row is None else row
        self.latency = LatencyHistogram(self.row[_HISTOGRAM:])

    @property
    def in_flight(self) -> int:
        return int(self.row[IN_FLIGHT])

    def started(self) -> None:
        self.row[IN_FLIGHT] += 1

    def finished(self, seconds: float, status: int, predictions: np.ndarray | None = None) -> None:
        """One answered request (status 0: none was given, the version did not answer)."""
        self.row[IN_FLIGHT] -= 1
        self.record(seconds, status, predictions)

    def record(self, seconds: float, status: int, predictions: np.ndarray | list[float] | None = None) -> None:
        row = self.row
        row[REQUESTS] += 1
        if status >= 500 or status == 0:  # the version's fault
            row[ERRORS] += 1
        elif status >= 400:  # the client's fault, not counted against the version
            row[REJECTED] += 1
        self.latency.add(seconds)
        row[LATENCY_SUM] += seconds
        if predictions is not None and len(predictions):
            row[PREDICTIONS] += len(predictions)
            row[PREDICTION_SUM] += float(np.sum(predictions))

    def batch(self, rows: int) -> None:
        """One model call of `rows` rows."""
        row = self.row
        row[BATCHES] += 1
        row[BATCH_ROWS] += rows
        row[_BATCH_SIZES + next((i for i, bound in enumerate(BATCH_BOUNDS) if rows <= bound), len(BATCH_BOUNDS))] += 1

    def snapshot(self) -> dict:
        return summary(self.row)


def summary(row: np.ndarray) -> dict:
    """A metrics row as `plinth model compare` shows it."""
    requests = int(row[REQUESTS])
    p50, p99 = quantile(row[_HISTOGRAM:], 0.5), quantile(row[_HISTOGRAM:], 0.99)
    return {
        "requests": requests,
        "errors": int(row[ERRORS]),
        "rejected": int(row[REJECTED]),
        "in_flight": int(row[IN_FLIGHT]),
        "error_rate": float(row[ERRORS] / requests) if requests else 0.0,
        "p50_ms": None if p50 is None else round(float(p50) * 1000, 3),
        "p99_ms": None if p99 is None else round(float(p99) * 1000, 3),
        "mean_prediction": float(row[PREDICTION_SUM] / row[PREDICTIONS]) if row[PREDICTIONS] else None,
    }


class SharedMetrics:
    """A version's metrics table, one row per worker process, in anonymous shared memory (a
    memfd, nothing on disk to clean up): each worker writes only its own row, and any worker
    reports the sum of all. The first worker creates it; the others map the descriptor they
    inherit (`fd`)."""

    def __init__(self, workers: int, fd: int | None = None):
        import mmap
        import os

        size = workers * WIDTH * 8
        if fd is None:
            fd = os.memfd_create("plinth-metrics", 0)  # close-on-exec off: passed to the other workers explicitly
            os.ftruncate(fd, size)
        self.fd = fd
        self._memory = mmap.mmap(fd, size)
        self.table = np.ndarray((workers, WIDTH), dtype=np.float64, buffer=self._memory)

    def worker(self, index: int) -> VersionMetrics:
        return VersionMetrics(self.table[index])

    def total(self) -> np.ndarray:
        return self.table.sum(axis=0)

    def snapshot(self) -> dict:
        return summary(self.total())


def edge(index: int) -> float:
    """The upper edge in seconds of a fine latency bucket."""
    return _MIN_S * _RATIO ** index


class PrometheusCollector:
    """A version's metrics table as Prometheus metric families (prometheus_client's custom
    collector): read at each scrape from the shared table, so the figures cover every worker
    and there is no second count to keep. Labels: model (ctr) and version (2)."""

    def __init__(self, metrics: SharedMetrics, model: str, version: int | None, runtime: Callable[[], str]):
        self.metrics = metrics
        self.labels = {"model": model, "version": "" if version is None else str(version)}
        self.runtime = runtime

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, SummaryMetricFamily

        row = self.metrics.total()
        names, values = list(self.labels), list(self.labels.values())

        def family(kind, name: str, documentation: str, value: float):
            metric = kind(name, documentation, labels=names)
            metric.add_metric(values, value)
            return metric

        yield family(CounterMetricFamily, "plinth_requests", "Requests the version answered (any status)", row[REQUESTS])
        yield family(CounterMetricFamily, "plinth_request_errors", "Answers with a 5xx: the version's fault", row[ERRORS])
        yield family(CounterMetricFamily, "plinth_request_rejections", "Answers with a 4xx: the client's mistake", row[REJECTED])
        yield family(GaugeMetricFamily, "plinth_in_flight_requests", "Requests received and not yet answered", row[IN_FLIGHT])
        latency = HistogramMetricFamily("plinth_request_duration_seconds", "Time from a request's arrival to its answer",
                                        labels=names)
        cumulative = np.cumsum(row[_HISTOGRAM:])
        buckets = [(f"{edge(i):.4g}", float(cumulative[i])) for i in _EXPORTED] + [("+Inf", float(cumulative[-1]))]
        latency.add_metric(values, buckets, row[LATENCY_SUM])
        yield latency
        sizes = HistogramMetricFamily("plinth_batch_size_rows", "Rows per model call (requests coalesced by the batcher)",
                                      labels=names)
        counts = np.cumsum(row[_BATCH_SIZES:_HISTOGRAM])
        sizes.add_metric(values, [(str(b), float(c)) for b, c in zip(BATCH_BOUNDS, counts)] + [("+Inf", float(counts[-1]))],
                         row[BATCH_ROWS])
        yield sizes
        predictions = SummaryMetricFamily("plinth_prediction", "Predicted probabilities: count and sum (their mean is sum/count)",
                                          labels=names)
        predictions.add_metric(values, row[PREDICTIONS], row[PREDICTION_SUM])
        yield predictions
        info = GaugeMetricFamily("plinth_model_runtime", "How the model runs (tflite or savedmodel)", labels=[*names, "runtime"])
        info.add_metric([*values, self.runtime()], 1)
        yield info


# What `figures_from_prometheus` needs of each version, by metric name (a PromQL selector).
PROMETHEUS_SERIES = ("plinth_requests_total", "plinth_request_errors_total", "plinth_request_rejections_total",
                     "plinth_in_flight_requests", "plinth_prediction_count", "plinth_prediction_sum",
                     "plinth_request_duration_seconds_bucket")


def prometheus_query(model: str) -> str:
    """One PromQL query for every version's series of a model, summed over its pods."""
    names = "|".join(PROMETHEUS_SERIES)
    return f'sum by (__name__, version, le) ({{__name__=~"{names}", model="{model}"}})'


def figures_from_prometheus(result: list[dict]) -> dict[int, dict]:
    """Per version, the figures `summary` gives for a local version, from the answer to
    `prometheus_query` (the Prometheus HTTP API's vector result: [{"metric": {...}, "value": [t, "v"]}])."""
    series: dict[int, dict] = {}
    for sample in result:
        labels, value = sample["metric"], float(sample["value"][1])
        if not str(labels.get("version", "")).isdigit():
            continue
        own = series.setdefault(int(labels["version"]), {"buckets": []})
        if labels["__name__"] == "plinth_request_duration_seconds_bucket":
            own["buckets"].append((float(labels["le"]), value))
        else:
            own[labels["__name__"]] = value
    figures = {}
    for version, own in sorted(series.items()):
        requests, errors = int(own.get("plinth_requests_total", 0)), int(own.get("plinth_request_errors_total", 0))
        p50, p99 = bucket_quantile(own["buckets"], 0.5), bucket_quantile(own["buckets"], 0.99)
        count = own.get("plinth_prediction_count", 0)
        figures[version] = {
            "requests": requests,
            "errors": errors,
            "rejected": int(own.get("plinth_request_rejections_total", 0)),
            "in_flight": int(own.get("plinth_in_flight_requests", 0)),
            "error_rate": errors / requests if requests else 0.0,
            "p50_ms": None if p50 is None else round(p50 * 1000, 3),
            "p99_ms": None if p99 is None else round(p99 * 1000, 3),
            "mean_prediction": own.get("plinth_prediction_sum", 0) / count if count else None,
        }
    return figures


def bucket_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The q-quantile in seconds of a Prometheus histogram's cumulative buckets [(le, count)],
    interpolated geometrically within its bucket (the buckets are log-spaced); None when empty."""
    buckets = sorted(buckets)
    if not buckets or not buckets[-1][1]:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank and count > below:
            if math.isinf(le):
                return lower  # beyond the last finite bound: the most that can be said
            if lower <= 0:
                return le
            return lower * (le / lower) ** ((rank - below) / (count - below))
        lower, below = le, count
    return lower
