"""A team's online feature store: one Redis (Deployment and Service) in its namespace, which the
team's streaming jobs write and its model servers read (platform_cli/features/online.py).

The password is the team stack's Pulumi secret plinth:onlineStorePassword, kept in a Secret that
Redis and the jobs read by name; it never appears in a manifest. The store holds aggregates a
stream can rebuild from its source, so it keeps no disk: a restarted Redis is refilled by
replaying the stream from an earlier checkpoint.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from infra.components.labels import metadata
from platform_cli.spec.stack import OnlineStoreConfig
from platform_cli.spec.team_objects import ONLINE_STORE_PORT, ONLINE_STORE_SECRET, ONLINE_STORE_SECRET_KEY, ONLINE_STORE_SERVICE


def redis_container(config: OnlineStoreConfig) -> dict:
    """The Redis container: password from the Secret (Kubernetes expands $(VAR) in args), no
    snapshots, evicting nothing (a full store is an error, not silently missing features)."""
    return {
        "name": "redis",
        "image": config.image,
        "args": ["--requirepass", "$(REDIS_PASSWORD)", "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"],
        "env": [{"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": ONLINE_STORE_SECRET, "key": ONLINE_STORE_SECRET_KEY}}}],
        "ports": [{"name": "redis", "containerPort": ONLINE_STORE_PORT}],
        "resources": {"requests": {"cpu": config.cpu, "memory": config.memory}, "limits": {"memory": config.memory}},
        "readinessProbe": {"tcpSocket": {"port": ONLINE_STORE_PORT}, "periodSeconds": 5},
        "securityContext": {"runAsNonRoot": True, "runAsUser": 999, "allowPrivilegeEscalation": False},
    }


class OnlineStore(pulumi.ComponentResource):
    def __init__(self, config: OnlineStoreConfig, namespace: pulumi.Input[str], labels: dict[str, str], password: pulumi.Output[str],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("plinth:team:OnlineStore", ONLINE_STORE_SERVICE, None, opts)
        selector = {"app.kubernetes.io/name": ONLINE_STORE_SERVICE}
        labels = {**labels, **selector}
        k8s.core.v1.Secret(
            "online-store-password", metadata=metadata(ONLINE_STORE_SECRET, namespace, labels),
            string_data={ONLINE_STORE_SECRET_KEY: password},
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["data", "stringData"]),
        )
        k8s.apps.v1.Deployment(
            "online-store", metadata=metadata(ONLINE_STORE_SERVICE, namespace, labels),
            spec={"replicas": 1, "selector": {"matchLabels": selector}, "strategy": {"type": "Recreate"},
                  "template": {"metadata": {"labels": labels}, "spec": {"containers": [redis_container(config)]}}},
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.service = k8s.core.v1.Service(
            "online-store-service", metadata=metadata(ONLINE_STORE_SERVICE, namespace, labels),
            spec={"selector": selector, "ports": [{"name": "redis", "port": ONLINE_STORE_PORT, "targetPort": "redis"}]},
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"service": ONLINE_STORE_SERVICE})
