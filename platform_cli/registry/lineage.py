"""What a model version records about where it came from: the job, its data, its code."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from platform_cli.errors import PlinthError
from platform_cli.spec.job import load_job
from platform_cli.targets.base import JobRecord, JobStatus


def find_training_job(records: list[JobRecord], ref: str) -> JobRecord:
    """`ref` is a job id, or a job name meaning its newest successful submission."""
    by_id = [r for r in records if r.id == ref]
    if by_id:
        record = by_id[0]
    else:
        succeeded = [r for r in records if r.name == ref and r.status is JobStatus.SUCCEEDED]
        if not succeeded:
            raise PlinthError(f"no succeeded job with id or name {ref!r}", "see plinth job ls")
        record = succeeded[-1]
    if record.status is not JobStatus.SUCCEEDED:
        raise PlinthError(f"job {record.id} is {record.status.value}; only a succeeded job's model can be registered")
    return record


def job_outputs(record: JobRecord) -> tuple[Path, dict[str, float]]:
    """The model directory and metrics a training job wrote under its output directory."""
    output_dir = Path(record.output_dir)
    model_dir = output_dir / "model"
    if not (model_dir / "saved_model.pb").is_file():
        raise PlinthError(f"job {record.id} wrote no SavedModel to {model_dir}", "the training script must export to ${output_dir}/model")
    metrics_file = output_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    return model_dir, {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


def job_lineage(record: JobRecord, project_root: Path, storage_root: str) -> dict[str, str]:
    lineage = {"job_id": record.id, "job_name": record.name, "job_kind": record.kind, "stack": record.stack, "trained_at": str(record.finished)}
    if record.job_file and Path(record.job_file).is_file():
        job = load_job(record.job_file)
        lineage["job_file"] = str(Path(record.job_file).relative_to(project_root)) if Path(record.job_file).is_relative_to(project_root) else record.job_file
        lineage["script_sha256"] = hashlib.sha256(job.script_path.read_bytes()).hexdigest()[:16]
        lineage["args"] = " ".join(job.spec.args)
        # Inputs under the stack's storage, resolved: the exact data this version was trained on.
        data = [arg.replace("${storage}", storage_root) for arg in job.spec.args if arg.startswith("${storage}")]
        if data:
            lineage["data"] = ",".join(data)
    revision = _git_revision(project_root)
    if revision:
        lineage["code_revision"] = revision
    return lineage


def _git_revision(root: Path) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5).stdout
    return result.stdout.strip() + ("-dirty" if dirty.strip() else "")
