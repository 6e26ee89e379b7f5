"""TensorFlow parameter-server training on the local platform, with the real TensorFlow.

The example job (examples/ctr/train-ps.job.yaml, train_ps.py reusing train.py's model) runs
through `plinth job submit --wait` as a chief, two workers and a parameter server on localhost
ports, on tiny synthetic features (no Spark step, to keep it CPU-light). It must train, export
a SavedModel that serves, write metrics, and leave no process behind once the chief is done.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from typer.testing import CliRunner

from platform_cli.main import app
from tests.conftest import REPO

pytestmark = pytest.mark.integration

EXAMPLE = REPO / "examples" / "ctr"


def write_features(storage: Path, rows: int, seed: int = 3) -> None:
    """preprocess.py's output with a learnable signal (clicks follow two fields), committed as
    version 0 of sample table ctr, which the example job reads."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from platform_cli.features import FeatureSpec

    spec = FeatureSpec.model_validate(
        {"categorical": [{"name": "user", "buckets": 20}, {"name": "item", "buckets": 20}], "numeric": [{"name": "age"}], "label": "click"}
    )
    from platform_cli.samples.table import commit_version

    table = storage / "samples" / "ctr"
    root = table / "fixture"
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    spec.save(root / "feature_spec.json")
    for split, n in (("train", rows), ("eval", rows // 4)):
        cat = rng.integers(0, 20, size=(n, 2))
        num = rng.normal(size=(n, 1)).astype(np.float32)
        logit = 2.5 * (cat[:, 0] < 10) - 2.5 * (cat[:, 1] < 5) + num[:, 0] - 0.5
        label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
        rows_of_split = pa.table({"cat": pa.array(list(cat), pa.list_(pa.int64())), "num": pa.array(list(num), pa.list_(pa.float32())), "label": label})
        (root / split).mkdir()
        pq.write_table(rows_of_split, root / split / "part-0.parquet")
    commit_version(str(table), str(root), partition_by="split")


def test_tf_ps_job_trains_exports_and_leaves_no_process(project: Path) -> None:
    storage = project / ".plinth" / "local" / "storage"
    write_features(storage, rows=3000)
    jobs = project / "jobs"
    jobs.mkdir()
    for name in ("train.py", "train_ps.py"):
        shutil.copy(EXAMPLE / name, jobs / name)
    # The example spec as is, with a bigger step size so a few steps on tiny data show learning.
    spec = (EXAMPLE / "train-ps.job.yaml").read_text().replace('  - "2"\n', '  - "3"\n  - --lr\n  - "0.03"\n  - --batch-size\n  - "128"\n')
    assert '"0.03"' in spec
    (jobs / "train-ps.job.yaml").write_text(spec)

    started = time.monotonic()
    result = CliRunner().invoke(app, ["job", "submit", "-f", str(jobs / "train-ps.job.yaml"), "--wait"])
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    job_id = re.search(r"job/(\S+) submitted", result.output).group(1)
    log = result.output

    assert "2 worker(s), 1 parameter server(s), 3000 train rows, 23 steps of 128 per epoch" in log
    for role in ("ps 0", "worker 0", "worker 1"):
        assert f"[{role}] {role} serving at" in log  # each server came up with its TF_CONFIG role
    losses = [float(x) for x in re.findall(r"epoch \d/3 loss=([0-9.]+)", log)]
    assert len(losses) == 3 and losses[-1] < losses[0], log  # it learns
    assert "[tf-ps] chief exited with code 0; stopping 3 server(s)" in log

    outputs = storage / "jobs" / job_id / "outputs"
    metrics = json.loads((outputs / "metrics.json").read_text())
    assert metrics["workers"] == 2 and metrics["parameter_servers"] == 1
    assert metrics["auc"] >= 0.75, metrics  # the signal above is strong; a coin scores 0.5
    assert (outputs / "model" / "saved_model.pb").is_file()
    assert (outputs / "model" / "feature_spec.json").is_file()
    assert sorted(p.name for p in (storage / "jobs" / job_id / "checkpoints").iterdir() if p.name.startswith("ckpt-3"))

    # Every process of the job is gone: chief, workers, parameter server and the launcher.
    leftovers = [p.info for p in psutil.process_iter(["pid", "cmdline"]) if any(str(jobs) in part for part in (p.info["cmdline"] or []))]
    assert leftovers == []

    import tensorflow as tf

    served = tf.saved_model.load(str(outputs / "model")).signatures["serving_default"]
    probability = served(cat=tf.constant([[0, 19], [19, 0]], tf.int64), num=tf.constant([[0.0], [0.0]]))["probability"].numpy()
    assert probability[0] > probability[1]  # user<10 & item>=5 clicks; user>=10 & item<5 does not
    print(f"tf-ps job {job_id}: {elapsed:.0f}s, losses {losses}, auc {metrics['auc']}")


def test_cancelling_a_tf_ps_job_stops_every_role(project: Path) -> None:
    storage = project / ".plinth" / "local" / "storage"
    write_features(storage, rows=3000)
    jobs = project / "jobs"
    jobs.mkdir()
    for name in ("train.py", "train_ps.py"):
        shutil.copy(EXAMPLE / name, jobs / name)
    spec = (EXAMPLE / "train-ps.job.yaml").read_text().replace('  - "2"\n', '  - "1000"\n  - --batch-size\n  - "64"\n')
    (jobs / "train-ps.job.yaml").write_text(spec)
    runner = CliRunner()
    result = runner.invoke(app, ["job", "submit", "-f", str(jobs / "train-ps.job.yaml")])
    assert result.exit_code == 0, result.output
    job_id = re.search(r"job/(\S+) submitted", result.output).group(1)

    deadline = time.monotonic() + 150
    while "epoch 1/1000" not in (log := runner.invoke(app, ["job", "logs", job_id]).output):
        assert time.monotonic() < deadline, log
        time.sleep(1)
    roles = [p for p in psutil.process_iter(["cmdline"]) if any(str(jobs) in part for part in (p.info["cmdline"] or []))]
    assert len(roles) == 5  # launcher, chief, 2 workers, 1 parameter server

    result = runner.invoke(app, ["job", "cancel", job_id])
    assert result.output.strip() == f"job/{job_id} cancelled"
    psutil.wait_procs(roles, timeout=15)
    assert [p.pid for p in roles if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
