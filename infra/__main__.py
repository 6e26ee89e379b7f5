"""The Pulumi program: `pulumi up -s <stack>` from the repository root (Pulumi.yaml: main: infra/).

It reads the stack's `plinth:` configuration through Pulumi's config, validates it with the
same typed model the `plinth` CLI uses (platform_cli/spec/stack.py), and composes components:

- a platform stack (plinth:platform) installs what every team on the cluster shares: GPU node
  pools and the NVIDIA driver, the batch scheduler and priority classes, storage, KServe;
- a team stack (plinth:team) carves out one team's environment and reads what its platform
  stack deployed through a StackReference;
- the local stack provisions nothing (the local platform runs on the developer's machine).
"""

import json
import sys
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
from pydantic.alias_generators import to_snake

# `infra.components` and `platform_cli` come from this checkout, whatever directory Pulumi
# runs the program from.
CHECKOUT = str(Path(__file__).resolve().parents[1])
if CHECKOUT not in sys.path:
    sys.path.insert(0, CHECKOUT)

from infra.components.contract import export_platform, platform_reference  # noqa: E402
from infra.components.engines import EngineCrds, WorkloadEngines  # noqa: E402
from infra.components.gpu import GpuDriver  # noqa: E402
from infra.components.gpu_pool import GpuPool  # noqa: E402
from infra.components.hadoop import yarn_client_files  # noqa: E402
from infra.components.mlflow import MlflowServer  # noqa: E402
from infra.components.labels import PLATFORM_NAMESPACE, PLATFORM_NAMESPACE_LABEL, metadata  # noqa: E402
from infra.components.parameter_service import ParameterService  # noqa: E402
from infra.components.scheduler import Scheduler  # noqa: E402
from infra.components.serving import Serving  # noqa: E402
from infra.components.storage import HdfsStorage  # noqa: E402
from infra.components.team import TeamEnvironment  # noqa: E402
from platform_cli.errors import PlinthError  # noqa: E402
from platform_cli.spec.stack import (  # noqa: E402
    PLATFORM_TRACKING_URI,
    SECRET_KEYS,
    Stack,
    StackConfig,
    check_team_on_platform,
    parse_stack_config,
    project_root,
    stacks_dir,
)

SECRET_FIELDS = {to_snake(key) for key in SECRET_KEYS}
STACK_SECTIONS = [field.alias or name for name, field in StackConfig.model_fields.items() if (field.alias or name) not in SECRET_KEYS]


def read_stack_config() -> StackConfig:
    """The stack's `plinth:` keys from Pulumi's config (a stack file or `pulumi config set`).

    Secret keys are only checked for presence and secrecy here; their values reach the
    components as secret Outputs (`read_secrets`), never the model."""
    config = pulumi.Config("plinth")
    values = {}
    for key in STACK_SECTIONS:
        raw = config.get(key)
        if raw is None:
            continue
        # Pulumi hands every value over as a string, structured ones as JSON.
        try:
            values[f"plinth:{key}"] = json.loads(raw)
        except ValueError:
            values[f"plinth:{key}"] = raw
    for key in SECRET_KEYS:
        if pulumi.runtime.is_config_secret(f"plinth:{key}"):
            values[f"plinth:{key}"] = {"secure": "(encrypted)"}
        elif config.get(key) is not None:
            values[f"plinth:{key}"] = "(clear text)"  # the model refuses it with the fix
    return parse_stack_config({"config": values}, where=f"stack {pulumi.get_stack()}")


def read_secrets(config: StackConfig) -> dict[str, pulumi.Output[str]]:
    """The stack's secrets as secret Outputs; a secret the stack needs but has not set stops the
    program with the command that sets it."""
    plinth = pulumi.Config("plinth")
    for key in config.needed_secret_keys:
        if plinth.get(key) is None:
            raise PlinthError(
                f"plinth:{key}: missing; stack {pulumi.get_stack()} needs it",
                f"run `pulumi config set --secret plinth:{key} VALUE -s {pulumi.get_stack()}`",
            )
    return {key: plinth.require_secret(key) for key in config.needed_secret_keys}


def platform_program(stack: Stack) -> None:
    platform = stack.config.platform
    # Home of shared services (the MLflow server, ...); team network policies may reach it.
    namespace = k8s.core.v1.Namespace("platform-namespace", metadata=metadata(PLATFORM_NAMESPACE, labels=PLATFORM_NAMESPACE_LABEL))

    pools = [GpuPool(pool, platform.cluster) for pool in platform.gpu_pools]
    # crds-only: the engines' CRDs from the vendored files instead of their Helm charts, and no
    # GPU driver (the nodes advertise nvidia.com/gpu themselves).
    crds = EngineCrds(platform.scheduler.kind) if platform.engines.install == "crds-only" else None
    if crds is None:
        GpuDriver(platform.gpu_driver, platform.gpu_pools)
    scheduler = Scheduler(platform.scheduler, platform.gpu_pools, crds)
    storage: dict = {"kind": platform.storage.kind}
    if platform.storage.kind == "hdfs":
        hdfs = HdfsStorage(platform.cluster, platform.storage.hdfs_settings)
        storage |= {"uri": hdfs.uri, "namespace": hdfs.namespace.metadata.name, "image": platform.storage.hdfs_settings.image}
    else:
        s3 = platform.storage.s3
        storage |= {"uri": platform.storage.uri, "endpoint": s3.endpoint, "region": s3.region, "bucket": s3.bucket}
    if crds is None:
        Serving(platform.kserve, platform.engines)
        WorkloadEngines(platform.scheduler.kind)
    if platform.mlflow.server != "none":
        MlflowServer(platform.mlflow, platform.storage, namespace, read_secrets(stack.config).get("mlflowDatabasePassword"))
    yarn = None
    if platform.yarn is not None:
        yarn = {"resourceManager": platform.yarn.resource_manager, "defaultFs": platform.yarn.default_fs}
        k8s.core.v1.ConfigMap(
            "hadoop-conf",
            metadata=metadata("hadoop-conf", namespace.metadata.name),
            data=yarn_client_files(platform.yarn.default_fs, platform.yarn.resource_manager),
        )
    parameters = None
    if platform.parameter_service is not None:
        password = read_secrets(stack.config)["parameterStorePassword"]
        service = ParameterService(platform.parameter_service, PLATFORM_NAMESPACE, password,
                                   pulumi.ResourceOptions(depends_on=[namespace]))
        parameters = {"url": service.url}
    export_platform({
        "cluster": platform.cluster,
        "schedulerKind": platform.scheduler.kind,
        "priorityClasses": [priority.metadata.name for priority in scheduler.priority_classes],
        "kueueFlavors": scheduler.flavors,
        "gpuPools": {
            pool.name: {"nodeLabels": gpu_pool.node_labels, "tolerations": gpu_pool.tolerations, "gpusPerNode": pool.gpus_per_node, "maxGpus": pool.max_gpus}
            for pool, gpu_pool in zip(platform.gpu_pools, pools)
        },
        "storage": storage,
        "kserve": {"version": platform.kserve.version, "deploymentMode": platform.kserve.deployment_mode, "ingressNamespace": platform.kserve.ingress_namespace,
                   "domain": platform.kserve.domain},
        "mlflow": {"server": platform.mlflow.server, "trackingUri": PLATFORM_TRACKING_URI if platform.mlflow.server != "none" else None},
        "yarn": yarn,
        "parameterService": parameters,
        "platformNamespace": PLATFORM_NAMESPACE,
    })


def team_program(stack: Stack) -> None:
    platform_stack = stack.platform_stack()
    check_team_on_platform(stack, platform_stack)
    team = TeamEnvironment(stack, platform_stack.config.platform, platform_reference(platform_stack.name), read_secrets(stack.config))
    pulumi.export("namespace", team.namespace.metadata.name)
    pulumi.export("queue", team.queue.name)
    pulumi.export("serviceAccount", team.service_account.metadata.name)


def main() -> None:
    try:
        config = read_stack_config()
        root = project_root()
        stack = Stack(name=pulumi.get_stack(), file=stacks_dir(root) / f"Pulumi.{pulumi.get_stack()}.yaml", project_root=root, config=config)
        if stack.role == "platform":
            platform_program(stack)
        elif stack.role == "team":
            team_program(stack)
    except PlinthError as exc:
        raise pulumi.RunError(str(exc)) from None
    pulumi.export("target", config.target)
    # Secret keys are left out: the model only holds a marker that they are set.
    pulumi.export("config", config.model_dump(mode="json", by_alias=True, exclude=SECRET_FIELDS))


main()
