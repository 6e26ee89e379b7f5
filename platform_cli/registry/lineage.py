"""Where a model version came from: the job that trained it, its data and its code.

What a job ran is captured when it is submitted (script hash, source revision, resolved data
paths) and kept in its record, so registering a model later describes what was trained, not
whatever the job file and checkout look like by then.
"""

from __future__ import annotations

import hashlib
import subprocess
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from platform_cli import job_outputs
from platform_cli.errors import PlinthError
from platform_cli.status import JobStatus
from platform_cli.targets.base import JobRecord

if TYPE_CHECKING:  # MLflow: the targets import this module for file_sha256 and source_revision
    from platform_cli.registry.library import ModelRegistry, ModelVersion


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def source_revision(directory: Path) -> str | None:
    """The git commit of `directory` (`-dirty` when tracked files are modified), if it is a checkout."""
    try:
        head = subprocess.run(["git", "-C", str(directory), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        status = subprocess.run(["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


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


def register_job_model(registry: ModelRegistry, name: str, record: JobRecord, project_root: Path) -> ModelVersion:
    """Register the model `record`'s job exported (see platform_cli.job_outputs: a local path or
    a URI) as the next version of `name`, with the job's numeric metrics and its lineage."""
    with ExitStack() as cleanup:
        try:
            metrics = job_outputs.numeric(job_outputs.read_metrics(record.output_dir) or {})
            model_dir = cleanup.enter_context(job_outputs.local_model_dir(record.output_dir))
            # A cluster job resolved its `@latest` when it started and recorded the versions beside its outputs.
            record = record.model_copy(update={"samples": job_outputs.read_samples(record.output_dir) or record.samples})
        except PlinthError as error:
            raise PlinthError(f"job {record.id}: {error.message}", error.fix) from None
        return registry.register(name, model_dir, metrics, job_lineage(record, project_root), datasets=record.samples)


def job_lineage(record: JobRecord, project_root: Path) -> dict[str, str]:
    """Lineage tags for a version trained by `record`'s job, from what the job ran."""
    lineage = {"job_id": record.id, "job_name": record.name, "job_kind": record.kind, "stack": record.stack, "trained_at": str(record.finished)}
    if record.job_file:
        job_file = Path(record.job_file)
        lineage["job_file"] = str(job_file.relative_to(project_root)) if job_file.is_relative_to(project_root) else str(job_file)
    optional = {"script_sha256": record.script_sha256, "code_revision": record.code_revision, "data": ",".join(record.data_inputs), "args": " ".join(record.args),
                # The exact sample table versions it read (ctr@3) and their content digests.
                "samples": ",".join(s.pinned for s in record.samples), "samples_digest": ",".join(s.digest for s in record.samples if s.digest)}
    lineage.update({key: value for key, value in optional.items() if value})
    return lineage
