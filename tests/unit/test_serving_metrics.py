"""A version's shared metrics table as Prometheus metric families."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from platform_cli.serving.metrics import PrometheusCollector, SharedMetrics, figures_from_prometheus


def _scrape(metrics: SharedMetrics) -> dict:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PrometheusCollector(metrics, "ctr", 2, lambda: "tflite"))
    text = generate_latest(registry).decode()
    return {(s.name, s.labels.get("le")): s.value for family in text_string_to_metric_families(text) for s in family.samples
            if s.labels["model"] == "ctr" and s.labels["version"] == "2"}


def test_the_families_sum_every_workers_row() -> None:
    metrics = SharedMetrics(workers=2)
    first, second = metrics.worker(0), metrics.worker(1)
    for worker, seconds in ((first, 0.001), (first, 0.002), (second, 0.004)):
        worker.started()
        worker.finished(seconds, 200, np.array([0.25, 0.75]))
    second.started()
    second.finished(0.5, 400)
    second.started()  # still in flight
    first.batch(1)
    second.batch(3)
    second.batch(100)
    scraped = _scrape(metrics)
    assert scraped[("plinth_requests_total", None)] == 4
    assert scraped[("plinth_request_rejections_total", None)] == 1
    assert scraped[("plinth_request_errors_total", None)] == 0
    assert scraped[("plinth_in_flight_requests", None)] == 1
    assert scraped[("plinth_prediction_count", None)] == 6 and scraped[("plinth_prediction_sum", None)] == 3.0
    assert scraped[("plinth_request_duration_seconds_count", None)] == 4
    assert abs(scraped[("plinth_request_duration_seconds_sum", None)] - 0.507) < 1e-12
    # Cumulative buckets at fine-bucket edges: every count is exact.
    latency = {float(le): count for (name, le), count in scraped.items() if name == "plinth_request_duration_seconds_bucket"}
    assert latency[float("inf")] == 4
    assert max(count for le, count in latency.items() if le < 0.001) == 0
    assert min(count for le, count in latency.items() if 0.0042 < le < 0.5) == 3
    assert min(count for le, count in latency.items() if le >= 0.53) == 4
    sizes = {le: count for (name, le), count in scraped.items() if name == "plinth_batch_size_rows_bucket"}
    assert (sizes["1"], sizes["2"], sizes["4"], sizes["64"], sizes["128"], sizes["+Inf"]) == (1, 1, 2, 2, 3, 3)
    assert scraped[("plinth_batch_size_rows_sum", None)] == 104
    assert scraped[("plinth_model_runtime", None)] == 1


def test_figures_from_prometheus_are_those_of_the_table() -> None:
    metrics = SharedMetrics(workers=1)
    worker = metrics.worker(0)
    for seconds in (0.001,) * 50 + (0.010,) * 49 + (0.100,):
        worker.record(seconds, 200, np.array([0.5]))
    worker.record(0.001, 503)
    scraped = _scrape(metrics)
    # As Prometheus answers the compare query: one vector sample per series.
    result = [{"metric": {"__name__": name, "version": "2", **({"le": le} if le is not None else {})}, "value": [0, str(value)]}
              for (name, le), value in scraped.items()]
    [(version, figures)] = figures_from_prometheus(result).items()
    own = metrics.snapshot()
    assert version == 2
    assert {k: figures[k] for k in ("requests", "errors", "rejected", "in_flight", "error_rate")} == \
        {k: own[k] for k in ("requests", "errors", "rejected", "in_flight", "error_rate")}
    assert figures["mean_prediction"] == own["mean_prediction"] == 0.5
    assert abs(figures["p50_ms"] / own["p50_ms"] - 1) < 0.22 and abs(figures["p99_ms"] / own["p99_ms"] - 1) < 0.22
