"""The parameter service on a cluster: Redis in the platform namespace, holding the embedding
rows `plinth model params export --store redis://...` writes and version servers read.

One Deployment (one replica: the rows are re-exported from the model library, which keeps every
version whole, so Redis holds no data that exists nowhere else), a ClusterIP Service, and the
password as a Secret. Redis reads the password from the Secret through an environment variable
that the container's arguments name, so it is in no rendered field in clear text. maxmemory is
90% of the memory limit with `noeviction`: a store that is full refuses writes (the export
fails and says so) instead of silently dropping rows a model needs.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from infra.components.labels import metadata
from platform_cli.render.cluster import parse_quantity
from platform_cli.spec.stack import ParameterServiceConfig

NAME = "plinth-parameters"
PORT = 6379
PASSWORD_SECRET_KEY = "password"
_APP = {"app.kubernetes.io/name": NAME}


def service_url(namespace: str) -> str:
    """What `--store`/`--parameters` take on the cluster (password: PLINTH_REDIS_PASSWORD)."""
    return f"redis://{NAME}.{namespace}.svc:{PORT}/0"


def max_memory_bytes(limit: str) -> int:
    """90% of a Kubernetes memory quantity: Redis's own overhead fits in the rest of the limit."""
    return int(parse_quantity(limit) * 9 // 10)


def redis_container(config: ParameterServiceConfig) -> dict:
    return {
        "name": "redis",
        "image": config.image,
        # $(REDIS_PASSWORD) is expanded by the kubelet from the Secret-backed variable below.
        "args": ["--requirepass", "$(REDIS_PASSWORD)", "--port", str(PORT), "--save", "", "--appendonly", "no",
                 "--maxmemory", str(max_memory_bytes(config.memory)), "--maxmemory-policy", "noeviction"],
        "env": [{"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": NAME, "key": PASSWORD_SECRET_KEY}}}],
        "ports": [{"name": "redis", "containerPort": PORT}],
        "readinessProbe": {"tcpSocket": {"port": PORT}, "periodSeconds": 5},
        "resources": {"requests": {"cpu": config.cpu, "memory": config.memory}, "limits": {"memory": config.memory}},
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": 999},
    }


class ParameterService(pulumi.ComponentResource):
    def __init__(self, config: ParameterServiceConfig, namespace: str, password: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("plinth:platform:ParameterService", NAME, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.secret = k8s.core.v1.Secret(
            "parameter-service-password", metadata=metadata(NAME, namespace, _APP),
            string_data={PASSWORD_SECRET_KEY: password},
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["data", "stringData"]),
        )
        self.deployment = k8s.apps.v1.Deployment(
            "parameter-service",
            metadata=metadata(NAME, namespace, _APP),
            spec={
                "replicas": 1,
                "selector": {"matchLabels": _APP},
                "template": {"metadata": {"labels": {**_APP}}, "spec": {"containers": [redis_container(config)]}},
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.secret]),
        )
        self.service = k8s.core.v1.Service(
            "parameter-service", metadata=metadata(NAME, namespace, _APP),
            spec={"selector": _APP, "ports": [{"name": "redis", "port": PORT, "targetPort": PORT}]}, opts=child,
        )
        self.url = service_url(namespace)
        self.register_outputs({"url": self.url})
