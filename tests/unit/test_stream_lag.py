"""A streaming job's lag: the payload its driver publishes and the CLI reads, how much a Kafka
source is behind by Spark's own progress, and the driver's updates of its pod (the requests at
the client's HTTP boundary; tests/sim/test_streaming_live.py sends them to a live API server)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from platform_cli.features.lag import LAG_ANNOTATION, DriverPodLag, LagFile, StreamLag, offsets_behind, pod_lag, publisher
from platform_cli.kube import ErrorContext, KubeClient
from tests.kube_stand_in import Call, RecordingApiClient


def kafka_progress(end: dict, latest: dict | None):
    """A micro-batch's progress as a Kafka query reports it (the shape of Spark's
    StreamingQueryProgress JSON), parsed by pyspark as `query.lastProgress` returns it."""
    from pyspark.sql.streaming.listener import StreamingQueryProgress

    source = {"description": "KafkaV2[Subscribe[feed-events]]", "startOffset": {"feed-events": {"0": 0, "1": 0}}, "endOffset": end,
              "latestOffset": latest, "numInputRows": 90, "inputRowsPerSecond": 45.0, "processedRowsPerSecond": 60.0,
              "metrics": {"avgOffsetsBehindLatest": "5.0", "maxOffsetsBehindLatest": "10", "minOffsetsBehindLatest": "0"}}
    return StreamingQueryProgress.fromJson({
        "id": "8c2ed6a1-5b2c-4f63-9b58-2f1f4c0b0a11", "runId": "0f3b8d7e-2d55-4a0e-9c3b-6f0e2f1d9c22", "name": "ctr-activity",
        "timestamp": "2026-11-30T16:00:00.000Z", "batchId": 3, "batchDuration": 1500, "numInputRows": 90,
        "inputRowsPerSecond": 45.0, "processedRowsPerSecond": 60.0, "durationMs": {"triggerExecution": 1500},
        "stateOperators": [], "sources": [source], "sink": {"description": "ForeachBatchSink", "numOutputRows": -1},
    })


def test_a_kafka_stream_is_behind_by_its_latest_offsets_less_the_last_batchs_end() -> None:
    progress = kafka_progress(end={"feed-events": {"0": 40, "1": 50}}, latest={"feed-events": {"0": 50, "1": 50}})
    assert offsets_behind(progress) == 10
    caught_up = kafka_progress(end={"feed-events": {"0": 50, "1": 50}}, latest={"feed-events": {"0": 50, "1": 50}})
    assert offsets_behind(caught_up) == 0
    # Before the first batch, or a source that does not say its latest offset: unknown, not 0.
    assert offsets_behind(None) is None
    assert offsets_behind(kafka_progress(end={"feed-events": {"0": 40, "1": 50}}, latest=None)) is None


def test_the_status_column_says_what_is_known() -> None:
    assert StreamLag(processed=10, behind_events=4, behind_seconds=1.25).shown() == "4 events / 1.2s"
    assert StreamLag(processed=10, behind_events=4).shown() == "4 events"   # Kafka: how long they waited is not read
    assert StreamLag(processed=10).shown() == "?"


def test_the_pod_annotation_and_the_file_carry_the_same_payload(tmp_path: Path) -> None:
    lag = StreamLag(batch=3, processed=90, behind_events=10, behind_seconds=None, event_time=1_790_000_000.5, updated=1_790_000_002.0)
    LagFile(str(tmp_path / "progress.json")).publish(lag)
    assert StreamLag.model_validate_json((tmp_path / "progress.json").read_text()) == lag
    assert pod_lag({"metadata": {"annotations": {LAG_ANNOTATION: lag.model_dump_json()}}}) == lag
    assert pod_lag({"metadata": {}}) is None and pod_lag({"metadata": {"annotations": {LAG_ANNOTATION: "not json"}}}) is None


def test_outside_kubernetes_the_driver_writes_the_file() -> None:
    found = publisher({"spark.master": "local[2]"}, "/tmp/out/progress.json", trigger=1.0)
    assert isinstance(found, LagFile) and found.location == "/tmp/out/progress.json"


def test_the_driver_patches_its_pod_once_per_interval_and_survives_a_refusal(capsys: pytest.CaptureFixture[str]) -> None:
    refuse = [False]

    def respond(call: Call):
        if refuse[0]:
            return 403, {"kind": "Status", "message": 'pods "activity-abcde-driver" is forbidden: User "system:serviceaccount:feed:default" cannot patch resource "pods"'}
        return 200, {"metadata": {"name": "activity-abcde-driver"}}

    client = RecordingApiClient(respond)
    driver = DriverPodLag(KubeClient(client, ErrorContext("in-cluster", "feed")), "feed", "activity-abcde-driver", interval=0.2)
    lag = StreamLag(batch=1, processed=5, behind_events=0, behind_seconds=0.0, updated=1_790_000_000.0)
    assert driver.publish(lag) is True
    assert driver.publish(lag) is False   # within the interval: no request
    [call] = client.calls
    assert (call.method, call.path, call.content_type) == ("PATCH", "/api/v1/namespaces/feed/pods/activity-abcde-driver", "application/merge-patch+json")
    assert json.loads(call.body["metadata"]["annotations"][LAG_ANNOTATION]) == lag.model_dump()

    refuse[0] = True
    for _ in range(2):
        time.sleep(0.25)
        assert driver.publish(lag) is False
    # Said once in the driver's log, not at every interval.
    assert capsys.readouterr().err.count("stream lag not published on pod feed/activity-abcde-driver: patching Pod feed/activity-abcde-driver: pods") == 1
    refuse[0] = False
    time.sleep(0.25)
    assert driver.publish(lag) is True and len(client.calls) == 4
