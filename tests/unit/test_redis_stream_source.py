"""The Redis stream source's offsets, reads and lag against a real redis-server with a password
(the Spark side, checkpoints and restarts: tests/integration/test_streaming.py)."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import pytest

from platform_cli.features.redis_stream import RedisSourceLag, RedisStreamReader
from tests.conftest import redis_server

PASSWORD = "source-secret"
FIELDS = [("event_time", "double"), ("event", "string"), ("user_id", "string")]


@pytest.fixture
def stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import redis

    monkeypatch.setenv("TEST_STREAM_PASSWORD", PASSWORD)
    with redis_server(tmp_path, PASSWORD) as port:
        client = redis.Redis(port=port, password=PASSWORD)
        yield client, f"redis://127.0.0.1:{port}/0"
        client.close()


def test_a_batch_reads_the_entries_after_its_start_up_to_its_end_and_again_the_same(stream) -> None:
    client, url = stream
    reader = RedisStreamReader(url, "TEST_STREAM_PASSWORD", "events", FIELDS)
    start = reader.initialOffset()
    assert reader.latestOffset(start, None) == start and reader.partitions(start, start) == []   # nothing yet: no batch
    first = [client.xadd("events", {"event_time": f"{100 + i}.5", "event": "click", "user_id": f"u{i}"}).decode() for i in range(3)]
    end = reader.latestOffset(start, None)
    assert end == {"id": first[-1]}
    client.xadd("events", {"event_time": "oops", "event": "impression"})   # after the batch's end, and a bad time
    [partition] = reader.partitions(start, end)
    # A re-run batch (after a crash) reads exactly what it read before; the reader reaches the
    # workers pickled, without the driver's connection.
    worker = pickle.loads(pickle.dumps(reader))
    rows = list(worker.read(partition))
    assert rows == [(100.5, "click", "u0"), (101.5, "click", "u1"), (102.5, "click", "u2")] == list(reader.read(partition))
    following = reader.latestOffset(end, None)
    assert list(reader.read(reader.partitions(end, following)[0])) == [(None, "impression", None)]


def test_the_password_comes_from_the_environment_only(stream, monkeypatch: pytest.MonkeyPatch) -> None:
    import redis

    _, url = stream
    monkeypatch.delenv("TEST_STREAM_PASSWORD")
    with pytest.raises(redis.AuthenticationError):
        RedisStreamReader(url, "TEST_STREAM_PASSWORD", "events", FIELDS).latestOffset({"id": "0-0"}, None)


def test_the_lag_counts_entries_not_applied_and_how_long_the_oldest_waited(stream) -> None:
    client, url = stream
    lag = RedisSourceLag({"redis": "events", "url": url, "password_env": "TEST_STREAM_PASSWORD"})
    assert lag.behind(0) == {"events": 0, "seconds": 0.0}
    for i in range(5):
        client.xadd("events", {"event_time": "1", "event": "click", "user_id": f"u{i}"})
    time.sleep(0.3)
    third = int(client.xrange("events")[2][0].decode().split("-")[0]) / 1000
    behind = lag.behind(2)
    assert behind["events"] == 3 and abs(behind["seconds"] - (time.time() - third)) < 0.2 and behind["seconds"] >= 0.3
    assert lag.behind(5) == {"events": 0, "seconds": 0.0}
