"""Apply a model's rendered KServe objects to a team's cluster (the only side effects of cluster serving).

Server-side apply with field manager `plinth` (what `kubectl apply --server-side` does), so
fields other controllers own (KServe's status, defaults) are left to them. Order matters for a
gray release: every InferenceService is applied first and each new one must report Ready
before the traffic split (the InferenceGraph, in RawDeployment mode) is applied, so a version
that cannot load never receives traffic; in Serverless mode KServe itself keeps traffic on the
last ready revision. Services of versions that left the split are deleted last.
"""

from __future__ import annotations

import json
import time

from platform_cli.errors import PlinthError
from platform_cli.targets.kubernetes import APPLY_PATCH, FIELD_MANAGER

READY_TIMEOUT_S = 600.0
_PLURALS = {"InferenceService": "inferenceservices", "InferenceGraph": "inferencegraphs"}


def apply_release(objects: list[dict], api, new_versions: set[str], retired: list[str]) -> None:
    """Apply `objects` (InferenceServices, then the split); wait for the InferenceServices named
    in `new_versions` to be Ready before the split; delete the InferenceServices in `retired`.

    api: a kubernetes.client.CustomObjectsApi. A new service that does not become Ready is
    deleted again and the split is not touched: PlinthError says why.
    """
    services = [o for o in objects if o["kind"] == "InferenceService"]
    splits = [o for o in objects if o["kind"] != "InferenceService"]
    for obj in services:
        _apply(api, obj)
    for obj in services:
        if obj["metadata"]["name"] in new_versions:
            try:
                _wait_ready(api, obj, READY_TIMEOUT_S)
            except PlinthError:
                if splits:  # RawDeployment: the new service has its own name and takes no traffic yet
                    _delete(api, obj["metadata"]["namespace"], obj["metadata"]["name"])
                raise
    for obj in splits:
        _apply(api, obj)
    for name in retired:
        _delete(api, services[0]["metadata"]["namespace"], name)


def _apply(api, obj: dict) -> None:
    name, namespace, kind = obj["metadata"]["name"], obj["metadata"]["namespace"], obj["kind"]
    group, version = obj["apiVersion"].split("/")
    _call(f"applying {kind} {namespace}/{name}", api.patch_namespaced_custom_object, group, version, namespace, _PLURALS[kind], name, obj,
          field_manager=FIELD_MANAGER, force=True, _content_type=APPLY_PATCH)


def _wait_ready(api, obj: dict, timeout: float) -> None:
    name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
    deadline = time.monotonic() + timeout
    reason = "no status yet"
    while True:
        current = _call(f"reading InferenceService {namespace}/{name}", api.get_namespaced_custom_object,
                        "serving.kserve.io", "v1beta1", namespace, "inferenceservices", name)
        ready = next((c for c in (current.get("status") or {}).get("conditions", []) if c.get("type") == "Ready"), None)
        if ready and ready.get("status") == "True":
            return
        if ready:
            reason = ready.get("message") or ready.get("reason") or reason
        if time.monotonic() >= deadline:
            raise PlinthError(f"InferenceService {namespace}/{name} was not Ready after {timeout:.0f} s: {' '.join(str(reason).split())} (traffic unchanged)",
                              f"kubectl -n {namespace} describe inferenceservice {name}")
        time.sleep(2.0)


def _delete(api, namespace: str, name: str) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        api.delete_namespaced_custom_object("serving.kserve.io", "v1beta1", namespace, "inferenceservices", name)
    except ApiException as exc:
        if exc.status != 404:
            raise PlinthError(f"deleting InferenceService {namespace}/{name}: {_reason(exc)}") from None


def _call(what: str, function, *args, **kwargs):
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return function(*args, **kwargs)
    except ApiException as exc:
        raise PlinthError(f"{what}: {_reason(exc)}") from None
    except HTTPError as exc:
        raise PlinthError(f"{what}: cannot reach the Kubernetes API ({type(exc).__name__})", "check the cluster is up and the stack's kubernetes:context") from None


def _reason(exc) -> str:
    try:
        return " ".join(json.loads(exc.body)["message"].split())
    except (TypeError, ValueError, KeyError):
        return f"{exc.status} {exc.reason}"
