"""The CTR example's data generator: deterministic by seed, and its clicks are learnable."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

GENERATOR = Path(__file__).resolve().parents[2] / "examples" / "ctr" / "generate.py"


@pytest.fixture(scope="module")
def generate():
    spec = importlib.util.spec_from_file_location("ctr_generate", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_same_seed_same_data_other_seed_other_data(generate):
    first = generate.generate(rows=2000, users=100, items=50, seed=1)
    pd.testing.assert_frame_equal(first, generate.generate(rows=2000, users=100, items=50, seed=1))
    assert not first.equals(generate.generate(rows=2000, users=100, items=50, seed=2))
    assert list(first.columns) == [*generate.RAW_FIELDS, generate.LABEL]


def test_clicks_are_learnable_from_the_raw_fields(generate):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    frame = generate.generate(rows=10_000, users=200, items=100, seed=3)
    assert 0.10 <= frame[generate.LABEL].mean() <= 0.20
    numeric = np.log1p(frame[["user_follow_count", "item_age_hours", "author_followers"]].astype(float))
    numeric = numeric.fillna(numeric.mean())
    onehot = pd.get_dummies(frame[["item_id", "device", "hour"]].astype(str), dtype=float)
    features = pd.concat([(numeric - numeric.mean()) / numeric.std(), onehot], axis=1).to_numpy()
    train, test = slice(0, 8000), slice(8000, None)
    labels = frame[generate.LABEL].to_numpy()
    model = LogisticRegression(C=0.3, max_iter=1000).fit(features[train], labels[train])
    assert roc_auc_score(labels[test], model.predict_proba(features[test])[:, 1]) > 0.65


def test_write_replaces_the_directory_whole(generate, tmp_path):
    out = tmp_path / "raw"
    out.mkdir()
    (out / "stale.parquet").write_text("from an earlier run")
    frame = generate.generate(rows=100, users=10, items=10, seed=1)
    generate.write(frame, out)
    assert [p.name for p in out.iterdir()] == ["part-00000.parquet"]
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]
    pd.testing.assert_frame_equal(pd.read_parquet(out), frame, check_like=True)


def test_holdout_rows_are_fresh_impressions_of_the_same_world(generate, tmp_path):
    generate.main(["--rows", "1500", "--users", "100", "--items", "50", "--seed", "4", "--out", str(tmp_path / "raw"), "--holdout", str(tmp_path / "holdout"), "--holdout-rows", "500"])
    raw, holdout = pd.read_parquet(tmp_path / "raw"), pd.read_parquet(tmp_path / "holdout")
    assert (len(raw), len(holdout)) == (1500, 500)
    assert set(raw["impression_id"]).isdisjoint(holdout["impression_id"])  # never trained on
    # drawn together with the training rows, so from the same hidden users, items and effects
    together = generate.generate(rows=2000, users=100, items=50, seed=4)
    pd.testing.assert_frame_equal(holdout, together.iloc[1500:].reset_index(drop=True), check_dtype=False)


def test_main_writes_to_a_file_uri_as_to_a_cluster_storage(generate, tmp_path):
    """--out as ${storage} renders on a cluster stack, a URI: pyarrow writes it (file:// takes the
    rename-into-place path that hdfs:// takes; HDFS itself is not available here)."""
    from platform_cli import storage

    raw = f"file://{tmp_path}/ctr/raw"
    generate.main(["--rows", "300", "--users", "20", "--items", "10", "--seed", "5", "--out", raw])
    assert sorted(p.name for p in (tmp_path / "ctr" / "raw").iterdir()) == ["_SUCCESS", "part-00000.parquet"]
    assert [p.name for p in (tmp_path / "ctr").iterdir()] == ["raw"]
    storage.require_complete(raw)
    written = storage.read_parquet(raw).to_pandas()
    pd.testing.assert_frame_equal(written, generate.generate(rows=300, users=20, items=10, seed=5), check_like=True)
