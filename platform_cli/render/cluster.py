"""Render a job for a team's Kubernetes cluster: pure, validated, nothing sent.

    render_cluster_job(job, stack, job_id) -> RenderedJob: [ConfigMap (the job's code), workload]

Each job kind (platform_cli/kinds) says which workload it becomes and what engine runs it:
spark a SparkApplication, horovod an MPIJob, tf-ps a TFJob, python a batch/v1 Job.

Decisions common to every kind (placement, quota, names, storage wiring) are made here, from
the job spec, the team stack and its platform stack; the kind adds its own values and
templates/<kind>/kubernetes.yaml.j2 only lays them out, every value through `| quote`. Every
object carries the labels in `job_labels`, so the Kubernetes target and Argo find the job again.

What the team namespace must already hold (the platform/team stacks create them): the queue
named after the team (Volcano Queue or Kueue LocalQueue), the priority classes, and the objects
named in platform_cli/spec/team_objects.py: the jobs' service account (every pod runs as it;
Spark drivers create their executors with it), and either the HDFS client ConfigMap or the
storage-credentials Secret. Credentials are only ever referenced by name.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

import yaml

from platform_cli.errors import PlinthError
from platform_cli.kinds import JobKind, PodGroup, job_kind
from platform_cli.render.context import (RenderedJob, data_inputs, in_job_file, job_variables, plinth_env, sample_inputs, sample_output,
                                         substituted_args, substituted_env)
from platform_cli.render.engine import render_template
from platform_cli.render.validate import validate_objects
from platform_cli.samples.launch import INPUTS_ENV, LAUNCHER_FILE, LAUNCHER_SOURCE, OUTPUT_ENV, launcher_env
from platform_cli.spec.team_objects import HDFS_CONFIG_MAP, JOBS_SERVICE_ACCOUNT, STORAGE_SECRET

if TYPE_CHECKING:
    from platform_cli.samples import SampleInput, SampleRef
    from platform_cli.spec.job import LoadedJob
    from platform_cli.spec.stack import GpuPoolConfig, PlatformStorageConfig, Stack

# Labels every object of a submission carries; `plinth job ls/status/logs/cancel` select on them.
LABEL_JOB_ID = "plinth.dev/job-id"
LABEL_JOB = "plinth.dev/job"
LABEL_TEAM = "plinth.dev/team"
LABEL_KIND = "plinth.dev/kind"
LABEL_ROLE = "plinth.dev/role"  # on pods: the role of its pod group (driver, executor, launcher, worker, ...)
# On the workload of a job that reads or writes sample tables: what the launcher is told (JSON,
# platform_cli.samples.launch), which `plinth job status` reads back to find the versions.
ANNOTATION_SAMPLE_INPUTS = "plinth.dev/sample-inputs"
ANNOTATION_SAMPLE_OUTPUT = "plinth.dev/sample-output"

# Names of what the platform puts in every team namespace (see the module docstring).
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
VOLCANO_QUEUE_ANNOTATION = "scheduling.volcano.sh/queue-name"

CODE_DIR = "/opt/plinth/job"  # the job's script(s), mounted read-only from its ConfigMap
HADOOP_CONF_DIR = "/etc/hadoop/conf"
# A ConfigMap holds at most 1 MiB; leave room for its metadata.
MAX_CODE_BYTES = 900 * 1024
# Finished workloads (and their pods' logs) stay a week, then the operator removes them.
TTL_SECONDS_AFTER_FINISHED = 7 * 24 * 3600
RETRY_INTERVAL_SECONDS = 30
# Per-replica Services and pod hostnames are DNS labels.
DNS_LABEL_MAX = 63


def pod_groups(job: LoadedJob) -> list[PodGroup]:
    """Every pod a job asks for: the basis of quota preflight and of the rendered sizes."""
    return job_kind(job.spec.kind).pod_groups(job.spec)


# -- preflight -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where and how a job's pods are scheduled: decided once, from the stacks."""

    namespace: str
    team: str
    scheduler: str  # volcano | kueue
    queue: str
    priority_class: str
    storage: PlatformStorageConfig
    pool: GpuPoolConfig | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict] = field(default_factory=list)


def preflight(job: LoadedJob, stack: Stack) -> Placement:
    """Refuse, before anything is sent, a job the team's stack cannot run; one line naming the limit."""
    team = stack.config.team
    if team is None:
        raise PlinthError(f"stack {stack.name!r} is a {stack.role} stack; jobs run on team stacks", "pass a team stack, e.g. --stack team-feed")
    platform_stack = stack.platform_stack()
    platform = platform_stack.config.platform
    spec = job.spec
    stack_file = f"stacks/{stack.file.name}"

    pool = None
    if spec.pool is not None:
        pool = platform.pool(spec.pool)
        known = ", ".join(p.name for p in platform.gpu_pools) or "none"
        if pool is None:
            raise PlinthError(f"pool: {spec.pool!r} is not a GPU pool of platform stack {platform_stack.name!r}", f"use one of: {known}")
        if team.gpu_pools and pool.name not in team.gpu_pools:
            raise PlinthError(f"pool: {pool.name!r} is not open to team {team.name!r} (plinth:team.gpuPools: {', '.join(team.gpu_pools)})", f"use one of those pools or add it in {stack_file}")
    if spec.resources.gpu > 0:
        if pool is None:
            allowed = ", ".join(team.gpu_pools or [p.name for p in platform.gpu_pools]) or "none"
            raise PlinthError(f"resources.gpu: {spec.resources.gpu} per worker needs a GPU pool", f"set pool: to one of: {allowed}")
        if spec.resources.gpu > pool.gpus_per_node:
            raise PlinthError(
                f"resources.gpu: {spec.resources.gpu} per worker exceeds the {pool.gpus_per_node} GPUs per node of pool {pool.name!r}",
                f"ask for at most {pool.gpus_per_node} per worker and add workers",
            )
        gpus = sum(g.count * g.gpu for g in pod_groups(job))
        if gpus > pool.max_gpus:
            raise PlinthError(
                f"the job needs {gpus} GPUs, more than pool {pool.name!r} can ever have ({pool.max_nodes} nodes × {pool.gpus_per_node})",
                "lower workers or resources.gpu",
            )

    classes = [c.name for c in platform.scheduler.priority_classes]
    priority_class = spec.priority_class or team.queue.priority_class
    if priority_class not in classes:
        where = "priorityClass" if spec.priority_class else f"plinth:team.queue.priorityClass in {stack_file}"
        raise PlinthError(f"{where}: {priority_class!r} is not a priority class of platform stack {platform_stack.name!r}", f"use one of: {', '.join(classes)}")

    _check_quota(job, team.quota, team.name, stack_file)

    node_selector, tolerations = {}, []
    if pool is not None:
        node_selector = dict(sorted(pool.node_labels.items()))
        tolerations = [{"key": t.key, "operator": "Equal", "value": t.value, "effect": t.effect} for t in pool.taints]
    return Placement(
        namespace=team.namespace_name,
        team=team.name,
        scheduler=platform.scheduler.kind,
        queue=team.name,  # the platform creates one queue per team, named after it
        priority_class=priority_class,
        storage=platform.storage,
        pool=pool,
        node_selector=node_selector,
        tolerations=tolerations,
    )


def _check_quota(job: LoadedJob, quota, team: str, stack_file: str) -> None:
    groups = pod_groups(job)
    totals = {
        "cpu": sum(g.count * parse_quantity(g.cpu) for g in groups),
        "memory": sum(g.count * parse_quantity(g.memory) for g in groups),
        "gpu": Decimal(sum(g.count * g.gpu for g in groups)),
    }
    limits = {"cpu": parse_quantity(quota.cpu), "memory": parse_quantity(quota.memory), "gpu": Decimal(quota.gpu)}
    for resource, total in totals.items():
        if total > limits[resource]:
            shown = {"cpu": _format_cpu, "memory": _format_bytes, "gpu": lambda v: str(int(v))}[resource]
            pods = " + ".join(f"{g.count} {g.role}{'s' if g.count > 1 else ''}" for g in groups)
            raise PlinthError(
                f"the job requests {shown(total)} {resource} in total ({pods}), over the {shown(limits[resource])} of team {team}'s quota (plinth:team.quota.{resource} in {stack_file})",
                "lower workers or resources, or raise the quota",
            )


_SUFFIXES = {"m": Decimal("0.001"), "": Decimal(1), "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12),
             "P": Decimal(10**15), "E": Decimal(10**18), "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30),
             "Ti": Decimal(2**40), "Pi": Decimal(2**50), "Ei": Decimal(2**60)}


@functools.lru_cache(maxsize=1024)  # a few distinct quantities, parsed for every pod usage counts
def parse_quantity(quantity: str | int | float) -> Decimal:
    """A Kubernetes quantity ("500m", "2Gi", "64") as a number (cores, bytes)."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?", str(quantity))
    if not match:
        raise PlinthError(f"{quantity!r} is not a Kubernetes quantity", "write e.g. 500m, 4 or 16Gi")
    return Decimal(match.group(1)) * _SUFFIXES[match.group(2) or ""]


def _format_cpu(value: Decimal) -> str:
    return f"{value.normalize():f}"


def _format_bytes(value: Decimal) -> str:
    for suffix in ("Ti", "Gi", "Mi", "Ki"):
        if value >= _SUFFIXES[suffix]:
            return f"{(value / _SUFFIXES[suffix]).quantize(Decimal('0.1')).normalize():f}{suffix}"
    return f"{value:f}"


# -- rendering -----------------------------------------------------------------------------


def render_cluster_job(job: LoadedJob, stack: Stack, job_id: str, pinned: dict[SampleRef, SampleInput] | None = None) -> RenderedJob:
    """Every object of one submission, ConfigMap(s) first and the workload last, each labelled
    with `plinth.dev/job-id`, `plinth.dev/job` and `plinth.dev/team` and schema-validated."""
    kind = job_kind(job.spec.kind)
    try:
        placement = preflight(job, stack)
        _check_name_lengths(job, kind, job_id)
        variables = job_variables(job, stack, job_id)
        samples = sample_inputs(job, stack, pinned)
        output = sample_output(job, stack, job_id)
        args = substituted_args(job, variables, samples)
        env = substituted_env(job, variables, samples)
        code = _code_files(job)
        launch_env = launcher_env(list(samples.values()), output)
        context = _context(job, kind, stack, job_id, placement, variables, args, env, code, launch_env)
        context["workload_annotations"] = {annotation: launch_env[key] for annotation, key in
                                           ((ANNOTATION_SAMPLE_INPUTS, INPUTS_ENV), (ANNOTATION_SAMPLE_OUTPUT, OUTPUT_ENV)) if key in launch_env}
    except PlinthError as exc:
        raise in_job_file(job, exc) from None
    template = f"{kind.template_dir}/kubernetes.yaml.j2"
    text = render_template("cluster/code.yaml.j2", context) + "---\n" + render_template(template, context)
    objects = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    validate_objects(objects)
    return RenderedJob(job_id=job_id, template=template, text=text, documents=objects, args=args, data_inputs=data_inputs(job.spec.args, args),
                       samples=list(samples.values()), sample_output=output)


def _check_name_lengths(job: LoadedJob, kind: JobKind, job_id: str) -> None:
    """Operators name pods and per-replica Services `<job-id>-<role>-<index>`; those must be DNS labels."""
    spec = job.spec
    longest = max(kind.pod_name_suffixes(spec) or [""], key=len)
    if len(job_id) + len(longest) > DNS_LABEL_MAX:
        room = DNS_LABEL_MAX - len(longest) - (len(job_id) - len(spec.name))
        raise PlinthError(
            f"name: {spec.name!r} is too long for a {spec.kind} job on a cluster (pod {job_id}{longest} would exceed {DNS_LABEL_MAX} characters)",
            f"use at most {room} characters",
        )


def _code_files(job: LoadedJob) -> dict[str, str]:
    """The script and its `files:`, shipped in a ConfigMap instead of baked into an image."""
    paths = {job.script_path.name: job.script_path, **{name: job.base_dir / name for name in job.spec.files}}
    code, size = {}, 0
    for name, path in sorted(paths.items()):
        if not re.fullmatch(r"[-._a-zA-Z0-9]+", name):
            raise PlinthError(f"script: {name!r} cannot be a ConfigMap key", "rename it to letters, digits, '-', '_' and '.'")
        data = path.read_bytes()
        size += len(data)
        try:
            code[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            raise PlinthError(f"script: {name} is not UTF-8 text", "ship text files only; put data in the stack's storage") from None
    if size > MAX_CODE_BYTES:
        raise PlinthError(f"script: {', '.join(code)} total {size // 1024} KiB, over the {MAX_CODE_BYTES // 1024} KiB a ConfigMap can carry", "put large files in the stack's storage or in the team image")
    return code


def job_labels(job: LoadedJob, placement: Placement, job_id: str) -> dict[str, str]:
    """Labels of every object (user labels first; Plinth's own win)."""
    return {
        **dict(sorted(job.spec.labels.items())),
        "app.kubernetes.io/managed-by": "plinth",
        LABEL_JOB_ID: job_id,
        LABEL_JOB: job.spec.name,
        LABEL_TEAM: placement.team,
        LABEL_KIND: job.spec.kind,
    }


def _context(job, kind: JobKind, stack, job_id, placement: Placement, variables: dict, args: list[str], env: dict, code: dict,
             launch_env: dict[str, str]) -> dict:
    """The template values. `launch_env` set (the job reads or writes sample tables): the job's
    main program is the launcher (platform_cli.samples.launch), shipped beside its code."""
    spec = job.spec
    team = stack.config.team
    storage = placement.storage
    labels = job_labels(job, placement, job_id)
    workload_labels = dict(labels)
    if placement.scheduler == "kueue":
        workload_labels[KUEUE_QUEUE_LABEL] = placement.queue

    container_env = {**plinth_env(job, stack, job_id, variables), **launch_env, **kind.thread_env(spec.resources.cpu), **kind.spec_env(spec)}
    if launch_env:
        if LAUNCHER_FILE in code:
            raise PlinthError(f"files: {LAUNCHER_FILE!r} is the name of Plinth's launcher in the job's code", "rename that file")
        code = {**code, LAUNCHER_FILE: LAUNCHER_SOURCE}
    volumes = [{"name": "code", "configMap": {"name": f"{job_id}-code"}}]
    mounts = [{"name": "code", "mountPath": CODE_DIR, "readOnly": True}]
    env_from = []
    if storage.kind == "hdfs":
        container_env["HADOOP_CONF_DIR"] = HADOOP_CONF_DIR
        volumes.append({"name": "hadoop-conf", "configMap": {"name": HDFS_CONFIG_MAP}})
        mounts.append({"name": "hadoop-conf", "mountPath": HADOOP_CONF_DIR, "readOnly": True})
    else:  # s3: endpoint and region are configuration, the keys come from the Secret by name
        container_env["AWS_ENDPOINT_URL"] = storage.s3.endpoint
        container_env["AWS_REGION"] = storage.s3.region
        env_from.append({"secretRef": {"name": STORAGE_SECRET}})
    container_env.update(kind.job_env(job, stack, variables))
    container_env.update(env)

    groups = {g.role: g for g in kind.pod_groups(spec)}
    pods = {}
    for role, group in groups.items():
        pod_labels = {**labels, LABEL_ROLE: role}
        if placement.scheduler == "kueue" and kind.workload.kind == "SparkApplication":
            # Kueue has no SparkApplication integration: its pod integration admits the driver
            # and executors one by one through the team's queue (quota and fair share, no gang).
            pod_labels[KUEUE_QUEUE_LABEL] = placement.queue
        annotations = {}
        if placement.scheduler == "volcano":
            annotations[VOLCANO_QUEUE_ANNOTATION] = placement.queue
        requests = {"cpu": group.cpu, "memory": group.memory}
        limits = {"memory": group.memory}
        if group.gpu:
            requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(group.gpu)
        pods[role] = {
            "labels": pod_labels,
            "annotations": annotations,
            "scheduler_name": "volcano" if placement.scheduler == "volcano" else None,
            # Only the pods that compute go to the pool (see JobKind.compute_roles).
            "node_selector": placement.node_selector if role in kind.compute_roles else {},
            "tolerations": placement.tolerations if role in kind.compute_roles else [],
            "requests": requests,
            "limits": limits,
            "cpu": group.cpu,
            "memory": group.memory,
            "gpu": group.gpu,
            "count": group.count,
            # The role's own defaults first: a name the job sets itself keeps the job's value.
            "env": {**group.env, **container_env},
        }

    script = f"{CODE_DIR}/{job.script_path.name}"
    context = {
        "job": spec,
        "job_id": job_id,
        "namespace": placement.namespace,
        "labels": labels,
        "workload_labels": workload_labels,
        "code": code,
        "image": team.image,
        "service_account": JOBS_SERVICE_ACCOUNT,
        "placement": placement,
        "priority_class": placement.priority_class,
        "queue": placement.queue,
        "volcano": placement.scheduler == "volcano",
        # Kueue admits a job by unsuspending it: created suspended, no pod exists before the
        # team's ClusterQueue has quota for it (Kueue's webhook would suspend it too, but a job
        # created while the webhook is unreachable would otherwise start unqueued).
        "suspended": placement.scheduler == "kueue" and kind.workload.kind != "SparkApplication",
        "min_available": sum(g.count for g in groups.values()),
        "pods": pods,
        "env": container_env,
        "env_from": env_from,
        "volumes": volumes,
        "mounts": mounts,
        "script": script,
        "code_dir": CODE_DIR,
        "args": args,
        "retries": spec.retries,
        "ttl": TTL_SECONDS_AFTER_FINISHED,
        "retry_interval": RETRY_INTERVAL_SECONDS,
    }
    context.update(kind.cluster_context(job, script, args, storage))
    if launch_env:
        context.update(kind.launched(context, f"{CODE_DIR}/{LAUNCHER_FILE}"))
    return context
