"""Training from a pinned sample table version is reproducible: jobs on the local platform write
versions of a table and train from one; after later versions are appended, retraining from the
pinned version reads the same digest and gets the same AUC, and the model's lineage and MLflow
dataset input name that version."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from platform_cli.main import app
from platform_cli.registry.library import ModelRegistry
from platform_cli.registry.lineage import job_lineage
from platform_cli.samples import table_location
from platform_cli.samples.table import describe
from platform_cli.spec.stack import load_stack
from platform_cli.targets import get_target
from tests.conftest import write_job

pytestmark = pytest.mark.integration

WRITE = '''"""Labelled rows drawn from a seeded logistic model: train/ and eval/ Parquet in --out."""
import argparse, os
import numpy as np, pyarrow as pa, pyarrow.parquet as pq

parser = argparse.ArgumentParser()
parser.add_argument("--out"); parser.add_argument("--seed", type=int)
args = parser.parse_args()
rng = np.random.default_rng(args.seed)
for split, rows in (("train", 3000), ("eval", 1000)):
    x = rng.normal(size=(rows, 3))
    label = (rng.random(rows) < 1 / (1 + np.exp(-(x @ [1.5, -2.0, 0.5])))).astype("float32")
    os.makedirs(f"{args.out}/{split}")
    pq.write_table(pa.table({"x": pa.array(list(x)), "label": label}), f"{args.out}/{split}/part-0.parquet")
'''

FIT = '''"""Logistic regression (full-batch gradient descent) on one sample table version; AUC on eval."""
import argparse, json
import numpy as np
from sklearn.metrics import roc_auc_score
from platform_cli import storage
from platform_cli.samples.table import open_version

parser = argparse.ArgumentParser()
parser.add_argument("--samples"); parser.add_argument("--metrics-file")
args = parser.parse_args()
version = open_version(args.samples)
print(f"read {version.info.table}@{version.info.version} rows={version.info.rows} digest={version.info.digest}")

def split(name):
    table = version.read(split=name)
    return np.array(table.column("x").to_pylist()), table.column("label").to_numpy()

x, y = split("train")
w = np.zeros(x.shape[1])
for _ in range(200):
    w -= 0.5 * x.T @ (1 / (1 + np.exp(-(x @ w))) - y) / len(y)
x_eval, y_eval = split("eval")
storage.write_json(args.metrics_file, {"auc": float(roc_auc_score(y_eval, x_eval @ w))})
'''


def plinth(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"plinth {' '.join(args)} failed:\n{result.output}"
    return result.output


def submit(job_file: Path) -> str:
    result = CliRunner().invoke(app, ["job", "submit", "-f", str(job_file), "--wait"])
    job_id = re.search(r"job/(\S+) submitted", result.output).group(1)
    assert result.exit_code == 0, CliRunner().invoke(app, ["job", "status", job_id]).output
    return job_id


def writer(project: Path, seed: int) -> Path:
    return write_job(project / "jobs", f"write-{seed}", f"""kind: python
name: write-{seed}
script: write.py
args: [--out, "${{sample_dir}}", --seed, "{seed}"]
output: {{samples: clicks, mode: overwrite, partitionBy: split}}
""")


def trainer(project: Path, name: str, ref: str) -> Path:
    return write_job(project / "jobs", name, f"""kind: python
name: {name}
script: fit.py
args: [--samples, "${{samples.clicks@{ref}}}", --metrics-file, "${{output_dir}}/metrics.json"]
""")


def test_retraining_from_a_pinned_version_after_later_versions_reproduces_digest_and_auc(project: Path) -> None:
    jobs = project / "jobs"
    jobs.mkdir()
    (jobs / "write.py").write_text(WRITE)
    (jobs / "fit.py").write_text(FIT)
    stack = load_stack("local")
    target = get_target(stack)
    table = table_location(stack.storage_root, "clicks")

    first_writer = submit(writer(project, 1))
    assert target.status(first_writer).sample_output.version == 0
    refused = CliRunner().invoke(app, ["job", "restart", first_writer])  # it would rewrite version 0's files
    assert refused.exit_code == 1 and "wrote version 0 of sample table clicks; a restart would rewrite" in refused.output
    first = target.status(submit(trainer(project, "fit-latest", "latest")))
    assert [(s.ref, s.version, s.digest) for s in first.samples] == [("clicks@latest", 0, describe(table, 0).digest)]
    auc = json.loads(Path(first.output_dir, "metrics.json").read_text())["auc"]
    assert auc > 0.75

    model_dir = project / "model"
    model_dir.mkdir()
    registry = ModelRegistry(stack.tracking_uri, stack.artifact_root)
    registered = registry.register("clicks", model_dir, {"auc": auc}, job_lineage(first, project), datasets=first.samples)
    assert registered.lineage["samples"] == "clicks@0"
    assert registered.lineage["samples_digest"] == describe(table, 0).digest
    from mlflow.tracking import MlflowClient

    inputs = MlflowClient(stack.tracking_uri).get_run(registered.run_id).inputs.dataset_inputs
    assert [(i.dataset.name, i.dataset.source_type, json.loads(i.dataset.source)["delta_table_version"]) for i in inputs] == [("clicks@0", "delta_table", 0)]
    assert json.loads(inputs[0].dataset.profile)["digest"] == describe(table, 0).digest

    submit(writer(project, 2))
    submit(writer(project, 3))
    assert f'"{table}@v2"' in plinth("job", "render", "-f", str(trainer(project, "fit-now", "latest")))  # pinned when rendered
    versions = json.loads(plinth("data", "versions", "clicks", "-o", "json"))
    assert [v["version"] for v in versions] == [0, 1, 2] and len({v["digest"] for v in versions}) == 3

    again = target.status(submit(trainer(project, "fit-pinned", "0")))
    assert [(s.version, s.digest) for s in again.samples] == [(0, first.samples[0].digest)]
    assert json.loads(Path(again.output_dir, "metrics.json").read_text())["auc"] == auc
    assert f"read clicks@0 rows=4000 digest={first.samples[0].digest}" in plinth("job", "logs", again.id)
    newest = target.status(submit(trainer(project, "fit-newest", "latest")))
    assert newest.samples[0].version == 2 and newest.samples[0].digest != first.samples[0].digest
