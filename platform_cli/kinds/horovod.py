"""Horovod jobs: `horovodrun --gloo` on localhost, an MPIJob (mpi-operator v2beta1) on Kubernetes
whose launcher runs horovodrun over the operator's hostfile."""

from __future__ import annotations

from typing import Literal

from platform_cli.errors import PlinthError
from platform_cli.kinds import PodGroup, cpu_quantity
from platform_cli.kinds.kubeflow import KubeflowKind
from platform_cli.kube import Resource
from platform_cli.spec.job import JobSpecBase

# horovodrun only starts processes over ssh; it needs little.
LAUNCHER_CPU, LAUNCHER_MEMORY = "500m", "1Gi"
HOSTFILE = "/etc/mpi/hostfile"  # written by mpi-operator into the launcher


class HorovodJobSpec(JobSpecBase):
    kind: Literal["horovod"]


class HorovodKind(KubeflowKind):
    name = "horovod"
    spec = HorovodJobSpec
    workload = Resource("kubeflow.org/v2beta1", "MPIJob")
    engine = "mpi-operator"
    main_role, main_container = "launcher", "launcher"
    # The launcher (horovodrun) is the job: it ends when every worker process has.
    deciding_replica = "Launcher"
    compute_roles = ("worker",)

    def pod_groups(self, spec: HorovodJobSpec) -> list[PodGroup]:
        return [PodGroup("launcher", 1, LAUNCHER_CPU, LAUNCHER_MEMORY),
                PodGroup("worker", spec.workers, cpu_quantity(spec.resources.cpu), spec.resources.memory, spec.resources.gpu)]

    def pod_name_suffixes(self, spec: HorovodJobSpec) -> list[str]:
        return ["-launcher", f"-worker-{spec.workers - 1}"]

    def local_context(self, job, stack) -> dict:
        slots = stack.config.local.horovod_slots
        if job.spec.workers > slots:
            raise PlinthError(
                f"workers: {job.spec.workers} exceeds the {slots} Horovod slots of stack {stack.name!r}",
                f"lower workers or raise plinth:local.horovodSlots in {stack.file.name}",
            )
        return {"hosts": f"localhost:{job.spec.workers}"}

    def cluster_context(self, job, script, args, storage) -> dict:
        spec = job.spec
        slots = max(1, spec.resources.gpu)
        command = ["horovodrun", "-np", str(spec.workers * slots), "--hostfile", HOSTFILE, "--gloo", "python", script, *args]
        return {"slots_per_worker": slots, "command": command}

    def launched(self, context: dict, launcher: str) -> dict:
        # On the MPI launcher, around horovodrun: it pins versions before any rank starts and
        # commits once every rank has succeeded.
        from platform_cli.samples.launch import EXEC

        return {"command": ["python", launcher, EXEC, *context["command"]]}


KIND = HorovodKind()
