"""The one Kubernetes API client: connect, apply, create, get, list, delete and read logs by
group-version-kind, with one mapping of API failures to one-line errors.

Everything in Plinth that talks to a cluster goes through `KubeClient`: the Kubernetes target
(jobs), cluster serving (KServe objects) and flow submission (Argo). Requests are built from
the object's `apiVersion` and `kind` and sent through `ApiClient.call_api`, the single method
through which the `kubernetes` package sends HTTP, so tests replace exactly that boundary
(tests/kube_stand_in.py) and a live API server sees the same requests.

Applies are server-side (`kubectl apply --server-side`) with the field manager `plinth`, so
fields that controllers own (status, defaults) stay theirs.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from platform_cli.errors import PlinthError

if TYPE_CHECKING:
    from platform_cli.spec.stack import Stack

FIELD_MANAGER = "plinth"
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"

# The engine to install when the API server does not know a group (a 404 on the resource path).
ENGINES = {
    "sparkoperator.k8s.io": "the Spark operator",
    "kubeflow.org": "the MPI operator or the Kubeflow training operator",
    "serving.kserve.io": "KServe",
    "argoproj.io": "Argo Workflows",
    "scheduling.volcano.sh": "Volcano",
    "kueue.x-k8s.io": "Kueue",
}


def plural(kind: str) -> str:
    """The resource name of a kind, by the rule the API machinery itself guesses with
    (k8s.io/apimachinery meta.UnsafeGuessKindToResource); every kind Plinth sends follows it."""
    lower = kind.lower()
    if lower.endswith("s"):
        return lower + "es"
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    return lower + "s"


@dataclass(frozen=True)
class Resource:
    """Where objects of one kind live in the API: `/api/v1/...` for the core group, else `/apis/<group>/<version>/...`."""

    api_version: str
    kind: str

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        root = f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"
        parts = [root]
        if namespace is not None:
            parts.append(f"namespaces/{namespace}")
        parts.append(plural(self.kind))
        if name is not None:
            parts.append(name)
        if subresource is not None:
            parts.append(subresource)
        return "/".join(parts)

    @classmethod
    def of(cls, obj: dict) -> Resource:
        return cls(obj["apiVersion"], obj["kind"])


POD = Resource("v1", "Pod")
CONFIG_MAP = Resource("v1", "ConfigMap")
EVENT = Resource("v1", "Event")
# What Kueue makes of a queued job: its admission (or why not) is in the Workload's conditions.
KUEUE_WORKLOAD = Resource("kueue.x-k8s.io/v1beta2", "Workload")
KUEUE_JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"


@dataclass(frozen=True)
class ErrorContext:
    """What a refusal's fix may name: the stack the user passed and its team."""

    stack: str
    namespace: str | None = None
    group: str | None = None  # the team's identity group (RBAC)


class KubeClient:
    """One connection to one cluster. `api_client` is a kubernetes.client.ApiClient."""

    def __init__(self, api_client, context: ErrorContext):
        self.api_client = api_client
        self.context = context

    @classmethod
    def for_stack(cls, stack: Stack, api_client=None) -> KubeClient:
        team = stack.config.team
        context = ErrorContext(stack.name, team.namespace_name if team else None, team.group if team else None)
        return cls(api_client if api_client is not None else connect(stack), context)

    # -- verbs -------------------------------------------------------------------------------

    def apply(self, obj: dict) -> dict:
        """Server-side apply of `obj` (namespaced objects carry metadata.namespace)."""
        meta = obj["metadata"]
        return self._request(
            f"applying {obj['kind']} {_where(meta.get('namespace'), meta['name'])}",
            "PATCH", Resource.of(obj).path(meta.get("namespace"), meta["name"]),
            body=obj, query=[("fieldManager", FIELD_MANAGER), ("force", "true")], content_type=APPLY_PATCH,
        )

    def create(self, obj: dict) -> dict:
        """Create `obj` (for generateName objects, which apply cannot name)."""
        meta = obj["metadata"]
        return self._request(f"creating {obj['kind']} {_where(meta.get('namespace'), meta.get('name') or meta.get('generateName', '') + '*')}",
                             "POST", Resource.of(obj).path(meta.get("namespace")), body=obj)

    def patch(self, resource: Resource, namespace: str | None, name: str, patch: dict, subresource: str | None = None) -> dict:
        """A JSON merge patch of fields of an existing object that Plinth does not own (a pod's
        annotations, a status), as `kubectl patch --type merge` sends it."""
        return self._request(f"patching {resource.kind} {_where(namespace, name)}{'/' + subresource if subresource else ''}",
                             "PATCH", resource.path(namespace, name, subresource), body=patch, content_type=MERGE_PATCH)

    def get(self, resource: Resource, namespace: str | None, name: str) -> dict | None:
        """The object, or None if it does not exist."""
        return self._request(f"reading {resource.kind} {_where(namespace, name)}", "GET", resource.path(namespace, name), missing_ok=True)

    def list(self, resource: Resource, namespace: str | None, selector: str | None = None, field_selector: str | None = None) -> list[dict]:
        """Objects of one kind (each with its apiVersion and kind filled in, as `kubectl get -o json` shows them)."""
        query = [("labelSelector", selector)] if selector else []
        if field_selector:
            query.append(("fieldSelector", field_selector))
        listing = self._request(f"listing {resource.kind}s{' in namespace ' + namespace if namespace else ''}", "GET", resource.path(namespace), query=query)
        return [{**item, "apiVersion": resource.api_version, "kind": resource.kind} for item in listing.get("items") or []]

    def delete(self, resource: Resource, namespace: str | None, name: str, missing_ok: bool = True) -> bool:
        """Delete one object (its dependents go in the background). False if it was already gone."""
        found = self._request(f"deleting {resource.kind} {_where(namespace, name)}", "DELETE", resource.path(namespace, name),
                              query=[("propagationPolicy", "Background")], missing_ok=missing_ok)
        return found is not None

    def delete_collection(self, resource: Resource, namespace: str, selector: str) -> None:
        self._request(f"deleting the {resource.kind}s labelled {selector}", "DELETE", resource.path(namespace), query=[("labelSelector", selector)])

    def server_version(self) -> str:
        """The API server's version (gitVersion), e.g. v1.36.3."""
        return self._request("reading the server version", "GET", "/version").get("gitVersion", "")

    def pod_log(self, namespace: str, pod: str, container: str, follow: bool = False, tail: int | None = None,
                until: Callable[[], bool] | None = None, poll: float = 2.0) -> Iterator[str]:
        """The container's log, in whole lines as they arrive (streamed while `follow`). With
        `until`, following also stops once it returns True (checked every `poll` seconds): a
        node's log stream may stay open after the container is gone."""
        from urllib3.exceptions import HTTPError

        query = [("container", container), ("follow", str(follow).lower())]
        if tail is not None:
            query.append(("tailLines", str(tail)))
        response = self._send(f"reading the log of pod {namespace}/{pod}", "GET", POD.path(namespace, pod, "log"), query=query, stream=True)
        done = threading.Event()
        if follow and until is not None:
            def watch() -> None:
                while not done.wait(poll):
                    if until():
                        done.set()
                        response.shutdown()   # unblocks the read below
            threading.Thread(target=watch, daemon=True).start()
        try:
            pending = b""
            for chunk in _chunks(response, done, HTTPError):
                pending += chunk
                cut = pending.rfind(b"\n") + 1  # whole lines only; the rest comes with the next chunk
                if cut:
                    yield pending[:cut].decode("utf-8", "replace")
                    pending = pending[cut:]
            if pending:
                yield pending.decode("utf-8", "replace")
        finally:
            done.set()
            response.release_conn()

    # -- transport ---------------------------------------------------------------------------

    def _request(self, what: str, method: str, path: str, body=None, query=None, content_type=None, missing_ok: bool = False):
        response = self._send(what, method, path, body=body, query=query, content_type=content_type, missing_ok=missing_ok)
        if response is None:
            return None
        return json.loads(response.read() or b"{}")

    def _send(self, what: str, method: str, path: str, body=None, query=None, content_type=None, stream: bool = False, missing_ok: bool = False):
        """One HTTP request built by the client itself (auth, headers, query encoding); a
        non-2xx answer becomes `api_error`, or None for a missing object with `missing_ok`."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        client = self.api_client
        headers = {"Accept": "application/json", "Content-Type": content_type or "application/json"}
        request = client.param_serialize(method, path, query_params=query or None, header_params=headers, body=body, auth_settings=["BearerToken"])
        try:
            response = client.call_api(*request)
        except HTTPError as exc:
            raise PlinthError(f"{what}: cannot reach the Kubernetes API ({type(exc).__name__})", "check the cluster is up and the stack's kubernetes:context") from None
        if 200 <= response.status <= 299:
            return response.response if stream else response
        response.read()
        exc = ApiException(http_resp=response)
        if missing_ok and exc.status == 404 and not _unknown_resource(exc):
            return None
        raise api_error(what, exc, self.context, path)


def _chunks(response, stopped: threading.Event, errors) -> Iterator[bytes]:
    """The response body as it arrives; a read cut by `stopped` ends it quietly."""
    try:
        yield from response.stream(4096)
    except (errors, OSError, ValueError):
        if not stopped.is_set():
            raise


def api_reason(exc) -> str:
    """The API server's own message (a Status object's `message`), else the HTTP status."""
    try:
        return " ".join(json.loads(exc.body)["message"].split())
    except (TypeError, ValueError, KeyError):
        return f"{exc.status} {exc.reason}"


def _unknown_resource(exc) -> bool:
    return exc.status == 404 and "the server could not find the requested resource" in api_reason(exc).lower()


def api_error(what: str, exc, context: ErrorContext, path: str = "") -> PlinthError:
    """The one mapping of API failures to a one-line error with its fix."""
    reason = api_reason(exc)
    fix = None
    if exc.status in (401, 403) and "exceeded quota" in reason:
        fix = "lower the job's workers or resources, or raise the team's quota in its stack"
    elif exc.status in (401, 403):
        group = f" ({context.group})" if context.group else ""
        fix = f"check that your identity is in the team's group{group} and the stack's kubernetes:context"
    elif _unknown_resource(exc):
        group = path.split("/")[2] if path.startswith("/apis/") else ""
        fix = f"the cluster lacks this API: install {ENGINES.get(group, group or 'its engine')} (the platform stack installs it)"
    elif exc.status == 404 and context.namespace:
        fix = f"does namespace {context.namespace!r} exist? pulumi up -s {context.stack} creates it"
    elif exc.status == 409:
        fix = "another field manager owns these fields; change them there, or delete the object first"
    return PlinthError(f"{what}: {reason}", fix)


def _where(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def connect(stack: Stack):
    """An ApiClient for the stack's kubeconfig context (in-cluster credentials inside a pod)."""
    from kubernetes import client, config

    context = stack.config.kubernetes.context or provider_context(stack)
    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not context:
            config.load_incluster_config()
            return client.ApiClient()
        return config.new_client_from_config(context=context)
    except (config.ConfigException, OSError) as exc:
        where = f"context {context!r}" if context else "the current context"
        raise PlinthError(f"cannot use kubeconfig {where} for stack {stack.name!r}: {' '.join(str(exc).split())}", "check KUBECONFIG / ~/.kube/config, or set kubernetes:context in the stack file") from None


def provider_context(stack: Stack) -> str | None:
    """The stack file's `kubernetes:context` (what Pulumi's provider deploys to), so the CLI
    talks to the cluster `pulumi up` built unless plinth:kubernetes.context says otherwise."""
    import yaml

    document = yaml.safe_load(stack.file.read_text()) or {}
    context = (document.get("config") or {}).get("kubernetes:context")
    return str(context) if context else None


# -- reaching a Service from outside the cluster ------------------------------------------------


def service_address(url_host: str) -> tuple[str, str] | None:
    """(service, namespace) of a cluster-internal name (<service>.<namespace>.svc[.cluster.local]),
    else None: an address this machine can reach as it is."""
    parts = url_host.split(".")
    if len(parts) == 3 and parts[2] == "svc" or len(parts) == 5 and parts[2:] == ["svc", "cluster", "local"]:
        return parts[0], parts[1]
    return None


def ready_pod(client: KubeClient, namespace: str, service: str) -> str:
    """A Ready pod behind `service`, as `kubectl port-forward svc/<service>` picks one."""
    found = client.get(Resource("v1", "Service"), namespace, service)
    if found is None:
        raise PlinthError(f"service {namespace}/{service} does not exist", "is the platform stack deployed? pulumi up -s <platform stack> creates it")
    selector = (found.get("spec") or {}).get("selector") or {}
    if not selector:
        raise PlinthError(f"service {namespace}/{service} selects no pods (its endpoints are outside the cluster)",
                          "reach that address directly: set the stack's registry.trackingUri to it")
    pods = client.list(Resource("v1", "Pod"), namespace, ",".join(f"{k}={v}" for k, v in sorted(selector.items())))
    for pod in pods:
        conditions = (pod.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            return pod["metadata"]["name"]
    raise PlinthError(f"no Ready pod behind service {namespace}/{service} ({len(pods)} pods)", f"check the pods: kubectl -n {namespace} get pods")


class PortForward:
    """A local port forwarded to a pod's port through the API server (the pods/portforward
    subresource, as `kubectl port-forward` uses): each local connection opens its own stream.
    Serves from a daemon thread until `close` or the process exits."""

    def __init__(self, client: KubeClient, namespace: str, pod: str, port: int):
        import socketserver

        self.client, self.namespace, self.pod, self.port = client, namespace, pod, port
        forward = self

        class Connection(socketserver.BaseRequestHandler):
            def handle(self):
                forward._pipe(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Connection)
        self._server.daemon_threads = True
        self.local_port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name=f"port-forward {namespace}/{pod}:{port}", daemon=True).start()

    def _pipe(self, local) -> None:
        import select

        from kubernetes import client as k8s
        from kubernetes.stream import portforward

        stream = portforward(k8s.CoreV1Api(self.client.api_client).connect_get_namespaced_pod_portforward,
                             self.pod, self.namespace, ports=str(self.port))
        remote = stream.socket(self.port)
        remote.setblocking(True)
        try:
            ends = [local, remote]
            while True:
                readable, _, _ = select.select(ends, [], [], 60)
                if not readable:
                    continue
                for end in readable:
                    data = end.recv(65536)
                    if not data:
                        return
                    (remote if end is local else local).sendall(data)
        finally:
            remote.close()
            stream.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
