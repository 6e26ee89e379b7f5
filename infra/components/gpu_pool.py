"""GPU node pools: one interface, one implementation per way of getting nodes.

A pool is declared once in the platform stack (name, GPU type, GPUs per node, min/max nodes,
labels, taints). Its nodes carry `GpuPoolConfig.node_labels` and its taints, so a job targets a
pool with a nodeSelector on those labels plus tolerations for the taints — whatever provider
made the nodes.
"""

from __future__ import annotations

from typing import Any, Protocol

import pulumi
import pulumi_kubernetes as k8s

from infra.components.labels import MANAGED_BY
from platform_cli.spec.stack import GpuPoolConfig


class NodePoolProvider(Protocol):
    """Creates the cloud or cluster resources behind one GPU pool."""

    def create(self, pool: GpuPoolConfig, cluster: str, opts: pulumi.ResourceOptions) -> pulumi.Resource | None: ...


def karpenter_nodepool_spec(pool: GpuPoolConfig) -> dict[str, Any]:
    """The `spec` of a karpenter.sh/v1 NodePool for `pool` (pure, so tests can read it)."""
    requirements = [{"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]}]
    if pool.instance_types:
        requirements.append({"key": "node.kubernetes.io/instance-type", "operator": "In", "values": list(pool.instance_types)})
    elif pool.node_class.group == "karpenter.k8s.aws":
        # Without instance types, let Karpenter pick any AWS type with the right GPU count.
        requirements.append({"key": "karpenter.k8s.aws/instance-gpu-count", "operator": "In", "values": [str(pool.gpus_per_node)]})
    return {
        "template": {
            "metadata": {"labels": pool.node_labels},
            "spec": {
                "nodeClassRef": pool.node_class.model_dump(),
                "requirements": requirements,
                "taints": [taint.model_dump() for taint in pool.taints],
                "expireAfter": "720h",
            },
        },
        # Karpenter stops launching nodes once the pool holds this many GPUs: maxNodes whole nodes.
        "limits": {"nvidia.com/gpu": str(pool.max_gpus)},
        # Only empty nodes are removed: consolidating a busy GPU node would kill a training job.
        "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "10m"},
    }


class KarpenterNodePools:
    """A Karpenter NodePool per pool. Karpenter itself (its controller, IAM and the node class
    named in `nodeClass`) comes with the cluster; it launches nodes when pods that select the
    pool's labels are pending, and removes them once empty. It keeps no minimum (the stack model
    refuses minNodes > 0 for this provider)."""

    def create(self, pool: GpuPoolConfig, cluster: str, opts: pulumi.ResourceOptions) -> pulumi.Resource:
        return k8s.apiextensions.CustomResource(
            f"nodepool-{pool.name}",
            api_version="karpenter.sh/v1",
            kind="NodePool",
            metadata={"name": f"gpu-{pool.name}", "labels": {**MANAGED_BY, "plinth.dev/cluster": cluster}},
            spec=karpenter_nodepool_spec(pool),
            opts=opts,
        )


class StaticNodes:
    """Nodes that exist already, labelled and tainted as the pool says (on-premises machines,
    or the fake nodes of `plinth sim`): there is nothing to create."""

    def create(self, pool: GpuPoolConfig, cluster: str, opts: pulumi.ResourceOptions) -> None:
        return None


# pool.provider -> implementation. An EKS managed node group or GKE node pool through
# pulumi-aws / pulumi-gcp would be one more class here and one more Literal in GpuPoolConfig.
PROVIDERS: dict[str, NodePoolProvider] = {"karpenter": KarpenterNodePools(), "static": StaticNodes()}


class GpuPool(pulumi.ComponentResource):
    """One GPU pool: its nodes (through its provider) and how jobs reach them."""

    def __init__(self, pool: GpuPoolConfig, cluster: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__("plinth:platform:GpuPool", pool.name, None, opts)
        self.nodes = PROVIDERS[pool.provider].create(pool, cluster, pulumi.ResourceOptions(parent=self))
        self.node_labels = pool.node_labels
        self.tolerations = pool.tolerations
        self.register_outputs({"nodeLabels": self.node_labels, "tolerations": self.tolerations})
