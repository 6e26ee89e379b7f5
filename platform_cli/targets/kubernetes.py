"""The Kubernetes target: applies rendered objects to the team's namespace and follows them there.

Plinth renders and submits; the engines the platform installed (each job kind names its own:
Spark operator, mpi-operator, training operator, the Job controller; Volcano or Kueue) run the
job. Nothing is stored on this machine: `ls`, `status`, `logs` and `cancel` find a job by its
labels (render/cluster.py), so they work from any shell and any machine with access to the
namespace.

- submit: server-side apply of every object (ConfigMap first, workload last) with the field
  manager `plinth`; if the workload is refused, the objects applied before it are deleted.
- status/ls: the workload's own status, read by its kind (platform_cli/kinds); for a running
  stream, also its lag as its driver publishes it on its own pod (features/lag.py). `status` of a
  job that reads or writes sample tables and has finished also reads, where this machine reaches
  the stack's storage, the versions the job recorded reading (output_dir/samples.json) and the
  version it committed (platform_cli.samples.launch); where it does not, it says so.
- logs: the log of the kind's main pod (Spark driver, MPI launcher, TF chief, the Job's pod).
- cancel: deletes the workload (its pods go with it) and its ConfigMap.

Flows go to the same namespace as Argo Workflows (`submit_workflow`). Every call goes through
platform_cli.kube, whose one ApiClient tests replace at its `call_api` boundary.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from platform_cli.errors import PlinthError
from platform_cli.kinds import all_kinds, job_kind, parse_time
from platform_cli.kube import CONFIG_MAP, EVENT, KUEUE_JOB_UID_LABEL, KUEUE_WORKLOAD, POD, KubeClient, Resource
from platform_cli.registry.lineage import file_sha256, source_revision
from platform_cli.render.cluster import ANNOTATION_SAMPLE_INPUTS, ANNOTATION_SAMPLE_OUTPUT, KUEUE_QUEUE_LABEL, LABEL_JOB, LABEL_JOB_ID, LABEL_KIND, LABEL_ROLE, LABEL_TEAM
from platform_cli.render.context import job_paths
from platform_cli.runs import new_id
from platform_cli.samples import SampleInput, SampleOutput
from platform_cli.status import JobStatus
from platform_cli.targets import TargetInfo, Unsupported
from platform_cli.targets.base import JobRecord

if TYPE_CHECKING:
    from platform_cli.features.lag import StreamLag
    from platform_cli.render.context import RenderedJob
    from platform_cli.spec.job import LoadedJob
    from platform_cli.spec.stack import Stack

TARGET = TargetInfo(
    name="kubernetes",
    runner="platform_cli.targets.kubernetes:KubernetesTarget",
    renderers={"*": "platform_cli.render.cluster:render_cluster_job"},
    preview_id_suffix="xxxxx",
    serving="kserve",
    workflow_submitter="platform_cli.targets.kubernetes:submit_workflow",
    unsupported={
        "flow run": Unsupported("flows on a cluster run on Argo Workflows", "plinth flow submit -f FLOW --stack {stack}"),
        "job restart": Unsupported("on Kubernetes the operator restarts failed pods (the job's retries)", "submit the job again (it gets a new id, outputs and checkpoints)"),
    },
)

POLL_SECONDS = 2.0


def submit_workflow(stack: Stack, objects: list[dict], api_client=None) -> list[str]:
    """Create rendered Argo Workflows/CronWorkflows in the team's namespace. Returns one line
    per object created, as kubectl prints them."""
    kube = KubeClient.for_stack(stack, api_client)
    lines = []
    for obj in objects:
        created = kube.create(obj)
        lines.append(f"{obj['kind'].lower()}/{created['metadata']['name']} created in namespace {obj['metadata']['namespace']}")
    return lines


class KubernetesTarget:
    def __init__(self, stack: Stack, api_client=None):
        if stack.config.team is None:
            raise PlinthError(f"stack {stack.name!r} is a {stack.role} stack; jobs run on team stacks", "pass a team stack, e.g. --stack team-feed")
        self.stack = stack
        self.team = stack.config.team.name
        self.namespace = stack.config.team.namespace_name
        self._api_client = api_client
        self._kube: KubeClient | None = None

    @property
    def kube(self) -> KubeClient:
        """Connected on first use, so render-only commands never read a kubeconfig."""
        if self._kube is None:
            self._kube = KubeClient.for_stack(self.stack, self._api_client)
        return self._kube

    # -- verbs -----------------------------------------------------------------------------

    def new_job_id(self, name: str) -> str:
        return new_id(name)

    def submit(self, job: LoadedJob, rendered: RenderedJob) -> JobRecord:
        applied = []
        try:
            for obj in rendered.documents:
                self.kube.apply(obj)
                applied.append(obj)
        except PlinthError:
            for obj in reversed(applied):  # nothing half-submitted: take back what went in
                self.kube.delete(Resource.of(obj), self.namespace, obj["metadata"]["name"])
            raise
        workload = rendered.documents[-1]
        return self._record(
            workload, submitted=_now(), job_file=str(job.file), args=rendered.args, data_inputs=rendered.data_inputs,
            script_sha256=file_sha256(job.script_path), code_revision=source_revision(job.base_dir) or "",
        )

    def restart(self, job_id: str) -> JobRecord:
        from platform_cli.targets import require

        require(self.stack, "job restart")  # TARGET declares it unsupported: this raises
        raise NotImplementedError

    def status(self, job_id: str) -> JobRecord:
        workload = self._find(job_id)
        record = self._record(workload)
        if record.status is JobStatus.PENDING and (reason := self._refusal(workload) or self._queued(workload)):
            record = record.model_copy(update={"message": reason})
        if record.status is JobStatus.RUNNING and (lag := self._lag(job_id, job_kind(record.kind))) is not None:
            record = record.model_copy(update={"lag": lag})
        if (record.samples or record.sample_output) and record.status.finished:
            record = self._with_samples(record)  # once, at the end: the storage may be slow to answer or out of reach
        return record

    def list(self) -> list[JobRecord]:
        records = [self._record(obj) for obj in self._workloads(f"{LABEL_TEAM}={self.team}")]
        return sorted(records, key=lambda r: r.submitted)

    def pods(self) -> list[dict]:
        """Every pod of the team's Plinth jobs, as the API returns them (plain dicts): what
        usage is computed from (requests × run time)."""
        return self.kube.list(POD, self.namespace, "app.kubernetes.io/managed-by=plinth")

    def logs(self, job_id: str, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        kind = job_kind(self._find(job_id)["metadata"]["labels"][LABEL_KIND])
        pod = self._main_pod(job_id, kind.main_role, wait=follow)
        if pod is None:
            return
        # Following ends when the job does, even if the node keeps the stream open.
        yield from self.kube.pod_log(self.namespace, pod, kind.main_container, follow=follow, tail=tail,
                                     until=lambda: self.status(job_id).status.finished, poll=POLL_SECONDS)

    def cancel(self, job_id: str) -> JobRecord:
        workload = self._find(job_id)
        record = self._record(workload)
        if record.status.finished:
            return record
        self.kube.delete(Resource.of(workload), self.namespace, workload["metadata"]["name"])
        self.kube.delete_collection(CONFIG_MAP, self.namespace, f"{LABEL_JOB_ID}={job_id}")
        return record.model_copy(update={"status": JobStatus.CANCELLED, "finished": _now(), "message": "cancelled by user; its pods are being deleted"})

    def wait(self, job_id: str) -> JobRecord:
        while not (record := self.status(job_id)).status.finished:
            time.sleep(POLL_SECONDS)
        return record

    # -- internals -------------------------------------------------------------------------

    def _workloads(self, selector: str) -> list[dict]:
        """The team's workloads of every kind; each kind's own label keeps out look-alikes
        (mpi-operator's launchers are batch Jobs too)."""
        found = []
        for kind in all_kinds():
            found += self.kube.list(kind.workload, self.namespace, f"{selector},{LABEL_KIND}={kind.name}")
        return found

    def _find(self, job_id: str) -> dict:
        found = self._workloads(f"{LABEL_TEAM}={self.team},{LABEL_JOB_ID}={job_id}")
        if not found:
            raise PlinthError(f"job {job_id!r} not found in namespace {self.namespace!r} of stack {self.stack.name!r}", "plinth job ls --stack " + self.stack.name + " lists its jobs")
        return found[0]

    def _refusal(self, workload: dict) -> str | None:
        """Why the engine cannot create the job's pods, if it says so: its latest FailedCreate
        event (e.g. the API server refusing the pods over the team's ResourceQuota)."""
        uid = workload["metadata"].get("uid")
        if not uid:
            return None
        events = self.kube.list(EVENT, self.namespace, field_selector=f"involvedObject.uid={uid},reason=FailedCreate")
        if not events:
            return None
        latest = max(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        return f"{latest.get('reason')}: {' '.join(str(latest.get('message', '')).split())}"

    def _queued(self, workload: dict) -> str | None:
        """Why Kueue has not admitted the job yet, from the Workload it made of it: no quota left
        in the team's queue (and, if it ran before, that it was preempted)."""
        queue = (workload["metadata"].get("labels") or {}).get(KUEUE_QUEUE_LABEL)
        uid = workload["metadata"].get("uid")
        if not queue or not uid:
            return None
        found = self.kube.list(KUEUE_WORKLOAD, self.namespace, f"{KUEUE_JOB_UID_LABEL}={uid}")
        if not found:
            return f"queued in {queue}: not yet seen by Kueue"
        conditions = {c["type"]: c for c in found[0].get("status", {}).get("conditions") or []}
        reserved = conditions.get("QuotaReserved", {})
        if reserved.get("status") == "True":
            return None
        reason = f"queued in {queue}: {reserved.get('message') or 'waiting for quota'}"
        if conditions.get("Preempted", {}).get("status") == "True":
            reason += f" (preempted earlier: {conditions['Preempted'].get('reason')})"
        return reason

    def _lag(self, job_id: str, kind) -> StreamLag | None:
        """What the newest pod of the job's main role (a restarted driver replaces the old one) says of its lag."""
        if not kind.runs_until_cancelled:
            return None
        pods = self._role_pods(job_id, kind.main_role)
        return kind.pod_lag(pods[-1]) if pods else None

    def _role_pods(self, job_id: str, role: str) -> list[dict]:
        """The job's pods of `role`, oldest first (a restarted driver's pod replaces the old one)."""
        pods = self.kube.list(POD, self.namespace, f"{LABEL_JOB_ID}={job_id},{LABEL_ROLE}={role}")
        return sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"])

    def _main_pod(self, job_id: str, role: str, wait: bool) -> str | None:
        """The newest pod of the job's main role; with `wait`, until it has started (or the job ended)."""
        while True:
            pods = self._role_pods(job_id, role)
            if pods and ((pods[-1].get("status") or {}).get("phase") != "Pending" or not wait):
                return pods[-1]["metadata"]["name"]
            if not wait:
                raise PlinthError(f"job {job_id} has no {role} pod yet", f"plinth job status {job_id} shows why; plinth job logs -f {job_id} waits for it")
            if self.status(job_id).status.finished:
                return pods[-1]["metadata"]["name"] if pods else None
            time.sleep(POLL_SECONDS)

    def _with_samples(self, record: JobRecord) -> JobRecord:
        """The finished job's record with what it wrote about sample tables into the stack's
        storage: the versions it read and, if it succeeded, the version it committed."""
        from platform_cli import job_outputs

        try:
            update: dict = {"samples": job_outputs.read_samples(record.output_dir) or record.samples}
            if record.sample_output is not None and record.status is JobStatus.SUCCEEDED:
                from platform_cli.samples.table import committed_by

                if (version := committed_by(record.sample_output.location, record.id)) is not None:
                    update["sample_output"] = record.sample_output.model_copy(update={"version": version.version, "digest": version.digest})
        except (PlinthError, OSError):
            return record  # this machine cannot read the stack's storage: `plinth job status` says what it does not know
        return record.model_copy(update=update)

    def _record(self, workload: dict, submitted: datetime | None = None, **lineage) -> JobRecord:
        metadata = workload["metadata"]
        labels = metadata.get("labels") or {}
        job_id = labels.get(LABEL_JOB_ID, metadata["name"])
        kind = job_kind(labels[LABEL_KIND])
        state = kind.read_status(workload)
        paths = job_paths(self.stack.storage_root, job_id)
        annotations = metadata.get("annotations") or {}
        sample_inputs, sample_output = annotations.get(ANNOTATION_SAMPLE_INPUTS), annotations.get(ANNOTATION_SAMPLE_OUTPUT)
        return JobRecord(
            id=job_id,
            name=labels.get(LABEL_JOB, metadata["name"]),
            kind=kind.name,
            stack=self.stack.name,
            status=state.status,
            attempt=state.attempt,
            submitted=submitted or parse_time(metadata.get("creationTimestamp")) or _now(),
            started=state.started,
            finished=state.finished,
            message=state.message,
            output_dir=paths["output_dir"],
            checkpoint_dir=paths["checkpoint_dir"],
            # As the job was told them (`@latest` unresolved) until status reads what it resolved.
            samples=[SampleInput.model_validate(i) for i in json.loads(sample_inputs)] if sample_inputs else [],
            sample_output=SampleOutput.model_validate_json(sample_output) if sample_output else None,
            **lineage,
        )


def _now() -> datetime:
    return datetime.now(timezone.utc)
