"""One team's environment on a cluster: namespace, quota, defaults, identities, network
policy, queue, storage and registry access.

Everything is in the team's namespace except its queue (a Volcano Queue or Kueue ClusterQueue
is cluster-scoped). The team's group operates the namespace; its jobs run as the
`plinth-jobs` ServiceAccount.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlparse

import pulumi
import pulumi_kubernetes as k8s

from infra.components.hadoop import site_xml, yarn_client_files
from infra.components.labels import PLATFORM_NAMESPACE_LABEL, metadata
from infra.components.online_store import OnlineStore
from infra.components.scheduler import GPU, TeamQueue
from infra.components.storage import HADOOP_HOME, HDFS_CLIENT_PORTS
from platform_cli.spec.stack import PlatformConfig, Stack, TeamConfig
from platform_cli.spec.team_objects import (
    HADOOP_CONF_MAP,
    HDFS_CONFIG_MAP,
    JOBS_SERVICE_ACCOUNT,
    PARAMETER_STORE_SECRET,
    PARAMETER_STORE_SECRET_KEY,
    REGISTRY_SECRET,
    STORAGE_SECRET,
    TEAM_CONFIG_MAP,
    WORKFLOW_SERVICE_ACCOUNT,
)

HDFS = f"{HADOOP_HOME}/bin/hdfs"

OPERATE = ["get", "list", "watch", "create", "update", "patch", "delete"]
READ = ["get", "list", "watch"]
# What a team's members may do in their namespace: run and follow every kind of job Plinth
# renders, serve models, manage their own config and secrets. Quotas, limits, network
# policies and RBAC stay with the platform team (read-only here).
TEAM_RULES = [
    {"apiGroups": [""], "resources": ["pods", "services", "configmaps", "secrets", "persistentvolumeclaims"], "verbs": OPERATE},
    {"apiGroups": [""], "resources": ["pods/log", "events", "resourcequotas", "limitranges", "serviceaccounts"], "verbs": READ},
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": OPERATE},
    {"apiGroups": ["batch.volcano.sh"], "resources": ["jobs"], "verbs": OPERATE},
    {"apiGroups": ["scheduling.volcano.sh"], "resources": ["podgroups"], "verbs": READ},
    {"apiGroups": ["kueue.x-k8s.io"], "resources": ["workloads", "localqueues"], "verbs": READ},
    {"apiGroups": ["sparkoperator.k8s.io"], "resources": ["sparkapplications", "scheduledsparkapplications"], "verbs": OPERATE},
    {"apiGroups": ["kubeflow.org"], "resources": ["mpijobs", "tfjobs"], "verbs": OPERATE},
    {"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices", "inferencegraphs"], "verbs": OPERATE},
    {"apiGroups": ["argoproj.io"], "resources": ["workflows", "workflowtemplates", "cronworkflows"], "verbs": OPERATE},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": READ},
]
# What the jobs themselves need: a Spark driver creates its executors' pods, services and
# config maps; an Argo workflow's pods report their results.
JOB_RULES = [
    {"apiGroups": [""], "resources": ["pods", "services", "configmaps", "persistentvolumeclaims"], "verbs": [*OPERATE, "deletecollection"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": READ},
    {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]},
]
# What Argo's workflow pods need to run a flow's steps: create the workloads of
# render/cluster.py (with their code ConfigMaps) and follow them until their success or failure
# condition holds; report step results.
WORKFLOW_RULES = [
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": OPERATE},
    {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": READ},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": OPERATE},
    {"apiGroups": ["sparkoperator.k8s.io"], "resources": ["sparkapplications"], "verbs": OPERATE},
    {"apiGroups": ["kubeflow.org"], "resources": ["mpijobs", "tfjobs"], "verbs": OPERATE},
    {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]},
]


def network_policies(team: TeamConfig, platform: PlatformConfig) -> dict[str, dict[str, Any]]:
    """Default deny, then what the platform needs: the namespace talks to itself, to DNS, to
    platform services and storage, to the API server (Spark drivers), and the ingress
    controller reaches model servers; plus the team's own egressCidrs."""
    everything: dict[str, Any] = {}
    dns = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                   "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
           "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
    policies: dict[str, dict[str, Any]] = {
        "default-deny": {"podSelector": everything, "policyTypes": ["Ingress", "Egress"]},
        "allow-same-namespace": {
            "podSelector": everything, "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": everything}]}], "egress": [{"to": [{"podSelector": everything}]}],
        },
        "allow-dns": {"podSelector": everything, "policyTypes": ["Egress"], "egress": [dns]},
        "allow-platform-services": {
            "podSelector": everything, "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": {"matchLabels": PLATFORM_NAMESPACE_LABEL}}]}],
        },
        "allow-api-server": {
            "podSelector": everything, "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": cidr}} for cidr in platform.api_server_cidrs],
                        "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]}],
        },
        "allow-serving-ingress": {
            "podSelector": {"matchExpressions": [{"key": "serving.kserve.io/inferenceservice", "operator": "Exists"}]},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": platform.kserve.ingress_namespace}}}]}],
        },
    }
    if platform.storage.kind == "hdfs":
        policies["allow-storage"] = {
            "podSelector": everything, "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": platform.storage.hdfs_namespace}}}],
                        "ports": [{"protocol": "TCP", "port": port} for port in HDFS_CLIENT_PORTS]}],
        }
    else:
        # An S3 endpoint has no fixed addresses: allow its port anywhere.
        endpoint = urlparse(platform.storage.s3.endpoint)
        port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
        policies["allow-storage"] = {
            "podSelector": everything, "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": port}]}],
        }
    if team.egress_cidrs:
        policies["allow-team-egress"] = {
            "podSelector": everything, "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": cidr}} for cidr in team.egress_cidrs]}],
        }
    return policies


def docker_config_json(server: str, username: str, password: str) -> str:
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    return json.dumps({"auths": {server: {"username": username, "password": password, "auth": auth}}})


class TeamEnvironment(pulumi.ComponentResource):
    def __init__(
        self,
        stack: Stack,
        platform: PlatformConfig,
        deployed: pulumi.StackReference,
        secrets: dict[str, pulumi.Output[str]],
        opts: pulumi.ResourceOptions | None = None,
    ):
        team = stack.config.team
        assert team is not None
        super().__init__("plinth:team:Environment", team.name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = {"plinth.dev/team": team.name}

        # The platform stack must have deployed the scheduler this team's file expects.
        deployed_kind = deployed.require_output("schedulerKind").apply(
            lambda kind: kind if kind == platform.scheduler.kind else _mismatch(team.platform, kind, platform.scheduler.kind)
        )

        self.namespace = k8s.core.v1.Namespace(
            "namespace", metadata=metadata(team.namespace_name, labels={**labels, "plinth.dev/scheduler": deployed_kind}), opts=child
        )
        ns = self.namespace.metadata.name
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[self.namespace])

        k8s.core.v1.ResourceQuota(
            "quota", metadata=metadata("plinth-quota", ns, labels),
            spec={"hard": {"requests.cpu": team.quota.cpu, "requests.memory": team.quota.memory, f"requests.{GPU}": str(team.quota.gpu)}},
            opts=in_ns,
        )
        defaults = {"cpu": team.container_defaults.cpu, "memory": team.container_defaults.memory}
        # No default CPU limit: job pods request CPU without a limit (no throttling), and a
        # default limit below a job's request would make the API server refuse its pods.
        k8s.core.v1.LimitRange(
            "limits", metadata=metadata("plinth-defaults", ns, labels),
            spec={"limits": [{"type": "Container", "default": {"memory": team.container_defaults.memory}, "defaultRequest": defaults}]},
            opts=in_ns,
        )

        pull_secrets = []
        if team.image_registry is not None:
            registry = team.image_registry
            k8s.core.v1.Secret(
                "image-registry", metadata=metadata(REGISTRY_SECRET, ns, labels), type="kubernetes.io/dockerconfigjson",
                string_data={".dockerconfigjson": secrets["imageRegistryPassword"].apply(
                    lambda password: docker_config_json(registry.server, registry.username, password))},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.namespace], additional_secret_outputs=["data", "stringData"]),
            )
            pull_secrets = [{"name": REGISTRY_SECRET}]
        self.service_account = k8s.core.v1.ServiceAccount(
            "jobs", metadata=metadata(JOBS_SERVICE_ACCOUNT, ns, labels), image_pull_secrets=pull_secrets or None, opts=in_ns,
        )

        self._role("team", "plinth-team", ns, labels, TEAM_RULES, {"kind": "Group", "name": team.group, "apiGroup": "rbac.authorization.k8s.io"}, in_ns)
        self._role("jobs", JOBS_SERVICE_ACCOUNT, ns, labels, JOB_RULES, {"kind": "ServiceAccount", "name": JOBS_SERVICE_ACCOUNT, "namespace": team.namespace_name}, in_ns)
        k8s.core.v1.ServiceAccount(
            "workflows", metadata=metadata(WORKFLOW_SERVICE_ACCOUNT, ns, labels), image_pull_secrets=pull_secrets or None, opts=in_ns,
        )
        self._role("workflows", WORKFLOW_SERVICE_ACCOUNT, ns, labels, WORKFLOW_RULES, {"kind": "ServiceAccount", "name": WORKFLOW_SERVICE_ACCOUNT, "namespace": team.namespace_name}, in_ns)

        for name, spec in network_policies(team, platform).items():
            k8s.networking.v1.NetworkPolicy(f"netpol-{name}", metadata=metadata(name, ns, labels), spec=spec, opts=in_ns)

        pools = [pool for pool in platform.gpu_pools if not team.gpu_pools or pool.name in team.gpu_pools]
        pools.sort(key=lambda pool: team.gpu_pools.index(pool.name) if team.gpu_pools else 0)
        flavors = {}
        if platform.scheduler.kind == "kueue":
            flavors = {pool.name: deployed.require_output("kueueFlavors").apply(lambda f, p=pool.name: f[p]) for pool in pools}
        self.queue = TeamQueue(team, platform.scheduler.kind, pools, self.namespace, flavors, opts=child)

        storage = deployed.require_output("storage")
        settings: dict[str, pulumi.Input[str]] = {
            "PLINTH_TEAM": team.name,
            "PLINTH_QUEUE": team.name,
            "PLINTH_PRIORITY_CLASS": team.queue.priority_class,
            "PLINTH_IMAGE": team.image,
            "PLINTH_STORAGE_ROOT": stack.storage_root,
            "MLFLOW_TRACKING_URI": stack.tracking_uri,
            "PLINTH_ARTIFACT_ROOT": stack.artifact_root,
        }
        if platform.storage.kind == "s3":
            settings["AWS_ENDPOINT_URL"] = storage.apply(lambda s: s["endpoint"])
            settings["AWS_REGION"] = storage.apply(lambda s: s["region"])
            k8s.core.v1.Secret(
                "storage-credentials", metadata=metadata(STORAGE_SECRET, ns, labels),
                string_data={"AWS_ACCESS_KEY_ID": secrets["storageAccessKey"], "AWS_SECRET_ACCESS_KEY": secrets["storageSecretKey"]},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.namespace], additional_secret_outputs=["data", "stringData"]),
            )
        k8s.core.v1.ConfigMap("settings", metadata=metadata(TEAM_CONFIG_MAP, ns, labels), data=settings, opts=in_ns)

        if team.online_store is not None:
            OnlineStore(team.online_store, ns, labels, secrets["onlineStorePassword"], opts=in_ns)
        if "parameterStorePassword" in secrets:
            # The parameter store's password where the team's version servers can read it: a pod
            # takes a Secret only from its own namespace, and the platform's Redis keeps its own
            # in the platform namespace.
            k8s.core.v1.Secret(
                "parameter-store-password", metadata=metadata(PARAMETER_STORE_SECRET, ns, labels),
                string_data={PARAMETER_STORE_SECRET_KEY: secrets["parameterStorePassword"]},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.namespace], additional_secret_outputs=["data", "stringData"]),
            )

        if platform.storage.kind == "hdfs":
            # HDFS client settings for the team's job pods (mounted as HADOOP_CONF_DIR).
            k8s.core.v1.ConfigMap(
                "hdfs-config", metadata=metadata(HDFS_CONFIG_MAP, ns, labels),
                data={"core-site.xml": site_xml({"fs.defaultFS": storage.apply(lambda s: s["uri"])}),
                      "hdfs-site.xml": site_xml({"dfs.client.use.datanode.hostname": "false"})},
                opts=in_ns,
            )
            self._hdfs_directory(team.name, stack.storage_root, storage, ns, labels, pulumi.ResourceOptions(parent=self, depends_on=[self.namespace, self.service_account]))

        yarn = deployed.get_output("yarn")
        if platform.yarn is not None:
            k8s.core.v1.ConfigMap(
                "hadoop-conf", metadata=metadata(HADOOP_CONF_MAP, ns, labels),
                data=yarn_client_files(yarn.apply(lambda y: y["defaultFs"]), yarn.apply(lambda y: y["resourceManager"])),
                opts=in_ns,
            )
        self.register_outputs({"namespace": ns, "queue": team.name})

    def _role(self, resource: str, name: str, ns, labels, rules, subject, opts) -> None:
        role = k8s.rbac.v1.Role(f"role-{resource}", metadata=metadata(name, ns, labels), rules=rules, opts=opts)
        k8s.rbac.v1.RoleBinding(
            f"rolebinding-{resource}", metadata=metadata(name, ns, labels),
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.metadata.name},
            subjects=[subject], opts=opts,
        )

    def _hdfs_directory(self, team: str, root: str, storage: pulumi.Output, ns, labels, opts) -> None:
        """A one-off Job that creates the team's HDFS directory, owned by the team (idempotent)."""
        env = [
            {"name": "DEFAULT_FS", "value": storage.apply(lambda s: s["uri"])},
            {"name": "TEAM_DIR", "value": urlparse(root).path},
            {"name": "TEAM", "value": team},
            {"name": "HADOOP_USER_NAME", "value": "hadoop"},   # the HDFS superuser of apache/hadoop images
        ]
        k8s.batch.v1.Job(
            "storage-directory",
            metadata=metadata("plinth-storage-init", ns, labels),
            spec={
                "backoffLimit": 10,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "restartPolicy": "OnFailure",
                        "serviceAccountName": JOBS_SERVICE_ACCOUNT,
                        "containers": [{
                            "name": "mkdir",
                            "image": storage.apply(lambda s: s["image"]),
                            "command": ["bash", "-c", f'{HDFS} dfs -fs "$DEFAULT_FS" -mkdir -p "$TEAM_DIR" && {HDFS} dfs -fs "$DEFAULT_FS" -chown "$TEAM:$TEAM" "$TEAM_DIR"'],
                            "env": env,
                            "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
                        }],
                    },
                },
            },
            opts=opts,
        )


def _mismatch(platform: str, deployed: str, expected: str) -> str:
    raise pulumi.RunError(
        f"platform stack {platform} has deployed scheduler {deployed}, but its stack file says {expected}; "
        f"run `pulumi up -s {platform}` first"
    )
