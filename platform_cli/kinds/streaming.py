"""Streaming jobs: Spark Structured Streaming from an event source into an online feature store,
running until cancelled (platform_cli/features/stream.py is the engine their script starts).

    kind: streaming
    name: ctr-activity
    script: activity.py                       # calls platform_cli.features.stream.main()
    source: {files: "${storage}/ctr/events"}  # a directory events are dropped into (JSON lines or CSV)
    # source: {redis: ctr-events, url: "redis://localhost:6379/0"}  # a Redis stream (local platform)
    # source: {kafka: ctr-events}             # a topic, on a cluster whose platform provides Kafka
    store: ctr-online                         # the online store the aggregates go to
    trigger: 2s                               # one micro-batch every 2 s
    aggregates:
      - {name: user_clicks_1h, key: user_id, event: click, window: 1h, bucket: 5m}

It is a Spark job (the same spark-submit locally, the same SparkApplication on Kubernetes, the
same templates) whose stream settings reach the script as JSON in $PLINTH_STREAM. Its offsets
are checkpointed per stream, not per submission (`checkpoint`, default
${storage}/streams/<name>/checkpoint), so a stream cancelled, killed or resubmitted goes on
from the last committed micro-batch, and the store skips a batch it has already applied.
Where the store is: SQLite files under <local.home>/online locally, the team's Redis on a cluster
(plinth:team.onlineStore; its password comes from the team's Secret by name, never in the manifest).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from platform_cli.durations import parse_duration
from platform_cli.errors import PlinthError
from platform_cli.features.lag import StreamLag, parsed, pod_lag
from platform_cli.features.online import FIELD_PATTERN, STORE_ENV, STORE_NAME_PATTERN, STORE_PASSWORD_ENV, Aggregate
from platform_cli.kinds.spark import SparkJobSpec, SparkKind
from platform_cli.spec.job import SpecModel
from platform_cli.spec.team_objects import ONLINE_STORE_PORT, ONLINE_STORE_SECRET, ONLINE_STORE_SECRET_KEY, ONLINE_STORE_SERVICE

STREAM_ENV = "PLINTH_STREAM"
PROGRESS_FILE = "progress.json"  # in the job's output dir: what `plinth job status` shows as lag
# Spark's Kafka source, fetched by the driver at start (the cluster's image carries Spark only).
KAFKA_PACKAGE = "org.apache.spark:spark-sql-kafka-0-10_2.13:{spark_version}"
# A Redis stream source's password: from the environment `plinth job submit` runs in, never the spec.
REDIS_PASSWORD_ENV = "PLINTH_STREAM_REDIS_PASSWORD"
DEFAULT_REDIS_URL = "redis://localhost:6379/0"


class StreamSource(SpecModel):
    """Exactly one of: a directory events are dropped into, a Redis stream, or a Kafka topic."""

    files: str | None = Field(None, description="a directory (or URI) of event files; each file appears whole (write, then rename into it)")
    format: Literal["json", "csv"] = Field("json", description="of the files: JSON lines, or CSV with a header")
    redis: str | None = Field(None, pattern=r"^[A-Za-z0-9:._-]{1,256}$", description="a Redis stream's key; each entry's fields are an event's (local platform)")
    url: str | None = Field(None, pattern=r"^rediss?://[^/@\s]+(/[0-9]{1,2})?$",
                            description=f"of the Redis server holding the stream, without a password (that comes from ${REDIS_PASSWORD_ENV})")
    kafka: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]{1,249}$", description="a topic of JSON events (cluster stacks)")

    @field_validator("url", mode="before")
    @classmethod
    def _no_password(cls, url):
        if isinstance(url, str) and "@" in url:
            raise ValueError(f"must not carry a password or user: write redis://HOST:PORT/DB and export the password as ${REDIS_PASSWORD_ENV}")
        return url

    @model_validator(mode="after")
    def _one_source(self) -> StreamSource:
        if sum(source is not None for source in (self.files, self.redis, self.kafka)) != 1:
            raise ValueError("set exactly one of files (a directory of event files), redis (a Redis stream's key) or kafka (a topic)")
        if self.url is not None and self.redis is None:
            raise ValueError("url is the Redis server of a redis source: set redis (the stream's key) or drop url")
        return self


class StreamingJobSpec(SparkJobSpec):
    kind: Literal["streaming"]
    source: StreamSource
    store: str = Field(pattern=STORE_NAME_PATTERN, description="the online store's name")
    aggregates: list[Aggregate] = Field(min_length=1)
    time: str = Field("event_time", pattern=FIELD_PATTERN, description="the event field holding its event time (Unix seconds)")
    event: str = Field("event", pattern=FIELD_PATTERN, description="the event field holding its type")
    trigger: float = Field(2.0, ge=0.1, le=3600, description="how often a micro-batch starts: 500ms is 0.5, or 2s, 1m")
    checkpoint: str | None = Field(None, description="where offsets are kept; default ${storage}/streams/<name>/checkpoint")

    _duration = field_validator("trigger", mode="before")(parse_duration)

    @model_validator(mode="after")
    def _unique_aggregates(self) -> StreamingJobSpec:
        names = [a.name for a in self.aggregates]
        if duplicate := next((n for n in names if names.count(n) > 1), None):
            raise ValueError(f"aggregates: {duplicate!r} is defined twice")
        return self


class StreamingKind(SparkKind):
    name = "streaming"
    spec = StreamingJobSpec
    template_dir = "spark"
    runs_until_cancelled = True

    def job_env(self, job, stack, variables: dict[str, str]) -> dict[str, str]:
        from platform_cli.render.context import substitute

        spec: StreamingJobSpec = job.spec
        source = spec.source.model_dump(exclude_none=True)
        if spec.source.files is not None:
            source["files"] = substitute(spec.source.files, variables, "source.files")
        cluster = stack.config.team is not None
        if spec.source.redis is not None:
            if cluster:
                raise PlinthError("source.redis: a Redis stream is read on the local platform only", "on a cluster stack read a Kafka topic: source: {kafka: TOPIC}")
            del source["format"]  # of event files: a stream entry's fields are the event's
            source.update(url=spec.source.url or DEFAULT_REDIS_URL, password_env=REDIS_PASSWORD_ENV)
        if spec.source.kafka is not None:
            if not cluster:
                raise PlinthError("source.kafka: the local platform has no Kafka", "drop event files into a directory (source: {files: DIR}) or read a Redis stream (source: {redis: KEY})")
            source["servers"] = _kafka_servers(stack)
        checkpoint = substitute(spec.checkpoint, variables, "checkpoint") if spec.checkpoint else f"{variables['storage'].rstrip('/')}/streams/{spec.name}/checkpoint"
        config = {
            "name": spec.name,
            "source": source,
            "time": spec.time,
            "event": spec.event,
            "trigger": spec.trigger,
            "store": spec.store,
            "aggregates": [a.model_dump(exclude_none=True) for a in spec.aggregates],
            "checkpoint": checkpoint,
            "progress": f"{variables['output_dir']}/{PROGRESS_FILE}",
        }
        location = f"redis://{ONLINE_STORE_SERVICE}:{ONLINE_STORE_PORT}" if cluster else stack.online_stores
        return {STREAM_ENV: json.dumps(config, sort_keys=True), STORE_ENV: location}

    def cluster_context(self, job, script, args, storage) -> dict:
        context = super().cluster_context(job, script, args, storage)
        conf = dict(context["spark_conf"])
        # Only the driver writes to the store (each micro-batch's counts are collected to it).
        conf[f"spark.kubernetes.driver.secretKeyRef.{STORE_PASSWORD_ENV}"] = f"{ONLINE_STORE_SECRET}:{ONLINE_STORE_SECRET_KEY}"
        if job.spec.source.kafka is not None:
            conf.setdefault("spark.jars.packages", KAFKA_PACKAGE.format(spark_version=context["spark_version"]))
        return {**context, "spark_conf": dict(sorted(conf.items()))}

    def live_lag(self, record) -> StreamLag | None:
        """The stream's lag as its driver last wrote it (events and seconds behind the source)."""
        try:
            return parsed((Path(record.output_dir) / PROGRESS_FILE).read_text())
        except OSError:
            return None

    def pod_lag(self, pod: dict) -> StreamLag | None:
        """The stream's lag as its driver last put it on its pod."""
        return pod_lag(pod)


def _kafka_servers(stack) -> str:
    platform_stack = stack.platform_stack()
    kafka = platform_stack.config.platform.kafka
    if kafka is None:
        raise PlinthError(f"source.kafka: platform stack {platform_stack.name!r} provides no Kafka",
                          f"set plinth:platform.kafka.bootstrapServers in stacks/{platform_stack.file.name}, or read event files: source: {{files: DIR}}")
    return kafka.bootstrap_servers


KIND = StreamingKind()
