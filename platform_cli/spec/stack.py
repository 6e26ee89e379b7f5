"""Stack configuration: the typed model of `stacks/Pulumi.<stack>.yaml`.

A stack file is a Pulumi stack file (`config:` with namespaced keys). Plinth owns the `plinth:`
namespace; other namespaces (`kubernetes:context`, ...) belong to providers and are left alone.
The same file drives `pulumi up` (infra/) and the CLI, so both read it through this model.

    config:
      plinth:target: local
      plinth:local: {home: .plinth/local, sparkCores: 2, horovodSlots: 2}

Relative paths are resolved against the project root (the directory holding Pulumi.yaml), so
a stack means the same thing from any working directory.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel, to_snake

from platform_cli.errors import PlinthError, one_line, shown

NAMESPACE = "plinth"
DEFAULT_STACK = "local"
STACK_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,100}$"


class ConfigModel(BaseModel):
    """Stack-file sections: camelCase keys, unknown keys rejected (a typo is an error, not a no-op)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class Prices(ConfigModel):
    """What an hour of a resource costs, as the platform's owner sets it: `plinth usage` and the
    console multiply resource-hours by these (no cloud billing API is read)."""

    currency: str = Field("USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. USD, EUR, CNY")
    price_per_cpu_hour: float = Field(0.0, ge=0, alias="pricePerCpuHour", description="one requested CPU core for an hour")
    price_per_gib_hour: float = Field(0.0, ge=0, alias="pricePerGiBHour", description="one requested GiB of memory for an hour")
    price_per_gpu_hour: float = Field(0.0, ge=0, alias="pricePerGpuHour", description="one GPU for an hour, where its pool sets no price")


class LocalConfig(ConfigModel):
    """The embedded platform on this machine."""

    home: str = Field(".plinth/local", description="job records, logs, registry and storage of the local platform")
    spark_cores: int = Field(2, ge=1, description="N in spark-submit --master local[N]")
    horovod_slots: int = Field(2, ge=1, description="most Horovod workers (-np) on localhost")
    # Slots, not steps: a step takes as many as it has workers, so a 2-worker Horovod step does
    # not share a 2-core machine with a Spark step. Built-in steps (register, evaluate) take one.
    flow_slots: int = Field(2, ge=1, description="worker slots a flow run fills at once on this machine")
    prices: Prices = Field(default_factory=Prices, description="what this machine's resource-hours cost (plinth usage)")


class StorageConfig(ConfigModel):
    # A path (local) or a URI (hdfs://, s3://) on cluster stacks. Jobs see it as ${storage}.
    root: str | None = Field(None, description="defaults to <local.home>/storage on the local target")


class RegistryConfig(ConfigModel):
    tracking_uri: str | None = Field(None, description="MLflow tracking/registry URI; defaults to SQLite under local.home")
    artifact_root: str | None = Field(None, description="where model versions are stored; defaults under local.home")


class AutoRollbackConfig(ConfigModel):
    """Limits a canary must stay within once it has served min_requests; breaching one (and doing
    worse than production on it) sends all traffic back to production. A canary whose server is
    down (refusing connections) goes back at once, whatever its request count."""

    max_error_rate: float = Field(0.02, ge=0, le=1, description="share of requests answered 5xx or not at all")
    max_p99_ms: float | None = Field(None, gt=0, description="99th percentile latency through the router, ms")
    min_requests: int = Field(200, ge=1, description="canary requests before the limits are judged")


def canary_share_problem(percent: int) -> str | None:
    """Why `percent` is not a canary's share of traffic, or None. The one statement of the rule,
    for the stack's canaryMax, a flow's promote step and the release commands alike."""
    if 1 <= percent <= 99:
        return None
    return f"{percent} is not a canary share: a canary takes 1-99 percent of traffic (a full rollout gives a version all of it)"


def _canary_share(percent: int) -> int:
    if problem := canary_share_problem(percent):
        raise ValueError(problem)
    return percent


CanaryShare = Annotated[int, AfterValidator(_canary_share)]


class GrayReleaseConfig(ConfigModel):
    """How new model versions take traffic (plinth model promote / rollout / approve / rollback)."""

    require_approval: bool = Field(False, description="a version needs `plinth model approve` before it takes more than canaryMax percent")
    canary_max: CanaryShare = Field(10, description="the largest traffic share, in percent, of an unapproved canary")
    auto_rollback: AutoRollbackConfig | None = Field(None, description="limits that roll a worse canary back automatically")


class BatchingConfig(ConfigModel):
    """How a model server coalesces concurrent requests into one model call (serving/batching.py)."""

    max_batch: int = Field(64, ge=1, le=4096, description="most rows in one model call")
    max_wait_ms: float = Field(2.0, ge=0, le=1000, description="longest a batch waits for requests already on their way, ms")


class ServingConfig(ConfigModel):
    host: str = "127.0.0.1"
    port: int = Field(8500, ge=1024, le=65535, description="HTTP port of the first model server")
    batching: BatchingConfig = BatchingConfig()
    workers: int = Field(1, ge=1, le=64, description="model server processes per version, sharing its port")
    gray_release: GrayReleaseConfig = GrayReleaseConfig()
    prometheus_url: str | None = Field(None, pattern=r"^https?://[^\s]+$",
                                       description="the cluster's Prometheus (HTTP API base URL), where `plinth model compare` reads a cluster stack's versions")

    def server_args(self) -> list[str]:
        """The model server's flags for these settings (python -m platform_cli.serving.server)."""
        return ["--max-batch", str(self.batching.max_batch), "--max-wait-ms", f"{self.batching.max_wait_ms:g}",
                "--workers", str(self.workers)]


# ---------------------------------------------------------------------------------------------
# Cluster stacks. A platform stack (one per cluster) installs what every team shares; a team
# stack (one per team environment) carves out the team's slice and is where its jobs run.

# Home of the platform's shared services (the MLflow server, ...); team network policies may reach it.
PLATFORM_NAMESPACE = "plinth-system"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
HOSTNAME = r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
# Kubernetes quantities ("64", "500m", "256Gi"); the API server parses them, we only check shape.
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$"
PATTERN_MEANINGS = {
    DNS_LABEL: "must be a DNS label: lower-case letters, digits and '-', at most 63",
    HOSTNAME: "must be a DNS name: dot-separated DNS labels (lower-case letters, digits and '-')",
    QUANTITY: "must be a Kubernetes quantity such as 500m, 64 or 256Gi",
}


def _cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise ValueError(f"{value!r} must be a network in CIDR notation, such as 10.0.0.0/16") from None
    return value


Cidr = Annotated[str, AfterValidator(_cidr)]


class Taint(ConfigModel):
    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"


class NodeClassRef(ConfigModel):
    """The cloud-specific node class a Karpenter NodePool launches from (it comes with the cluster)."""

    group: str = "karpenter.k8s.aws"
    kind: str = "EC2NodeClass"
    name: str = Field("default", pattern=DNS_LABEL)


class GpuPoolConfig(ConfigModel):
    """A pool of GPU nodes. Jobs target it through its labels and tolerate its taints."""

    name: str = Field(pattern=DNS_LABEL)
    provider: Literal["karpenter", "static"] = Field(
        "karpenter", description="karpenter: NodePools launch nodes on demand; static: the nodes exist already with the pool's labels and taints (on premises, plinth sim)"
    )
    node_class: NodeClassRef = Field(default_factory=NodeClassRef, description="karpenter: the node class (AMI, subnets, IAM role) nodes launch from")
    gpu_type: str = Field(description="accelerator product, e.g. nvidia-tesla-t4, nvidia-a100")
    gpus_per_node: int = Field(ge=1, le=16)
    instance_types: list[str] = Field(default_factory=list, description="cloud instance types the pool may launch")
    min_nodes: int = Field(0, ge=0)
    max_nodes: int = Field(ge=1)
    labels: dict[str, str] = Field(default_factory=dict)
    price_per_gpu_hour: float | None = Field(None, ge=0, alias="pricePerGpuHour", description="one of the pool's GPUs for an hour; the platform's prices.pricePerGpuHour when unset")
    taints: list[Taint] = Field(default_factory=lambda: [Taint(key="nvidia.com/gpu", value="present")])

    @model_validator(mode="after")
    def _bounds(self) -> "GpuPoolConfig":
        if self.max_nodes < self.min_nodes:
            raise ValueError(f"maxNodes ({self.max_nodes}) must be ≥ minNodes ({self.min_nodes})")
        if self.provider == "karpenter" and self.min_nodes > 0:
            # Karpenter launches nodes for pending pods and has no floor; a promise of warm
            # nodes it cannot keep would be worse than none.
            raise ValueError(f"minNodes {self.min_nodes}: the karpenter provider scales from zero and keeps no minimum; set minNodes: 0")
        return self

    @property
    def max_gpus(self) -> int:
        return self.max_nodes * self.gpus_per_node

    @property
    def node_labels(self) -> dict[str, str]:
        """Labels every node of the pool carries; jobs select the pool with these."""
        return {"plinth.dev/gpu-pool": self.name, "plinth.dev/gpu-type": self.gpu_type, **self.labels}

    @property
    def tolerations(self) -> list[dict[str, str]]:
        """What a pod needs to run on the pool's nodes despite their taints."""
        return [{"key": t.key, "operator": "Equal", "value": t.value, "effect": t.effect} for t in self.taints]


class PriorityClassConfig(ConfigModel):
    name: str = Field(pattern=DNS_LABEL)
    value: int = Field(ge=0, le=1_000_000_000)
    preempts: bool = Field(True, description="whether pods of this class may preempt lower ones")
    description: str = ""


def default_priority_classes() -> list[PriorityClassConfig]:
    # online serving > training > batch preprocessing > preemptible experiments
    return [
        PriorityClassConfig(name="plinth-online", value=1_000_000, description="online inference"),
        PriorityClassConfig(name="plinth-training", value=100_000, description="training jobs"),
        PriorityClassConfig(name="plinth-batch", value=10_000, description="batch preprocessing"),
        PriorityClassConfig(name="plinth-preemptible", value=1_000, preempts=False, description="experiments; first to go"),
    ]


class SchedulerConfig(ConfigModel):
    kind: Literal["volcano", "kueue"] = "volcano"
    chart_version: str | None = Field(None, description="Helm chart version; defaults to the version Plinth is tested with")
    priority_classes: list[PriorityClassConfig] = Field(default_factory=default_priority_classes)


class HdfsConfig(ConfigModel):
    image: str = "apache/hadoop:3.4.1"
    datanodes: int = Field(3, ge=1)
    namenode_storage: str = Field("50Gi", pattern=QUANTITY)
    datanode_storage: str = Field("500Gi", pattern=QUANTITY)
    storage_class: str | None = None
    replication: int = Field(3, ge=1)


class ObjectStorageConfig(ConfigModel):
    """S3-compatible object storage outside the cluster. Credentials are never in this file: each
    team stack sets plinth:storageAccessKey and plinth:storageSecretKey as Pulumi secrets."""

    endpoint: str = Field(pattern=r"^https?://", description="S3-compatible endpoint URL")
    region: str = "us-east-1"
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", description="bucket holding every team's prefix")


class PlatformStorageConfig(ConfigModel):
    kind: Literal["hdfs", "s3"] = "hdfs"
    hdfs: HdfsConfig | None = None
    s3: ObjectStorageConfig | None = None

    @model_validator(mode="after")
    def _one_backend(self) -> "PlatformStorageConfig":
        if self.kind == "s3" and self.s3 is None:
            raise ValueError("kind s3 needs an s3: section (endpoint, bucket)")
        return self

    # Where the platform stack puts HDFS; team stacks' storage roots must live under uri.
    hdfs_namespace: ClassVar[str] = "plinth-storage"
    hdfs_rpc_port: ClassVar[int] = 8020

    @property
    def uri(self) -> str:
        """The root every team's storage path lives under (fs.defaultFS for HDFS)."""
        if self.kind == "s3":
            return f"s3a://{self.s3.bucket}"
        return f"hdfs://hdfs-namenode.{self.hdfs_namespace}.svc:{self.hdfs_rpc_port}"

    @property
    def hdfs_settings(self) -> HdfsConfig:
        return self.hdfs or HdfsConfig()


class KServeConfig(ConfigModel):
    version: str = "v0.15.2"
    deployment_mode: Literal["RawDeployment", "Serverless"] = Field(
        "RawDeployment", description="Serverless also needs Knative Serving and Istio, which the platform stack does not install"
    )
    cert_manager_version: str = "v1.16.2"
    ingress_class: str = Field("nginx", description="IngressClass KServe gives model servers (RawDeployment)")
    domain: str | None = Field(
        None, pattern=HOSTNAME,
        description="the DNS domain model hostnames are made under (<name>-<namespace>.<domain>); the ingress controller must answer for *.<domain>",
    )
    ingress_namespace: str = Field("ingress-nginx", pattern=DNS_LABEL, description="namespace of that ingress controller; team network policies admit it")


class ParameterServiceConfig(ConfigModel):
    """Redis in the platform namespace, holding exported embedding rows (plinth model params
    export --store redis://...). Its password is the platform stack's secret
    plinth:parameterStorePassword."""

    image: str = Field("redis:7.2.5", description="a Redis image")
    cpu: str = Field("1", pattern=QUANTITY)
    memory: str = Field("4Gi", pattern=QUANTITY, description="Redis's maxmemory is 90% of it: rows past it are refused, never evicted")


class YarnConfig(ConfigModel):
    """A Hadoop cluster reached with spark-submit --master yarn."""

    resource_manager: str = Field(description="host:port of the ResourceManager")
    default_fs: str = Field(description="fs.defaultFS, e.g. hdfs://namenode:8020")
    hadoop_conf_dir: str | None = Field(None, description="HADOOP_CONF_DIR on the submitting machine; generated if unset")


class MlflowConfig(ConfigModel):
    """The MLflow tracking server every team's model library uses: a Deployment and Service
    `mlflow` in plinth-system, its backend store in PostgreSQL, artifacts on the platform's
    storage. `server: external` points the Service at a server outside the cluster instead."""

    server: Literal["in-cluster", "external", "none"] = Field(
        "in-cluster", description="in-cluster: deploy MLflow and PostgreSQL; external: a server at externalAddress; none: teams bring their own"
    )
    image: str = Field("ghcr.io/mlflow/mlflow:v3.17.2", description="an MLflow image with psycopg2 (PostgreSQL) and the artifact store's client")
    postgres_image: str = "postgres:17.6"
    database_storage: str = Field("20Gi", pattern=QUANTITY, description="the PostgreSQL volume")
    storage_class: str | None = None
    external_address: str | None = Field(None, description="external: the IP address the server listens on (port 5000), outside the cluster")

    # Where teams find it: PLATFORM_TRACKING_URI.
    service: ClassVar[str] = "mlflow"
    port: ClassVar[int] = 5000

    @model_validator(mode="after")
    def _address(self) -> "MlflowConfig":
        if self.server == "external":
            if self.external_address is None:
                raise ValueError("server external needs externalAddress: the IP address of the MLflow server")
            try:
                address = ipaddress.ip_address(self.external_address)
            except ValueError:
                raise ValueError(f"externalAddress {self.external_address!r} is not an IP address (a Service's endpoints are addresses, not names)") from None
            if address.is_loopback or address.is_link_local or address.is_unspecified:
                raise ValueError(f"externalAddress {self.external_address}: the API server refuses loopback, link-local and unspecified endpoints; use the machine's own address")
        return self


# The platform's MLflow server as every pod on the cluster reaches it (infra/components/mlflow.py).
PLATFORM_TRACKING_URI = f"http://{MlflowConfig.service}.{PLATFORM_NAMESPACE}.svc:{MlflowConfig.port}"


class ExistingEngine(ConfigModel):
    """An engine the cluster may already run (installed by another team or the cloud provider)."""

    existing: bool = Field(False, description="true: use the cluster's own installation; the platform stack installs nothing and checks that it is there")


class EnginesConfig(ConfigModel):
    """How the platform installs the engines its jobs, flows and models run on (the batch
    scheduler, the Spark, MPI and training operators, Argo Workflows, KServe, the GPU driver)."""

    install: Literal["helm", "crds-only"] = Field(
        "helm",
        description="helm: each engine's Helm chart (controllers and CRDs); crds-only: only the engines' CRDs, "
        "from the files Plinth vendors (an air-gapped cluster whose controllers come another way, or plinth sim)",
    )
    cert_manager: ExistingEngine = Field(default_factory=ExistingEngine, description="cert-manager, which KServe's webhooks get their certificates from")


class KafkaConfig(ConfigModel):
    """A Kafka the cluster runs (installed another way): streaming jobs read topics from it."""

    bootstrap_servers: str = Field(pattern=r"^[A-Za-z0-9.-]+:[0-9]{1,5}(,[A-Za-z0-9.-]+:[0-9]{1,5})*$", description="host:port[,host:port...]")


class PlatformConfig(ConfigModel):
    """What one cluster offers every team (stack role: platform)."""

    cluster: str = Field(pattern=DNS_LABEL, description="cluster name, used in node pool and storage names")
    gpu_pools: list[GpuPoolConfig] = Field(default_factory=list)
    prices: Prices = Field(default_factory=Prices, description="what a CPU-, GiB- and GPU-hour costs on the cluster (pools may set their own GPU price)")
    gpu_driver: Literal["device-plugin", "gpu-operator"] = "device-plugin"
    scheduler: SchedulerConfig = SchedulerConfig()
    storage: PlatformStorageConfig = PlatformStorageConfig()
    kserve: KServeConfig = KServeConfig()
    yarn: YarnConfig | None = None
    kafka: KafkaConfig | None = Field(None, description="where streaming jobs' Kafka sources are; none: streaming jobs read event files")
    engines: EnginesConfig = EnginesConfig()
    mlflow: MlflowConfig = MlflowConfig()
    parameter_service: ParameterServiceConfig | None = Field(None, description="Redis for the parameter service (embedding rows served outside the model)")
    api_server_cidrs: list[Cidr] = Field(
        default_factory=lambda: ["0.0.0.0/0"],
        description="where team pods may reach the Kubernetes API server (Spark drivers create executors); narrow it to the API server's addresses",
    )

    @model_validator(mode="after")
    def _unique_pools(self) -> "PlatformConfig":
        names = [pool.name for pool in self.gpu_pools]
        if duplicate := next((n for n in names if names.count(n) > 1), None):
            raise ValueError(f"gpu pool {duplicate!r} is declared twice")
        return self

    @model_validator(mode="after")
    def _kserve_domain(self) -> "PlatformConfig":
        if self.engines.install == "helm" and self.kserve.domain is None:
            raise ValueError("kserve.domain: missing; KServe would make model hostnames under example.com. "
                             "Set the DNS domain your ingress controller answers for, e.g. kserve: {domain: models.example.org}")
        return self

    def pool(self, name: str) -> GpuPoolConfig | None:
        return next((pool for pool in self.gpu_pools if pool.name == name), None)

    def gpu_hour_price(self, pool: str | None) -> float:
        """The price of a GPU-hour on `pool` (its own price, else the platform's)."""
        found = self.pool(pool) if pool else None
        if found is not None and found.price_per_gpu_hour is not None:
            return found.price_per_gpu_hour
        return self.prices.price_per_gpu_hour


class QuotaConfig(ConfigModel):
    cpu: str = Field(pattern=QUANTITY)
    memory: str = Field(pattern=QUANTITY)
    gpu: int = Field(0, ge=0, description="nvidia.com/gpu the namespace may request")


class ContainerDefaults(ConfigModel):
    """LimitRange defaults for containers that do not say what they need."""

    cpu: str = Field("1", pattern=QUANTITY)
    memory: str = Field("2Gi", pattern=QUANTITY)


class ImageRegistryConfig(ConfigModel):
    """A private container registry. Its password is the Pulumi secret plinth:imageRegistryPassword."""

    server: str = Field(pattern=r"^[A-Za-z0-9.-]+(:[0-9]+)?$", description="registry host[:port], e.g. registry.example.com")
    username: str


class QueueConfig(ConfigModel):
    weight: int = Field(1, ge=1, description="fair-share weight against other teams' queues")
    gpu_share: int = Field(0, ge=0, description="GPUs guaranteed to this team (deserved/nominal quota)")
    priority_class: str = Field("plinth-training", description="default priority class of the team's jobs")


class OnlineStoreConfig(ConfigModel):
    """The team's online feature store: a Redis its streaming jobs write and its model servers
    read (features/online.py). Its password is the Pulumi secret plinth:onlineStorePassword."""

    image: str = Field("redis:7.4-alpine", description="a Redis server image")
    cpu: str = Field("500m", pattern=QUANTITY)
    memory: str = Field("1Gi", pattern=QUANTITY, description="also Redis' maxmemory ceiling's basis")


class TeamConfig(ConfigModel):
    """One team's environment on a cluster (stack role: team)."""

    name: str = Field(pattern=DNS_LABEL)
    platform: str = Field(description="the platform stack this team runs on (a stack name in stacks/)")
    namespace: str | None = Field(None, pattern=DNS_LABEL, description="defaults to the team name")
    group: str = Field(description="identity-provider group whose members operate the team's namespace")
    quota: QuotaConfig
    container_defaults: ContainerDefaults = ContainerDefaults()
    queue: QueueConfig = QueueConfig()
    gpu_pools: list[str] = Field(default_factory=list, description="pools the team may use; all when empty")
    image: str = Field("ghcr.io/plinth-ml/plinth-runtime:0.1.0", description="container image jobs run in")
    image_registry: ImageRegistryConfig | None = Field(None, description="private registry the team's images are pulled from")
    egress_cidrs: list[Cidr] = Field(
        default_factory=list, description="extra networks (CIDRs) the team's pods may reach on any port, e.g. a database outside the cluster"
    )
    online_store: OnlineStoreConfig | None = Field(None, description="a Redis online feature store for streaming jobs and model servers")

    @model_validator(mode="after")
    def _share_within_quota(self) -> "TeamConfig":
        if self.queue.gpu_share > self.quota.gpu:
            raise ValueError(f"queue.gpuShare ({self.queue.gpu_share}) exceeds quota.gpu ({self.quota.gpu}): a team cannot be guaranteed more GPUs than it may use")
        return self

    @property
    def namespace_name(self) -> str:
        return self.namespace or self.name


class KubernetesConfig(ConfigModel):
    """How the CLI reaches the cluster (Pulumi's kubernetes provider reads kubernetes:* keys)."""

    context: str | None = Field(None, description="kubeconfig context; the current one if unset")


class SecretValue(ConfigModel):
    """A value Pulumi keeps encrypted: `pulumi config set --secret plinth:KEY VALUE` writes
    `plinth:KEY: {secure: <ciphertext>}` into the stack file, and only the Pulumi program sees the
    plain text (as a secret Output). Plinth never reads or prints it."""

    secure: str = Field(min_length=1)


# Secret keys of a stack file, each set with `pulumi config set --secret plinth:<key>`.
SECRET_KEYS = ("storageAccessKey", "storageSecretKey", "imageRegistryPassword", "mlflowDatabasePassword", "parameterStorePassword",
               "onlineStorePassword")


def _no_clear_text(value: object, info: ValidationInfo) -> object:
    if value is not None and not isinstance(value, dict):
        key = to_camel(info.field_name)
        raise ValueError(
            f"a secret must not be written in clear text; remove it and run `pulumi config set --secret plinth:{key} VALUE`"
        )
    return value


class StackConfig(ConfigModel):
    """One stack: the local platform, a cluster's platform, or one team environment on it.

    `target` says where jobs run: local processes, Kubernetes, or YARN (spark jobs via
    spark-submit, the rest on Kubernetes). A platform stack has a `platform:` section and runs no
    jobs; a team stack has a `team:` section.
    """

    target: Literal["local", "kubernetes", "yarn"] = "local"
    local: LocalConfig = LocalConfig()
    storage: StorageConfig = StorageConfig()
    registry: RegistryConfig = RegistryConfig()
    serving: ServingConfig = ServingConfig()
    kubernetes: KubernetesConfig = KubernetesConfig()
    platform: PlatformConfig | None = None
    team: TeamConfig | None = None
    # Secrets (encrypted by Pulumi; see SecretValue): S3 credentials of a team on an s3 platform,
    # the password of the team's private image registry, and the platform's parameter-service password.
    storage_access_key: SecretValue | None = None
    storage_secret_key: SecretValue | None = None
    image_registry_password: SecretValue | None = None
    # The password of the platform's MLflow PostgreSQL (platform stacks with mlflow.server in-cluster).
    mlflow_database_password: SecretValue | None = None
    # The parameter service's (Redis) password: a platform stack's Redis, and a team stack's
    # Secret its version servers read it from (the same value).
    parameter_store_password: SecretValue | None = None
    online_store_password: SecretValue | None = None  # a team stack's online feature store (Redis)

    _clear_text = field_validator(*(to_snake(key) for key in SECRET_KEYS), mode="before")(_no_clear_text)

    @model_validator(mode="after")
    def _role(self) -> "StackConfig":
        if self.platform is not None and self.team is not None:
            raise ValueError("a stack is either a platform stack (platform:) or a team stack (team:), not both")
        if self.target != "local" and self.platform is None and self.team is None:
            raise ValueError(f"target {self.target} needs a team: section (or a platform: section for a platform stack)")
        if self.team is not None and self.target == "local":
            raise ValueError("a team stack runs on a cluster: set plinth:target to kubernetes or yarn")
        if self.platform is not None and self.platform.parameter_service is not None and self.parameter_store_password is None:
            raise ValueError(
                "platform.parameterService needs its password as a secret: run `pulumi config set --secret plinth:parameterStorePassword VALUE`"
            )
        if self.team is not None and self.team.image_registry is not None and self.image_registry_password is None:
            raise ValueError(
                "team.imageRegistry needs its password as a secret: run `pulumi config set --secret plinth:imageRegistryPassword VALUE`"
            )
        if self.team is not None and self.team.online_store is not None and self.online_store_password is None:
            raise ValueError(
                "team.onlineStore needs its password as a secret: run `pulumi config set --secret plinth:onlineStorePassword VALUE`"
            )
        return self

    @property
    def needed_secret_keys(self) -> list[str]:
        """The secret keys `pulumi up` of this stack needs, whether or not the file sets them."""
        needed = list(self.secret_keys)
        if self.platform is not None and self.platform.mlflow.server == "in-cluster" and "mlflowDatabasePassword" not in needed:
            needed.append("mlflowDatabasePassword")
        return needed

    @property
    def secret_keys(self) -> list[str]:
        """The secret keys this stack file sets (their values stay encrypted)."""
        return [key for key in SECRET_KEYS if getattr(self, to_snake(key)) is not None]

    @property
    def role(self) -> Literal["local", "platform", "team"]:
        if self.platform is not None:
            return "platform"
        if self.team is not None:
            return "team"
        return "local"


class Stack(BaseModel):
    """A loaded stack: its name, where it came from, and its validated config with paths resolved."""

    model_config = ConfigDict(frozen=True)

    name: str
    file: Path
    project_root: Path
    config: StackConfig

    @property
    def role(self) -> str:
        return self.config.role

    def shown(self, location: str | Path) -> str:
        """A path as output shows it: relative to the project when inside it (so it reads the
        same on every checkout), else as it is (a URI, a path elsewhere)."""
        return str(location) if "://" in str(location) else _shown(Path(location), self.project_root)

    def platform_stack(self) -> "Stack":
        """A team stack's platform stack: the GPU pools, scheduler, storage and KServe it runs on."""
        if self.config.team is None:
            raise PlinthError(f"stack {self.name} is a {self.role} stack, not a team stack", "use a team stack, e.g. --stack team-feed")
        platform = load_stack(self.config.team.platform)
        if platform.config.platform is None:
            raise PlinthError(
                f"{_shown(self.file, self.project_root)}: plinth:team.platform: stack {platform.name!r} is not a platform stack",
                "name a stack that has a plinth:platform section",
            )
        return platform

    def resolve(self, path: str) -> Path:
        return (self.project_root / os.path.expanduser(path)).resolve()

    @property
    def home(self) -> Path:
        return self.resolve(self.config.local.home)

    @property
    def online_stores(self) -> str:
        """Where the local platform's online feature stores are (features/online.py): one
        SQLite file per store, which streaming jobs write and model servers read."""
        return f"sqlite://{self.home / 'online'}"

    def location(self, value: str | None, default: Path) -> str:
        """A configured path (resolved against the project) or URI (as is), else `default`."""
        if value is None:
            return str(default)
        return value if "://" in value else str(self.resolve(value))

    @property
    def storage_root(self) -> str:
        return self.location(self.config.storage.root, self.home / "storage")

    @property
    def tracking_uri(self) -> str:
        uri = self.config.registry.tracking_uri
        if uri is None and self.config.team is not None:
            return PLATFORM_TRACKING_URI
        if uri is None:
            return f"sqlite:///{self.home / 'registry' / 'mlflow.db'}"
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            # sqlite:///relative/path is relative to the working directory; pin it to the project.
            return f"sqlite:///{self.resolve(uri[len('sqlite:///'):])}"
        return uri

    @property
    def artifact_root(self) -> str:
        return self.location(self.config.registry.artifact_root, self.home / "registry" / "artifacts")


def check_team_on_platform(team: Stack, platform: Stack) -> None:
    """What only a team stack and its platform stack together can tell: the pools and priority
    class it names exist, its storage lives on the platform's storage, its credentials are set."""
    where = _shown(team.file, team.project_root)
    config, offered = team.config.team, platform.config.platform
    if config is None or offered is None:
        raise PlinthError(f"{where}: expected a team stack on a platform stack (got {team.role} on {platform.role})")
    pool_names = [pool.name for pool in offered.gpu_pools]
    for index, name in enumerate(config.gpu_pools):
        if name not in pool_names:
            raise PlinthError(
                f"{where}: plinth:team.gpuPools[{index}]: {name!r} is not a GPU pool of platform stack {platform.name}",
                f"use one of: {', '.join(pool_names) or 'none (the platform has no GPU pools)'}",
            )
    usable = [pool for pool in offered.gpu_pools if not config.gpu_pools or pool.name in config.gpu_pools]
    if config.quota.gpu > sum(pool.max_gpus for pool in usable):
        raise PlinthError(
            f"{where}: plinth:team.quota.gpu: {config.quota.gpu} GPUs exceed the {sum(pool.max_gpus for pool in usable)} "
            f"the team's pools can ever hold ({', '.join(p.name for p in usable) or 'none'})",
            "lower quota.gpu or raise maxNodes of a pool in the platform stack",
        )
    classes = [priority.name for priority in offered.scheduler.priority_classes]
    if config.queue.priority_class not in classes:
        raise PlinthError(
            f"{where}: plinth:team.queue.priorityClass: {config.queue.priority_class!r} is not a priority class of platform stack {platform.name}",
            f"use one of: {', '.join(classes)}",
        )
    storage = offered.storage
    root = team.config.storage.root
    if root is None or not root.startswith(storage.uri + "/"):
        raise PlinthError(
            f"{where}: plinth:storage.root: {root!r} is not on the storage of platform stack {platform.name} ({storage.uri})",
            f"use a path under it, e.g. {storage.uri}/teams/{config.name}",
        )
    if storage.kind == "s3":
        for key in ("storageAccessKey", "storageSecretKey"):
            if getattr(team.config, to_snake(key)) is None:
                raise PlinthError(
                    f"{where}: plinth:{key}: missing; platform stack {platform.name} stores data in S3",
                    f"run `pulumi config set --secret plinth:{key} VALUE -s {team.name}`",
                )


def project_root() -> Path:
    """The directory holding Pulumi.yaml: $PLINTH_PROJECT_DIR, else the nearest one above the
    working directory, else the checkout this package was installed from."""
    if env := os.environ.get("PLINTH_PROJECT_DIR"):
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "Pulumi.yaml").is_file():
            return candidate
    return Path(__file__).resolve().parents[2]


def stacks_dir(root: Path) -> Path:
    project_file = root / "Pulumi.yaml"
    try:
        project = yaml.safe_load(project_file.read_text()) if project_file.is_file() else {}
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        raise PlinthError(f"{project_file}: not a readable Pulumi project file: {_one_line(exc)}") from None
    if not isinstance(project, dict):
        raise PlinthError(f"{project_file}: expected a mapping with name, runtime and stackConfigDir")
    return root / project.get("stackConfigDir", "stacks")


def stack_names(root: Path | None = None) -> list[str]:
    directory = stacks_dir(root or project_root())
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in directory.glob("Pulumi.*.yaml"))


def load_stack(name: str | None = None) -> Stack:
    """Load and validate a stack file; every problem becomes one PlinthError naming the key path."""
    name = name or os.environ.get("PLINTH_STACK") or DEFAULT_STACK
    if not re.fullmatch(STACK_NAME_PATTERN, name):
        raise PlinthError(f"{shown(name)} is not a stack name", "stack names are letters, digits, '-', '_' and '.' (the file is stacks/Pulumi.<name>.yaml)")
    root = project_root()
    path = stacks_dir(root) / f"Pulumi.{name}.yaml"
    if not path.is_file():
        known = ", ".join(stack_names(root)) or "none"
        raise PlinthError(f"unknown stack {name!r} (no {_shown(path, root)})", f"known stacks: {known}")
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PlinthError(f"{_shown(path, root)}: not valid YAML: {_one_line(exc)}") from None
    config = parse_stack_config(document, where=_shown(path, root))
    return Stack(name=name, file=path, project_root=root, config=config)


def parse_stack_config(document: dict, where: str) -> StackConfig:
    """Pick the `plinth:` keys out of a Pulumi stack document and validate them."""
    if not isinstance(document, dict) or not isinstance(document.get("config", {}), dict):
        raise PlinthError(f"{where}: expected a Pulumi stack file with a `config:` mapping")
    prefix = f"{NAMESPACE}:"
    values = {key[len(prefix) :]: value for key, value in (document.get("config") or {}).items() if str(key).startswith(prefix)}
    refuse_nul({f"{prefix}{key}": value for key, value in values.items()}, where)
    try:
        return StackConfig.model_validate(values)
    except ValidationError as exc:
        raise PlinthError(f"{where}: {describe_validation_error(exc, prefix=prefix)}") from None


def refuse_nul(document: object, where: str, path: str = "") -> None:
    """Refuse a NUL character anywhere in a spec document, naming its key path: no process
    argument, environment value, file name or Kubernetes field can hold one."""
    if isinstance(document, dict):
        for key, value in document.items():
            here = f"{path}.{_key(key)}" if path else _key(key)
            if isinstance(key, str) and "\x00" in key:
                raise PlinthError(f"{where}: {here}: a key holds a NUL character", "remove it")
            refuse_nul(value, where, here)
    elif isinstance(document, list):
        for index, value in enumerate(document):
            refuse_nul(value, where, f"{path}[{index}]")
    elif isinstance(document, str) and "\x00" in document:
        raise PlinthError(f"{where}: {path}: holds a NUL character", "no argument, file name or manifest field can hold one; remove it")


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """First pydantic error as `key.path: message` (stack keys: `plinth:local.sparkCores`)."""
    error = exc.errors()[0]
    path = ".".join(f"[{part}]" if isinstance(part, int) else _key(part) for part in error["loc"])
    path = path.replace(".[", "[")
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown key (check its spelling)"
    elif error["type"] == "value_error":
        message = str(error["ctx"]["error"])  # our own validators' words, without pydantic's prefix
    elif error["type"] == "string_pattern_mismatch":
        message = PATTERN_MEANINGS.get(error["ctx"]["pattern"], message) + f" (got {shown(error['input'])})"
    elif error["type"] == "literal_error":
        message = f"must be one of {error['ctx']['expected']}"
    elif error["type"] == "union_tag_invalid":
        path = ".".join(filter(None, [path, error["ctx"]["discriminator"].strip("'")]))
        message = f"must be one of {error['ctx']['expected_tags']}"
    if not path:
        prefix = prefix.rstrip(":")
        path = prefix and f"{prefix} keys" or "(top level)"
        prefix = ""
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{prefix}{path}: {message}{more}"


def _key(part: object) -> str:
    """A key of a user's file in an error's key path: as written, unless it could break the line."""
    return one_line(str(part)) if len(str(part)) <= 80 else shown(part)


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
