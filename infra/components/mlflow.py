"""The MLflow tracking server every team's model library talks to (`plinth model ...` and the
register steps of flows), at http://mlflow.plinth-system.svc:5000.

In-cluster: a Deployment of the MLflow server, its backend store in PostgreSQL (a StatefulSet
with a volume), the database password a Pulumi secret that reaches both only as a Kubernetes
Secret, and network policies: team namespaces (label plinth.dev/team) may reach the server,
and only the server may reach the database. The server keeps no artifacts itself
(--no-serve-artifacts): clients write a version's files to the team's artifact root on the
platform's HDFS or S3, and experiments created without one default to <storage>/mlflow.

External: only the Service, its endpoints pointing at a server outside the cluster (the
simulated cluster runs `mlflow server` on the machine itself this way).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.components.labels import metadata
from platform_cli.spec.stack import MlflowConfig, PlatformStorageConfig

DATABASE = "mlflow"
DATABASE_USER = "mlflow"
DATABASE_PORT = 5432
SECRET = "mlflow-database"
SERVER_LABELS = {"app.kubernetes.io/name": "mlflow", "app.kubernetes.io/component": "tracking-server"}
DATABASE_LABELS = {"app.kubernetes.io/name": "mlflow", "app.kubernetes.io/component": "database"}
# Every team namespace carries this label (team.py); nothing else may reach the server.
TEAM_NAMESPACES = {"matchExpressions": [{"key": "plinth.dev/team", "operator": "Exists"}]}


def default_artifact_root(storage: PlatformStorageConfig) -> str:
    """Where experiments without an artifact location of their own keep artifacts. MLflow names
    S3 with s3:// (boto3), where Spark's Hadoop client says s3a://."""
    if storage.kind == "s3":
        return f"s3://{storage.s3.bucket}/mlflow"
    return f"{storage.uri}/mlflow"


def server_container(config: MlflowConfig, storage: PlatformStorageConfig) -> dict[str, Any]:
    database = f"postgresql://{DATABASE_USER}:$(DATABASE_PASSWORD)@mlflow-database:{DATABASE_PORT}/{DATABASE}"
    return {
        "name": "mlflow",
        "image": config.image,
        # $(VAR) is expanded by the kubelet from the container's env: the password never
        # appears in the Deployment, only in the Secret it is read from.
        "command": ["mlflow", "server", "--host", "0.0.0.0", "--port", str(config.port),
                    "--backend-store-uri", database,
                    "--default-artifact-root", default_artifact_root(storage),
                    "--no-serve-artifacts"],
        "env": [{"name": "DATABASE_PASSWORD", "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "password"}}}],
        "ports": [{"name": "http", "containerPort": config.port}],
        "readinessProbe": {"httpGet": {"path": "/health", "port": config.port}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
    }


def database_container(config: MlflowConfig) -> dict[str, Any]:
    return {
        "name": "postgres",
        "image": config.postgres_image,
        "env": [
            {"name": "POSTGRES_DB", "value": DATABASE},
            {"name": "POSTGRES_USER", "value": DATABASE_USER},
            {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "password"}}},
            # The volume's root holds lost+found on most provisioners; initdb wants an empty folder.
            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
        ],
        "ports": [{"name": "postgres", "containerPort": DATABASE_PORT}],
        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
        "readinessProbe": {"exec": {"command": ["pg_isready", "-U", DATABASE_USER, "-d", DATABASE]}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
    }


def network_policies(config: MlflowConfig) -> dict[str, dict[str, Any]]:
    return {
        "mlflow-from-teams": {
            "podSelector": {"matchLabels": SERVER_LABELS},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"namespaceSelector": TEAM_NAMESPACES}], "ports": [{"protocol": "TCP", "port": config.port}]}],
        },
        "mlflow-database-from-server": {
            "podSelector": {"matchLabels": DATABASE_LABELS},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": SERVER_LABELS}}], "ports": [{"protocol": "TCP", "port": DATABASE_PORT}]}],
        },
    }


class MlflowServer(pulumi.ComponentResource):
    """`password`: the database password (a secret Output; in-cluster only)."""

    def __init__(
        self,
        config: MlflowConfig,
        storage: PlatformStorageConfig,
        namespace: k8s.core.v1.Namespace,
        password: pulumi.Output[str] | None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("plinth:platform:MlflowServer", "mlflow", None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ns = namespace.metadata.name
        port = {"name": "http", "port": config.port, "targetPort": config.port, "protocol": "TCP"}
        if config.server == "external":
            # No selector: the endpoints are the external server's address, kept by this stack.
            self.service = k8s.core.v1.Service("mlflow-service", metadata=metadata(config.service, ns), spec={"ports": [port]}, opts=child)
            k8s.discovery.v1.EndpointSlice(
                "mlflow-endpoints",
                # The service-name label ties the slice to the Service; managed-by keeps the
                # endpoint-slice controllers from claiming it.
                metadata=metadata(config.service, ns, {"kubernetes.io/service-name": config.service, "endpointslice.kubernetes.io/managed-by": "plinth"}),
                address_type="IPv6" if ":" in config.external_address else "IPv4",
                endpoints=[{"addresses": [config.external_address], "conditions": {"ready": True}}],
                ports=[{"name": "http", "port": config.port, "protocol": "TCP"}],
                opts=child,
            )
            self.register_outputs({})
            return
        assert password is not None, "an in-cluster MLflow server needs its database password"
        secret = k8s.core.v1.Secret(
            "mlflow-database-secret", metadata=metadata(SECRET, ns), type="Opaque",
            string_data={"password": pulumi.Output.secret(password)}, opts=child,
        )
        after_secret = pulumi.ResourceOptions(parent=self, depends_on=[secret])
        database_service = k8s.core.v1.Service(
            "mlflow-database-service", metadata=metadata("mlflow-database", ns, DATABASE_LABELS),
            spec={"selector": DATABASE_LABELS, "ports": [{"name": "postgres", "port": DATABASE_PORT, "targetPort": DATABASE_PORT}]},
            opts=child,
        )
        claim: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": config.database_storage}}}
        if config.storage_class:
            claim["storageClassName"] = config.storage_class
        database = k8s.apps.v1.StatefulSet(
            "mlflow-database", metadata=metadata("mlflow-database", ns, DATABASE_LABELS),
            spec={
                "serviceName": "mlflow-database",
                "replicas": 1,
                "selector": {"matchLabels": DATABASE_LABELS},
                "template": {"metadata": {"labels": DATABASE_LABELS}, "spec": {"containers": [database_container(config)]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": claim}],
            },
            opts=after_secret,
        )
        k8s.apps.v1.Deployment(
            "mlflow-server", metadata=metadata(config.service, ns, SERVER_LABELS),
            spec={
                "replicas": 1,
                "selector": {"matchLabels": SERVER_LABELS},
                "template": {"metadata": {"labels": SERVER_LABELS}, "spec": {"containers": [server_container(config, storage)]}},
            },
            # The server migrates the schema at start: the database must be up first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[secret, database, database_service]),
        )
        self.service = k8s.core.v1.Service(
            "mlflow-service", metadata=metadata(config.service, ns, SERVER_LABELS),
            spec={"selector": SERVER_LABELS, "ports": [port]}, opts=child,
        )
        for name, spec in network_policies(config).items():
            k8s.networking.v1.NetworkPolicy(f"netpol-{name}", metadata=metadata(name, ns), spec=spec, opts=child)
        self.register_outputs({})
