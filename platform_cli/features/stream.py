"""The streaming job's engine: Spark Structured Streaming from an event source into an online
store (features/online.py), one micro-batch per trigger, until the job is cancelled.

A streaming job's script calls `main()`; the kind (platform_cli/kinds/streaming.py) passes the
stream's settings as JSON in $PLINTH_STREAM and the store's location in $PLINTH_ONLINE_STORE.

Each micro-batch is aggregated by Spark in one job (counts per aggregate, entity and bucket; the
newest event time per entity) and the small result is applied to the store in one transaction
with the batch id. Spark writes a batch's offsets to the checkpoint before running it and marks
it committed after, so a stream killed at any moment re-runs at most its last batch, with the
same id and the same events, and the store skips it if it was applied: no event is lost and
none is counted twice.

While it runs, the driver measures the stream's lag after every batch and every second: events
the source holds that no committed batch has applied, and how long the oldest of them has
waited. It publishes it (features/lag.py) to `progress`, a file in the job's output directory,
or on Kubernetes as an annotation on its own pod, where `plinth job status` reads it.
"""

from __future__ import annotations

import os
import threading
import time

from pydantic import BaseModel, ConfigDict

from platform_cli.features.lag import StreamLag, offsets_behind, publisher
from platform_cli.features.online import Aggregate, Batch, open_store

CONFIG_ENV = "PLINTH_STREAM"
REPORT_SECONDS = 1.0


class StreamConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    source: dict
    time: str
    event: str
    trigger: float
    store: str
    aggregates: list[Aggregate]
    checkpoint: str
    progress: str


def main() -> int:
    config = StreamConfig.model_validate_json(os.environ[CONFIG_ENV])
    run(config)
    return 0


def run(config: StreamConfig) -> None:
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName(config.name).getOrCreate()
    store = open_store(config.store)
    store.define(config.aggregates)
    publish = publisher(dict(spark.sparkContext.getConf().getAll()), config.progress, config.trigger).publish
    counted = source_lag(config.source)
    query = None  # set once started; a Kafka source's lag comes from its progress
    # The store's connection and the source counter (its file cache or Redis connection) are
    # shared by Spark's batch thread and the reporting loop below: one at a time.
    reporting = threading.Lock()

    def apply(frame, batch_id: int) -> None:
        batch = to_batch(aggregate(frame, config).collect())
        with reporting:
            applied = store.apply(config.name, batch_id, batch)
        print(f"batch {batch_id}: {batch.events} events" + ("" if applied else " already applied before a restart, skipped"), flush=True)
        report()

    def report() -> None:
        with reporting:
            progress = store.progress(config.name)
            processed = progress.events if progress else 0
            if counted is not None:
                behind = counted.behind(processed)
            else:  # Kafka: how long the unread events have waited is not known without reading them
                unread = offsets_behind(query.lastProgress) if query is not None else None
                behind = {"events": unread, "seconds": 0.0 if unread == 0 else None}
            publish(StreamLag(batch=progress.batch if progress else None, processed=processed, behind_events=behind["events"],
                              behind_seconds=behind["seconds"], event_time=progress.event_time if progress else None, updated=time.time()))

    query = (events(spark, config).writeStream.foreachBatch(apply).queryName(config.name)
             .option("checkpointLocation", config.checkpoint).trigger(processingTime=f"{config.trigger} seconds").start())
    print(f"stream {config.name}: {', '.join(a.name for a in config.aggregates)} into store {config.store}, "
          f"a micro-batch every {config.trigger:g}s, offsets in {config.checkpoint}", flush=True)
    while query.isActive:
        report()
        query.awaitTermination(REPORT_SECONDS)
    query.awaitTermination()  # raises the stream's error, if it failed


def source_lag(source: dict):
    """What counts the events a directory or a Redis stream holds (None for Kafka: Spark's own
    progress says how far behind its offsets are)."""
    if "files" in source:
        return FileSourceLag(source)
    if "redis" in source:
        from platform_cli.features.redis_stream import RedisSourceLag

        return RedisSourceLag(source)
    return None


def events(spark, config: StreamConfig):
    """The source as a streaming DataFrame of (time: double, event: string, <keys>: string)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    keys = sorted({a.key for a in config.aggregates})
    schema = StructType([StructField(config.time, DoubleType()), StructField(config.event, StringType()),
                         *(StructField(k, StringType()) for k in keys if k not in (config.time, config.event))])
    source = config.source
    if "redis" in source:
        from platform_cli.features.redis_stream import NAME, RedisStreamSource

        spark.dataSource.register(RedisStreamSource)
        return (spark.readStream.format(NAME).schema(schema).option("key", source["redis"]).option("url", source["url"])
                .option("passwordEnv", source["password_env"]).load())
    if "kafka" in source:
        raw = (spark.readStream.format("kafka").option("kafka.bootstrap.servers", source["servers"]).option("subscribe", source["kafka"])
               .option("startingOffsets", "earliest").load())
        return raw.select(F.from_json(F.col("value").cast("string"), schema).alias("e")).select("e.*")
    reader = spark.readStream.schema(schema)
    if source.get("format") == "csv":
        return reader.option("header", "true").csv(source["files"])
    return reader.json(source["files"])


def aggregate(frame, config: StreamConfig):
    """One DataFrame of (what, name, key, bucket, n, newest) for a micro-batch: a row per
    aggregate, key and bucket ("count"), per entity and key ("seen") and one for the batch
    ("batch"). Each event becomes the entries it counts in, so Spark reads the batch once."""
    from pyspark.sql import functions as F

    t = F.col(config.time)

    def entry(what: str, name: str, key, bucket, when=None):
        value = F.struct(F.lit(what).alias("what"), F.lit(name).alias("name"), key.alias("key"), bucket.cast("long").alias("bucket"))
        return value if when is None else F.when(when, value)

    entries = []
    for a in config.aggregates:
        counted = F.col(a.key).isNotNull() if a.event is None else F.col(a.key).isNotNull() & (F.col(config.event) == a.event)
        entries.append(entry("count", a.name, F.col(a.key), F.floor(t / a.bucket), counted))
    for entity in sorted({a.key for a in config.aggregates}):
        entries.append(entry("seen", entity, F.col(entity), F.lit(0), F.col(entity).isNotNull()))
    entries.append(entry("batch", "", F.lit(""), F.lit(0)))
    exploded = frame.where(t.isNotNull()).select(F.explode(F.array(*entries)).alias("e"), t.alias("t")).where(F.col("e").isNotNull())
    return exploded.groupBy("e.what", "e.name", "e.key", "e.bucket").agg(F.count("*").alias("n"), F.max("t").alias("newest"))


def to_batch(rows) -> Batch:
    counts, seen, events, newest = {}, {}, 0, None
    for row in rows:
        if row.what == "count":
            counts[(row.name, row.key, row.bucket)] = row.n
        elif row.what == "seen":
            seen[(row.name, row.key)] = row.newest
        else:
            events, newest = row.n, row.newest
    return Batch(counts, seen, events, newest)


class FileSourceLag:
    """How far the stream is behind a directory of event files: Spark takes files oldest first,
    whole, so the events it has applied are those of the oldest files."""

    def __init__(self, source: dict):
        self.directory = source["files"].removeprefix("file://")
        self.header = source.get("format") == "csv"
        self._lines: dict[tuple[str, int, float], int] = {}

    def behind(self, processed: int) -> dict:
        if "://" in self.directory:  # HDFS or S3: not listed from the driver
            return {"events": None, "seconds": None}
        try:
            entries = [e for e in os.scandir(self.directory) if e.is_file() and not e.name.startswith((".", "_"))]
        except FileNotFoundError:
            entries = []
        files = sorted(((e.stat().st_mtime, e.name, e.stat().st_size) for e in entries))
        total, oldest_waiting = 0, None
        for mtime, name, size in files:
            total += self._count(name, size, mtime)
            if oldest_waiting is None and total > processed:
                oldest_waiting = mtime
        behind = max(0, total - processed)
        return {"events": behind, "seconds": round(time.time() - oldest_waiting, 3) if behind and oldest_waiting else 0.0}

    def _count(self, name: str, size: int, mtime: float) -> int:
        key = (name, size, mtime)
        if key not in self._lines:
            with open(os.path.join(self.directory, name), "rb") as handle:
                lines = sum(1 for line in handle if line.strip())
            self._lines[key] = max(0, lines - 1) if self.header else lines
        return self._lines[key]


if __name__ == "__main__":
    raise SystemExit(main())

