"""Labels and metadata every object the program creates carries."""

from __future__ import annotations

from typing import Any

import pulumi

from platform_cli.spec.stack import PLATFORM_NAMESPACE

MANAGED_BY = {"app.kubernetes.io/managed-by": "plinth"}
# Namespaces of shared platform services (storage, MLflow, ...); team network policies let
# team pods reach namespaces with this label.
PLATFORM_NAMESPACE_LABEL = {"plinth.dev/platform": "true"}


def metadata(name: str, namespace: pulumi.Input[str] | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {**MANAGED_BY, **(labels or {})}}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta
