"""Registering a training job's model: its output directory read as a local path or a URI.

On a cluster stack a job's output_dir is an hdfs:// or s3:// URI. file:// takes the same road
here (pyarrow's filesystem layer, the _SUCCESS marker a staged export leaves), against a real
embedded MLflow registry; no HDFS or S3 exists on this machine.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from platform_cli import job_outputs, storage
from platform_cli.errors import PlinthError
from platform_cli.status import JobStatus
from platform_cli.targets.base import JobRecord


def write_training_outputs(output_dir: str, metrics: dict) -> None:
    """What a training script leaves under ${output_dir}: an export written whole, and metrics."""
    with storage.staged_dir(job_outputs.model_dir(output_dir)) as tmp:
        storage.write_bytes(storage.join(tmp, "saved_model.pb"), b"not really a graph")
        storage.write_bytes(storage.join(tmp, "variables", "variables.index"), b"\x00")
        storage.write_text(storage.join(tmp, "feature_spec.json"), '{"label": "clicked"}')
    storage.write_json(job_outputs.metrics_file(output_dir), metrics)


def finished_job(output_dir: str) -> JobRecord:
    moment = datetime(2026, 11, 30, tzinfo=timezone.utc)
    return JobRecord(id="ctr-train-b4k9z", name="ctr-train", kind="horovod", stack="team-feed", status=JobStatus.SUCCEEDED,
                     submitted=moment, finished=moment, output_dir=output_dir, checkpoint_dir=f"{output_dir}/../checkpoints",
                     data_inputs=["file:///data/ctr/features"], script_sha256="ab12")


@pytest.fixture
def registry(tmp_path: Path):
    from platform_cli.registry import ModelRegistry

    return ModelRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "artifacts"))


@pytest.mark.parametrize("as_uri", [True, False], ids=["file-uri", "plain-path"])
def test_register_finds_the_model_and_metrics_under_the_jobs_output_dir(tmp_path: Path, registry, as_uri: bool) -> None:
    from platform_cli.registry.lineage import register_job_model

    output_dir = f"file://{tmp_path}/jobs/ctr-train-b4k9z/outputs" if as_uri else str(tmp_path / "jobs" / "ctr-train-b4k9z" / "outputs")
    write_training_outputs(output_dir, {"auc": 0.71, "logloss": 0.45, "epochs": 4, "note": "text is not a metric"})

    version = register_job_model(registry, "ctr", finished_job(output_dir), tmp_path)

    assert (version.version, version.metrics) == (1, {"auc": 0.71, "logloss": 0.45, "epochs": 4.0})
    assert version.lineage["job_id"] == "ctr-train-b4k9z" and version.lineage["data"] == "file:///data/ctr/features"
    stored = registry.model_dir("ctr", 1)
    # the export as the script wrote it; the completeness marker is storage's, not the model's
    assert sorted(p.relative_to(stored).as_posix() for p in stored.rglob("*") if p.is_file()) == [
        "feature_spec.json", "saved_model.pb", "variables/variables.index"]


def test_a_uri_export_without_its_marker_is_a_half_written_model_and_is_refused(tmp_path: Path, registry) -> None:
    from platform_cli.registry.lineage import register_job_model

    output_dir = f"file://{tmp_path}/outputs"
    storage.write_bytes(storage.join(job_outputs.model_dir(output_dir), "saved_model.pb"), b"half")  # no staged_dir, no _SUCCESS

    with pytest.raises(PlinthError) as caught:
        register_job_model(registry, "ctr", finished_job(output_dir), tmp_path)
    assert str(caught.value).startswith(f"job ctr-train-b4k9z: file://{tmp_path}/outputs/model has no _SUCCESS marker")
    assert registry.list_models() == []


@pytest.mark.parametrize("as_uri", [True, False], ids=["file-uri", "plain-path"])
def test_a_job_without_a_savedmodel_is_refused_naming_where_it_looked(tmp_path: Path, registry, as_uri: bool) -> None:
    from platform_cli.registry.lineage import register_job_model

    output_dir = f"file://{tmp_path}/outputs" if as_uri else str(tmp_path / "outputs")
    storage.write_json(job_outputs.metrics_file(output_dir), {"auc": 0.5})

    with pytest.raises(PlinthError) as caught:
        register_job_model(registry, "ctr", finished_job(output_dir), tmp_path)
    assert caught.value.message == f"job ctr-train-b4k9z: no SavedModel in {job_outputs.model_dir(output_dir)}"
    assert caught.value.fix == "the training script must export to ${output_dir}/model"


@pytest.mark.parametrize("as_uri", [True, False], ids=["file-uri", "plain-path"])
def test_metrics_are_read_through_storage_and_bad_json_is_one_line(tmp_path: Path, as_uri: bool) -> None:
    output_dir = f"file://{tmp_path}/outputs" if as_uri else str(tmp_path / "outputs")
    assert job_outputs.read_metrics(output_dir) is None
    storage.write_json(job_outputs.metrics_file(output_dir), {"auc": 0.7})
    assert job_outputs.read_metrics(output_dir) == {"auc": 0.7}
    storage.write_text(job_outputs.metrics_file(output_dir), "{not json")
    with pytest.raises(PlinthError) as caught:
        job_outputs.read_metrics(output_dir)
    assert str(caught.value).startswith(f"{job_outputs.metrics_file(output_dir)} is not readable JSON (")
    assert "\n" not in str(caught.value)


def test_the_example_training_jobs_write_where_the_layout_says() -> None:
    from platform_cli.spec.job import load_job

    repo = Path(__file__).resolve().parents[2]
    for path in ("examples/ctr/train.job.yaml", "examples/ctr/train-ps.job.yaml", "examples/antispam/train.job.yaml"):
        args = load_job(repo / path).spec.args
        written = {args[i]: args[i + 1] for i in range(len(args) - 1) if args[i] in ("--export-dir", "--metrics-file")}
        assert written == {"--export-dir": job_outputs.model_dir("${output_dir}"), "--metrics-file": job_outputs.metrics_file("${output_dir}")}, path
