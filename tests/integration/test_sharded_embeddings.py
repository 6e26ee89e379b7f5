"""Sharded embeddings on the local platform, with the real TensorFlow: a tf-ps job whose spec
shards the tables 4 ways trains and checkpoints shard by shard; the same job re-submitted with 2
shards restores that checkpoint and its exported model predicts exactly what the first one did.
Tiny features (no Spark step) keep it CPU-light."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from platform_cli.main import app
from tests.conftest import REPO
from tests.integration.test_tf_ps_local import write_features

pytestmark = pytest.mark.integration

# Both jobs share one checkpoint directory: the second resumes where the first stopped.
SPEC = """\
kind: tf-ps
name: ctr-sharded-{shards}
script: train_ps.py
files: [train.py]
args: [--features, "${{samples.ctr@0}}", --export-dir, "${{output_dir}}/model", --metrics-file, "${{output_dir}}/metrics.json",
       --checkpoint-dir, "${{storage}}/ctr/checkpoints", --epochs, "1", --batch-size, "128", --lr, "0.03"]
workers: 1
sharding: {{shards: {shards}, embeddings: {{rows: 40, dims: 9}}}}
resources: {{cpu: 1, memory: 1Gi}}
"""


def submit(jobs: Path, shards: int) -> tuple[str, str]:
    path = jobs / f"sharded-{shards}.job.yaml"
    path.write_text(SPEC.format(shards=shards))
    result = CliRunner().invoke(app, ["job", "submit", "-f", str(path), "--wait"])
    assert result.exit_code == 0, result.output
    return re.search(r"job/(\S+) submitted", result.output).group(1), result.output


def test_a_checkpoint_taken_with_four_shards_restores_into_two_with_identical_predictions(project: Path) -> None:
    import pyarrow.parquet as pq
    import tensorflow as tf

    storage = project / ".plinth" / "local" / "storage"
    write_features(storage, rows=2000)  # sample table ctr, version 0; 2 fields x 20 buckets: 40 rows
    jobs = project / "jobs"
    jobs.mkdir()
    for name in ("train.py", "train_ps.py"):
        shutil.copy(REPO / "examples" / "ctr" / name, jobs / name)

    four_id, four_log = submit(jobs, 4)
    assert "1 worker(s), 4 parameter server(s)" in four_log
    assert "embeddings: embedding 40x8 in 16 piece(s) on 4 server(s), wide_ids 40x1 in 16 piece(s) on 4 server(s)" in four_log
    assert "epoch 1/1 loss=" in four_log
    # Shard by shard: every parameter server wrote its own data file (and the chief one).
    checkpoint = storage / "ctr" / "checkpoints" / "ckpt-1"
    assert len(list(checkpoint.parent.glob("ckpt-1.data-*-of-00005"))) == 5
    # Each table and each of its optimizer slots is saved as one whole variable of slices,
    # which is what lets another shard count read it.
    saved = dict(tf.train.list_variables(str(checkpoint)))
    assert saved["model/embedding/embeddings/.ATTRIBUTES/VARIABLE_VALUE"] == [40, 8]
    assert saved["model/embedding/embeddings/.OPTIMIZER_SLOT/optimizer/v/.ATTRIBUTES/VARIABLE_VALUE"] == [40, 8]

    two_id, two_log = submit(jobs, 2)
    assert "embeddings: embedding 40x8 in 8 piece(s) on 2 server(s), wide_ids 40x1 in 8 piece(s) on 2 server(s)" in two_log
    assert "resumed from checkpoint: epoch 1 of 1" in two_log
    assert "unrestored values" not in two_log and "could not be found" not in two_log

    rows = pq.read_table(storage / "samples" / "ctr" / "fixture" / "eval")
    cat, num = (np.array(rows.column(name).to_pylist()) for name in ("cat", "num"))
    predictions = []
    for job_id in (four_id, two_id):
        served = tf.saved_model.load(str(storage / "jobs" / job_id / "outputs" / "model")).signatures["serving_default"]
        predictions.append(served(cat=tf.constant(cat, tf.int64), num=tf.constant(num, tf.float32))["probability"].numpy())
    assert len(predictions[0]) == 500
    assert np.array_equal(predictions[0], predictions[1])
    assert predictions[0].std() > 0.01  # a trained model, not a constant
