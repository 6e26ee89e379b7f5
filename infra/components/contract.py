"""What a platform stack exports and its team stacks read through a StackReference.

The stack files say what the platform *should* be; these outputs say what the platform stack
*has* deployed. A team stack takes its shape from the files (validated together before
anything runs) and its live values (HDFS address, Kueue flavors, YARN settings) from here, and
refuses to deploy onto a platform whose deployed scheduler differs from its file.
"""

from __future__ import annotations

from typing import Any, TypedDict

import pulumi


class PlatformOutputs(TypedDict):
    cluster: str
    schedulerKind: str                  # volcano | kueue
    priorityClasses: list[str]
    kueueFlavors: dict[str, str]        # gpu pool -> Kueue ResourceFlavor (kueue only)
    gpuPools: dict[str, dict[str, Any]] # pool -> {nodeLabels, tolerations, gpusPerNode, maxGpus}
    storage: dict[str, Any]             # {kind, uri, namespace (hdfs), image (hdfs), endpoint/region/bucket (s3)}
    kserve: dict[str, Any]              # {version, deploymentMode, ingressNamespace, domain}
    mlflow: dict[str, Any]              # {server: in-cluster | external | none, trackingUri}
    yarn: dict[str, str] | None         # {resourceManager, defaultFs}
    parameterService: dict[str, str] | None  # {url}: Redis for embedding rows; password: a Secret beside it
    platformNamespace: str


def export_platform(outputs: dict[str, Any]) -> None:
    missing = set(PlatformOutputs.__annotations__) - set(outputs)
    assert not missing, f"platform outputs missing {sorted(missing)}"
    for key, value in outputs.items():
        pulumi.export(key, value)


def platform_reference(platform_stack: str) -> pulumi.StackReference:
    """The platform stack of this project, in this stack's organization (Pulumi Cloud), or in
    `organization` on a self-managed backend."""
    org = pulumi.get_organization() or "organization"
    return pulumi.StackReference(f"{org}/{pulumi.get_project()}/{platform_stack}")
