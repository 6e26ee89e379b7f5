"""A cluster job's launcher (platform_cli.samples.launch), run as the container runs it: the
launcher file from the code ConfigMap executed by `python` in a fresh process, with the
environment the cluster renderer sets, on file:// storage. Real Delta tables, real scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from platform_cli.samples import SampleInput, SampleOutput, job_sample_dir, table_location, version_location
from platform_cli.samples.launch import LAUNCHER_FILE, LAUNCHER_SOURCE, launcher_env
from platform_cli.samples.table import commit_job_output, versions
from platform_cli.targets.base import JobRecord
from platform_cli.targets.local_runner import commit_sample_output

STACK = "team-sim"

# Writes a preprocess-style version (train/ and eval/ Parquet) into the --out directory, the
# way the CTR preprocess writes ${sample_dir}, and leaves a line per run in --runs; --fail N
# exits with N before writing anything.
WRITER = """\
import argparse, os, sys
import pyarrow as pa, pyarrow.parquet as pq
from pyarrow import fs

parser = argparse.ArgumentParser()
parser.add_argument("--out")
parser.add_argument("--runs")
parser.add_argument("--fail", type=int, default=0)
args = parser.parse_args()
with open(args.runs, "a") as runs:
    runs.write(" ".join(sys.argv) + "\\n")
if args.fail:
    sys.exit(args.fail)
filesystem, base = fs.FileSystem.from_uri(args.out)
for split, start in (("train", 0), ("eval", 100)):
    filesystem.create_dir(f"{base}/{split}")
    pq.write_table(pa.table({"x": pa.array(range(start, start + 5), pa.int64())}), f"{base}/{split}/part-00000.parquet", filesystem=filesystem)
"""

# Reads the version its first argument names and reports which one it got.
READER = """\
import sys
from platform_cli.samples.table import open_version

opened = open_version(sys.argv[1])
print(f"read version {opened.info.version}: {opened.read().num_rows} rows from {sys.argv[1]}")
if sys.argv[2:] == ["--crash"]:
    raise RuntimeError("the script crashed")
"""


def _launch(tmp_path: Path, storage: str, job_id: str, script: str, args: list[str], *, inputs=(), output: SampleOutput | None = None) -> subprocess.CompletedProcess:
    """python /opt/plinth/job/plinth_launch.py SCRIPT ARGS, with the job's env (render/cluster.py)."""
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / LAUNCHER_FILE).write_text(LAUNCHER_SOURCE)
    (code / "script.py").write_text(script)
    env = {**os.environ, "PLINTH_STACK": STACK, "PLINTH_JOB_NAME": job_id.rsplit("-", 1)[0], "PLINTH_JOB_ID": job_id, "PLINTH_STORAGE": storage,
           "PLINTH_OUTPUT_DIR": f"{storage}/jobs/{job_id}/outputs", **launcher_env(list(inputs), output)}
    return subprocess.run([sys.executable, str(code / LAUNCHER_FILE), str(code / "script.py"), *args], env=env, capture_output=True, text=True, timeout=120)


def _output(storage: str, job_id: str) -> SampleOutput:
    table = table_location(storage, "ctr")
    return SampleOutput(table="ctr", location=table, dir=job_sample_dir(table, job_id), mode="overwrite", partition_by="split")


def test_a_succeeded_script_commits_its_version_once_and_a_failed_one_nothing(tmp_path: Path) -> None:
    storage = (tmp_path / "storage").as_uri()
    runs = tmp_path / "runs"
    output = _output(storage, "ctr-preprocess-aaaaa")

    done = _launch(tmp_path, storage, "ctr-preprocess-aaaaa", WRITER, ["--out", output.dir, "--runs", str(runs)], output=output)
    assert done.returncode == 0, done.stderr
    assert "committed sample table ctr version 0 (10 rows, sha256:" in done.stdout
    [version] = versions(output.location)
    assert (version.version, version.mode, version.rows, version.partition_by) == (0, "create", 10, ["split"])
    assert version.job == {"id": "ctr-preprocess-aaaaa", "name": "ctr-preprocess", "stack": STACK}
    assert runs.read_text().count("\n") == 1

    # A retried driver of the same job: its version stands, the script is not run again.
    again = _launch(tmp_path, storage, "ctr-preprocess-aaaaa", WRITER, ["--out", output.dir, "--runs", str(runs)], output=output)
    assert again.returncode == 0, again.stderr
    assert "job ctr-preprocess-aaaaa already committed sample table ctr version 0; not running it again" in again.stdout
    assert [v.version for v in versions(output.location)] == [0]
    assert runs.read_text().count("\n") == 1

    # Another submission whose script fails: its exit code, and no version.
    failed_output = _output(storage, "ctr-preprocess-bbbbb")
    failed = _launch(tmp_path, storage, "ctr-preprocess-bbbbb", WRITER, ["--out", failed_output.dir, "--runs", str(runs), "--fail", "3"], output=failed_output)
    assert failed.returncode == 3
    assert "committed" not in failed.stdout
    assert [v.version for v in versions(output.location)] == [0]
    assert runs.read_text().splitlines()[-1].endswith("--fail 3")  # the script saw its own argv


def test_latest_is_resolved_once_when_the_job_starts_and_recorded_beside_its_outputs(tmp_path: Path) -> None:
    storage = (tmp_path / "storage").as_uri()
    first = _output(storage, "ctr-preprocess-aaaaa")
    assert _launch(tmp_path, storage, "ctr-preprocess-aaaaa", WRITER, ["--out", first.dir, "--runs", str(tmp_path / "runs")], output=first).returncode == 0
    second = _output(storage, "ctr-preprocess-bbbbb")
    assert _launch(tmp_path, storage, "ctr-preprocess-bbbbb", WRITER, ["--out", second.dir, "--runs", str(tmp_path / "runs")], output=second).returncode == 0

    latest = version_location(first.location, None)
    inputs = [SampleInput(ref="ctr@latest", table="ctr", location=latest)]
    read = _launch(tmp_path, storage, "ctr-train-ccccc", READER, [latest], inputs=inputs)
    assert read.returncode == 0, read.stderr
    assert f"read version 1: 10 rows from {first.location}@v1" in read.stdout  # the script got the pinned location
    recorded = json.loads((tmp_path / "storage" / "jobs" / "ctr-train-ccccc" / "outputs" / "samples.json").read_text())
    newest = versions(first.location)[-1]
    assert recorded == [{"ref": "ctr@latest", "table": "ctr", "version": 1, "location": f"{first.location}@v1", "digest": newest.digest, "rows": 10}]

    # An exception in the script fails the job as `python script.py` would: exit 1, traceback.
    crashed = _launch(tmp_path, storage, "ctr-train-ddddd", READER, [latest, "--crash"], inputs=inputs)
    assert crashed.returncode == 1
    assert "RuntimeError: the script crashed" in crashed.stderr


def test_the_launcher_and_the_local_runner_record_the_same_commit(tmp_path: Path) -> None:
    """One commit path: the same files committed by a cluster job's launcher and by the local
    runner give the same version description (digest, rows, stats, columns, job fields)."""
    described = []
    for target in ("cluster", "local"):
        storage = str(tmp_path / target)
        output = _output(storage, "ctr-preprocess-aaaaa")
        for split, start in (("train", 0), ("eval", 100)):
            Path(output.dir, split).mkdir(parents=True)
            pq.write_table(pa.table({"x": pa.array(range(start, start + 5), pa.int64())}), f"{output.dir}/{split}/part-00000.parquet")
        job = {"id": "ctr-preprocess-aaaaa", "name": "ctr-preprocess", "stack": STACK}
        if target == "cluster":
            version, _ = commit_job_output(output, job)
        else:
            record = JobRecord(id=job["id"], name=job["name"], kind="spark", stack=STACK, status="Running", submitted="2026-11-30T00:00:00Z",
                               output_dir=f"{storage}/out", checkpoint_dir=f"{storage}/ckpt", sample_output=output)
            log = tmp_path / "log"
            assert commit_sample_output(record, log).sample_output.version == 0
            version = versions(output.location)[0]
        described.append(version.model_dump(exclude={"location", "created"}))
    assert described[0] == described[1]
