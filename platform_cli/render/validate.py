"""Validate Kubernetes objects before anything is sent: the one home for schema checks.

Core kinds (Namespace, ResourceQuota, Role, ...) are checked against the Kubernetes OpenAPI
schema of `KUBERNETES_VERSION` (PyPI `kubernetes-validate`, strict: unknown fields are errors).
Custom resources are checked against the upstream CRD schemas vendored in `crds/` (see
crds/README.md for where each file came from), also strictly: the API server would silently
prune an unknown field, so a typo would otherwise vanish instead of failing here.

What this cannot prove: admission webhooks, defaulting, cross-object references (a queue that
exists, a Secret that exists) and CEL rules (`x-kubernetes-validations`) are only checked by a
real API server.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any, Iterable

from platform_cli.errors import PlinthError

# The oldest Kubernetes minor the platform supports; objects must be valid there.
KUBERNETES_VERSION = "1.30.0"

CRD_DIR = Path(__file__).parent / "crds"

# (group, kind) -> CRD file under crds/. One engine version per group: the one the platform
# stack installs.
CRD_FILES: dict[tuple[str, str], str] = {
    ("batch.volcano.sh", "Job"): "volcano/v1.15.1/batch.volcano.sh_jobs.yaml",
    ("scheduling.volcano.sh", "Queue"): "volcano/v1.15.1/scheduling.volcano.sh_queues.yaml",
    ("scheduling.volcano.sh", "PodGroup"): "volcano/v1.15.1/scheduling.volcano.sh_podgroups.yaml",
    ("kueue.x-k8s.io", "ClusterQueue"): "kueue/v0.19.2/kueue.x-k8s.io_clusterqueues.yaml",
    ("kueue.x-k8s.io", "LocalQueue"): "kueue/v0.19.2/kueue.x-k8s.io_localqueues.yaml",
    ("kueue.x-k8s.io", "ResourceFlavor"): "kueue/v0.19.2/kueue.x-k8s.io_resourceflavors.yaml",
    ("sparkoperator.k8s.io", "SparkApplication"): "spark-operator/v2.5.2/sparkoperator.k8s.io_sparkapplications.yaml",
    ("sparkoperator.k8s.io", "ScheduledSparkApplication"): "spark-operator/v2.5.2/sparkoperator.k8s.io_scheduledsparkapplications.yaml",
    ("kubeflow.org", "MPIJob"): "mpi-operator/v0.8.0/kubeflow.org_mpijobs.yaml",
    ("kubeflow.org", "TFJob"): "training-operator/v1.9.0/kubeflow.org_tfjobs.yaml",
    ("serving.kserve.io", "InferenceService"): "kserve/v0.15.2/serving.kserve.io_inferenceservices.yaml",
    ("serving.kserve.io", "InferenceGraph"): "kserve/v0.15.2/serving.kserve.io_inferencegraphs.yaml",
    ("serving.kserve.io", "ServingRuntime"): "kserve/v0.15.2/serving.kserve.io_servingruntimes.yaml",
    ("serving.kserve.io", "ClusterServingRuntime"): "kserve/v0.15.2/serving.kserve.io_clusterservingruntimes.yaml",
    ("argoproj.io", "Workflow"): "argo-workflows/v4.1.2/argoproj.io_workflows.yaml",
    ("argoproj.io", "CronWorkflow"): "argo-workflows/v4.1.2/argoproj.io_cronworkflows.yaml",
    ("argoproj.io", "WorkflowTemplate"): "argo-workflows/v4.1.2/argoproj.io_workflowtemplates.yaml",
}


_DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?{_LABEL_NAME}")
_LABEL_VALUE = re.compile(rf"({_LABEL_NAME})?")


class SchemaError(PlinthError):
    """An object that the API server (or a CRD's schema) would refuse."""


def describe(obj: dict) -> str:
    metadata = obj.get("metadata") or {}
    name = metadata.get("name") or metadata.get("generateName") or "?"
    namespace = f"{metadata['namespace']}/" if metadata.get("namespace") else ""
    return f"{obj.get('kind', '?')} {namespace}{name}"


def validate_object(obj: dict) -> None:
    """Raise SchemaError naming the object, the field path and the problem."""
    if not isinstance(obj, dict) or not obj.get("apiVersion") or not obj.get("kind"):
        raise SchemaError("not a Kubernetes object: apiVersion and kind are required")
    group, _, version = obj["apiVersion"].rpartition("/")
    if (group, obj["kind"]) in CRD_FILES:
        _validate_custom(obj, group, version)
    else:
        _validate_core(obj)
    _validate_metadata(obj)


def validate_objects(objects: Iterable[dict]) -> None:
    for obj in objects:
        validate_object(obj)


def _validate_core(obj: dict) -> None:
    import jsonschema

    validator = _core_validator(obj["apiVersion"], obj["kind"])
    if validator is None:
        raise SchemaError(
            f"{describe(obj)}: no schema for {obj['apiVersion']} {obj['kind']}",
            "use a Kubernetes API of v" + KUBERNETES_VERSION + " or a custom resource Plinth knows",
        )
    error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
    if error is not None:
        raise SchemaError(f"{describe(obj)}: {_where(error)}: {_message(error)}")


@functools.cache
def _core_validator(api_version: str, kind: str):
    """kubernetes-validate's strict schema of a core kind, loaded once per process: its own
    `validate` re-reads the 1.5 MB definitions file and builds a validator on every call, which
    was 40 % of a cluster render."""
    import jsonschema
    from kubernetes_validate.utils import schema_contents
    from referencing import Registry, Resource

    # The file names kubernetes-validate uses (utils.validate): group without domain, '-' for '/'.
    directory = f"kubernetes-json-schema/v{_schema_version()}-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = schema_contents(f"{directory}/{kind.lower()}-{group_version}.json", KUBERNETES_VERSION)
    except FileNotFoundError:
        return None
    definitions = schema_contents(f"{directory}/_definitions.json", KUBERNETES_VERSION)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


@functools.cache
def _schema_version() -> str:
    """The newest schema kubernetes-validate ships that is not newer than KUBERNETES_VERSION."""
    from kubernetes_validate.utils import all_versions, major_minor

    return [v for v in all_versions() if major_minor(v) <= major_minor(KUBERNETES_VERSION)][-1]


def _validate_custom(obj: dict, group: str, version: str) -> None:
    import jsonschema

    validator = _crd_validator(group, obj["kind"], version)
    if validator is None:
        raise SchemaError(f"{describe(obj)}: {group} {obj['kind']} has no served version {version!r} in {CRD_FILES[(group, obj['kind'])]}")
    error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
    if error is not None:
        raise SchemaError(f"{describe(obj)}: {_where(error)}: {_message(error)}")


def _validate_metadata(obj: dict) -> None:
    # The API server checks metadata the same way for every kind: ObjectMeta's schema, plus the
    # name and label formats that only the server enforces (checked here so a bad name fails
    # at render time, not at apply time).
    metadata = obj.get("metadata") or {}
    name = metadata.get("name")
    if name is not None and not _DNS_SUBDOMAIN.fullmatch(str(name)):
        raise SchemaError(
            f"{describe(obj)}: metadata.name: {name!r} is not a valid Kubernetes name",
            "use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit (at most 253)",
        )
    for key, value in (metadata.get("labels") or {}).items():
        if not _LABEL_KEY.fullmatch(str(key)) or not _LABEL_VALUE.fullmatch(str(value)):
            raise SchemaError(
                f"{describe(obj)}: metadata.labels: {key!r}: {value!r} is not a valid label",
                "label values are at most 63 characters of letters, digits, '-', '_' and '.'",
            )

    probe = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj.get("metadata") or {}}
    _validate_core(probe)


@functools.cache
def _crd_validator(group: str, kind: str, version: str):
    import jsonschema
    import yaml

    crd = yaml.load((CRD_DIR / CRD_FILES[(group, kind)]).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    for served in crd["spec"]["versions"]:
        if served["name"] == version and served.get("served", True):
            schema = _strict(copy.deepcopy(served["schema"]["openAPIV3Schema"]))
            return jsonschema.Draft7Validator(schema)
    return None


def _strict(node: Any) -> Any:
    """Reject unknown fields wherever the CRD lists its fields and does not preserve unknown ones."""
    if isinstance(node, dict):
        for value in node.values():
            _strict(value)
        if (
            node.get("type") == "object"
            and "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        if node.get("x-kubernetes-int-or-string"):
            node.pop("type", None)
            node.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    elif isinstance(node, list):
        for value in node:
            _strict(value)
    return node


def _where(error) -> str:
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path)
    return path.lstrip(".") or "(top level)"


def _message(error) -> str:
    if error.validator == "additionalProperties" and error.validator_value is False:
        return error.message.replace("Additional properties are not allowed", "unknown field") + " (check its spelling)"
    return " ".join(error.message.split())[:300]
