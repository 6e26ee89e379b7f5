"""Batch scheduling: Volcano or Kueue from its Helm chart, the PriorityClasses every team's jobs
use, and each team's queue.

The queue a team's jobs are submitted to is named after the team (`team.name`): a
cluster-scoped Volcano Queue, or a Kueue ClusterQueue plus a LocalQueue of that name in the
team's namespace. The job renderer relies on that name.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.components.charts import KUEUE, VOLCANO, helm_release
from infra.components.labels import metadata
from platform_cli.spec import volcano
from platform_cli.spec.stack import GpuPoolConfig, QuotaConfig, SchedulerConfig, TeamConfig

GPU = "nvidia.com/gpu"
# Kueue: every team's ClusterQueue is in one cohort, so idle GPUs of one team can be borrowed
# by another and reclaimed when their owner needs them.
KUEUE_COHORT = "plinth"
KUEUE_CPU_FLAVOR = "default"


def kueue_flavor_name(pool: GpuPoolConfig) -> str:
    return f"gpu-{pool.name}"


def kueue_flavor_spec(pool: GpuPoolConfig) -> dict[str, Any]:
    # Kueue adds the pool's nodeSelector and tolerations to every pod it admits on this flavor.
    return {"nodeLabels": pool.node_labels, "tolerations": pool.tolerations}


class Scheduler(pulumi.ComponentResource):
    """The cluster's batch scheduler, its priority classes and (Kueue) a flavor per GPU pool."""

    def __init__(
        self, config: SchedulerConfig, pools: list[GpuPoolConfig], crds: pulumi.Resource | None = None, opts: pulumi.ResourceOptions | None = None
    ):
        """`crds`: the engines' CRDs when the platform installs only those (no Helm chart)."""
        super().__init__("plinth:platform:Scheduler", config.kind, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        chart, values = (VOLCANO, volcano.chart_values(config)) if config.kind == "volcano" else (KUEUE, {})
        self.release = helm_release(chart, values, child, version=config.chart_version) if crds is None else None
        self.priority_classes = [
            k8s.scheduling.v1.PriorityClass(
                f"priority-{priority.name}",
                metadata=metadata(priority.name),
                value=priority.value,
                global_default=False,
                preemption_policy="PreemptLowerPriority" if priority.preempts else "Never",
                description=priority.description or None,
                opts=child,
            )
            for priority in config.priority_classes
        ]
        self.flavors: dict[str, str] = {}
        if config.kind == "kueue":
            after_crds = pulumi.ResourceOptions(parent=self, depends_on=[self.release if crds is None else crds])
            k8s.apiextensions.CustomResource(
                f"flavor-{KUEUE_CPU_FLAVOR}", api_version="kueue.x-k8s.io/v1beta2", kind="ResourceFlavor",
                metadata=metadata(KUEUE_CPU_FLAVOR), spec={}, opts=after_crds,
            )
            for pool in pools:
                k8s.apiextensions.CustomResource(
                    f"flavor-{pool.name}", api_version="kueue.x-k8s.io/v1beta2", kind="ResourceFlavor",
                    metadata=metadata(kueue_flavor_name(pool)), spec=kueue_flavor_spec(pool), opts=after_crds,
                )
                self.flavors[pool.name] = kueue_flavor_name(pool)
        self.register_outputs({"kind": config.kind, "priorityClasses": [p.name for p in config.priority_classes]})


def gpu_share_by_pool(share: int, pools: list[GpuPoolConfig]) -> dict[str, int]:
    """Split a team's guaranteed GPUs over its pools in the order it lists them, each up to what
    the pool can hold; what does not fit anywhere is not guaranteed."""
    split, left = {}, share
    for pool in pools:
        split[pool.name] = min(left, pool.max_gpus)
        left -= split[pool.name]
    return split


def volcano_queue_spec(team: TeamConfig) -> dict[str, Any]:
    quota: QuotaConfig = team.quota
    return {
        # Read by the proportion plugin only, which the platform's Volcano does not run
        # (platform_cli/spec/volcano.py); kept so a cluster whose Volcano runs it still shares by weight.
        "weight": team.queue.weight,
        # The team's quota: the capacity plugin never lets the queue hold more.
        "capability": {"cpu": quota.cpu, "memory": quota.memory, GPU: quota.gpu},
        # capacity plugin: what the team is guaranteed; beyond it, jobs run on borrowed GPUs
        # that the reclaim action takes back when another queue needs its own deserved GPUs.
        "deserved": {GPU: team.queue.gpu_share},
        "reclaimable": True,
    }


def kueue_cluster_queue_spec(team: TeamConfig, pools: list[GpuPoolConfig], namespace: str, flavors: dict[str, pulumi.Input[str]]) -> dict[str, Any]:
    shares = gpu_share_by_pool(team.queue.gpu_share, pools)
    resource_groups: list[dict[str, Any]] = [
        {
            "coveredResources": ["cpu", "memory"],
            "flavors": [{"name": KUEUE_CPU_FLAVOR, "resources": [
                {"name": "cpu", "nominalQuota": team.quota.cpu},
                {"name": "memory", "nominalQuota": team.quota.memory},
            ]}],
        }
    ]
    if pools:
        resource_groups.append({
            "coveredResources": [GPU],
            # A quantity as Kubernetes writes it back (a string): Kueue's webhook re-encodes the
            # number 8 as "8", and a number here would then differ from the live object at every `up`.
            "flavors": [{"name": flavors[pool.name], "resources": [{"name": GPU, "nominalQuota": str(shares[pool.name])}]} for pool in pools],
        })
    return {
        "cohortName": KUEUE_COHORT,
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        "resourceGroups": resource_groups,
        # Used when the Kueue manager runs with fair sharing enabled; ignored otherwise.
        "fairSharing": {"weight": str(team.queue.weight)},
        "preemption": {"reclaimWithinCohort": "Any", "withinClusterQueue": "LowerPriority"},
    }


class TeamQueue(pulumi.ComponentResource):
    """The queue a team's jobs go to, named after the team."""

    def __init__(
        self,
        team: TeamConfig,
        kind: str,
        pools: list[GpuPoolConfig],
        namespace: k8s.core.v1.Namespace,
        flavors: dict[str, pulumi.Input[str]],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("plinth:team:Queue", team.name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = {"plinth.dev/team": team.name}
        if kind == "volcano":
            k8s.apiextensions.CustomResource(
                "queue", api_version="scheduling.volcano.sh/v1beta1", kind="Queue",
                metadata=metadata(team.name, labels=labels), spec=volcano_queue_spec(team), opts=child,
            )
        else:
            cluster_queue = k8s.apiextensions.CustomResource(
                "cluster-queue", api_version="kueue.x-k8s.io/v1beta2", kind="ClusterQueue",
                metadata=metadata(team.name, labels=labels),
                spec=kueue_cluster_queue_spec(team, pools, team.namespace_name, flavors), opts=child,
            )
            k8s.apiextensions.CustomResource(
                "local-queue", api_version="kueue.x-k8s.io/v1beta2", kind="LocalQueue",
                metadata=metadata(team.name, namespace.metadata.name, labels),
                spec={"clusterQueue": team.name},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster_queue]),
            )
        self.name = team.name
        self.register_outputs({"name": team.name})

