"""Online features: aggregates of an event stream, kept up to date by a streaming job and
fetched by the model server, with the same values a point-in-time join gives training.

An aggregate counts one entity's events in an event-time window that slides bucket by bucket:

    {name: user_clicks_1h, key: user_id, event: click, window: 1h, bucket: 5m}

is, for a user at time t, the number of their click events with event time before t in the
current 5-minute bucket and the 11 before it (buckets are aligned to the Unix epoch, so a
`window: 1d, bucket: 1d` aggregate is "today", in UTC). A value is *missing* when the store
has never seen an event of that entity before t, or the newest one is older than the feature's
`ttl`; the feature spec's missing rule applies then (a numeric feature takes its mean).

The one definition of those rules is `value()`: the server applies it to what the store holds
(`OnlineFeatures.merge`), training to the logged events (`point_in_time`), so a model sees in
serving exactly what it was trained on. Exactly, as long as events reach the store in time: an
event stamped before a request but applied after it was answered (a late event, or one still in
the micro-batch under way) is in the training row and was not in the answer.

Stores (same interface, `open_store`): SQLite in WAL mode on the local platform (readers never
wait for the stream's writes), Redis on a cluster stack. A store applies a micro-batch's counts
once: each batch is committed together with its id, and a batch replayed after a restart
(Spark re-runs the last uncommitted one with the same id) is skipped, so nothing is counted twice.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from platform_cli.durations import parse_duration

if TYPE_CHECKING:
    import pandas as pd

    from platform_cli.features.spec import FeatureSpec

# Where stores live: "sqlite:///DIR" (one file DIR/<store>.db per store) or "redis://HOST:PORT"
# (the store's name prefixes its keys; the password comes from STORE_PASSWORD_ENV).
STORE_ENV = "PLINTH_ONLINE_STORE"
STORE_PASSWORD_ENV = "PLINTH_ONLINE_STORE_PASSWORD"
STORE_NAME_PATTERN = r"^[a-z]([-a-z0-9]{0,50}[a-z0-9])?$"
FIELD_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"


class OnlineModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Aggregate(OnlineModel):
    """A count of one entity's events in a sliding event-time window (see the module's doc)."""

    name: str = Field(pattern=FIELD_PATTERN, description="the feature it becomes")
    key: str = Field(pattern=FIELD_PATTERN, description="the event field naming the entity (user_id)")
    event: str | None = Field(None, description="count only events of this type; none: every event")
    window: float = Field(gt=0, description="90s, 30m, 1h, 1d")
    bucket: float = Field(gt=0, description="how far the window slides at a time")

    _durations = field_validator("window", "bucket", mode="before")(parse_duration)

    @model_validator(mode="after")
    def _whole_buckets(self) -> Aggregate:
        if self.bucket > self.window or not (self.window / self.bucket).is_integer():
            raise ValueError(f"window ({self.window:g}s) must be a whole number of buckets ({self.bucket:g}s)")
        return self

    @property
    def buckets(self) -> int:
        return int(self.window // self.bucket)

    def first_bucket(self, at: float) -> int:
        """The oldest bucket (index: start // bucket) inside the window that ends at `at`."""
        return math.floor(at / self.bucket) - self.buckets + 1


class OnlineSource(OnlineModel):
    """Where a feature's value comes from when it is served: an aggregate of the named store,
    for the entity whose key is the row's `key` field; values older than `ttl` are missing."""

    store: str = Field(pattern=STORE_NAME_PATTERN)
    key: str = Field(pattern=FIELD_PATTERN, description="the raw row field holding the entity key")
    ttl: float = Field(gt=0, description="a value whose entity was last seen longer ago is missing")

    _duration = field_validator("ttl", mode="before")(parse_duration)


def value(count: int, last_seen: float | None, at: float, ttl: float) -> int | None:
    """A feature's value at time `at`: the count, or None (missing) when the entity was never
    seen before `at` or was last seen more than `ttl` before it."""
    if last_seen is None or at - last_seen > ttl:
        return None
    return count


def entity_key(raw: Any) -> str | None:
    """The store's key for a raw field value: strings as they are, integers (and integral
    floats, as a nullable integer column arrives from pandas) in decimal; None for a missing key."""
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return None
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return raw if isinstance(raw, str) else str(raw)


@dataclass(frozen=True)
class StreamProgress:
    """What a stream has applied to a store: its last batch, how many events in total, the
    newest event time among them and when the batch was committed (Unix seconds)."""

    batch: int
    events: int
    event_time: float | None
    committed: float


@dataclass
class Batch:
    """One micro-batch's contribution: counts per (aggregate, key, bucket), the newest event
    time per (entity field, key), its number of events and its newest event time."""

    counts: dict[tuple[str, str, int], int]
    seen: dict[tuple[str, str], float]
    events: int
    event_time: float | None


class OnlineStore(Protocol):
    def define(self, aggregates: Sequence[Aggregate]) -> None:
        """Record the aggregates the stream maintains (readers take windows from here)."""

    def aggregates(self) -> dict[str, Aggregate]: ...

    def apply(self, stream: str, batch_id: int, batch: Batch) -> bool:
        """Add a batch once: False (and nothing changed) when `batch_id` was already applied."""

    def fetch(self, wanted: Mapping[str, set[str]], at: float) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], int]]:
        """For {aggregate: keys}, in one round trip: ({(entity field, key): last seen},
        {(aggregate, key): count in the window ending at `at`}); absent keys are left out."""

    def progress(self, stream: str) -> StreamProgress | None: ...

    def close(self) -> None: ...


# -- SQLite (the local platform) -------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS aggregates (name TEXT PRIMARY KEY, definition TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counts (aggregate TEXT, key TEXT, bucket INTEGER, n INTEGER NOT NULL,
                                   PRIMARY KEY (aggregate, key, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seen (entity TEXT, key TEXT, at REAL NOT NULL, PRIMARY KEY (entity, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS streams (name TEXT PRIMARY KEY, batch INTEGER NOT NULL, events INTEGER NOT NULL,
                                    event_time REAL, committed REAL NOT NULL);
"""


class SQLiteStore:
    """An embedded store: one SQLite file in WAL mode, so the server's reads run alongside the
    stream's writes without waiting for them."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are the explicit BEGINs below.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable at each WAL checkpoint; a crash loses no committed batch id ordering
        self._db.executescript(_SCHEMA)
        self._definitions: dict[str, Aggregate] | None = None

    def define(self, aggregates: Sequence[Aggregate]) -> None:
        with self._transaction():
            self._db.executemany("INSERT INTO aggregates VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET definition = excluded.definition",
                                 [(a.name, a.model_dump_json()) for a in aggregates])
        self._definitions = None

    def aggregates(self) -> dict[str, Aggregate]:
        if not self._definitions:  # empty: a stream may define them any time
            rows = self._db.execute("SELECT definition FROM aggregates").fetchall()
            self._definitions = {a.name: a for a in (Aggregate.model_validate_json(d) for (d,) in rows)}
        return self._definitions

    def apply(self, stream: str, batch_id: int, batch: Batch) -> bool:
        with self._transaction():
            row = self._db.execute("SELECT batch, events, event_time FROM streams WHERE name = ?", (stream,)).fetchone()
            if row is not None and row[0] >= batch_id:
                return False
            self._db.executemany("INSERT INTO counts VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET n = n + excluded.n",
                                 [(*k, n) for k, n in batch.counts.items()])
            self._db.executemany("INSERT INTO seen VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET at = max(at, excluded.at)",
                                 [(*k, at) for k, at in batch.seen.items()])
            previous_events, previous_time = (row[1], row[2]) if row else (0, None)
            newest = max((t for t in (previous_time, batch.event_time) if t is not None), default=None)
            self._db.execute("INSERT INTO streams VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET batch = excluded.batch, "
                             "events = excluded.events, event_time = excluded.event_time, committed = excluded.committed",
                             (stream, batch_id, previous_events + batch.events, newest, time.time()))
            self._expire(newest)
        return True

    def _expire(self, newest: float | None) -> None:
        """Drop buckets no window can reach any more (a window ends at the newest event or later)."""
        if newest is None:
            return
        for a in self.aggregates().values():
            self._db.execute("DELETE FROM counts WHERE aggregate = ? AND bucket < ?", (a.name, a.first_bucket(newest) - 1))

    def fetch(self, wanted: Mapping[str, set[str]], at: float):
        definitions = self.aggregates()
        entities: dict[str, set[str]] = {}
        for name, keys in wanted.items():
            entities.setdefault(definitions[name].key, set()).update(keys)
        # One statement, so both answers come from one snapshot without a transaction's
        # BEGIN and COMMIT (a third of the cost of a one-row fetch).
        parts = [f"SELECT 0, ?, key, at FROM seen WHERE entity = ? AND key IN ({_key_list(keys)})" for keys in entities.values()]
        parts += [f"SELECT 1, ?, key, SUM(n) FROM counts WHERE aggregate = ? AND bucket >= ? AND key IN ({_key_list(keys)}) GROUP BY key"
                  for keys in wanted.values()]
        params = [p for entity, keys in entities.items() for p in (entity, entity, *_key_params(keys))]
        params += [p for name, keys in wanted.items() for p in (name, name, definitions[name].first_bucket(at), *_key_params(keys))]
        seen, counts = {}, {}
        if parts:
            for is_count, name, key, number in self._db.execute(" UNION ALL ".join(parts), params):
                if is_count:
                    counts[(name, key)] = number
                else:
                    seen[(name, key)] = number
        return seen, counts

    def progress(self, stream: str) -> StreamProgress | None:
        row = self._db.execute("SELECT batch, events, event_time, committed FROM streams WHERE name = ?", (stream,)).fetchone()
        return StreamProgress(*row) if row else None

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self, read: bool = False):
        self._db.execute("BEGIN" if read else "BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


# A request-sized batch's keys are placeholders (sqlite3 caches the statement of each shape, and
# shapes repeat; half the cost of a one-row fetch next to a JSON list); beyond this many, one
# JSON list, so a large batch stays under SQLite's limit on placeholders.
_MOST_PLACEHOLDERS = 256


def _key_list(keys: set[str]) -> str:
    return ", ".join("?" * len(keys)) if len(keys) <= _MOST_PLACEHOLDERS else "SELECT value FROM json_each(?)"


def _key_params(keys: set[str]) -> list[str]:
    return list(keys) if len(keys) <= _MOST_PLACEHOLDERS else [json.dumps(sorted(keys))]


# -- Redis (a cluster stack) -----------------------------------------------------------------


class RedisStore:
    """The same store in Redis: `<store>:counts:<aggregate>:<key>` hashes of bucket -> count,
    `<store>:seen:<entity>` hashes of key -> last seen, `<store>:stream:<name>` the progress."""

    def __init__(self, client, name: str):
        self._redis = client
        self._prefix = name
        self._definitions: dict[str, Aggregate] | None = None

    def define(self, aggregates: Sequence[Aggregate]) -> None:
        self._redis.hset(f"{self._prefix}:aggregates", mapping={a.name: a.model_dump_json() for a in aggregates})
        self._definitions = None

    def aggregates(self) -> dict[str, Aggregate]:
        if not self._definitions:  # empty: a stream may define them any time
            stored = self._redis.hgetall(f"{self._prefix}:aggregates")
            self._definitions = {a.name: a for a in (Aggregate.model_validate_json(d) for d in stored.values())}
        return self._definitions

    def apply(self, stream: str, batch_id: int, batch: Batch) -> bool:
        import redis

        progress_key = f"{self._prefix}:stream:{stream}"
        definitions = self.aggregates()
        with self._redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(progress_key)  # a concurrent writer of the same stream aborts the transaction
                    current = pipe.hgetall(progress_key)
                    if current and int(current[b"batch"]) >= batch_id:
                        pipe.unwatch()
                        return False
                    pipe.multi()
                    for (aggregate, key, bucket), n in batch.counts.items():
                        counts_key = f"{self._prefix}:counts:{aggregate}:{key}"
                        pipe.hincrby(counts_key, str(bucket), n)
                        # Untouched for a window and two buckets of (wall-clock) time, every
                        # bucket it holds has left the window.
                        pipe.expire(counts_key, int(definitions[aggregate].window + 2 * definitions[aggregate].bucket))
                    for (entity, key), at in batch.seen.items():
                        pipe.eval(_MAX_SCRIPT, 1, f"{self._prefix}:seen:{entity}", key, repr(at))
                    newest = max((t for t in (_float(current.get(b"event_time")), batch.event_time) if t is not None), default=None)
                    pipe.hset(progress_key, mapping={"batch": batch_id, "events": int(current.get(b"events", 0)) + batch.events,
                                                     "event_time": "" if newest is None else repr(newest), "committed": repr(time.time())})
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue

    def fetch(self, wanted: Mapping[str, set[str]], at: float):
        definitions = self.aggregates()
        entities: dict[str, list[str]] = {}
        for name, keys in wanted.items():
            entities.setdefault(definitions[name].key, [])
            entities[definitions[name].key] = sorted(set(entities[definitions[name].key]) | keys)
        requests: list[tuple[str, str]] = []
        pipe = self._redis.pipeline(transaction=False)  # one round trip
        for entity, keys in entities.items():
            pipe.hmget(f"{self._prefix}:seen:{entity}", keys)
        for name, keys in wanted.items():
            a = definitions[name]
            fields = [str(b) for b in range(a.first_bucket(at), a.first_bucket(at) + a.buckets)]
            for key in sorted(keys):
                pipe.hmget(f"{self._prefix}:counts:{name}:{key}", fields)
                requests.append((name, key))
        answers = pipe.execute()
        seen = {}
        for (entity, keys), values in zip(entities.items(), answers):
            seen.update({(entity, k): float(v) for k, v in zip(keys, values) if v is not None})
        counts = {}
        for (name, key), values in zip(requests, answers[len(entities):]):
            present = [int(v) for v in values if v is not None]
            if present:
                counts[(name, key)] = sum(present)
        return seen, counts

    def progress(self, stream: str) -> StreamProgress | None:
        stored = self._redis.hgetall(f"{self._prefix}:stream:{stream}")
        if not stored:
            return None
        return StreamProgress(int(stored[b"batch"]), int(stored[b"events"]), _float(stored.get(b"event_time")), float(stored[b"committed"]))

    def close(self) -> None:
        self._redis.close()


# HSET field to max(current, new), atomically.
_MAX_SCRIPT = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current or tonumber(current) < tonumber(ARGV[2]) then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
"""


def _float(raw: bytes | None) -> float | None:
    return float(raw) if raw else None


def open_store(name: str, location: str | None = None) -> OnlineStore:
    """The store `name` at `location` (default: $PLINTH_ONLINE_STORE, see STORE_ENV)."""
    location = location or os.environ.get(STORE_ENV)
    if not location:
        raise ValueError(f"no online store location: set {STORE_ENV} (sqlite:///DIR or redis://HOST:PORT)")
    if not re.fullmatch(STORE_NAME_PATTERN, name):
        raise ValueError(f"online store name {name!r} must be lowercase letters, digits and '-'")
    if location.startswith("sqlite://"):
        return SQLiteStore(Path(location.removeprefix("sqlite://")) / f"{name}.db")
    if location.startswith("redis://"):
        import redis

        return RedisStore(redis.Redis.from_url(location, password=os.environ.get(STORE_PASSWORD_ENV) or None), name)
    raise ValueError(f"online store location {location!r} must start with sqlite:// or redis://")


# -- serving --------------------------------------------------------------------------------


class OnlineFeatures:
    """What the model server does with a spec's online features: fetch a micro-batch's values
    in one store call and merge them into the raw rows, before the feature spec's transform."""

    def __init__(self, spec: FeatureSpec, stores: Mapping[str, OnlineStore]):
        self.features = [(f.name, f.online) for f in spec.numeric if f.online is not None]
        self.stores = {name: stores[name] for name in sorted({source.store for _, source in self.features})}

    @classmethod
    def open(cls, spec: FeatureSpec, location: str | None = None) -> OnlineFeatures | None:
        """The spec's online features with their stores opened (see open_store), or None when
        the spec has none."""
        names = sorted({f.online.store for f in spec.numeric if f.online is not None})
        return cls(spec, {name: open_store(name, location) for name in names}) if names else None

    def values(self, rows: Sequence[Mapping[str, Any]], at: float | None = None) -> dict[str, list[int | None]]:
        """{feature: its value for each row} at time `at` (default: now)."""
        at = time.time() if at is None else at
        result: dict[str, list[int | None]] = {}
        for store_name, store in self.stores.items():
            features = [(name, source) for name, source in self.features if source.store == store_name]
            definitions = store.aggregates()
            # An aggregate no stream has defined yet (its job has not started): missing values.
            kept = [(name, source) for name, source in features if name in definitions]
            result.update({name: [None] * len(rows) for name, _ in features if name not in definitions})
            keys = {name: [entity_key(row.get(source.key)) for row in rows] for name, source in kept}
            seen, counts = store.fetch({name: {k for k in ks if k is not None} for name, ks in keys.items()}, at) if kept else ({}, {})
            for name, source in kept:
                entity = definitions[name].key
                result[name] = [None if k is None else value(counts.get((name, k), 0), seen.get((entity, k)), at, source.ttl) for k in keys[name]]
        return result

    def merge(self, rows: Sequence[Mapping[str, Any]], at: float | None = None) -> list[dict[str, Any]]:
        """The rows with each online feature's value set (None where missing): the store's
        values replace whatever a request carried, since the model was trained on the store's."""
        values = self.values(rows, at)
        return [{**row, **{name: column[i] for name, column in values.items()}} for i, row in enumerate(rows)]

    def close(self) -> None:
        for store in self.stores.values():
            store.close()


# -- training -------------------------------------------------------------------------------


def point_in_time(rows: pd.DataFrame, at: str, events: pd.DataFrame, aggregates: Iterable[Aggregate], sources: Mapping[str, OnlineSource],
                  time_field: str = "event_time", event_field: str = "event") -> pd.DataFrame:
    """`rows` with a column per aggregate in `sources`: its value for each row at the row's time
    (column `at`, Unix seconds), from the logged `events` strictly before that time, by the
    rules of `value()`: what the store would have answered a request at that moment."""
    import numpy as np
    import pandas as pd

    result = rows.copy()
    times = rows[at].to_numpy(dtype=np.float64)
    events = events.assign(**{time_field: events[time_field].astype(np.float64)})
    for aggregate in aggregates:
        if aggregate.name not in sources:
            continue
        source = sources[aggregate.name]
        keys = rows[source.key].map(entity_key)
        entity_events = events.assign(_key=events[aggregate.key].map(entity_key)).dropna(subset=["_key"])
        last_seen = _before(keys, times, entity_events, time_field, lambda frame: frame[time_field])
        counted = entity_events if aggregate.event is None else entity_events[entity_events[event_field] == aggregate.event]
        counted = counted.sort_values([time_field], kind="stable")
        cumulative = lambda frame: frame.groupby("_key").cumcount() + 1  # noqa: E731 - events up to and including this one
        up_to_now = _before(keys, times, counted, time_field, cumulative)
        window_start = (np.floor(times / aggregate.bucket) - aggregate.buckets + 1) * aggregate.bucket
        before_window = _before(keys, window_start, counted, time_field, cumulative)
        count = np.nan_to_num(up_to_now) - np.nan_to_num(before_window)
        result[aggregate.name] = pd.array([value(int(c), None if np.isnan(s) else float(s), t, source.ttl) if k is not None else None
                                           for k, c, s, t in zip(keys, count, last_seen, times)], dtype="Int64")
    return result


def _before(keys: pd.Series, times, events: pd.DataFrame, time_field: str, measure) -> Any:
    """For each (key, time): `measure` of the key's newest event strictly before the time (NaN
    when it has none)."""
    import numpy as np
    import pandas as pd

    events = events.sort_values([time_field], kind="stable")
    right = pd.DataFrame({"_key": events["_key"].to_numpy(), "_t": events[time_field].to_numpy(dtype=np.float64),
                          "_measure": np.asarray(measure(events), dtype=np.float64)})
    left = pd.DataFrame({"_key": keys.to_numpy(dtype=object), "_t": np.asarray(times, dtype=np.float64), "_row": np.arange(len(keys))})
    left = left.dropna(subset=["_key"]).sort_values("_t", kind="stable")
    if right.empty or left.empty:
        return np.full(len(keys), np.nan)
    joined = pd.merge_asof(left, right, on="_t", by="_key", allow_exact_matches=False, direction="backward")
    out = np.full(len(keys), np.nan)
    out[joined["_row"].to_numpy()] = joined["_measure"].to_numpy(dtype=np.float64)
    return out
