"""Per-version request metrics: counts, errors, latency quantiles, mean prediction.

A version's server records every request it answers (it knows its predictions without parsing
them again); the router adds the requests that never reached it (serving/router.py). Latencies
go into a fixed log-scale histogram (buckets 5% apart from 10 µs to ~100 s), so memory stays
bounded however long a version serves, and a quantile is off by at most half a bucket (~2.5%).

The counters live in one float64 row per worker process (numpy), so that the workers of one
version can share a table in shared memory (`SharedMetrics`) and any of them can report the sum.
"""

from __future__ import annotations

import math

import numpy as np

_MIN_S = 1e-5
_RATIO = 1.05
_LOG_RATIO = math.log(_RATIO)
_BUCKETS = int(math.log(1e2 / _MIN_S) / _LOG_RATIO) + 2  # ~332

# Column layout of a metrics row: the counters, then the latency histogram.
REQUESTS, ERRORS, REJECTED, IN_FLIGHT, PREDICTIONS, PREDICTION_SUM = range(6)
_HISTOGRAM = 6
WIDTH = _HISTOGRAM + _BUCKETS


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
        if predictions is not None and len(predictions):
            row[PREDICTIONS] += len(predictions)
            row[PREDICTION_SUM] += float(np.sum(predictions))

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
