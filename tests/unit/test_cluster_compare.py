"""`plinth model compare` on a cluster stack: per-version figures from the cluster's Prometheus.

The Prometheus HTTP API is the last boundary: a local HTTP server answers the query with what
a real Prometheus 2.42 answered it after scraping two real model servers (versions 1 and 2,
two workers each) that took a known set of requests (tests/fixtures/prometheus/record.py
recorded both the answer and what the servers counted themselves). The Kubernetes API is the
stand-in of test_cluster_release.py.

What this does not prove: that a cluster's Prometheus scrapes the predictor pods (that is the
InferenceService's `serving.kserve.io/enable-prometheus-scraping` annotation and the cluster's
Prometheus configuration), nor that its series carry the same labels after relabelling; the
recorded answer is replayed as it was, whatever the time or the split.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from platform_cli.errors import PlinthError
from platform_cli.serving import release
from platform_cli.serving.metrics import bucket_quantile, prometheus_query
from tests.unit.test_cluster_release import team  # noqa: F401  (the fixture)

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "prometheus"


def with_prometheus(stack, url: str | None):
    serving = stack.config.serving.model_copy(update={"prometheus_url": url})
    return stack.model_copy(update={"config": stack.config.model_copy(update={"serving": serving})})


@pytest.fixture
def prometheus():
    """A Prometheus HTTP API answering /api/v1/query with the recorded answer (or `answer`)."""
    queries: list[str] = []
    reply = {"status": 200, "body": (RECORDED / "ctr-query.json").read_text()}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            url = urlsplit(self.path)
            queries.append(parse_qs(url.query)["query"][0] if url.path == "/api/v1/query" else url.path)
            body = reply["body"].encode()
            self.send_response(reply["status"])
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", queries, reply
    server.shutdown()
    server.server_close()


def test_compare_reads_each_versions_figures_from_prometheus(team, prometheus):  # noqa: F811
    stack, registry, _ = team
    url, queries, _ = prometheus
    release.promote(stack, registry, "ctr", 1, None)
    release.promote(stack, registry, "ctr", 2, 10)
    compared = release.compare(with_prometheus(stack, url), registry, "ctr")
    assert queries == [prometheus_query("ctr")]
    assert prometheus_query("ctr") == ('sum by (__name__, version, le) ({__name__=~"plinth_requests_total|plinth_request_errors_total|'
                                       'plinth_request_rejections_total|plinth_in_flight_requests|plinth_prediction_count|'
                                       'plinth_prediction_sum|plinth_request_duration_seconds_bucket", model="ctr"})')
    rows = {row["version"]: row for row in compared["versions"]}
    assert [(r["version"], r["stage"], r["weight"]) for r in compared["versions"]] == [(1, "production", 90), (2, "canary", 10)]
    counted = {int(v): figures for v, figures in json.loads((RECORDED / "ctr-servers.json").read_text()).items()}
    for version, own in counted.items():
        row = rows[version]
        # The counts are the servers' own, summed over their workers by Prometheus.
        assert (row["requests"], row["errors"], row["rejected"], row["in_flight"]) == (own["requests"], own["errors"], own["rejected"], 0)
        assert row["mean_prediction"] == pytest.approx(own["mean_prediction"], rel=1e-12)
        # Latency quantiles from the exported buckets (21.6% apart) against the servers' fine
        # histogram (5% apart): within a bucket of each other.
        assert row["p50_ms"] / own["p50_ms"] == pytest.approx(1, abs=0.25)
        assert row["p99_ms"] / own["p99_ms"] == pytest.approx(1, abs=0.25)


def test_compare_on_a_cluster_stack_without_prometheus_says_what_to_set(team):  # noqa: F811
    stack, registry, _ = team
    release.promote(stack, registry, "ctr", 1, None)
    with pytest.raises(PlinthError) as refused:
        release.compare(stack, registry, "ctr")
    assert refused.value.message == "stack 'team-feed' has no Prometheus to read the versions' metrics from"
    assert refused.value.fix == "set plinth:serving.prometheusUrl in Pulumi.team-feed.yaml to the cluster's Prometheus, e.g. http://prometheus.monitoring:9090"


def test_a_query_prometheus_refuses_or_an_unreachable_prometheus_is_one_error(team, prometheus):  # noqa: F811
    stack, registry, _ = team
    url, _, reply = prometheus
    release.promote(stack, registry, "ctr", 1, None)
    reply.update(status=400, body=json.dumps({"status": "error", "errorType": "bad_data", "error": "invalid parameter \"query\""}))
    with pytest.raises(PlinthError, match=f'Prometheus at {url} refused the query: bad_data invalid parameter "query"'):
        release.compare(with_prometheus(stack, url), registry, "ctr")
    with pytest.raises(PlinthError, match="cannot reach Prometheus at http://127.0.0.1:9: "):
        release.compare(with_prometheus(stack, "http://127.0.0.1:9"), registry, "ctr")


def test_a_quantile_is_interpolated_within_its_log_spaced_bucket():
    buckets = [(0.001, 0.0), (0.002, 50.0), (0.004, 100.0), (float("inf"), 100.0)]
    assert bucket_quantile(buckets, 0.25) == pytest.approx(0.001 * 2 ** 0.5)
    assert bucket_quantile(buckets, 0.75) == pytest.approx(0.002 * 2 ** 0.5)
    assert bucket_quantile([(0.001, 0.0), (float("inf"), 0.0)], 0.5) is None
    assert bucket_quantile([(0.001, 0.0), (float("inf"), 4.0)], 0.5) == 0.001  # beyond the last bound: at least it
