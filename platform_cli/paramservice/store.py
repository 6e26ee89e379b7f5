"""Parameter stores: a key-value store of embedding rows, keyed by model, version, table and row id.

    store = open_store("sqlite", home)              # <local.home>/params/parameters.sqlite
    store = open_store("redis://10.0.0.5:6379/0")   # password from PLINTH_REDIS_PASSWORD
    store.write("ctr", 3, {"embedding/embeddings": array})
    rows = store.lookup("ctr", 3, {"embedding/embeddings": ids})   # one round trip for all tables
    store.update("ctr", 3, "embedding/embeddings", ids, vectors)   # served at once, no reload

A row is its float32 vector's bytes. The key starts with model and version, so two versions of a
model (production and canary) never read each other's rows, and writing one version leaves the
other as it was. A version's rows are complete once its table index (`tables`) lists them:
write() records it last.

Backends, by URL:
- `sqlite` or `sqlite:///path`: embedded, the local default (one file, WAL, so a writer does
  not block the servers reading it; a lookup is one SELECT for every table);
- `redis://host:port/db`: Redis, what a cluster stack deploys (a hash per model, version and
  table; a lookup is one pipelined HMGET per table, one round trip). The password is never in
  the URL, which is kept in server records and process arguments: it comes from the
  environment variable PLINTH_REDIS_PASSWORD (on a cluster, a Secret).

A cluster's Redis is named by its in-cluster address (redis://plinth-parameters.plinth-system.svc:6379/0,
what the version servers' pods use); `reachable` opens a port forward to it over the Kubernetes
API of a team stack, so export, listing and the check before a promote work from this machine.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from platform_cli.errors import PlinthError, shown

if TYPE_CHECKING:
    import numpy as np

    from platform_cli.spec.stack import Stack

PASSWORD_ENV = "PLINTH_REDIS_PASSWORD"
DEFAULT_SQLITE = Path("params") / "parameters.sqlite"  # under the stack's local home
_WRITE_CHUNK = 20_000
_MMAP_BYTES = 1 << 34  # SQLite maps at most this much of the file (its own limit may be lower)


class MissingRows(Exception):
    """The store has no rows for these keys (a version not exported to it, or ids past a table)."""


class ParameterStore(ABC):
    """Rows of embedding tables by (model, version, table, id)."""

    url: str

    @abstractmethod
    def write(self, model: str, version: int, tables: dict[str, np.ndarray]) -> None:
        """Replace the version's tables with these (float32 [rows, dim] each)."""

    @abstractmethod
    def lookup(self, model: str, version: int, ids: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The rows of each table for its ids (unique int64), float32 [len(ids), dim], in one
        round trip; MissingRows if any is absent."""

    @abstractmethod
    def update(self, model: str, version: int, table: str, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Overwrite some rows of one table of a version (servers read them on their next lookup)."""

    @abstractmethod
    def tables(self, model: str | None = None) -> list[dict]:
        """Every complete version's tables: model, version, table, rows, dim."""

    def close(self) -> None:
        pass



def open_store(url: str, home: Path | None = None) -> ParameterStore:
    """The store a URL names (see the module docstring); PlinthError naming the fix otherwise."""
    check_url(url)
    if url == "sqlite" or url.startswith("sqlite:"):
        return SqliteStore(sqlite_path(url, home))
    return RedisStore(url)


def check_url(url: str) -> None:
    """PlinthError when `url` is not a store URL Plinth reads (before anything is opened)."""
    parts = urlsplit(url)
    if url == "sqlite" or (parts.scheme == "sqlite" and url.startswith("sqlite:///") and len(url) > len("sqlite:///")):
        return
    if parts.scheme == "redis":
        if parts.password is not None or parts.username is not None:
            raise PlinthError(f"parameters: {shown(redact(url))} carries credentials, which would be kept in server records and logs",
                              f"drop them from the URL and set {PASSWORD_ENV}")
        if not parts.hostname:
            raise PlinthError(f"parameters: {shown(url)} names no host", "use redis://HOST:PORT/DB")
        return
    raise PlinthError(f"parameters: {shown(redact(url))} is not a parameter store",
                      "use sqlite (the stack's local file), sqlite:///PATH, or redis://HOST:PORT/DB")


def resolve(url: str, home: Path | None) -> str:
    """The URL as a server started anywhere reads it: plain `sqlite` becomes the stack's file."""
    check_url(url)
    if url == "sqlite" or url.startswith("sqlite:"):
        return f"sqlite:///{sqlite_path(url, home)}"
    return url


@contextmanager
def reachable(url: str, stack: Stack) -> Iterator[str]:
    """The store URL as this machine reaches it, for the duration of the block: a Redis named by
    a cluster-internal address (<service>.<namespace>.svc) on a team stack is reached through a
    port forward to a Ready pod of that Service, over the Kubernetes API the stack's context
    reaches (as the model library's tracking server is); any other URL as it is."""
    parts = urlsplit(url)
    internal = None
    if parts.scheme == "redis" and stack.role == "team":
        from platform_cli.kube import service_address

        internal = service_address(parts.hostname or "")
    if internal is None:
        yield url
        return
    from platform_cli.kube import KubeClient, PortForward, ready_pod

    service, namespace = internal
    client = KubeClient.for_stack(stack)
    forward = PortForward(client, namespace, ready_pod(client, namespace, service), parts.port or 6379)
    try:
        yield parts._replace(netloc=f"127.0.0.1:{forward.local_port}").geturl()
    finally:
        forward.close()


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    return parts._replace(netloc=f"***@{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}").geturl()


def sqlite_path(url: str, home: Path | None) -> Path:
    if url == "sqlite":
        if home is None:
            raise PlinthError("parameters: plain `sqlite` needs the stack's local home", "pass sqlite:///PATH")
        return Path(home) / DEFAULT_SQLITE
    # SQLAlchemy's form: sqlite:///relative/path, sqlite:////absolute/path.
    return Path(url.removeprefix("sqlite:///")).absolute()


class SqliteStore(ParameterStore):
    def __init__(self, path: Path):
        import sqlite3

        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread off: the server's batcher calls from its executor thread, one at a time.
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # Lookups probe rows all over the file: read it through a shared memory map (the OS page
        # cache, one copy for every server process) rather than a pread per page into SQLite's
        # small per-connection cache; measured 3.5x faster per lookup (bench/paramservice.py).
        self._db.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS rows (
                model TEXT NOT NULL, version INTEGER NOT NULL, tbl TEXT NOT NULL, id INTEGER NOT NULL, vector BLOB NOT NULL,
                PRIMARY KEY (model, version, tbl, id)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS tables (
                model TEXT NOT NULL, version INTEGER NOT NULL, tbl TEXT NOT NULL, rows INTEGER NOT NULL, dim INTEGER NOT NULL,
                PRIMARY KEY (model, version, tbl));
            """
        )

    def write(self, model, version, tables):
        import numpy as np

        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM tables WHERE model = ? AND version = ?", (model, version))
            db.execute("DELETE FROM rows WHERE model = ? AND version = ?", (model, version))
            for name, table in tables.items():
                table = np.ascontiguousarray(table, dtype=np.float32)
                for start in range(0, len(table), _WRITE_CHUNK):
                    chunk = table[start:start + _WRITE_CHUNK]
                    db.executemany("INSERT INTO rows VALUES (?, ?, ?, ?, ?)",
                                   ((model, version, name, start + i, row.tobytes()) for i, row in enumerate(chunk)))
                db.execute("INSERT INTO tables VALUES (?, ?, ?, ?, ?)", (model, version, name, table.shape[0], table.shape[1]))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def lookup(self, model, version, ids):
        import numpy as np

        import json

        # One statement for every table, each probing the primary key for a JSON list of ids.
        # (Joining json_each's (table, id) pairs to the rows instead was twice as slow.)
        names = list(ids)
        query = " UNION ALL ".join(
            f"SELECT {t}, id, vector FROM rows WHERE model = ?1 AND version = ?2 AND tbl = ?{2 * t + 3}"
            f" AND id IN (SELECT value FROM json_each(?{2 * t + 4}))" for t in range(len(names)))
        arguments: list = [model, version]
        for name in names:
            arguments += [name, json.dumps(ids[name].tolist())]
        found: dict[int, tuple[list[int], list[bytes]]] = {t: ([], []) for t in range(len(names))}
        for t, i, vector in self._db.execute(query, arguments):
            found[t][0].append(i)
            found[t][1].append(vector)
        return _assemble([_aligned(ids[name], *found[t]) for t, name in enumerate(names)], names, ids, model, version)

    def update(self, model, version, table, ids, vectors):
        import numpy as np

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            known = db.execute("SELECT rows, dim FROM tables WHERE model = ? AND version = ? AND tbl = ?", (model, version, table)).fetchone()
            _check_update(known, model, version, table, ids, vectors)
            db.executemany("UPDATE rows SET vector = ? WHERE model = ? AND version = ? AND tbl = ? AND id = ?",
                           ((v.tobytes(), model, version, table, int(i)) for i, v in zip(ids, vectors)))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def tables(self, model=None):
        query = "SELECT model, version, tbl, rows, dim FROM tables" + (" WHERE model = ?" if model else "") + " ORDER BY model, version, tbl"
        return [dict(zip(("model", "version", "table", "rows", "dim"), row)) for row in self._db.execute(query, (model,) if model else ())]

    def close(self):
        self._db.close()


class RedisStore(ParameterStore):
    """Hash plinth:params:<model>:v<version>:<table> maps a row id to its vector; the hash
    plinth:params:<model>:v<version> maps each table to "rows dim" and is written last."""

    def __init__(self, url: str):
        import redis

        self.url = url
        self._redis = redis.Redis.from_url(url, password=os.environ.get(PASSWORD_ENV) or None, socket_timeout=30)

    @staticmethod
    def _index(model: str, version: int) -> str:
        return f"plinth:params:{model}:v{version}"

    def _key(self, model: str, version: int, table: str) -> str:
        return f"{self._index(model, version)}:{table}"

    def write(self, model, version, tables):
        import numpy as np

        index = self._index(model, version)
        old = self._redis.hkeys(index)
        pipe = self._redis.pipeline(transaction=False)
        pipe.delete(index, *(self._key(model, version, t.decode()) for t in old))
        for name, table in tables.items():
            table = np.ascontiguousarray(table, dtype=np.float32)
            key = self._key(model, version, name)
            pipe.delete(key)
            for start in range(0, len(table), _WRITE_CHUNK):
                pipe.hset(key, mapping={start + i: row.tobytes() for i, row in enumerate(table[start:start + _WRITE_CHUNK])})
                pipe.execute()
        pipe.hset(index, mapping={name: f"{table.shape[0]} {table.shape[1]}" for name, table in tables.items()})
        pipe.execute()

    def lookup(self, model, version, ids):
        names = list(ids)
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.hmget(self._key(model, version, name), [int(i) for i in ids[name]])
        return _assemble(pipe.execute(), names, ids, model, version)

    def update(self, model, version, table, ids, vectors):
        import numpy as np

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        shape = self._redis.hget(self._index(model, version), table)
        known = tuple(int(n) for n in shape.split()) if shape is not None else None
        _check_update(known, model, version, table, ids, vectors)
        self._redis.hset(self._key(model, version, table), mapping={int(i): v.tobytes() for i, v in zip(ids, vectors)})

    def tables(self, model=None):
        found = []
        for key in self._redis.scan_iter(match=f"plinth:params:{model or '*'}:v*", count=1000):
            name, _, version = key.decode().removeprefix("plinth:params:").rpartition(":v")
            if not version.isdigit():  # a table's hash, not an index
                continue
            for table, shape in self._redis.hgetall(key).items():
                rows, dim = (int(n) for n in shape.split())
                found.append({"model": name, "version": int(version), "table": table.decode(), "rows": rows, "dim": dim})
        return sorted(found, key=lambda t: (t["model"], t["version"], t["table"]))

    def close(self):
        self._redis.close()


def _aligned(wanted, found_ids: list[int], vectors: list[bytes]) -> list[bytes | None]:
    """The vectors in the order of the wanted ids, None where one was not found. (SQLite answers
    an IN list in key order, which is the order of sorted ids: then this is the list itself.)"""
    wanted = wanted.tolist()
    if found_ids == wanted:
        return vectors
    by_id = dict(zip(found_ids, vectors))
    return [by_id.get(i) for i in wanted]


def _assemble(vectors: list[list[bytes | None]], names: list[str], ids, model: str, version: int) -> dict[str, np.ndarray]:
    """Each table's rows as float32 [len(ids), dim] from its vectors' bytes, one per id in
    order (None: the store lacks it, a MissingRows naming the first few)."""
    import numpy as np

    rows = {}
    for name, found in zip(names, vectors):
        wanted = ids[name]
        if None in found:
            missing = [int(i) for i, v in zip(wanted, found) if v is None][:3]
            raise MissingRows(f"the parameter store has no row {missing} of table {name} for {model} version {version}")
        rows[name] = np.frombuffer(b"".join(found), dtype=np.float32).reshape(len(wanted), -1)
    return rows


def _check_update(known, model, version, table, ids, vectors) -> None:
    import numpy as np

    if known is None:
        raise PlinthError(f"{model} version {version} has no table {table} in the parameter store", "export the version first")
    rows, dim = known
    ids = np.asarray(ids)
    if vectors.ndim != 2 or vectors.shape != (len(ids), dim):
        raise PlinthError(f"rows for table {table} must be float32 [{len(ids)}, {dim}], not {list(vectors.shape)}")
    if len(ids) and (ids.min() < 0 or ids.max() >= rows):
        raise PlinthError(f"row ids for table {table} must be from 0 to {rows - 1}")
