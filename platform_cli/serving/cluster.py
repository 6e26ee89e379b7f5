"""Apply a model's rendered KServe objects to a team's cluster (the only side effects of cluster serving).

Server-side apply with field manager `plinth` (platform_cli.kube), so fields other controllers
own (KServe's status, defaults) are left to them. Order matters for a gray release: every
InferenceService is applied first and each new one must report Ready before the traffic split
(the InferenceGraph, in RawDeployment mode) is applied, so a version that cannot load never
receives traffic; in Serverless mode KServe itself keeps traffic on the last ready revision.
Services of versions that left the split are deleted last.

`version_figures` reads a model's per-version metrics back from the cluster's Prometheus, which
scrapes every version's model server (GET /metrics, serving/metrics.py).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from platform_cli.errors import PlinthError
from platform_cli.kube import Resource

if TYPE_CHECKING:
    from platform_cli.kube import KubeClient

READY_TIMEOUT_S = 600.0
READY_POLL_S = 2.0
INFERENCE_SERVICE = Resource("serving.kserve.io/v1beta1", "InferenceService")


def apply_release(objects: list[dict], kube: KubeClient, new_versions: set[str], retired: list[str]) -> None:
    """Apply `objects` (InferenceServices, then the split); wait for the InferenceServices named
    in `new_versions` to be Ready before the split; delete the InferenceServices in `retired`.

    A new service that does not become Ready is deleted again and the split is not touched:
    PlinthError says why.
    """
    services = [o for o in objects if o["kind"] == INFERENCE_SERVICE.kind]
    splits = [o for o in objects if o["kind"] != INFERENCE_SERVICE.kind]
    for obj in services:
        kube.apply(obj)
    for obj in services:
        if obj["metadata"]["name"] in new_versions:
            try:
                _wait_ready(kube, obj, READY_TIMEOUT_S)
            except PlinthError:
                if splits:  # RawDeployment: the new service has its own name and takes no traffic yet
                    kube.delete(INFERENCE_SERVICE, obj["metadata"]["namespace"], obj["metadata"]["name"])
                raise
    for obj in splits:
        kube.apply(obj)
    for name in retired:
        kube.delete(INFERENCE_SERVICE, services[0]["metadata"]["namespace"], name)


PROMETHEUS_TIMEOUT_S = 10.0


def version_figures(prometheus_url: str, model: str) -> dict[int, dict]:
    """Per version of `model`: requests, errors, p50/p99, mean prediction, as `plinth model
    compare` shows them, from one instant query to the Prometheus HTTP API."""
    import httpx

    from platform_cli.serving.metrics import figures_from_prometheus, prometheus_query

    endpoint = f"{prometheus_url.rstrip('/')}/api/v1/query"
    try:
        response = httpx.get(endpoint, params={"query": prometheus_query(model)}, timeout=PROMETHEUS_TIMEOUT_S)
        answer = response.json()
    except httpx.HTTPError as e:
        raise PlinthError(f"cannot reach Prometheus at {prometheus_url}: {e}", "check plinth:serving.prometheusUrl and that this machine can reach it") from e
    except ValueError as e:
        raise PlinthError(f"Prometheus at {prometheus_url} answered {response.status_code} with no JSON: {response.text[:200]!r}") from e
    if answer.get("status") != "success":
        raise PlinthError(f"Prometheus at {prometheus_url} refused the query: {answer.get('errorType', '')} {answer.get('error', response.status_code)}".strip())
    return figures_from_prometheus(answer["data"]["result"])


def _wait_ready(kube: KubeClient, obj: dict, timeout: float) -> None:
    name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
    deadline = time.monotonic() + timeout
    reason = "no status yet"
    while True:
        current = kube.get(INFERENCE_SERVICE, namespace, name) or {}
        ready = next((c for c in (current.get("status") or {}).get("conditions", []) if c.get("type") == "Ready"), None)
        if ready and ready.get("status") == "True":
            return
        if ready:
            reason = ready.get("message") or ready.get("reason") or reason
        if time.monotonic() >= deadline:
            raise PlinthError(f"InferenceService {namespace}/{name} was not Ready after {timeout:.0f} s: {' '.join(str(reason).split())} (traffic unchanged)",
                              f"kubectl -n {namespace} describe inferenceservice {name}")
        time.sleep(READY_POLL_S)
