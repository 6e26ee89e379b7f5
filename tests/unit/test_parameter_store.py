"""Parameter stores without a model: rows keyed by model and version, one lookup for several
tables, updates in place, and store URLs refused in one line before anything is opened."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from platform_cli.errors import PlinthError
from platform_cli.main import app
from platform_cli.paramservice.store import MissingRows, SqliteStore, check_url, open_store, resolve


def tables(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"embedding/embeddings": rng.normal(size=(100, 8)).astype(np.float32), "wide_ids/embeddings": rng.normal(size=(100, 1)).astype(np.float32)}


def test_a_lookup_returns_each_tables_rows_in_the_order_asked_and_versions_stay_apart(tmp_path):
    store = SqliteStore(tmp_path / "p.sqlite")
    one, two = tables(1), tables(2)
    store.write("ctr", 1, one)
    store.write("ctr", 2, two)
    ids = {"embedding/embeddings": np.array([7, 3, 99]), "wide_ids/embeddings": np.array([0, 50])}
    for version, expected in ((1, one), (2, two)):
        rows = store.lookup("ctr", version, ids)
        for table, wanted in ids.items():
            assert np.array_equal(rows[table], expected[table][wanted])
    assert store.tables("ctr") == [{"model": "ctr", "version": v, "table": t, "rows": 100, "dim": d}
                                   for v in (1, 2) for t, d in (("embedding/embeddings", 8), ("wide_ids/embeddings", 1))]

    # Writing version 2 again replaces its rows and leaves version 1's.
    store.write("ctr", 2, one)
    assert np.array_equal(store.lookup("ctr", 2, ids)["embedding/embeddings"], one["embedding/embeddings"][[7, 3, 99]])
    assert np.array_equal(store.lookup("ctr", 1, ids)["embedding/embeddings"], one["embedding/embeddings"][[7, 3, 99]])
    store.update("ctr", 1, "embedding/embeddings", np.array([3]), np.full((1, 8), 5.0, np.float32))
    assert np.array_equal(store.lookup("ctr", 1, ids)["embedding/embeddings"][1], np.full(8, 5.0, np.float32))
    assert np.array_equal(store.lookup("ctr", 2, ids)["embedding/embeddings"][1], one["embedding/embeddings"][3])
    store.close()


def test_rows_a_store_does_not_have_are_named(tmp_path):
    store = SqliteStore(tmp_path / "p.sqlite")
    store.write("ctr", 1, tables(1))
    with pytest.raises(MissingRows, match=r"no row \[100\] of table embedding/embeddings for ctr version 1"):
        store.lookup("ctr", 1, {"embedding/embeddings": np.array([1, 100])})
    with pytest.raises(MissingRows, match="for ctr version 3"):
        store.lookup("ctr", 3, {"embedding/embeddings": np.array([1])})
    with pytest.raises(PlinthError, match=r"rows for table embedding/embeddings must be float32 \[1, 8\], not \[1, 4\]"):
        store.update("ctr", 1, "embedding/embeddings", np.array([1]), np.zeros((1, 4), np.float32))
    with pytest.raises(PlinthError, match="row ids for table embedding/embeddings must be from 0 to 99"):
        store.update("ctr", 1, "embedding/embeddings", np.array([100]), np.zeros((1, 8), np.float32))
    store.close()


def test_store_urls(tmp_path):
    assert resolve("sqlite", tmp_path) == f"sqlite:///{tmp_path / 'params' / 'parameters.sqlite'}"
    assert resolve(f"sqlite:///{tmp_path}/x.sqlite", None) == f"sqlite:///{tmp_path}/x.sqlite"
    assert open_store("sqlite", tmp_path).url == f"sqlite:///{tmp_path / 'params' / 'parameters.sqlite'}"
    check_url("redis://10.0.0.5:6379/0")
    with pytest.raises(PlinthError) as refused:
        check_url("redis://:hunter2@10.0.0.5:6379/0")
    assert "hunter2" not in str(refused.value)
    assert str(refused.value) == ("parameters: 'redis://***@10.0.0.5:6379/0' carries credentials, which would be kept in server records and logs; "
                                  "drop them from the URL and set PLINTH_REDIS_PASSWORD")
    with pytest.raises(PlinthError, match="parameters: 'memcached://x' is not a parameter store; use sqlite"):
        check_url("memcached://x")


def test_a_bad_store_is_one_line_and_nothing_is_written(project):
    result = CliRunner().invoke(app, ["model", "params", "export", "ctr", "1", "--store", "mysql://db/x"])
    assert result.exit_code == 1
    assert result.output == ("error: parameters: 'mysql://db/x' is not a parameter store; "
                             "use sqlite (the stack's local file), sqlite:///PATH, or redis://HOST:PORT/DB\n")
    assert not (project / ".plinth").exists()
    result = CliRunner().invoke(app, ["model", "serve", "ctr", "--parameters", "redis://u:p@h/0"])
    assert result.exit_code == 1 and "carries credentials" in result.output and ":p@" not in result.output
