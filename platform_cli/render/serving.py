"""Render a model's gray release for a cluster: KServe objects, pure and validated.

Every version taking traffic is served with its own predictor and transformer (KServe
pre-processing runs platform_cli.serving.transformer, the same transform as the Spark job);
the predictor is Plinth's model server in --tensor-inputs mode with the version's model
directory from the registry's artifact store (KServe's storage initializer fetches
STORAGE_URI into /mnt/models), started with the stack's batching and worker settings
(plinth:serving.batching, plinth:serving.workers): the predictor coalesces the transformer's
concurrent requests into one model call itself, as the local server does, rather than through
KServe's batcher, an agent container that would add a hop in front of it.

A version promoted with --parameters REDIS_URL is served from the parameter service: STORAGE_URI
is its dense part (the `parameters` export kept with the version), the predictor runs with
--parameters REDIS_URL and fetches each micro-batch's embedding rows from that Redis in one
lookup (the same server code as on the local platform), keyed by model and version, so the two
versions of a gray release read their own rows. The URL carries no password: the predictor gets
it as PLINTH_REDIS_PASSWORD from the team namespace's Secret (PARAMETER_STORE_SECRET, which the
team stack creates from its plinth:parameterStorePassword), so it is in no manifest. The
transformer is the same either way (the dense part ships the feature spec).

How traffic is split follows the platform's KServe mode:

- RawDeployment: one InferenceService per version (`ctr-v2`, `ctr-v3`) and an InferenceGraph
  `ctr` whose root is a Splitter node with the versions' weights. Clients call the graph.
- Serverless: one InferenceService `ctr`; each version is a Knative revision (its own pods).
  The spec is the newest version's, with `canaryTrafficPercent` while it is a canary: KServe
  keeps the last fully rolled-out revision (production) for the rest. A full rollout drops
  the field; a rollback re-applies production's spec without it.

    objects = render_release(team_stack, state, storage_uris={2: "hdfs://.../model", 3: "..."})

storage_uris holds each version's model directory, or its dense part for a version listed in
state.parameters.
"""

from __future__ import annotations

from platform_cli.errors import PlinthError, shown
from platform_cli.paramservice.store import PASSWORD_ENV
from platform_cli.render.validate import validate_objects
from platform_cli.serving.traffic import TrafficState
from platform_cli.spec.stack import Stack
from platform_cli.spec.team_objects import PARAMETER_STORE_SECRET, PARAMETER_STORE_SECRET_KEY

MODEL_MOUNT = "/mnt/models"  # where KServe's storage initializer puts STORAGE_URI
ONLINE_PRIORITY_CLASS = "plinth-online"
MANAGED_BY = {"app.kubernetes.io/managed-by": "plinth"}


def render_release(stack: Stack, state: TrafficState, storage_uris: dict[int, str]) -> list[dict]:
    """InferenceService(s) and, in RawDeployment mode, the InferenceGraph splitting traffic.

    stack: a team stack (namespace, image, container defaults; its platform's KServe mode).
    state: the split (production, canary, weights). storage_uris: model directory per version.
    """
    team = stack.config.team
    if team is None:
        raise PlinthError(f"stack {stack.name} is a {stack.role} stack; cluster serving needs a team stack", "use e.g. --stack team-feed")
    if not state.weights:
        raise PlinthError(f"model {state.model} has no version taking traffic", f"promote one: plinth model promote {state.model} VERSION")
    missing = sorted(set(state.weights) - set(storage_uris))
    if missing:
        raise PlinthError(f"no storage location for version {missing[0]} of {state.model}")
    _check_parameters(stack, state)
    platform = stack.platform_stack().config.platform
    online = any(p.name == ONLINE_PRIORITY_CLASS for p in platform.scheduler.priority_classes)
    context = _Context(stack, state, platform.kserve.deployment_mode, online)

    if context.mode == "Serverless":
        newest = state.canary if state.canary is not None else state.production
        objects = [context.inference_service(state.model, newest, storage_uris[newest],
                                              canary_percent=state.weights[newest] if state.canary is not None else None)]
    else:
        objects = [context.inference_service(f"{state.model}-v{v}", v, storage_uris[v]) for v in sorted(state.weights)]
        objects.append(context.graph())
    validate_objects(objects)
    return objects


def check_cluster_store(url: str, model: str, version: int) -> None:
    """PlinthError unless pods can read a version's rows at `url`: Redis, not a file here."""
    from urllib.parse import urlsplit

    if urlsplit(url).scheme != "redis":
        raise PlinthError(f"parameters: version {version} of {model} reads {shown(url)}, a file on this machine, which pods cannot reach",
                          "export the version to the cluster's Redis and promote with --parameters redis://HOST:PORT/DB")


def _check_parameters(stack: Stack, state: TrafficState) -> None:
    """A cluster reads embedding rows from Redis, with the password the team's Secret holds."""
    for version, url in sorted(state.parameters.items()):
        if version not in state.weights:
            continue
        check_cluster_store(url, state.model, version)
        if stack.config.parameter_store_password is None:
            raise PlinthError(f"parameters: stack {stack.name} has no plinth:parameterStorePassword, so its namespace has no Secret "
                              f"{PARAMETER_STORE_SECRET} for version servers to read the store's password from",
                              f"run `pulumi config set --secret plinth:parameterStorePassword VALUE -s {stack.name}` (the store's password) and `pulumi up -s {stack.name}`")


class _Context:
    def __init__(self, stack: Stack, state: TrafficState, mode: str, online_priority: bool):
        self.team = stack.config.team
        self.serving = stack.config.serving
        self.state = state
        self.mode = mode
        self.online_priority = online_priority

    def metadata(self, name: str, labels: dict[str, str], annotations: dict[str, str]) -> dict:
        return {
            "name": name,
            "namespace": self.team.namespace_name,
            "labels": {**MANAGED_BY, "plinth.dev/team": self.team.name, "plinth.dev/model": self.state.model, **labels},
            "annotations": {"serving.kserve.io/deploymentMode": self.mode, **annotations},
        }

    def inference_service(self, name: str, version: int, storage_uri: str, canary_percent: int | None = None) -> dict:
        parameters = self.state.parameters.get(version)
        server = self.container(
            ["python", "-m", "platform_cli.serving.server", "--model-name", name, "--model-dir", MODEL_MOUNT,
             "--host", "0.0.0.0", "--http-port", "8080", "--version", str(version), "--tensor-inputs",
             *self.serving.server_args(), *(["--parameters", parameters] if parameters else [])],
            storage_uri,
        )
        if parameters:
            server["env"].append({"name": PASSWORD_ENV, "valueFrom": {"secretKeyRef": {"name": PARAMETER_STORE_SECRET, "key": PARAMETER_STORE_SECRET_KEY}}})
        predictor = {"minReplicas": 1, "containers": [server]}
        if canary_percent is not None:
            predictor["canaryTrafficPercent"] = canary_percent
        transformer = {
            "minReplicas": 1,
            # KServe appends --model_name, --predictor_host and --http_port for the transformer.
            "containers": [self.container(
                ["python", "-m", "platform_cli.serving.transformer", "--feature_spec", f"{MODEL_MOUNT}/feature_spec.json"],
                storage_uri,
            )],
        }
        if self.online_priority:
            predictor["priorityClassName"] = transformer["priorityClassName"] = ONLINE_PRIORITY_CLASS
        stage = self.state.stage(version)
        return {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            # Prometheus scrapes the pods' GET /metrics (KServe annotates them for it): what
            # `plinth model compare` reads back on a cluster.
            "metadata": self.metadata(name, {"plinth.dev/model-version": str(version)},
                                      {"plinth.dev/stage": stage, "plinth.dev/weight": str(self.state.weights[version]),
                                       "serving.kserve.io/enable-prometheus-scraping": "true"}),
            "spec": {"predictor": predictor, "transformer": transformer},
        }

    def container(self, command: list[str], storage_uri: str) -> dict:
        defaults = self.team.container_defaults
        return {
            "name": "kserve-container",
            "image": self.team.image,
            "command": command,
            "env": [{"name": "STORAGE_URI", "value": storage_uri}],
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "resources": {"requests": {"cpu": defaults.cpu, "memory": defaults.memory},
                          "limits": {"memory": defaults.memory}},
        }

    def graph(self) -> dict:
        steps = [
            {"name": f"v{v}", "serviceName": f"{self.state.model}-v{v}", "weight": w, "data": "$request"}
            for v, w in sorted(self.state.weights.items())
        ]
        return {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "InferenceGraph",
            "metadata": self.metadata(self.state.model, {}, {"plinth.dev/generation": str(self.state.generation)}),
            "spec": {"nodes": {"root": {"routerType": "Splitter", "steps": steps}}},
        }
