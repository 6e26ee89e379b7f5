"""What this Plinth is: its own version, the engine versions it renders and validates for, the
frameworks of the local platform, and the Python it runs on. Read from the tables that decide
them (the vendored CRD schemas, the cluster image's Spark), never from a second list, and
without importing any framework (installed versions come from package metadata)."""

from __future__ import annotations

import platform
from importlib import metadata

# What this machine runs with, and what for (the lock file pins them).
LOCAL_FRAMEWORKS = {
    "pyspark": "Spark jobs",
    "tensorflow": "training, evaluation, model servers",
    "horovod": "distributed training",
    "kserve": "model servers",
    "mlflow": "model library",
    "pulumi": "stack deployments",
}


def _installed(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def cluster_engines() -> dict[str, str]:
    """Engine -> version that rendered objects are validated for: Kubernetes' own schema, each
    engine whose CRD schemas are vendored (crds/<engine>/<version>/...), and the Spark of the
    runtime image."""
    from platform_cli.kinds.spark import SPARK_VERSION
    from platform_cli.render.validate import CRD_FILES, KUBERNETES_VERSION

    engines = {"kubernetes": KUBERNETES_VERSION}
    for path in CRD_FILES.values():
        engine, version = path.split("/")[:2]
        engines.setdefault(engine, version)
    engines["spark (runtime image)"] = SPARK_VERSION
    return engines


def version_info() -> dict:
    return {
        "plinth": _installed("plinth") or "unknown (not installed)",
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation()},
        "cluster_engines": cluster_engines(),
        "local_frameworks": {name: _installed(name) or "not installed" for name in LOCAL_FRAMEWORKS},
    }
