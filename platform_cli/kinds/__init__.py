"""Job kinds: everything that differs between a Spark, Horovod, TensorFlow parameter-server and
plain Python job lives in one module per kind, registered here.

A kind module defines `KIND`, a `JobKind` that owns the kind's spec fields, the pods it asks
for, its workload's group-version-kind, how to read that workload's status, the conditions
Argo waits on, the retry setting, its templates (`templates/<kind>/<target>.yaml.j2`) and what
each renderer adds for it. Render, targets and flows look a kind up; none branch on it. Adding
a kind is one module and one line in KINDS.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, ClassVar

from platform_cli.errors import PlinthError
from platform_cli.kube import Resource

if TYPE_CHECKING:
    from platform_cli.features.lag import StreamLag
    from platform_cli.spec.job import JobSpecBase, LoadedJob
    from platform_cli.spec.stack import PlatformStorageConfig, Stack
    from platform_cli.status import JobStatus

KINDS = {
    "spark": "platform_cli.kinds.spark",
    "horovod": "platform_cli.kinds.horovod",
    "tf-ps": "platform_cli.kinds.tf_ps",
    "python": "platform_cli.kinds.python",
    "streaming": "platform_cli.kinds.streaming",
}


@cache
def job_kind(name: str) -> JobKind:
    if name not in KINDS:
        raise PlinthError(f"kind: {name!r} is not a job kind", f"use one of: {', '.join(KINDS)}")
    return importlib.import_module(KINDS[name]).KIND


def all_kinds() -> list[JobKind]:
    return [job_kind(name) for name in KINDS]


@dataclass(frozen=True)
class PodGroup:
    """`count` identical pods of one role, each requesting cpu/memory/gpu; `env`: what this
    role's processes get beyond the job's environment (which wins where both set a name)."""

    role: str
    count: int
    cpu: str
    memory: str
    gpu: int = 0
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkloadStatus:
    """A cluster workload's state as its operator reports it, in Plinth's terms."""

    status: JobStatus
    started: datetime | None
    finished: datetime | None
    message: str
    attempt: int


def cpu_quantity(value: float) -> str:
    """Cores as a Kubernetes quantity: 2 -> "2", 0.5 -> "500m"."""
    return str(int(value)) if float(value).is_integer() else f"{round(value * 1000)}m"


def parse_time(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


class JobKind:
    """What one kind of job is. Subclasses set the class attributes and override the hooks
    whose default does not fit them."""

    name: ClassVar[str]
    spec: ClassVar[type[JobSpecBase]]
    workload: ClassVar[Resource]  # what the cluster renderer's template makes
    engine: ClassVar[str]  # what runs that workload on a cluster
    main_role: ClassVar[str]  # the pod whose log is the job's log
    main_container: ClassVar[str]
    # Roles whose pods compute, so they go to the GPU pool; the others (drivers, launchers,
    # chiefs, parameter servers) would hold a GPU node without using its GPUs.
    compute_roles: ClassVar[tuple[str, ...]] = ()
    # Parameter servers and workers run blocking remote ops (receives, dataset reads) that
    # deadlock with a single inter-op thread; such kinds let TensorFlow size that pool.
    single_interop_thread: ClassVar[bool] = True
    # A stream: it never finishes by itself (`plinth job cancel` ends it), so no flow step waits on one.
    runs_until_cancelled: ClassVar[bool] = False

    @property
    def template_dir(self) -> str:
        """Its templates' folder under templates/: its own, unless it lays out another kind's workload."""
        return self.name

    def job_env(self, job: LoadedJob, stack: Stack, variables: dict[str, str]) -> dict[str, str]:
        """Environment the kind's processes get on every target, from the spec and the stack
        (`variables`: the job's ${...} values)."""
        return {}

    def live_lag(self, record) -> StreamLag | None:
        """How far a job that runs until cancelled is behind its input, for `plinth job status`
        on the local platform (None: the kind has no such notion, or nothing was measured yet)."""
        return None

    def pod_lag(self, pod: dict) -> StreamLag | None:
        """The same, on a cluster: as the job's main pod carries it."""
        return None

    def pod_groups(self, spec) -> list[PodGroup]:
        """Every pod the job asks for on a cluster: the basis of quota preflight and of sizes."""
        raise NotImplementedError

    def pod_name_suffixes(self, spec) -> list[str]:
        """Suffixes the operator appends to the job id for pod and Service names (they must stay
        DNS labels); kinds whose controller shortens names itself return none."""
        return []

    def thread_env(self, cpu: float) -> dict[str, str]:
        threads = str(max(1, math.floor(cpu)))
        env = {"OMP_NUM_THREADS": threads, "TF_NUM_INTRAOP_THREADS": threads}
        if self.single_interop_thread:
            env["TF_NUM_INTEROP_THREADS"] = "1"
        return env

    def spec_env(self, spec) -> dict[str, str]:
        """Environment every process of the job gets from the kind's own spec fields, on every target."""
        return {}

    # -- the local platform ---------------------------------------------------------------

    def local_context(self, job: LoadedJob, stack: Stack) -> dict:
        """Template values the kind's local template needs beyond the common ones."""
        return {}

    def local_env(self) -> dict[str, str]:
        """Environment the kind's local processes need beyond the common one."""
        return {}

    def local_requirements(self, path: str) -> None:
        """Refuse, before anything starts, a job this machine cannot run (`path`: the jobs' PATH)."""

    # -- a cluster ------------------------------------------------------------------------

    def cluster_context(self, job: LoadedJob, script: str, args: list[str], storage: PlatformStorageConfig) -> dict:
        """Template values the kind's Kubernetes template needs beyond the common ones."""
        return {"command": ["python", script, *args]}

    def launched(self, context: dict, launcher: str) -> dict:
        """Template values that make `launcher` (platform_cli.samples.launch) the job's main
        program around what `context` (the cluster context) runs: here `python SCRIPT ARGS`,
        which the launcher runs in its own process."""
        return {"command": ["python", launcher, *context["command"][1:]]}

    def read_status(self, workload: dict) -> WorkloadStatus:
        raise NotImplementedError

    def argo_conditions(self, workload: dict) -> tuple[str, str]:
        """Argo resource-template (successCondition, failureCondition): label-selector-style
        expressions Argo evaluates over the live object's fields."""
        raise NotImplementedError

    def with_retries(self, workload: dict, retries: int) -> dict:
        """The workload with the engine's own restarts of the same job (same name, outputs and
        checkpoints) set to `retries`."""
        raise NotImplementedError
