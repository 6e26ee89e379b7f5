"""The streaming job kind: its spec, what it renders locally and on a cluster (Kafka where the
platform provides it), and the refusals, each one line naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from platform_cli.errors import PlinthError
from platform_cli.render.job import render_job
from platform_cli.spec.job import load_job
from platform_cli.spec.stack import load_stack
from tests.conftest import write_job
from tests.unit.infra_support import stack_config, variant_project

SCRIPT = "from platform_cli.features.stream import main\nmain()\n"
AGGREGATE = "{name: user_clicks_1h, key: user_id, event: click, window: 1h, bucket: 5m}"


def streaming_job(directory: Path, source: str = "{kafka: feed-events}", extra: str = "") -> Path:
    return write_job(directory, "activity", f"kind: streaming\nname: activity\nscript: activity.py\nsource: {source}\n"
                                            f"store: feed-online\naggregates: [{AGGREGATE}]\n{extra}", script=SCRIPT)


def stream_env(documents: list[dict]) -> dict:
    env = {e["name"]: e["value"] for e in documents[-1]["spec"]["driver"]["env"]}
    return json.loads(env["PLINTH_STREAM"]) | {"store location": env["PLINTH_ONLINE_STORE"]}


def test_on_a_platform_with_kafka_the_stream_reads_its_topic(tmp_path, monkeypatch) -> None:
    platform = dict(stack_config("platform-prod", "plinth:platform"), kafka={"bootstrapServers": "kafka-0.kafka.svc:9092,kafka-1.kafka.svc:9092"})
    root = variant_project(tmp_path / "p", {"platform-prod": {"plinth:platform": platform}})
    monkeypatch.setenv("PLINTH_PROJECT_DIR", str(root))
    rendered = render_job(load_job(streaming_job(root / "jobs", extra="trigger: 500ms\n")), load_stack("team-feed"), job_id="activity-abcde")
    app = rendered.documents[-1]
    assert app["kind"] == "SparkApplication"
    assert app["spec"]["sparkConf"]["spark.jars.packages"] == "org.apache.spark:spark-sql-kafka-0-10_2.13:4.3.0"
    # The store's password reaches the driver from the team's Secret, by name only.
    assert app["spec"]["sparkConf"]["spark.kubernetes.driver.secretKeyRef.PLINTH_ONLINE_STORE_PASSWORD"] == "plinth-online-store:password"
    config = stream_env(rendered.documents)
    assert config["source"] == {"kafka": "feed-events", "format": "json", "servers": "kafka-0.kafka.svc:9092,kafka-1.kafka.svc:9092"}
    assert config["trigger"] == 0.5
    assert config["checkpoint"] == "hdfs://hdfs-namenode.plinth-storage.svc:8020/teams/feed/streams/activity/checkpoint"
    assert config["store location"] == "redis://plinth-online-store:6379"


def test_kafka_is_refused_where_there_is_none(project: Path) -> None:
    job = load_job(streaming_job(project / "jobs"))
    with pytest.raises(PlinthError, match="source.kafka: platform stack 'platform-prod' provides no Kafka"):
        render_job(job, load_stack("team-feed"), job_id="activity-abcde")
    with pytest.raises(PlinthError, match="source.kafka: the local platform has no Kafka"):
        render_job(job, load_stack("local"), job_id="activity-abcde")


def test_locally_the_stream_reads_a_directory_and_writes_sqlite(project: Path) -> None:
    job = load_job(streaming_job(project / "jobs", source='{files: "${storage}/events", format: csv}'))
    env = render_job(job, load_stack("local"), job_id="activity-abcde").documents[0]["spec"]["env"]
    config = json.loads(env["PLINTH_STREAM"])
    storage = project / ".plinth" / "local" / "storage"
    assert config["source"] == {"files": f"{storage}/events", "format": "csv"}
    assert config["checkpoint"] == f"{storage}/streams/activity/checkpoint"  # per stream: a new submission resumes
    assert env["PLINTH_ONLINE_STORE"] == f"sqlite://{project}/.plinth/local/online"


def test_locally_the_stream_can_read_a_redis_stream_whose_password_stays_in_the_environment(project: Path, monkeypatch) -> None:
    monkeypatch.setenv("PLINTH_STREAM_REDIS_PASSWORD", "hunter2")
    job = load_job(streaming_job(project / "jobs", source="{redis: 'feed:events', url: 'redis://127.0.0.1:6390/2'}"))
    rendered = render_job(job, load_stack("local"), job_id="activity-abcde")
    config = json.loads(rendered.documents[0]["spec"]["env"]["PLINTH_STREAM"])
    assert config["source"] == {"redis": "feed:events", "url": "redis://127.0.0.1:6390/2", "password_env": "PLINTH_STREAM_REDIS_PASSWORD"}
    assert "hunter2" not in json.dumps(rendered.documents)
    default = load_job(streaming_job(project / "jobs", source="{redis: events}"))
    assert json.loads(render_job(default, load_stack("local"), job_id="activity-abcde").documents[0]["spec"]["env"]["PLINTH_STREAM"])["source"]["url"] == "redis://localhost:6379/0"
    with pytest.raises(PlinthError, match=r"source.redis: a Redis stream is read on the local platform only; on a cluster stack read a Kafka topic"):
        render_job(default, load_stack("team-feed"), job_id="activity-abcde")


@pytest.mark.parametrize(("source", "extra", "error"), [
    ("{files: /x, kafka: t}", "", "set exactly one of files"),
    ("{}", "", "set exactly one of files"),
    ("{files: /x, redis: events}", "", "set exactly one of files"),
    ("{redis: events, url: 'redis://:hunter2@localhost:6379/0'}", "", r"^[^\n]*source.url: .*must not carry a password or user: write redis://HOST:PORT/DB and export the password as \$PLINTH_STREAM_REDIS_PASSWORD"),
    ("{redis: events, url: 'http://localhost:6379'}", "", "source.url: String should match pattern"),
    ("{redis: 'two words'}", "", "source.redis: String should match pattern"),
    ("{files: /x, url: 'redis://localhost:6379/0'}", "", "url is the Redis server of a redis source"),
    ("{files: /x}", "trigger: soon\n", "trigger: .*is not a duration"),
    ("{files: /x}", "store: Feed_Online\n", "store: .*should match pattern"),
    ("{files: /x}", f"aggregates: [{AGGREGATE}, {AGGREGATE}]\n", "'user_clicks_1h' is defined twice"),
    ("{files: /x}", "aggregates: [{name: c, key: user_id, window: 1h, bucket: 7m}]\n", "whole number of buckets"),
])
def test_bad_stream_specs_are_refused_naming_the_field(project: Path, source: str, extra: str, error: str) -> None:
    text = f"kind: streaming\nname: activity\nscript: activity.py\nsource: {source}\n"
    fields = {"store": "store: feed-online\n", "aggregates": f"aggregates: [{AGGREGATE}]\n"}
    for key, line in fields.items():
        if not extra.startswith(f"{key}:"):
            text += line
    with pytest.raises(PlinthError, match=error):
        load_job(write_job(project / "jobs", "activity", text + extra, script=SCRIPT))


def test_a_flow_refuses_a_streaming_step(project: Path) -> None:
    from platform_cli.spec.flow import load_flow

    streaming_job(project / "jobs", source="{files: /x}")
    flow = project / "jobs" / "flow.yaml"
    flow.write_text("kind: flow\nname: f\nnodes:\n  live:\n    steps:\n      stream: {job: activity.job.yaml}\n")
    with pytest.raises(PlinthError, match="nodes.live.steps.stream.job: a streaming job runs until cancelled"):
        load_flow(flow)
