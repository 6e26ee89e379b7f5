"""The target protocol and the job record every target reports."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, Field

from platform_cli.features.lag import StreamLag
from platform_cli.samples import SampleInput, SampleOutput
from platform_cli.status import JobStatus

if TYPE_CHECKING:
    from platform_cli.render.context import RenderedJob
    from platform_cli.spec.job import LoadedJob


class JobRecord(BaseModel):
    """What `plinth job status -o yaml` shows; persisted by the local target."""

    id: str
    name: str
    kind: str
    stack: str
    status: JobStatus
    attempt: int = 1
    submitted: datetime
    started: datetime | None = None
    finished: datetime | None = None
    exit_code: int | None = None
    message: str = ""
    output_dir: str
    checkpoint_dir: str
    # What ran, captured at submission for lineage (see platform_cli.registry.lineage).
    job_file: str = ""
    args: list[str] = []
    data_inputs: list[str] = []
    script_sha256: str = ""
    code_revision: str = ""
    samples: list[SampleInput] = []  # the sample table versions it reads
    sample_output: SampleOutput | None = None  # the one it writes (version set once committed)
    # Streaming jobs while they run: read live, never stored in the record.
    lag: StreamLag | None = Field(None, exclude_if=lambda lag: lag is None)


class Target(Protocol):
    """Lifecycle verbs of a place that runs jobs."""

    def submit(self, job: LoadedJob, rendered: RenderedJob) -> JobRecord: ...
    def restart(self, job_id: str) -> JobRecord: ...
    def status(self, job_id: str) -> JobRecord: ...
    def list(self) -> list[JobRecord]: ...
    def logs(self, job_id: str, follow: bool = False, tail: int | None = None) -> Iterator[str]: ...
    def cancel(self, job_id: str) -> JobRecord: ...
    def wait(self, job_id: str) -> JobRecord: ...


WATCH_POLL_SECONDS = 2.0


def watch(target: Target, job_id: str, poll: float | None = None) -> Iterator[JobRecord]:
    """The job's record each time its status or progress message changes, until it ends."""
    last = None
    while True:
        record = target.status(job_id)
        if (record.status, record.message) != last:
            last = (record.status, record.message)
            yield record
        if record.status.finished:
            return
        time.sleep(WATCH_POLL_SECONDS if poll is None else poll)
