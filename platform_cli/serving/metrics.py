"""Per-version request metrics kept by the router: counts, errors, latency quantiles, mean prediction.

Latencies go into a fixed log-scale histogram (buckets 5% apart from 10 µs to ~100 s), so memory
stays bounded however long a version serves, and a quantile is off by at most half a bucket
(~2.5%). No dependency beyond the standard library: the router records every request with it.
"""

from __future__ import annotations

import math

_MIN_S = 1e-5
_RATIO = 1.05
_LOG_RATIO = math.log(_RATIO)
_BUCKETS = int(math.log(1e2 / _MIN_S) / _LOG_RATIO) + 2  # ~332


class LatencyHistogram:
    def __init__(self) -> None:
        self.counts = [0] * _BUCKETS
        self.total = 0

    def add(self, seconds: float) -> None:
        index = 0 if seconds <= _MIN_S else min(_BUCKETS - 1, 1 + int(math.log(seconds / _MIN_S) / _LOG_RATIO))
        self.counts[index] += 1
        self.total += 1

    def quantile(self, q: float) -> float | None:
        """The q-quantile in seconds (the geometric middle of its bucket), None when empty."""
        if not self.total:
            return None
        rank = max(1, math.ceil(q * self.total))
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                if index == 0:
                    return _MIN_S
                return _MIN_S * _RATIO ** (index - 0.5)
        return _MIN_S * _RATIO ** (_BUCKETS - 1)


class VersionMetrics:
    """What one version did since it joined the split."""

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0  # 5xx answers or no answer: the version's fault
        self.rejected = 0  # 4xx answers: the client's fault, not counted against the version
        self.in_flight = 0
        self.predictions = 0
        self.prediction_sum = 0.0
        self.latency = LatencyHistogram()

    def record(self, seconds: float, status: int, predictions: list | None) -> None:
        self.requests += 1
        if status >= 500 or status == 0:
            self.errors += 1
        elif status >= 400:
            self.rejected += 1
        self.latency.add(seconds)
        if predictions:
            for value in predictions:
                if isinstance(value, (int, float)):
                    self.predictions += 1
                    self.prediction_sum += value

    def snapshot(self) -> dict:
        p50, p99 = self.latency.quantile(0.5), self.latency.quantile(0.99)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "rejected": self.rejected,
            "in_flight": self.in_flight,
            "error_rate": self.errors / self.requests if self.requests else 0.0,
            "p50_ms": None if p50 is None else round(p50 * 1000, 3),
            "p99_ms": None if p99 is None else round(p99 * 1000, 3),
            "mean_prediction": self.prediction_sum / self.predictions if self.predictions else None,
        }
