"""The NVIDIA side of GPU nodes: the device plugin (advertises nvidia.com/gpu), or the GPU
operator (drivers, container toolkit and device plugin on nodes that lack them)."""

from __future__ import annotations

from typing import Any, Literal

import pulumi

from infra.components.charts import NVIDIA_DEVICE_PLUGIN, NVIDIA_GPU_OPERATOR, helm_release
from platform_cli.spec.stack import GpuPoolConfig


def driver_values(kind: Literal["device-plugin", "gpu-operator"], pools: list[GpuPoolConfig]) -> dict[str, Any]:
    """Helm values that put the NVIDIA daemons on every pool's nodes, through their taints."""
    tolerations = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    for pool in pools:
        for taint in pool.tolerations:
            covered = any(t["key"] == taint["key"] and t["effect"] == taint["effect"] and t["operator"] == "Exists" for t in tolerations)
            if not covered and taint not in tolerations:
                tolerations.append(taint)
    if kind == "device-plugin":
        # Only GPU pool nodes: Karpenter nodes carry plinth.dev/gpu-pool (the chart's default
        # affinity looks for labels that node-feature-discovery would set).
        on_gpu_nodes = {"matchExpressions": [{"key": "plinth.dev/gpu-pool", "operator": "Exists"}]}
        return {
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [on_gpu_nodes]}}},
            "tolerations": tolerations,
        }
    return {
        "driver": {"enabled": True},
        "daemonsets": {"tolerations": tolerations},
        "node-feature-discovery": {"worker": {"tolerations": tolerations}},
    }


class GpuDriver(pulumi.ComponentResource):
    def __init__(self, kind: Literal["device-plugin", "gpu-operator"], pools: list[GpuPoolConfig], opts: pulumi.ResourceOptions | None = None):
        super().__init__("plinth:platform:GpuDriver", kind, None, opts)
        chart = NVIDIA_DEVICE_PLUGIN if kind == "device-plugin" else NVIDIA_GPU_OPERATOR
        self.release = helm_release(chart, driver_values(kind, pools), pulumi.ResourceOptions(parent=self))
        self.register_outputs({})
