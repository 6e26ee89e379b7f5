"""A single Python process (data generation, evaluation, glue steps): a process locally, a
batch/v1 Job on Kubernetes."""

from __future__ import annotations

from typing import Literal

from platform_cli.kinds import JobKind, PodGroup, WorkloadStatus, cpu_quantity, parse_time
from platform_cli.kube import Resource
from platform_cli.spec.job import JobSpecBase
from platform_cli.status import JobStatus

DEFAULT_BACKOFF_LIMIT = 6  # the Job controller's own default


class PythonJobSpec(JobSpecBase):
    kind: Literal["python"]
    workers: Literal[1] = 1


class PythonKind(JobKind):
    name = "python"
    spec = PythonJobSpec
    workload = Resource("batch/v1", "Job")
    engine = "the Job controller"
    main_role, main_container = "main", "main"
    compute_roles = ("main",)

    def pod_groups(self, spec: PythonJobSpec) -> list[PodGroup]:
        return [PodGroup("main", 1, cpu_quantity(spec.resources.cpu), spec.resources.memory, spec.resources.gpu)]

    def read_status(self, workload: dict) -> WorkloadStatus:
        status = workload.get("status") or {}
        conditions = {c["type"]: c for c in status.get("conditions") or [] if c.get("status") == "True"}
        if "Complete" in conditions:
            result = JobStatus.SUCCEEDED
        elif "Failed" in conditions:
            result = JobStatus.FAILED
        elif status.get("ready"):
            result = JobStatus.RUNNING
        else:
            # An active pod that is not ready has not started: typically no node was given it yet
            # (a batch scheduler holds it for the team's share, or the cluster is full).
            result = JobStatus.PENDING
        failed = conditions.get("Failed", {}).get("message", "")
        message = failed or ("" if result.finished else f"{status.get('active', 0)} pod(s) active, {status.get('ready', 0)} ready, {status.get('failed', 0)} failed")
        return WorkloadStatus(result, parse_time(status.get("startTime")), parse_time(status.get("completionTime")) if result.finished else None, message, 1 + int(status.get("failed") or 0))

    def argo_conditions(self, workload: dict) -> tuple[str, str]:
        return "status.succeeded > 0", f"status.failed > {workload['spec'].get('backoffLimit', DEFAULT_BACKOFF_LIMIT)}"

    def with_retries(self, workload: dict, retries: int) -> dict:
        return {**workload, "spec": {**workload["spec"], "backoffLimit": retries}}


KIND = PythonKind()
