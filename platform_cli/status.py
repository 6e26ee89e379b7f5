"""The states of everything Plinth runs: jobs, flow runs and the steps of a flow run.

StrEnums, so records store and print the plain word ("Succeeded") and compare equal to it,
while code names each state once and asks the state what it means (`finished`, `done`)
instead of keeping its own list of words.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


# A flow run goes through the same states as a job, and means the same by `finished`.
FlowRunStatus = JobStatus


class StepStatus(StrEnum):
    PENDING = "Pending"  # also between the attempts of a step that retries
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"  # its `when:` was false
    OMITTED = "Omitted"  # something it waits for failed, was cancelled or was itself omitted
    CANCELLED = "Cancelled"

    @property
    def done(self) -> bool:
        """Steps that wait for this one may start: it succeeded, or had nothing to do."""
        return self in (StepStatus.SUCCEEDED, StepStatus.SKIPPED)

    @property
    def dead(self) -> bool:
        """Steps that wait for this one can never run."""
        return self in (StepStatus.FAILED, StepStatus.CANCELLED, StepStatus.OMITTED)

    @property
    def finished(self) -> bool:
        return self.done or self.dead
