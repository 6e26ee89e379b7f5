"""TensorFlow parameter-server training: TF_CONFIG processes on localhost ports locally
(platform_cli.targets.local_tf_ps), a TFJob (Kubeflow training operator) on Kubernetes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from platform_cli.kinds import PodGroup, cpu_quantity
from platform_cli.kinds.kubeflow import KubeflowKind
from platform_cli.kube import Resource
from platform_cli.spec.job import JobSpecBase


class TfPsJobSpec(JobSpecBase):
    """One chief (the ClusterCoordinator), `workers` workers and `parameterServers` parameter
    servers, every one running `script` with its role in TF_CONFIG. The job ends when the chief
    does; parameter servers and workers are stopped then (they serve forever otherwise).
    `resources` size every process; GPUs go to workers."""

    kind: Literal["tf-ps"]
    parameter_servers: int = Field(1, ge=1, le=64, alias="parameterServers")


class TfPsKind(KubeflowKind):
    name = "tf-ps"
    spec = TfPsJobSpec
    workload = Resource("kubeflow.org/v1", "TFJob")
    engine = "the Kubeflow training operator"
    main_role, main_container = "chief", "tensorflow"
    # The chief (ClusterCoordinator) decides; workers and parameter servers never exit on their own.
    deciding_replica = "Chief"
    compute_roles = ("worker",)
    single_interop_thread = False

    def pod_groups(self, spec: TfPsJobSpec) -> list[PodGroup]:
        cpu, memory = cpu_quantity(spec.resources.cpu), spec.resources.memory
        # The chief only coordinates and parameter servers hold variables: GPUs go to workers.
        return [PodGroup("chief", 1, cpu, memory), PodGroup("worker", spec.workers, cpu, memory, spec.resources.gpu), PodGroup("ps", spec.parameter_servers, cpu, memory)]

    def pod_name_suffixes(self, spec: TfPsJobSpec) -> list[str]:
        return ["-chief-0", f"-worker-{spec.workers - 1}", f"-ps-{spec.parameter_servers - 1}"]


KIND = TfPsKind()
