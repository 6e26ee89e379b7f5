"""Online features: the stores (SQLite and a real redis-server), the serving merge and the
point-in-time join that builds training rows, checked against each other."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from platform_cli.features import FeatureSpec, transform
from platform_cli.features.online import Aggregate, Batch, OnlineFeatures, OnlineSource, RedisStore, SQLiteStore, point_in_time
from tests.conftest import redis_server

HOUR = 3600.0
CLICKS = Aggregate(name="user_clicks_1h", key="user_id", event="click", window="1h", bucket="5m")
IMPRESSIONS = Aggregate(name="item_impressions_1d", key="item_id", event="impression", window="1d", bucket="1d")
T0 = 1_790_000_000.0  # a day boundary is not special here: buckets are aligned to the epoch


def spec(store: str = "ctr-online", ttl: str = "1h") -> FeatureSpec:
    return FeatureSpec.model_validate({
        "categorical": [{"name": "user_id", "buckets": 100}, {"name": "item_id", "buckets": 100}],
        "numeric": [{"name": "user_clicks_1h", "mean": 2.0, "std": 1.0, "online": {"store": store, "key": "user_id", "ttl": ttl}},
                    {"name": "item_impressions_1d", "mean": 5.0, "std": 2.0, "required": False,
                     "online": {"store": store, "key": "item_id", "ttl": "1d"}}],
        "label": "clicked",
    })


def batch_of(events: pd.DataFrame, aggregates=(CLICKS, IMPRESSIONS)) -> Batch:
    """What the streaming job computes for a micro-batch (platform_cli.features.stream)."""
    counts, seen = {}, {}
    for a in aggregates:
        for e in events.itertuples():
            if a.event is None or e.event == a.event:
                k = (a.name, getattr(e, a.key), int(np.floor(e.event_time / a.bucket)))
                counts[k] = counts.get(k, 0) + 1
    for entity in {a.key for a in aggregates}:
        for e in events.itertuples():
            k = (entity, getattr(e, entity))
            seen[k] = max(seen.get(k, -np.inf), e.event_time)
    return Batch(counts, seen, len(events), float(events.event_time.max()) if len(events) else None)


def random_events(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "event_time": np.sort(T0 + rng.uniform(0, 30 * HOUR, n)).round(3),
        "user_id": rng.choice([f"u{i}" for i in range(12)], n),
        "item_id": rng.choice([f"i{i}" for i in range(8)], n),
        "event": rng.choice(["impression", "click"], n, p=[0.8, 0.2]),
    })


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = SQLiteStore(tmp_path / "store.db")
        yield s
        s.close()
        return
    yield from redis_store(tmp_path)


def redis_store(tmp_path):
    import redis

    with redis_server(tmp_path, "s3cret") as port:
        client = redis.Redis(port=port, password="s3cret")
        yield RedisStore(client, "ctr-online")
        client.close()


def test_a_window_must_be_whole_buckets_and_durations_are_spelled_out():
    with pytest.raises(ValidationError, match="whole number of buckets"):
        Aggregate(name="x", key="user_id", window="1h", bucket="7m")
    with pytest.raises(ValidationError, match="is not a duration"):
        OnlineSource(store="s", key="user_id", ttl="an hour")
    assert CLICKS.window == HOUR and CLICKS.buckets == 12


def test_a_replayed_batch_is_not_counted_twice(store):
    store.define([CLICKS, IMPRESSIONS])
    events = pd.DataFrame({"event_time": [T0, T0 + 1, T0 + 2], "user_id": ["u1", "u1", "u2"], "item_id": ["i1", "i1", "i1"],
                           "event": ["click", "click", "impression"]})
    assert store.apply("agg", 0, batch_of(events))
    assert not store.apply("agg", 0, batch_of(events))  # the same batch id after a restart
    seen, counts = store.fetch({"user_clicks_1h": {"u1", "u2", "u9"}, "item_impressions_1d": {"i1"}}, T0 + 10)
    assert counts == {("user_clicks_1h", "u1"): 2, ("item_impressions_1d", "i1"): 1}
    assert seen == {("user_id", "u1"): T0 + 1, ("user_id", "u2"): T0 + 2, ("item_id", "i1"): T0 + 2}
    progress = store.progress("agg")
    assert (progress.batch, progress.events, progress.event_time) == (0, 3, T0 + 2)


def test_serving_values_follow_the_missing_rules(store, tmp_path):
    store.define([CLICKS, IMPRESSIONS])
    events = pd.DataFrame({"event_time": [T0, T0 + 10, T0 + 20], "user_id": ["u1", "u1", "u2"], "item_id": ["i1", "i2", "i1"],
                           "event": ["click", "impression", "impression"]})
    store.apply("agg", 0, batch_of(events))
    online = OnlineFeatures(spec(), {"ctr-online": store})
    rows = [{"user_id": "u1", "item_id": "i1"}, {"user_id": "u2", "item_id": "i9"}, {"user_id": "u9", "item_id": None},
            {"user_id": "u1", "item_id": "i1", "user_clicks_1h": 99}]
    merged = online.merge(rows, at=T0 + 60)
    # u1 clicked once; u2 was seen (an impression) but never clicked: 0, not missing; u9 and a
    # null key are unknown: missing; a value the request carried is replaced by the store's.
    assert [r["user_clicks_1h"] for r in merged] == [1, 0, None, 1]
    assert [r["item_impressions_1d"] for r in merged] == [1, None, None, 1]
    # Two hours later the click has left the window and u1 is stale (ttl 1h): missing.
    assert [r["user_clicks_1h"] for r in online.merge(rows, at=T0 + 2 * HOUR)] == [None, None, None, None]
    # Missing takes the spec's rule: the mean, 0 once standardised.
    inputs = transform(spec(), merged)
    assert inputs["num"][2].tolist() == [0.0, 0.0] and inputs["num"][0].tolist() == [-1.0, -2.0]


def test_serving_answers_what_the_point_in_time_join_gives_training(store):
    """Events arrive in micro-batches; before each batch, requests at that moment fetch their
    values; the point-in-time join over the whole log gives every request the same values."""
    store.define([CLICKS, IMPRESSIONS])
    events = random_events(600, seed=3)
    online = OnlineFeatures(spec(), {"ctr-online": store})
    rng = np.random.default_rng(4)
    requests = []
    for batch_id, start in enumerate(range(0, len(events), 30)):
        chunk = events.iloc[start:start + 30]
        at = float(chunk.event_time.iloc[0])  # now: everything before this batch has been applied
        rows = [{"user_id": f"u{rng.integers(14)}", "item_id": f"i{rng.integers(9)}"} for _ in range(15)]
        values = online.values(rows, at=at)
        requests += [{**row, "at": at, **{name: column[i] for name, column in values.items()}} for i, row in enumerate(rows)]
        store.apply("agg", batch_id, batch_of(chunk))
    served = pd.DataFrame(requests)
    f = spec()
    trained = point_in_time(served[["user_id", "item_id", "at"]], "at", events, [CLICKS, IMPRESSIONS],
                            {n.name: n.online for n in f.numeric})
    for name in ("user_clicks_1h", "item_impressions_1d"):
        assert served[name].astype("Int64").tolist() == trained[name].tolist()
    # Not a vacuous match: values of every kind occurred.
    assert served["user_clicks_1h"].isna().any() and (served["user_clicks_1h"] == 0).any() and (served["user_clicks_1h"] > 1).any()


def test_point_in_time_sees_only_events_strictly_before_the_row():
    events = pd.DataFrame({"event_time": [T0, T0 + 5, T0 + 5, T0 + 9], "user_id": ["u1"] * 4, "item_id": ["i1"] * 4,
                           "event": ["click"] * 4})
    rows = pd.DataFrame({"user_id": ["u1", "u1", "u1", "u2"], "at": [T0, T0 + 5, T0 + 5.001, T0 + 9]})
    out = point_in_time(rows, "at", events, [CLICKS], {"user_clicks_1h": OnlineSource(store="s", key="user_id", ttl="1h")})
    assert out["user_clicks_1h"].tolist() == [pd.NA, 1, 3, pd.NA]


def test_a_large_batch_fetches_in_one_call_too(store):
    store.define([CLICKS, IMPRESSIONS])
    events = pd.DataFrame({"event_time": T0 + np.arange(2000.0), "user_id": [f"u{i}" for i in range(2000)],
                           "item_id": [f"i{i % 50}" for i in range(2000)], "event": ["click"] * 2000})
    store.apply("agg", 0, batch_of(events))
    seen, counts = store.fetch({"user_clicks_1h": {f"u{i}" for i in range(2100)}}, T0 + 2000)
    assert len(seen) == 2000 and sum(counts.values()) == sum(1 for t in events.event_time if t >= (np.floor((T0 + 2000) / 300) - 11) * 300)
