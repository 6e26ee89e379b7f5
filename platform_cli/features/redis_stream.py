"""A Redis stream as a Spark Structured Streaming source (Spark's Python Data Source API), for the
streaming kind on the local platform: `source: {redis: KEY, url: redis://HOST:PORT/DB}`.

Each stream entry is one event whose fields are the event's fields (XADD KEY * event_time
1796054543.3 event click user_id u1 ...). A source offset is a stream entry id, which Spark keeps
in the stream's checkpoint: a micro-batch reads the entries after its start id up to and including
its end id (XRANGE), so a batch re-run after a crash reads exactly the entries it read before, and
a restarted stream goes on after the last committed id. Entries are never deleted by the stream
(the stream is the event log; trimming it is the producer's business).

The password comes from the environment of the driver and its Python workers (the variable the
kind names in option `passwordEnv`), never from the job spec or Spark's options, which Spark may
log and plan with.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition

NAME = "plinth-redis-stream"
START = "0-0"  # before every entry id: a new stream reads the whole log
PAGE = 1000  # entries per XRANGE call


def connect(url: str, password_env: str):
    import redis

    return redis.Redis.from_url(url, password=os.environ.get(password_env) or None)


def entry_id(value: str) -> tuple[int, int]:
    """A stream entry id ("<ms>-<seq>") as a comparable pair."""
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class EntryRange(InputPartition):
    after: str  # exclusive
    until: str  # inclusive


class RedisStreamSource(DataSource):
    """Options: `key` (the stream), `url` (redis://HOST:PORT/DB, without a password) and
    `passwordEnv` (the environment variable holding the password)."""

    @classmethod
    def name(cls) -> str:
        return NAME

    def streamReader(self, schema) -> RedisStreamReader:
        return RedisStreamReader(self.options["url"], self.options["passwordEnv"], self.options["key"],
                                 [(f.name, f.dataType.typeName()) for f in schema.fields])


class RedisStreamReader(DataSourceStreamReader):
    def __init__(self, url: str, password_env: str, key: str, fields: list[tuple[str, str]]):
        self.url, self.password_env, self.key, self.fields = url, password_env, key, fields
        self._client = None  # the driver's connection (a reader is pickled to the workers without it)

    def __getstate__(self):
        return {**self.__dict__, "_client": None}

    @property
    def client(self):
        if self._client is None:
            self._client = connect(self.url, self.password_env)
        return self._client

    def initialOffset(self) -> dict:
        return {"id": START}

    def latestOffset(self, start: dict, limit) -> dict:
        newest = self.client.xrevrange(self.key, count=1)
        if not newest:
            return start
        last = newest[0][0].decode()
        return {"id": last} if entry_id(last) > entry_id(start["id"]) else start

    def partitions(self, start: dict, end: dict) -> list[EntryRange]:
        return [] if start["id"] == end["id"] else [EntryRange(start["id"], end["id"])]

    def read(self, partition: EntryRange):
        client = connect(self.url, self.password_env)
        try:
            after = partition.after
            while True:
                page = client.xrange(self.key, min=f"({after}", max=partition.until, count=PAGE)
                for _, values in page:
                    yield tuple(_value(values.get(name.encode()), kind) for name, kind in self.fields)
                if len(page) < PAGE:
                    return
                after = page[-1][0].decode()
        finally:
            client.close()

    def commit(self, end: dict) -> None:
        pass  # the stream keeps every entry: Spark's checkpoint says where the stream is

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()


def _value(raw: bytes | None, kind: str):
    if raw is None:
        return None
    text = raw.decode()
    if kind == "double":
        try:
            return float(text)
        except ValueError:
            return None
    return text


class RedisSourceLag:
    """How far the stream is behind a Redis stream: the entries it holds less the events applied,
    and how long the oldest entry not applied has waited (an automatic entry id is the time it
    was added, in milliseconds). Walks the stream once, as far as the applied events go."""

    def __init__(self, source: dict):
        self.url, self.password_env, self.key = source["url"], source["password_env"], source["redis"]
        self._client = None
        self._passed = (START, 0)  # an entry id and how many entries there are up to it

    def behind(self, processed: int) -> dict:
        if self._client is None:
            self._client = connect(self.url, self.password_env)
        total = self._client.xlen(self.key)
        waiting = max(0, total - processed)
        if not waiting:
            return {"events": 0, "seconds": 0.0}
        after, count = self._passed
        while count < processed:  # move past the applied entries
            page = self._client.xrange(self.key, min=f"({after}", count=min(PAGE, processed - count))
            if not page:
                break
            after, count = page[-1][0].decode(), count + len(page)
        self._passed = (after, count)
        oldest = self._client.xrange(self.key, min=f"({after}", count=1)
        seconds = round(max(0.0, time.time() - entry_id(oldest[0][0].decode())[0] / 1000), 3) if oldest else 0.0
        return {"events": waiting, "seconds": seconds}
