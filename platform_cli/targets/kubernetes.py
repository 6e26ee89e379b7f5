"""The Kubernetes target: applies rendered objects to the team's namespace and follows them there.

Plinth renders and submits; the operators the platform installed (Spark operator, mpi-operator,
training operator, the Job controller, Volcano or Kueue) run the job. Nothing is stored on this
machine: `ls`, `status`, `logs` and `cancel` find a job by its labels (render/cluster.py), so
they work from any shell and any machine with access to the namespace.

- submit: server-side apply of every object (ConfigMap first, workload last) with the field
  manager `plinth`; if the workload is refused, the objects applied before it are deleted.
- status/ls: the workload's own status, mapped to Pending/Running/Succeeded/Failed.
- logs: the main pod's log (Spark driver, MPI launcher, TF chief, the Job's pod).
- cancel: deletes the workload (its pods go with it) and its ConfigMap.

All calls go through the `kubernetes` client's typed APIs on one ApiClient, which tests replace
at its `call_api` boundary (tests/unit/test_kubernetes_target.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from platform_cli.errors import PlinthError
from platform_cli.lineage import file_sha256, source_revision
from platform_cli.render.cluster import LABEL_JOB_ID, LABEL_KIND, LABEL_ROLE, LABEL_TEAM, MAIN_ROLE
from platform_cli.render.job import job_paths
from platform_cli.targets.base import JobRecord, JobStatus, new_job_id

if TYPE_CHECKING:
    from platform_cli.render.job import RenderedJob
    from platform_cli.spec.job import LoadedJob
    from platform_cli.spec.stack import Stack

FIELD_MANAGER = "plinth"
APPLY_PATCH = "application/apply-patch+yaml"
POLL_SECONDS = 2.0

# Workload kinds Plinth renders: (group, version, plural); "" is the core/batch typed API.
CUSTOM_WORKLOADS = {
    "SparkApplication": ("sparkoperator.k8s.io", "v1beta2", "sparkapplications"),
    "MPIJob": ("kubeflow.org", "v2beta1", "mpijobs"),
    "TFJob": ("kubeflow.org", "v1", "tfjobs"),
}
# What to install when the API server does not know a kind.
OPERATORS = {"SparkApplication": "the Spark operator", "MPIJob": "mpi-operator", "TFJob": "the Kubeflow training operator"}
MAIN_CONTAINER = {"driver": "spark-kubernetes-driver", "launcher": "launcher", "chief": "tensorflow", "main": "main"}


def connect(stack: Stack):
    """An ApiClient for the stack's kubeconfig context (in-cluster credentials inside a pod)."""
    import os

    from kubernetes import client, config

    context = stack.config.kubernetes.context or provider_context(stack)
    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not context:
            config.load_incluster_config()
            return client.ApiClient()
        return config.new_client_from_config(context=context)
    except (config.ConfigException, OSError) as exc:
        where = f"context {context!r}" if context else "the current context"
        raise PlinthError(f"cannot use kubeconfig {where} for stack {stack.name!r}: {' '.join(str(exc).split())}", "check KUBECONFIG / ~/.kube/config, or set kubernetes:context in the stack file") from None


def provider_context(stack: Stack) -> str | None:
    """The stack file's `kubernetes:context` (what Pulumi's provider deploys to), so the CLI
    talks to the cluster `pulumi up` built unless plinth:kubernetes.context says otherwise."""
    import yaml

    document = yaml.safe_load(stack.file.read_text()) or {}
    context = (document.get("config") or {}).get("kubernetes:context")
    return str(context) if context else None


class KubernetesTarget:
    def __init__(self, stack: Stack, api_client=None):
        if stack.config.team is None:
            raise PlinthError(f"stack {stack.name!r} is a {stack.role} stack; jobs run on team stacks", "pass a team stack, e.g. --stack team-feed")
        self.stack = stack
        self.team = stack.config.team.name
        self.namespace = stack.config.team.namespace_name
        self._api_client = api_client

    # -- the client ------------------------------------------------------------------------

    @property
    def api(self):
        if self._api_client is None:
            self._api_client = connect(self.stack)
        return self._api_client

    def _apis(self):
        from kubernetes import client

        return client.CoreV1Api(self.api), client.BatchV1Api(self.api), client.CustomObjectsApi(self.api)

    def _call(self, what: str, function, *args, **kwargs):
        """One API call; failures become one-line PlinthErrors saying what was being done."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return function(*args, **kwargs)
        except ApiException as exc:
            raise PlinthError(f"{what}: {_api_reason(exc)}", _api_fix(exc, self)) from None
        except HTTPError as exc:
            raise PlinthError(f"{what}: cannot reach the Kubernetes API ({type(exc).__name__})", "check the cluster is up and the stack's kubernetes:context") from None

    # -- verbs -----------------------------------------------------------------------------

    def new_job_id(self, name: str) -> str:
        return new_job_id(name)

    def submit(self, job: LoadedJob, rendered: RenderedJob) -> JobRecord:
        applied = []
        try:
            for obj in rendered.documents:
                self._apply(obj)
                applied.append(obj)
        except PlinthError:
            for obj in reversed(applied):  # nothing half-submitted: take back what went in
                self._delete(obj, missing_ok=True)
            raise
        workload = rendered.documents[-1]
        return self._record(
            workload, submitted=_now(), job_file=str(job.file), args=rendered.args, data_inputs=rendered.data_inputs,
            script_sha256=file_sha256(job.script_path), code_revision=source_revision(job.base_dir) or "",
        )

    def restart(self, job_id: str) -> JobRecord:
        raise PlinthError(
            f"restart is not available on stack {self.stack.name!r}: on Kubernetes the operator restarts failed pods (the job's retries)",
            "submit the job again (it gets a new id, outputs and checkpoints)",
        )

    def status(self, job_id: str) -> JobRecord:
        return self._record(self._find(job_id))

    def list(self) -> list[JobRecord]:
        records = [self._record(obj) for obj in self._workloads(f"{LABEL_TEAM}={self.team}")]
        return sorted(records, key=lambda r: r.submitted)

    def pods(self) -> list[dict]:
        """Every pod of the team's Plinth jobs, as the API returns them (plain dicts): what
        usage is computed from (requests × run time)."""
        core, _, _ = self._apis()
        listing = self._call(f"listing pods in namespace {self.namespace}", core.list_namespaced_pod, self.namespace, label_selector="app.kubernetes.io/managed-by=plinth")
        return self.api.sanitize_for_serialization(listing)["items"]

    def logs(self, job_id: str, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        workload = self._find(job_id)
        role = MAIN_ROLE[workload["metadata"]["labels"][LABEL_KIND]]
        pod = self._main_pod(job_id, role, wait=follow)
        if pod is None:
            return
        core, _, _ = self._apis()
        kwargs = {"container": MAIN_CONTAINER[role], "follow": follow, "_preload_content": False}
        if tail is not None:
            kwargs["tail_lines"] = tail
        response = self._call(f"reading the log of pod {pod}", core.read_namespaced_pod_log, pod, self.namespace, **kwargs)
        try:
            pending = b""
            for chunk in response.stream(4096):
                pending += chunk
                cut = pending.rfind(b"\n") + 1  # whole lines only; the rest comes with the next chunk
                if cut:
                    yield pending[:cut].decode("utf-8", "replace")
                    pending = pending[cut:]
            if pending:
                yield pending.decode("utf-8", "replace")
        finally:
            response.release_conn()

    def cancel(self, job_id: str) -> JobRecord:
        workload = self._find(job_id)
        record = self._record(workload)
        if record.status.finished:
            return record
        self._delete(workload, missing_ok=True)
        core, _, _ = self._apis()
        self._call("deleting the job's ConfigMaps", core.delete_collection_namespaced_config_map, self.namespace, label_selector=f"{LABEL_JOB_ID}={job_id}")
        return record.model_copy(update={"status": JobStatus.CANCELLED, "finished": _now(), "message": "cancelled by user; its pods are being deleted"})

    def wait(self, job_id: str) -> JobRecord:
        while not (record := self.status(job_id)).status.finished:
            time.sleep(POLL_SECONDS)
        return record

    # -- internals -------------------------------------------------------------------------

    def _apply(self, obj: dict) -> None:
        core, batch, custom = self._apis()
        name, kind = obj["metadata"]["name"], obj["kind"]
        what = f"applying {kind} {self.namespace}/{name}"
        options = {"field_manager": FIELD_MANAGER, "force": True, "_content_type": APPLY_PATCH}
        if kind == "ConfigMap":
            self._call(what, core.patch_namespaced_config_map, name, self.namespace, obj, **options)
        elif kind == "Job":
            self._call(what, batch.patch_namespaced_job, name, self.namespace, obj, **options)
        else:
            group, version, plural = CUSTOM_WORKLOADS[kind]
            self._call(what, custom.patch_namespaced_custom_object, group, version, self.namespace, plural, name, obj, **options)

    def _delete(self, obj: dict, missing_ok: bool) -> None:
        from kubernetes.client.exceptions import ApiException

        core, batch, custom = self._apis()
        name, kind = obj["metadata"]["name"], obj["kind"]
        try:
            if kind == "ConfigMap":
                core.delete_namespaced_config_map(name, self.namespace)
            elif kind == "Job":
                batch.delete_namespaced_job(name, self.namespace, propagation_policy="Background")
            else:
                group, version, plural = CUSTOM_WORKLOADS[kind]
                custom.delete_namespaced_custom_object(group, version, self.namespace, plural, name, propagation_policy="Background")
        except ApiException as exc:
            if not (missing_ok and exc.status == 404):
                raise PlinthError(f"deleting {kind} {self.namespace}/{name}: {_api_reason(exc)}", _api_fix(exc, self)) from None

    def _workloads(self, selector: str) -> list[dict]:
        core, batch, custom = self._apis()
        found = []
        for kind, (group, version, plural) in CUSTOM_WORKLOADS.items():
            listing = self._call(f"listing {kind}s in namespace {self.namespace}", custom.list_namespaced_custom_object, group, version, self.namespace, plural, label_selector=selector)
            found += [{**item, "kind": kind} for item in listing.get("items", [])]
        # Only Plinth's own python Jobs: mpi-operator's launchers are batch Jobs too.
        jobs = self._call(f"listing Jobs in namespace {self.namespace}", batch.list_namespaced_job, self.namespace, label_selector=f"{selector},{LABEL_KIND}=python")
        found += [{**self.api.sanitize_for_serialization(item), "kind": "Job"} for item in jobs.items]
        return found

    def _find(self, job_id: str) -> dict:
        found = self._workloads(f"{LABEL_TEAM}={self.team},{LABEL_JOB_ID}={job_id}")
        if not found:
            raise PlinthError(f"job {job_id!r} not found in namespace {self.namespace!r} of stack {self.stack.name!r}", "plinth job ls --stack " + self.stack.name + " lists its jobs")
        return found[0]

    def _main_pod(self, job_id: str, role: str, wait: bool) -> str | None:
        """The newest pod of the job's main role; with `wait`, until it has started (or the job ended)."""
        core, _, _ = self._apis()
        while True:
            pods = self._call(f"listing the pods of job {job_id}", core.list_namespaced_pod, self.namespace, label_selector=f"{LABEL_JOB_ID}={job_id},{LABEL_ROLE}={role}")
            pods = sorted(pods.items, key=lambda p: p.metadata.creation_timestamp)
            if pods and (pods[-1].status.phase != "Pending" or not wait):
                return pods[-1].metadata.name
            if not wait:
                raise PlinthError(f"job {job_id} has no {role} pod yet", f"plinth job status {job_id} shows why; plinth job logs -f {job_id} waits for it")
            if self.status(job_id).status.finished:
                return pods[-1].metadata.name if pods else None
            time.sleep(POLL_SECONDS)

    def _record(self, workload: dict, submitted: datetime | None = None, **lineage) -> JobRecord:
        metadata = workload["metadata"]
        labels = metadata.get("labels") or {}
        job_id = labels.get(LABEL_JOB_ID, metadata["name"])
        status, started, finished, message, attempt = workload_status(workload)
        paths = job_paths(self.stack.storage_root, job_id)
        return JobRecord(
            id=job_id,
            name=labels.get("plinth.dev/job", metadata["name"]),
            kind=labels.get(LABEL_KIND, workload["kind"]),
            stack=self.stack.name,
            status=status,
            attempt=attempt,
            submitted=submitted or _parse_time(metadata.get("creationTimestamp")) or _now(),
            started=started,
            finished=finished,
            message=message,
            output_dir=paths["output_dir"],
            checkpoint_dir=paths["checkpoint_dir"],
            **lineage,
        )


# -- reading workload status ------------------------------------------------------------------

_SPARK_STATES = {
    "COMPLETED": JobStatus.SUCCEEDED,
    "FAILED": JobStatus.FAILED,
    "SUBMISSION_FAILED": JobStatus.FAILED,
    "RUNNING": JobStatus.RUNNING,
    "SUCCEEDING": JobStatus.RUNNING,
    "FAILING": JobStatus.RUNNING,
    "INVALIDATING": JobStatus.RUNNING,
}


def workload_status(obj: dict) -> tuple[JobStatus, datetime | None, datetime | None, str, int]:
    """(status, started, finished, message, attempt) from a workload's status as its operator writes it."""
    status = obj.get("status") or {}
    kind = obj["kind"]
    if kind == "SparkApplication":
        state = (status.get("applicationState") or {}).get("state") or ""
        result = _SPARK_STATES.get(state, JobStatus.PENDING)
        executors = status.get("executorState") or {}
        running = sum(1 for s in executors.values() if s == "RUNNING")
        message = (status.get("applicationState") or {}).get("errorMessage") or (f"{state.lower() or 'new'}; {running} executor(s) running" if not result.finished else "")
        return (result, _parse_time(status.get("lastSubmissionAttemptTime")), _parse_time(status.get("terminationTime")) if result.finished else None,
                message, max(1, int(status.get("submissionAttempts") or 1)))
    if kind == "Job":
        conditions = {c["type"]: c for c in status.get("conditions") or [] if c.get("status") == "True"}
        if "Complete" in conditions:
            result = JobStatus.SUCCEEDED
        elif "Failed" in conditions:
            result = JobStatus.FAILED
        elif status.get("active"):
            result = JobStatus.RUNNING
        else:
            result = JobStatus.PENDING
        failed = conditions.get("Failed", {}).get("message", "")
        message = failed or ("" if result.finished else f"{status.get('active', 0)} pod(s) active, {status.get('failed', 0)} failed")
        return result, _parse_time(status.get("startTime")), _parse_time(status.get("completionTime")) if result.finished else None, message, 1 + int(status.get("failed") or 0)
    # MPIJob and TFJob share the Kubeflow JobStatus: conditions plus replicaStatuses.
    conditions = [c for c in status.get("conditions") or [] if c.get("status") == "True"]
    latest = conditions[-1]["type"] if conditions else ""
    result = {"Succeeded": JobStatus.SUCCEEDED, "Failed": JobStatus.FAILED, "Running": JobStatus.RUNNING, "Restarting": JobStatus.RUNNING}.get(latest, JobStatus.PENDING)
    replicas = status.get("replicaStatuses") or {}
    progress = ", ".join(f"{name} {r.get('active', 0)} active" + (f" {r['failed']} failed" if r.get("failed") else "") for name, r in sorted(replicas.items()))
    message = conditions[-1].get("message", "") if result is JobStatus.FAILED else (progress if not result.finished else "")
    if not message and not result.finished:
        message = latest.lower() or "waiting for the operator"
    restarts = sum(1 for c in status.get("conditions") or [] if c.get("type") == "Restarting")
    return result, _parse_time(status.get("startTime")), _parse_time(status.get("completionTime")) if result.finished else None, message, 1 + restarts


def _parse_time(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _api_reason(exc) -> str:
    import json

    try:
        return " ".join(json.loads(exc.body)["message"].split())
    except (TypeError, ValueError, KeyError):
        return f"{exc.status} {exc.reason}"


def _api_fix(exc, target: KubernetesTarget) -> str | None:
    if exc.status in (401, 403):
        return f"check that your identity is in the team's group ({target.stack.config.team.group}) and the stack's kubernetes:context"
    if exc.status == 404 and "the server could not find the requested resource" in _api_reason(exc).lower():
        return "the cluster lacks this API: install its operator with the platform stack (" + ", ".join(OPERATORS.values()) + ")"
    if exc.status == 404:
        return f"does namespace {target.namespace!r} exist? pulumi up -s {target.stack.name} creates it"
    return None
