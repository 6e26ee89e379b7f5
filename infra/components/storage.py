"""Shared storage: HDFS inside the cluster (a namenode and datanodes as StatefulSets with
persistent volumes), or S3-compatible object storage outside it (nothing to create here: each
team stack holds its own credentials as Pulumi secrets)."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.components.hadoop import site_xml
from infra.components.labels import PLATFORM_NAMESPACE_LABEL, metadata
from platform_cli.spec.stack import HdfsConfig, PlatformStorageConfig

HADOOP_HOME = "/opt/hadoop"          # apache/hadoop images
HADOOP_UID = 1000                    # the image's `hadoop` user, who is also the HDFS superuser
NAMENODE_PORTS = {"rpc": PlatformStorageConfig.hdfs_rpc_port, "http": 9870}
DATANODE_PORTS = {"data": 9866, "http": 9864}
# What a team's pods need to reach: namenode RPC and datanode data transfer.
HDFS_CLIENT_PORTS = [NAMENODE_PORTS["rpc"], DATANODE_PORTS["data"]]


def hdfs_site(config: HdfsConfig) -> dict[str, str]:
    return {
        "dfs.replication": str(config.replication),
        "dfs.namenode.name.dir": "/data/namenode",
        "dfs.datanode.data.dir": "/data/datanode",
        # Pods have no stable reverse DNS; the namenode must accept datanodes by IP.
        "dfs.namenode.datanode.registration.ip-hostname-check": "false",
        "dfs.namenode.rpc-bind-host": "0.0.0.0",
        "dfs.namenode.http-bind-host": "0.0.0.0",
        "dfs.permissions.enabled": "true",
    }


def _volume_claim(size: str, storage_class: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"metadata": {"name": "data"}, "spec": spec}


def _hdfs_pod(role: str, config: HdfsConfig, ports: dict[str, int], init: tuple[dict[str, Any], ...] = (), affinity: dict[str, Any] | None = None) -> dict[str, Any]:
    mounts = [
        {"name": "data", "mountPath": "/data"},
        # Only the two site files: the rest of the image's etc/hadoop (log4j, env) stays.
        {"name": "config", "mountPath": f"{HADOOP_HOME}/etc/hadoop/core-site.xml", "subPath": "core-site.xml"},
        {"name": "config", "mountPath": f"{HADOOP_HOME}/etc/hadoop/hdfs-site.xml", "subPath": "hdfs-site.xml"},
    ]
    container = {
        "name": role,
        "image": config.image,
        "command": [f"{HADOOP_HOME}/bin/hdfs", role],
        "ports": [{"name": name, "containerPort": port} for name, port in ports.items()],
        "volumeMounts": mounts,
        "readinessProbe": {"tcpSocket": {"port": next(iter(ports.values()))}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "500m", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
    }
    spec: dict[str, Any] = {
        "securityContext": {"runAsUser": HADOOP_UID, "runAsGroup": HADOOP_UID, "fsGroup": HADOOP_UID},
        "containers": [container],
        "volumes": [{"name": "config", "configMap": {"name": "hdfs-config"}}],
    }
    if init:
        spec["initContainers"] = [{**step, "volumeMounts": mounts} for step in init]
    if affinity:
        spec["affinity"] = affinity
    return spec


class HdfsStorage(pulumi.ComponentResource):
    """HDFS in namespace plinth-storage: `uri` is fs.defaultFS; team paths live under it."""

    def __init__(self, cluster: str, config: HdfsConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("plinth:platform:HdfsStorage", "hdfs", None, opts)
        child = pulumi.ResourceOptions(parent=self)
        name = PlatformStorageConfig.hdfs_namespace
        self.namespace = k8s.core.v1.Namespace("storage-namespace", metadata=metadata(name, labels=PLATFORM_NAMESPACE_LABEL), opts=child)
        ns = self.namespace.metadata.name
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[self.namespace])

        namenode_service = k8s.core.v1.Service(
            "hdfs-namenode",
            metadata=metadata("hdfs-namenode", ns),
            spec={"selector": _selector("namenode"), "ports": [{"name": n, "port": p, "targetPort": p} for n, p in NAMENODE_PORTS.items()]},
            opts=in_ns,
        )
        self.uri = pulumi.Output.concat("hdfs://", namenode_service.metadata.name, ".", ns, ".svc:", str(NAMENODE_PORTS["rpc"]))
        config_map = k8s.core.v1.ConfigMap(
            "hdfs-config",
            metadata=metadata("hdfs-config", ns),
            data={"core-site.xml": site_xml({"fs.defaultFS": self.uri}), "hdfs-site.xml": site_xml(hdfs_site(config))},
            opts=in_ns,
        )
        after_config = pulumi.ResourceOptions(parent=self, depends_on=[self.namespace, config_map])

        # Format the namenode's volume once, on first start; later starts find it formatted.
        format_once = {
            "name": "format",
            "image": config.image,
            "command": ["bash", "-c", f'test -d /data/namenode/current || {HADOOP_HOME}/bin/hdfs namenode -format -nonInteractive -clusterId "$CLUSTER_ID"'],
            "env": [{"name": "CLUSTER_ID", "value": f"plinth-{cluster}"}],
        }
        self.namenode = k8s.apps.v1.StatefulSet(
            "hdfs-namenode",
            metadata=metadata("hdfs-namenode", ns, _selector("namenode")),
            spec={
                "serviceName": "hdfs-namenode",
                "replicas": 1,
                "selector": {"matchLabels": _selector("namenode")},
                "template": {
                    "metadata": {"labels": _selector("namenode")},
                    "spec": _hdfs_pod("namenode", config, NAMENODE_PORTS, init=(format_once,)),
                },
                "volumeClaimTemplates": [_volume_claim(config.namenode_storage, config.storage_class)],
            },
            opts=after_config,
        )
        k8s.core.v1.Service(
            "hdfs-datanode",
            metadata=metadata("hdfs-datanode", ns),
            spec={"clusterIP": "None", "selector": _selector("datanode"), "ports": [{"name": n, "port": p, "targetPort": p} for n, p in DATANODE_PORTS.items()]},
            opts=in_ns,
        )
        spread = {
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": _selector("datanode")}, "topologyKey": "kubernetes.io/hostname"}}
            ]}
        }
        self.datanodes = k8s.apps.v1.StatefulSet(
            "hdfs-datanode",
            metadata=metadata("hdfs-datanode", ns, _selector("datanode")),
            spec={
                "serviceName": "hdfs-datanode",
                "replicas": config.datanodes,
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": _selector("datanode")},
                "template": {
                    "metadata": {"labels": _selector("datanode")},
                    "spec": _hdfs_pod("datanode", config, DATANODE_PORTS, affinity=spread),
                },
                "volumeClaimTemplates": [_volume_claim(config.datanode_storage, config.storage_class)],
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[config_map, self.namenode]),
        )
        self.register_outputs({"uri": self.uri, "namespace": ns})


def _selector(role: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "hdfs", "app.kubernetes.io/component": role}
