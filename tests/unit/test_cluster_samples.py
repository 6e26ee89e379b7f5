"""Sample tables on a cluster stack, as the CLI sees them: the launcher's pure parts, and what
`plinth job status` and `plinth model register` read back of the versions a cluster job resolved
and committed (the Kubernetes API through the stand-in at its HTTP boundary, the stack's storage
a real file:// directory holding real Delta tables)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from platform_cli import job_outputs, kube, storage
from platform_cli.errors import PlinthError
from platform_cli.main import app
from platform_cli.render.job import render_job
from platform_cli.samples import SampleInput, SampleOutput
from platform_cli.samples.launch import exit_status, is_main_replica, launcher_env, pin_latest
from platform_cli.samples.table import commit_job_output
from platform_cli.spec.job import load_job
from platform_cli.spec.stack import load_stack
from platform_cli.status import JobStatus
from platform_cli.targets.kubernetes import KubernetesTarget
from tests.conftest import REPO
from tests.kube_stand_in import Call, RecordingApiClient

PREPROCESS = REPO / "examples" / "ctr" / "preprocess.job.yaml"
TRAIN = REPO / "examples" / "ctr" / "train.job.yaml"
SPARK_DONE = {"applicationState": {"state": "COMPLETED"}, "lastSubmissionAttemptTime": "2026-11-23T17:00:05Z",
              "terminationTime": "2026-11-23T17:03:05Z", "submissionAttempts": 1}
MPI_DONE = {"conditions": [{"type": "Created", "status": "True"}, {"type": "Succeeded", "status": "True"}],
            "startTime": "2026-11-23T17:01:00Z", "completionTime": "2026-11-23T17:09:00Z"}


# -- the launcher's pure parts -------------------------------------------------------------


def test_only_a_tfjobs_chief_is_the_main_replica() -> None:
    assert is_main_replica({})  # Spark driver, MPI launcher, batch Job pod
    assert is_main_replica({"TF_CONFIG": json.dumps({"task": {"type": "chief", "index": 0}})})
    assert not is_main_replica({"TF_CONFIG": json.dumps({"task": {"type": "worker", "index": 0}})})
    assert not is_main_replica({"TF_CONFIG": json.dumps({"task": {"type": "ps", "index": 0}})})


def test_latest_locations_are_replaced_where_they_appear_and_nowhere_else() -> None:
    resolved = {"s3://b/samples/ctr@latest": "s3://b/samples/ctr@v7"}
    assert pin_latest(["--in=s3://b/samples/ctr@latest", "s3://b/samples/ctr-x@latest", "s3://b/samples/ctr@v3"], resolved) == [
        "--in=s3://b/samples/ctr@v7", "s3://b/samples/ctr-x@latest", "s3://b/samples/ctr@v3"]


def test_exit_status_is_what_the_interpreter_would_exit_with() -> None:
    assert (exit_status(None), exit_status(0), exit_status(3)) == (0, 0, 3)
    assert exit_status("error: no rows") == 1  # sys.exit("message"): printed, status 1


def test_a_job_without_sample_tables_tells_the_launcher_nothing() -> None:
    assert launcher_env([], None) == {}
    output = SampleOutput(table="ctr", location="s3://b/samples/ctr", dir="s3://b/samples/ctr/j", mode="append")
    env = launcher_env([SampleInput(ref="ctr@3", table="ctr", version=3, location="s3://b/samples/ctr@v3", digest="sha256:x")], output)
    assert json.loads(env["PLINTH_SAMPLE_INPUTS"]) == [{"ref": "ctr@3", "table": "ctr", "version": 3, "location": "s3://b/samples/ctr@v3"}]
    assert SampleOutput.model_validate_json(env["PLINTH_SAMPLE_OUTPUT"]) == output


# -- what the CLI reads back ---------------------------------------------------------------


@pytest.fixture
def file_storage(project: Path) -> str:
    """team-feed with its storage a file:// directory this machine reads (on a real cluster
    stack: hdfs:// or s3://, which the CLI reads where it has the client and the credentials)."""
    root = (project / "cluster-storage").as_uri()
    stack_file = project / "stacks" / "Pulumi.team-feed.yaml"
    stack_file.write_text(stack_file.read_text().replace("root: hdfs://hdfs-namenode.plinth-storage.svc:8020/teams/feed", f"root: {root}"))
    return root


def _serving(workloads: dict[str, list[dict]]):
    def respond(call: Call):
        if call.method == "GET" and not call.path.endswith(("/events", "/workloads")):
            selector = dict(part.split("=") for part in call.query["labelSelector"].split(","))
            items = [w for w in workloads.get(call.path.rsplit("/", 1)[1], []) if all(w["metadata"]["labels"].get(k) == v for k, v in selector.items())]
            return 200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": items}
        return 200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": []}
    return RecordingApiClient(respond)


def _as_applied(job_file: Path, job_id: str, status: dict) -> dict:
    """The workload as the API server returns it: what `plinth job submit` applied, with a status."""
    workload = render_job(load_job(job_file), load_stack("team-feed"), job_id=job_id).documents[-1]
    workload["metadata"]["creationTimestamp"] = "2026-11-23T17:00:00Z"
    return {**workload, "status": status}


def _write_version(output: SampleOutput) -> None:
    for split in ("train", "eval"):
        storage.write_bytes(storage.join(output.dir, split, "part-00000.parquet"), _parquet(range(5)))


def _parquet(values) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"x": pa.array(list(values), pa.int64())}), sink)
    return sink.getvalue().to_pybytes()


def test_status_names_the_version_a_succeeded_cluster_job_committed(file_storage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client = _serving({"sparkapplications": [_as_applied(PREPROCESS, "ctr-preprocess-bbbbb", SPARK_DONE)]})
    target = KubernetesTarget(load_stack("team-feed"), api_client=client)
    record = target.status("ctr-preprocess-bbbbb")
    assert record.status is JobStatus.SUCCEEDED
    assert record.sample_output.table == "ctr" and record.sample_output.version is None  # nothing committed (yet)

    # What the driver's launcher does when the script ends well.
    _write_version(record.sample_output)
    version, _ = commit_job_output(record.sample_output, {"id": "ctr-preprocess-bbbbb", "name": "ctr-preprocess", "stack": "team-feed"})
    record = target.status("ctr-preprocess-bbbbb")
    assert (record.sample_output.version, record.sample_output.digest) == (0, version.digest)

    monkeypatch.setattr(kube, "connect", lambda stack: client)
    shown = CliRunner().invoke(app, ["job", "status", "ctr-preprocess-bbbbb", "--stack", "team-feed"])
    assert shown.exit_code == 0, shown.output
    assert f"writes: samples ctr@0 ({version.digest})" in shown.output.splitlines()


def test_status_and_model_register_read_the_version_a_cluster_job_resolved(file_storage: str) -> None:
    client = _serving({"mpijobs": [_as_applied(TRAIN, "ctr-train-ccccc", MPI_DONE)]})
    target = KubernetesTarget(load_stack("team-feed"), api_client=client)
    before = target.status("ctr-train-ccccc")
    assert [(s.ref, s.version, s.digest) for s in before.samples] == [("ctr@latest", None, "")]  # no samples.json: as the job was told

    # What the launcher writes beside the job's outputs when it starts.
    resolved = SampleInput(ref="ctr@latest", table="ctr", version=4, location=f"{file_storage}/samples/ctr@v4", digest="sha256:abc", rows=10)
    storage.write_json(job_outputs.samples_file(before.output_dir), [resolved.model_dump(mode="json")])
    after = target.status("ctr-train-ccccc")
    assert after.samples == [resolved]
    assert job_outputs.read_samples(after.output_dir) == [resolved]  # what model register puts in the lineage


def test_status_says_so_when_this_machine_cannot_read_the_clusters_storage(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """team-feed's storage is HDFS, which this machine has no client for (no libhdfs)."""
    client = _serving({"sparkapplications": [_as_applied(PREPROCESS, "ctr-preprocess-bbbbb", SPARK_DONE)]})
    monkeypatch.setattr(kube, "connect", lambda stack: client)
    shown = CliRunner().invoke(app, ["job", "status", "ctr-preprocess-bbbbb", "--stack", "team-feed"])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert "writes: samples ctr (committed by the job; the version is not known here: plinth data versions ctr where the storage is readable)" in lines


def test_a_samples_file_that_is_not_a_list_of_versions_is_refused_naming_it(tmp_path: Path) -> None:
    assert job_outputs.read_samples(str(tmp_path)) == []  # the job recorded none
    (tmp_path / "samples.json").write_text('{"ref": "ctr@latest"}')
    with pytest.raises(PlinthError, match=f"{tmp_path}/samples.json is not a list of sample versions"):
        job_outputs.read_samples(str(tmp_path))


def test_the_launcher_ends_with_the_jobs_status_after_pythons_exit_handlers() -> None:
    """finish() runs the handlers a job registered (Spark's, MLflow's) and flushes what it
    printed before it ends the process, with the job's own exit status."""
    program = ("import atexit, sys\n"
               "from platform_cli.samples.launch import finish\n"
               "atexit.register(lambda: print('exit handler ran'))\n"
               "sys.stdout.write('the job printed this without a newline')\n"
               "finish(3)\n")
    ended = subprocess.run([sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert ended.returncode == 3
    assert ended.stdout == "the job printed this without a newlineexit handler ran\n"
