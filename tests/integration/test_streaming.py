"""A streaming job on the local platform, with real Spark Structured Streaming: it runs until
cancelled, shows its lag, and a stream killed mid-flight and restarted (the same submission,
then a new one) loses no event and counts none twice, reading a directory of event files or a
Redis stream (a real redis-server with a password)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from platform_cli.features.online import SQLiteStore
from tests.conftest import REPO, redis_server

pytestmark = pytest.mark.integration

JOB = REPO / "examples" / "ctr-realtime" / "activity.job.yaml"
PLINTH = str(Path(sys.executable).parent / "plinth")
STARTUP = 240.0  # Spark's first micro-batch, on a machine whose cores other work shares


def plinth(*args: str) -> str:
    return subprocess.run([PLINTH, *args], check=True, capture_output=True, text=True, timeout=120).stdout


def status(job_id: str) -> dict:
    return json.loads(plinth("job", "status", job_id, "-o", "json"))


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
    return result


def drop(directory: Path, name: str, events: pd.DataFrame) -> None:
    """An event file appears whole: written beside the directory, then renamed into it."""
    staging = directory.parent / f".{name}"
    staging.write_text("".join(json.dumps(e) + "\n" for e in events.to_dict("records")))
    os.replace(staging, directory / name)


def make_events(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    now = time.time()
    return pd.DataFrame({
        "event_time": (now - rng.uniform(0, 1800, n)).round(3),
        "event": rng.choice(["impression", "click"], n, p=[0.8, 0.2]),
        "user_id": rng.choice([f"u{i}" for i in range(30)], n),
        "item_id": rng.choice([f"i{i}" for i in range(10)], n),
    })


def expected_counts(events: pd.DataFrame) -> dict:
    """Every aggregate of activity.job.yaml, counted exactly: {(aggregate, key, bucket): n}."""
    aggregates = [("user_clicks_1h", "user_id", "click", 300), ("user_impressions_1h", "user_id", "impression", 300),
                  ("item_impressions_1d", "item_id", "impression", 86400)]
    counts = {}
    for name, key, event, bucket in aggregates:
        chosen = events[events.event == event]
        grouped = chosen.groupby([chosen[key], np.floor(chosen.event_time / bucket).astype(int)]).size()
        counts.update({(name, k, int(b)): int(n) for (k, b), n in grouped.items()})
    return counts


def kill_job(project: Path, job_id: str) -> None:
    """What a crash does: SIGKILL to the whole job, no chance to finish the batch in flight."""
    process = json.loads((project / ".plinth" / "local" / "jobs" / job_id / "process.json").read_text())
    os.killpg(process["job_pgid"], signal.SIGKILL)


def crash_twice_and_catch_up(project: Path, job_file: Path, waves: list[pd.DataFrame], arrive) -> str:
    """The first 4 waves of events are there when the stream starts; the rest arrive (`arrive`,
    one wave each 0.7 s) while it is killed twice and restarted: once as the same submission
    (plinth job restart), once as a new one (same stream, same checkpoint). Then every count in
    the store must be exact. Returns the stream's log."""
    for wave in waves[:4]:
        arrive(wave)
    job_id = plinth("job", "submit", "-f", str(job_file)).split()[0].removeprefix("job/")
    wait_for(lambda: (status(job_id).get("lag") or {}).get("processed", 0) >= 160, STARTUP, "the first batches")
    assert status(job_id)["status"] == "Running"

    def producer():
        for wave in waves[4:]:
            arrive(wave)
            time.sleep(0.7)

    writer = threading.Thread(target=producer)
    writer.start()
    try:
        time.sleep(4)
        kill_job(project, job_id)
        wait_for(lambda: status(job_id)["status"] == "Failed", 60, "the killed job's record")
        plinth("job", "restart", job_id)
        wait_for(lambda: (status(job_id).get("lag") or {}).get("processed", 0) > 400, STARTUP, "the restarted stream")
        kill_job(project, job_id)
        wait_for(lambda: status(job_id)["status"] == "Failed", 60, "the killed job's record")
        second = plinth("job", "submit", "-f", str(job_file)).split()[0].removeprefix("job/")
    finally:
        writer.join()
    total = sum(len(w) for w in waves)
    lag = wait_for(lambda: (lag := status(second).get("lag")) and lag["processed"] == total and lag["behind_events"] == 0 and lag,
                   STARTUP, "the stream to catch up")
    assert lag["behind_seconds"] == 0.0
    assert "cancelled" in plinth("job", "cancel", second)
    assert status(second)["status"] == "Cancelled"

    store = SQLiteStore(project / ".plinth" / "local" / "online" / "ctr-online.db")
    try:
        stored = {(a, k, b): n for a, k, b, n in store._db.execute("SELECT aggregate, key, bucket, n FROM counts")}
        assert store.progress("ctr-activity").events == total
    finally:
        store.close()
    assert stored == expected_counts(pd.concat(waves))
    # The restarts really re-ran a batch the store had applied, or started past one: either way
    # the counts above are exact; the logs say which happened.
    log = plinth("job", "logs", job_id) + plinth("job", "logs", second)
    assert log.count("stream ctr-activity:") == 3
    return log


def test_a_killed_stream_restarts_without_losing_or_double_counting_events(project: Path) -> None:
    events_dir = project / ".plinth" / "local" / "storage" / "ctr-realtime" / "events"
    events_dir.mkdir(parents=True)
    dropped = []

    def arrive(wave: pd.DataFrame) -> None:
        dropped.append(wave)
        drop(events_dir, f"events-{len(dropped):03d}.json", wave)

    crash_twice_and_catch_up(project, JOB, [make_events(40, seed) for seed in range(36)], arrive)


def test_a_killed_redis_stream_restarts_without_losing_or_double_counting_events(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import redis

    password = "stream-source-secret"
    monkeypatch.setenv("PLINTH_STREAM_REDIS_PASSWORD", password)   # what `plinth job submit` runs with
    with redis_server(tmp_path, password) as port:
        jobs = project / "jobs"
        jobs.mkdir()
        (jobs / "activity.py").write_text((JOB.parent / "activity.py").read_text())
        spec = jobs / "activity.job.yaml"
        spec.write_text(JOB.read_text().replace('files: "${storage}/ctr-realtime/events"', f'redis: ctr-events\n  url: "redis://127.0.0.1:{port}/0"'))
        client = redis.Redis(port=port, password=password)

        def arrive(wave: pd.DataFrame) -> None:
            with client.pipeline() as pipe:
                for event in wave.to_dict("records"):
                    pipe.xadd("ctr-events", {k: str(v) for k, v in event.items()})
                pipe.execute()

        try:
            log = crash_twice_and_catch_up(project, spec, [make_events(40, seed) for seed in range(30)], arrive)
            assert client.xlen("ctr-events") == 30 * 40
        finally:
            client.close()
    # The password reached the job through its environment only: not in what was rendered,
    # logged or written anywhere under the platform's home.
    rendered = plinth("job", "render", "-f", str(spec))
    assert f"redis://127.0.0.1:{port}/0" in rendered and password not in rendered and password not in log
    assert not [path for path in (project / ".plinth").rglob("*") if path.is_file() and password.encode() in path.read_bytes()]


def test_replayed_requests_see_what_the_point_in_time_training_rows_see(project: Path) -> None:
    """The feed replayed through the real stream: after each wave of events, requests fetch
    their online features as the model server does; the point-in-time join over the logged
    events gives every one of them the same values."""
    from platform_cli.features import FeatureSpec
    from platform_cli.features.online import OnlineFeatures, point_in_time
    from platform_cli.spec.job import load_job
    from platform_cli.spec.stack import load_stack

    stream = load_job(JOB).spec
    spec = FeatureSpec.model_validate({
        "categorical": [{"name": "user_id", "buckets": 100}, {"name": "item_id", "buckets": 100}],
        "numeric": [{"name": a.name, "online": {"store": stream.store, "key": a.key, "ttl": "1h"}} for a in stream.aggregates],
        "label": "clicked",
    })
    events_dir = project / ".plinth" / "local" / "storage" / "ctr-realtime" / "events"
    events_dir.mkdir(parents=True)
    rng = np.random.default_rng(5)

    def wave(n: int, since: float) -> pd.DataFrame:
        now = time.time()
        # Milliseconds rounded up: an event must not land before a request it arrives after.
        return pd.DataFrame({"event_time": np.ceil(np.sort(rng.uniform(since, now, n)) * 1000) / 1000,
                             "event": rng.choice(["impression", "click"], n, p=[0.7, 0.3]),
                             "user_id": rng.choice([f"u{i}" for i in range(15)], n),
                             "item_id": rng.choice([f"i{i}" for i in range(6)], n)})

    # A backlog over the last two hours: windows, buckets and the ttl all come into play.
    log = [wave(300, time.time() - 2 * 3600)]
    drop(events_dir, "events-000.json", log[0])
    job_id = plinth("job", "submit", "-f", str(JOB)).split()[0].removeprefix("job/")
    online = OnlineFeatures.open(spec, load_stack("local").online_stores)
    requests = []
    try:
        for i in range(1, 7):
            total = sum(len(f) for f in log)
            wait_for(lambda: (lag := status(job_id).get("lag")) and lag["processed"] == total and lag["behind_events"] == 0,
                     STARTUP, f"wave {i - 1} in the store")
            at = time.time()
            rows = [{"user_id": f"u{rng.integers(17)}", "item_id": f"i{rng.integers(7)}"} for _ in range(25)]
            values = online.values(rows, at)
            requests += [{**row, "at": at, **{name: column[k] for name, column in values.items()}} for k, row in enumerate(rows)]
            log.append(wave(40, at))  # later events only: the feed moves on
            drop(events_dir, f"events-{i:03d}.json", log[-1])
    finally:
        online.close()
        plinth("job", "cancel", job_id)
    served = pd.DataFrame(requests)
    trained = point_in_time(served[["user_id", "item_id", "at"]], "at", pd.concat(log), stream.aggregates,
                            {f.name: f.online for f in spec.numeric})
    for aggregate in stream.aggregates:
        differ = served[aggregate.name].astype("Int64").fillna(-1) != trained[aggregate.name].fillna(-1)
        assert not differ.any(), (f"{aggregate.name}: served\n{served[differ]}\npoint in time\n{trained[differ]}\n"
                                  f"events\n{pd.concat(log).to_string()}")
    assert len(served) == 150
    # Every kind of value was served: missing (unknown or stale), zero and counts.
    clicks = served["user_clicks_1h"]
    assert clicks.isna().any() and (clicks == 0).any() and (clicks > 0).any()
