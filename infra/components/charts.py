"""Every Helm chart the platform installs, pinned: chart, repository and version in one table.

A stack may move a chart to another version (scheduler.chartVersion, kserve.version,
kserve.certManagerVersion); the pins here are the versions Plinth is tested with, and the CRD
schemas under platform_cli/render/crds/ are those of these versions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s


@dataclass(frozen=True)
class Chart:
    release: str        # Helm release name
    chart: str          # chart name, or an oci:// reference
    version: str
    namespace: str
    repo: str | None = None   # classic Helm repository; None for oci:// charts
    app_version: str | None = None  # when the chart's default image is not the version Plinth targets


VOLCANO = Chart("volcano", "volcano", "1.15.1", "volcano-system", repo="https://volcano-sh.github.io/helm-charts")
KUEUE = Chart("kueue", "oci://registry.k8s.io/kueue/charts/kueue", "0.19.2", "kueue-system")
NVIDIA_DEVICE_PLUGIN = Chart("nvidia-device-plugin", "nvidia-device-plugin", "0.17.1", "nvidia-device-plugin", repo="https://nvidia.github.io/k8s-device-plugin")
NVIDIA_GPU_OPERATOR = Chart("gpu-operator", "gpu-operator", "v24.9.2", "gpu-operator", repo="https://helm.ngc.nvidia.com/nvidia")
CERT_MANAGER = Chart("cert-manager", "cert-manager", "v1.16.2", "cert-manager", repo="https://charts.jetstack.io")
KSERVE_CRD = Chart("kserve-crd", "oci://ghcr.io/kserve/charts/kserve-crd", "v0.15.2", "kserve")
KSERVE = Chart("kserve", "oci://ghcr.io/kserve/charts/kserve", "v0.15.2", "kserve")
# The same chart again, post-rendered down to its ClusterServingRuntimes (serving.py says why).
KSERVE_RUNTIMES = Chart("kserve-runtimes", KSERVE.chart, KSERVE.version, KSERVE.namespace)

SPARK_OPERATOR = Chart("spark-operator", "spark-operator", "2.5.2", "spark-operator", repo="https://kubeflow.github.io/spark-operator")
# Chart 2.0.1 ships Argo Workflows v4.1.0; its images are pinned to v4.1.2, whose CRD schemas
# Plinth validates flows against.
ARGO_WORKFLOWS = Chart("argo-workflows", "argo-workflows", "2.0.1", "argo", repo="https://argoproj.github.io/argo-helm", app_version="v4.1.2")

ALL = (VOLCANO, KUEUE, NVIDIA_DEVICE_PLUGIN, NVIDIA_GPU_OPERATOR, CERT_MANAGER, KSERVE_CRD, KSERVE, KSERVE_RUNTIMES, SPARK_OPERATOR, ARGO_WORKFLOWS)


def helm_release(
    chart: Chart, values: dict[str, Any], opts: pulumi.ResourceOptions, version: str | None = None, postrender: str | None = None,
    skip_crds: bool = False,
) -> k8s.helm.v3.Release:
    """A Helm release of `chart` in its own namespace; Pulumi waits until its resources are ready.
    `postrender`: an executable that filters the rendered manifests before Helm applies them.
    `skip_crds`: leave out the chart's crds/ folder (Helm installs it once and never deletes it)."""
    return k8s.helm.v3.Release(
        chart.release,
        name=chart.release,
        chart=chart.chart,
        version=version or chart.version,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repo) if chart.repo else None,
        namespace=chart.namespace,
        create_namespace=True,
        values=values,
        # A failed install rolls back instead of leaving half a release behind.
        atomic=True,
        timeout=900,
        postrender=postrender,
        skip_crds=skip_crds or None,
        opts=opts,
    )
