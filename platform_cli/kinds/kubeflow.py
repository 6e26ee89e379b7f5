"""What the Kubeflow operators' jobs (MPIJob, TFJob) share: their JobStatus, runPolicy and a
deciding replica whose end is the job's end."""

from __future__ import annotations

from typing import ClassVar

from platform_cli.kinds import JobKind, WorkloadStatus, parse_time
from platform_cli.status import JobStatus

_CONDITIONS = {"Succeeded": JobStatus.SUCCEEDED, "Failed": JobStatus.FAILED, "Running": JobStatus.RUNNING, "Restarting": JobStatus.RUNNING}


def kubeflow_status(workload: dict) -> WorkloadStatus:
    """Conditions say the state; replicaStatuses the progress; each Restarting an attempt."""
    status = workload.get("status") or {}
    conditions = [c for c in status.get("conditions") or [] if c.get("status") == "True"]
    latest = conditions[-1]["type"] if conditions else ""
    result = _CONDITIONS.get(latest, JobStatus.PENDING)
    replicas = status.get("replicaStatuses") or {}
    progress = ", ".join(f"{name} {r.get('active', 0)} active" + (f" {r['failed']} failed" if r.get("failed") else "") for name, r in sorted(replicas.items()))
    message = conditions[-1].get("message", "") if result is JobStatus.FAILED else (progress if not result.finished else "")
    if not message and not result.finished:
        message = latest.lower() or "waiting for the operator"
    restarts = sum(1 for c in status.get("conditions") or [] if c.get("type") == "Restarting")
    return WorkloadStatus(result, parse_time(status.get("startTime")), parse_time(status.get("completionTime")) if result.finished else None, message, 1 + restarts)


def with_backoff_limit(workload: dict, retries: int) -> dict:
    spec = workload["spec"]
    return {**workload, "spec": {**spec, "runPolicy": {**spec.get("runPolicy", {}), "backoffLimit": retries}}}


class KubeflowKind(JobKind):
    deciding_replica: ClassVar[str]  # the replica type whose end is the job's end

    def read_status(self, workload: dict) -> WorkloadStatus:
        return kubeflow_status(workload)

    def argo_conditions(self, workload: dict) -> tuple[str, str]:
        replica = f"status.replicaStatuses.{self.deciding_replica}"
        return f"{replica}.succeeded > 0", f"{replica}.failed > 0"

    def with_retries(self, workload: dict, retries: int) -> dict:
        return with_backoff_limit(workload, retries)
