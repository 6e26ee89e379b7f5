"""The platform stack under Pulumi's mocks: GPU pools, NVIDIA driver, scheduler, storage, KServe.

Each test reads what the real program registered (see test_infra_program.py for what the mocks
cannot prove). Helm releases are asserted as chart, repository, version and values: what the
charts then install is Helm's and the cluster's business.
"""

from __future__ import annotations

from xml.etree import ElementTree

import pytest

from infra.components.hadoop import render_site_xml
from platform_cli.errors import PlinthError
from platform_cli.render.infra import render_stack, rendering_json, rendering_yaml, validate_rendering
from platform_cli.spec.stack import load_stack
from tests.conftest import REPO
from tests.unit.infra_support import by_kind, render_example, stack_config, variant_project


@pytest.fixture(scope="module")
def platform():
    return render_example("platform-prod")


@pytest.fixture(scope="module")
def variant(tmp_path_factory):
    """platform-prod on Kueue, the GPU operator, S3 storage and a YARN cluster."""
    config = dict(stack_config("platform-prod", "plinth:platform"))
    config |= {
        "scheduler": {"kind": "kueue"},
        "gpuDriver": "gpu-operator",
        "storage": {"kind": "s3", "s3": {"endpoint": "https://minio.example.com:9000", "bucket": "plinth-prod"}},
        "yarn": {"resourceManager": "rm.example.com:8032", "defaultFs": "hdfs://nn.example.com:8020/?a=1&b=<2>"},
    }
    root = variant_project(tmp_path_factory.mktemp("variant"), {"platform-prod": {"plinth:platform": config}})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PLINTH_PROJECT_DIR", str(root))
        return render_stack("platform-prod")


def releases(rendering) -> dict[str, dict]:
    return {release["name"]: release for release in rendering.releases()}


def test_each_gpu_pool_is_a_karpenter_nodepool_jobs_can_target(platform) -> None:
    # No Karpenter CRD schema is vendored, so validate_rendering skips NodePools: this test is
    # their schema check, field by field, against karpenter.sh/v1 as Karpenter documents it.
    pools = by_kind(platform, "NodePool")
    assert set(pools) == {"gpu-a100", "gpu-t4"}
    a100 = pools["gpu-a100"]
    assert a100["apiVersion"] == "karpenter.sh/v1"
    assert set(a100["spec"]) == {"template", "limits", "disruption"}
    template = a100["spec"]["template"]
    assert template["metadata"] == {"labels": {"plinth.dev/gpu-pool": "a100", "plinth.dev/gpu-type": "nvidia-a100"}}
    assert template["spec"]["nodeClassRef"] == {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}
    assert {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["p4d.24xlarge"]} in template["spec"]["requirements"]
    for requirement in template["spec"]["requirements"]:
        assert set(requirement) == {"key", "operator", "values"} and all(isinstance(v, str) for v in requirement["values"])
    assert template["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    assert template["spec"]["expireAfter"] == "720h"
    assert a100["spec"]["limits"] == {"nvidia.com/gpu": "32"}          # maxNodes 4 x 8 GPUs
    assert a100["spec"]["disruption"] == {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "10m"}
    assert pools["gpu-t4"]["spec"]["limits"] == {"nvidia.com/gpu": "16"}
    # What the job renderer reads from the stack model is exactly what the nodes carry.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PLINTH_PROJECT_DIR", str(REPO))
        model = load_stack("platform-prod").config.platform.pool("a100")
    assert model.node_labels == template["metadata"]["labels"]
    assert [{k: v for k, v in t.items() if k != "operator"} for t in model.tolerations] == template["spec"]["taints"]


def test_karpenter_pools_cannot_promise_a_minimum(tmp_path, monkeypatch) -> None:
    config = dict(stack_config("platform-prod", "plinth:platform"))
    config["gpuPools"] = [dict(config["gpuPools"][0], minNodes=1)]
    monkeypatch.setenv("PLINTH_PROJECT_DIR", str(variant_project(tmp_path / "p", {"platform-prod": {"plinth:platform": config}})))
    with pytest.raises(PlinthError, match=r"stacks/Pulumi.platform-prod.yaml: plinth:platform.gpuPools\[0\]: minNodes 1: the karpenter provider scales from zero"):
        load_stack("platform-prod")


def test_priority_classes_order_online_over_training_over_batch_over_preemptible(platform) -> None:
    classes = by_kind(platform, "PriorityClass")
    values = {name: obj["value"] for name, obj in classes.items()}
    assert values["plinth-online"] > values["plinth-training"] > values["plinth-batch"] > values["plinth-preemptible"]
    assert classes["plinth-preemptible"]["preemptionPolicy"] == "Never"
    assert classes["plinth-training"]["preemptionPolicy"] == "PreemptLowerPriority"
    assert not any(obj["globalDefault"] for obj in classes.values())


def test_helm_releases_are_pinned_charts_from_their_repositories(platform) -> None:
    installed = releases(platform)
    expected = {
        "volcano": ("volcano", "https://volcano-sh.github.io/helm-charts", "1.15.1", "volcano-system"),
        "nvidia-device-plugin": ("nvidia-device-plugin", "https://nvidia.github.io/k8s-device-plugin", "0.17.1", "nvidia-device-plugin"),
        "cert-manager": ("cert-manager", "https://charts.jetstack.io", "v1.16.2", "cert-manager"),
        "kserve-crd": ("oci://ghcr.io/kserve/charts/kserve-crd", None, "v0.15.2", "kserve"),
        "kserve": ("oci://ghcr.io/kserve/charts/kserve", None, "v0.15.2", "kserve"),
        "kserve-runtimes": ("oci://ghcr.io/kserve/charts/kserve", None, "v0.15.2", "kserve"),
        "spark-operator": ("spark-operator", "https://kubeflow.github.io/spark-operator", "2.5.2", "spark-operator"),
        "argo-workflows": ("argo-workflows", "https://argoproj.github.io/argo-helm", "2.0.1", "argo"),
    }
    assert {name: (r["chart"], r["repo"], r["version"], r["namespace"]) for name, r in installed.items()} == expected
    assert installed["kserve"]["values"]["kserve"]["controller"]["deploymentMode"] == "RawDeployment"
    assert installed["cert-manager"]["values"] == {"crds": {"enabled": True, "keep": False}}   # destroy removes its CRDs
    plugin = installed["nvidia-device-plugin"]["values"]
    terms = plugin["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "plinth.dev/gpu-pool", "operator": "Exists"}]}]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in plugin["tolerations"]
    # The engines the job and flow renderers target: Spark applications in every namespace,
    # gang-scheduled by Volcano; Argo at the version whose CRD schemas flows are validated against.
    spark = installed["spark-operator"]["values"]
    assert spark["spark"]["jobNamespaces"] == [""] and spark["controller"]["batchScheduler"] == {"enable": True, "default": "volcano"}
    assert installed["argo-workflows"]["values"]["images"]["tag"] == "v4.1.2"


def test_hdfs_runs_as_statefulsets_with_volumes_and_its_config(platform) -> None:
    sets = by_kind(platform, "StatefulSet")
    namenode, datanode = sets["plinth-storage/hdfs-namenode"], sets["plinth-storage/hdfs-datanode"]
    assert namenode["spec"]["replicas"] == 1 and datanode["spec"]["replicas"] == 3
    claims = [s["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] for s in (namenode, datanode)]
    assert claims == ["50Gi", "1Ti"]
    assert namenode["spec"]["template"]["spec"]["containers"][0]["command"] == ["/opt/hadoop/bin/hdfs", "namenode"]
    assert namenode["spec"]["template"]["spec"]["initContainers"][0]["name"] == "format"
    config = by_kind(platform, "ConfigMap")["plinth-storage/hdfs-config"]["data"]
    core = {p.findtext("name"): p.findtext("value") for p in ElementTree.fromstring(config["core-site.xml"])}
    hdfs = {p.findtext("name"): p.findtext("value") for p in ElementTree.fromstring(config["hdfs-site.xml"])}
    assert core == {"fs.defaultFS": "hdfs://hdfs-namenode.plinth-storage.svc:8020"}
    assert hdfs["dfs.replication"] == "3"
    assert by_kind(platform, "Service")["plinth-storage/hdfs-namenode"]["spec"]["ports"][0] == {"name": "rpc", "port": 8020, "targetPort": 8020}
    assert by_kind(platform, "Namespace")["plinth-storage"]["metadata"]["labels"]["plinth.dev/platform"] == "true"


def test_kueue_gpu_operator_s3_and_yarn_variant(variant) -> None:
    assert validate_rendering(variant)  # only the NodePools are skipped; everything else validated
    installed = releases(variant)
    assert "volcano" not in installed and "nvidia-device-plugin" not in installed
    assert (installed["kueue"]["chart"], installed["kueue"]["version"]) == ("oci://registry.k8s.io/kueue/charts/kueue", "0.19.2")
    assert installed["gpu-operator"]["repo"] == "https://helm.ngc.nvidia.com/nvidia"
    assert installed["gpu-operator"]["values"]["driver"] == {"enabled": True}
    assert installed["spark-operator"]["values"]["controller"]["batchScheduler"] == {"enable": False}  # Kueue admits Spark pods itself
    flavors = by_kind(variant, "ResourceFlavor")
    assert set(flavors) == {"default", "gpu-a100", "gpu-t4"}
    assert flavors["gpu-t4"]["spec"]["nodeLabels"] == {"plinth.dev/gpu-pool": "t4", "plinth.dev/gpu-type": "nvidia-tesla-t4"}
    assert flavors["gpu-t4"]["spec"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}]
    assert variant.outputs["kueueFlavors"] == {"a100": "gpu-a100", "t4": "gpu-t4"}
    # S3 lives outside the cluster: no HDFS objects, and the outputs say where it is.
    assert not [s for s in variant.of_kind("StatefulSet") if s["metadata"]["name"].startswith("hdfs-")]
    assert variant.outputs["storage"] == {"kind": "s3", "uri": "s3a://plinth-prod", "endpoint": "https://minio.example.com:9000", "region": "us-east-1", "bucket": "plinth-prod"}
    hadoop = by_kind(variant, "ConfigMap")["plinth-system/hadoop-conf"]["data"]
    yarn = {p.findtext("name"): p.findtext("value") for p in ElementTree.fromstring(hadoop["yarn-site.xml"])}
    core = {p.findtext("name"): p.findtext("value") for p in ElementTree.fromstring(hadoop["core-site.xml"])}
    assert yarn == {"yarn.resourcemanager.address": "rm.example.com:8032"}
    assert core == {"fs.defaultFS": "hdfs://nn.example.com:8020/?a=1&b=<2>"}   # escaped in XML, intact when parsed


def test_site_xml_keeps_hostile_values_as_data() -> None:
    hostile = "x</value></property><property><name>evil</name><value>1"
    parsed = {p.findtext("name"): p.findtext("value") for p in ElementTree.fromstring(render_site_xml({"fs.defaultFS": hostile}))}
    assert parsed == {"fs.defaultFS": hostile}


def resource(rendering, name: str):
    """The captured resource of that name (not a component: those are plinth:* types)."""
    return next(r for r in rendering.resources if r.name == name and r.type.startswith("kubernetes:"))


def test_kserve_runtimes_install_after_the_controller_whose_webhook_admits_them(platform) -> None:
    # One chart, two releases: the runtimes release waits for the controller's release, whose
    # Helm wait ends when the controller (its webhook) is Ready.
    installed = releases(platform)
    assert installed["kserve"]["postrender"] == "infra/postrender/kserve-without-runtimes"
    assert installed["kserve-runtimes"]["postrender"] == "infra/postrender/kserve-runtimes-only"
    assert installed["kserve-runtimes"]["values"] == installed["kserve"]["values"]
    assert resource(platform, "kserve-runtimes").depends_on == ("kserve",)
    assert set(resource(platform, "kserve").depends_on) == {"cert-manager", "kserve-crd"}
    assert resource(platform, "kserve").inputs["atomic"] is True


def test_kserve_makes_model_hostnames_under_the_stacks_domain(platform) -> None:
    gateway = releases(platform)["kserve"]["values"]["kserve"]["controller"]["gateway"]
    assert gateway == {"domain": "models.prod.example.org", "ingressGateway": {"className": "nginx"}}
    assert platform.outputs["kserve"]["domain"] == "models.prod.example.org"


def test_a_helm_platform_without_a_kserve_domain_is_refused(tmp_path, monkeypatch) -> None:
    config = dict(stack_config("platform-prod", "plinth:platform"))
    config["kserve"] = {key: value for key, value in config["kserve"].items() if key != "domain"}
    monkeypatch.setenv("PLINTH_PROJECT_DIR", str(variant_project(tmp_path / "p", {"platform-prod": {"plinth:platform": config}})))
    with pytest.raises(PlinthError, match=r"plinth:platform: kserve.domain: missing; KServe would make model hostnames under example.com"):
        load_stack("platform-prod")


def test_an_existing_cert_manager_is_read_not_installed(tmp_path, monkeypatch) -> None:
    config = dict(stack_config("platform-prod", "plinth:platform"), engines={"certManager": {"existing": True}})
    monkeypatch.setenv("PLINTH_PROJECT_DIR", str(variant_project(tmp_path / "p", {"platform-prod": {"plinth:platform": config}})))
    rendering = render_stack("platform-prod")
    assert "cert-manager" not in releases(rendering)
    read = resource(rendering, "cert-manager")
    assert read.read and read.type == "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"
    # KServe still waits for it: its Certificate and Issuer need cert-manager's CRDs.
    assert set(resource(rendering, "kserve").depends_on) == {"cert-manager", "kserve-crd"}


def test_argo_workflows_crds_go_with_the_release(platform) -> None:
    # Minimal CRDs as objects of the release (not the full ones a hook Job would download and
    # no uninstall deletes), deleted with it.
    assert releases(platform)["argo-workflows"]["values"]["crds"] == {"install": True, "full": False, "keep": False}


def test_the_mlflow_server_keeps_its_store_in_postgres_and_admits_only_team_namespaces(platform) -> None:
    deployment = by_kind(platform, "Deployment")["plinth-system/mlflow"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    command = container["command"]
    assert command[:2] == ["mlflow", "server"]
    assert command[command.index("--backend-store-uri") + 1] == "postgresql://mlflow:$(DATABASE_PASSWORD)@mlflow-database:5432/mlflow"
    assert command[command.index("--default-artifact-root") + 1] == "hdfs://hdfs-namenode.plinth-storage.svc:8020/mlflow"
    assert container["env"] == [{"name": "DATABASE_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "mlflow-database", "key": "password"}}}]
    service = by_kind(platform, "Service")["plinth-system/mlflow"]
    assert service["spec"]["ports"][0]["port"] == 5000 and service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    database = by_kind(platform, "StatefulSet")["plinth-system/mlflow-database"]
    assert database["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "20Gi"
    # The password exists only in the Secret, and the rendering shows it redacted.
    assert by_kind(platform, "Secret")["plinth-system/mlflow-database"]["stringData"] == {"password": "(secret)"}
    policies = by_kind(platform, "NetworkPolicy")
    server = policies["plinth-system/mlflow-from-teams"]["spec"]
    assert server["ingress"] == [{"from": [{"namespaceSelector": {"matchExpressions": [{"key": "plinth.dev/team", "operator": "Exists"}]}}],
                                  "ports": [{"protocol": "TCP", "port": 5000}]}]
    store = policies["plinth-system/mlflow-database-from-server"]["spec"]
    assert store["ingress"][0]["from"] == [{"podSelector": {"matchLabels": deployment["spec"]["selector"]["matchLabels"]}}]
    assert set(resource(platform, "mlflow-server").depends_on) >= {"mlflow-database", "mlflow-database-secret"}
    assert platform.outputs["mlflow"] == {"server": "in-cluster", "trackingUri": "http://mlflow.plinth-system.svc:5000"}


def test_the_mlflow_password_is_a_secret_the_rendering_never_shows(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PLINTH_PROJECT_DIR", str(REPO))
    rendering = render_stack("platform-prod", secrets={"mlflowDatabasePassword": "s3cret-value"})
    assert "s3cret-value" not in rendering_yaml(rendering) and "s3cret-value" not in rendering_json(rendering)
    secret = next(r for r in rendering.resources if r.name == "mlflow-database-secret")
    assert secret.object(redact=False)["stringData"] == {"password": "s3cret-value"}


def test_an_external_mlflow_server_is_a_service_with_its_address_as_endpoints(tmp_path, monkeypatch) -> None:
    config = dict(stack_config("platform-prod", "plinth:platform"), mlflow={"server": "external", "externalAddress": "10.20.30.40"})
    monkeypatch.setenv("PLINTH_PROJECT_DIR", str(variant_project(tmp_path / "p", {"platform-prod": {"plinth:platform": config}})))
    rendering = render_stack("platform-prod")
    assert not rendering.of_kind("Deployment") and not by_kind(rendering, "Secret")
    assert "selector" not in by_kind(rendering, "Service")["plinth-system/mlflow"]["spec"]
    endpoints = by_kind(rendering, "EndpointSlice")["plinth-system/mlflow"]
    assert endpoints["endpoints"] == [{"addresses": ["10.20.30.40"], "conditions": {"ready": True}}]
    assert endpoints["metadata"]["labels"]["kubernetes.io/service-name"] == "mlflow"


def test_an_external_mlflow_address_must_be_one_the_api_server_accepts(tmp_path, monkeypatch) -> None:
    config = dict(stack_config("platform-prod", "plinth:platform"), mlflow={"server": "external", "externalAddress": "127.0.0.1"})
    monkeypatch.setenv("PLINTH_PROJECT_DIR", str(variant_project(tmp_path / "p", {"platform-prod": {"plinth:platform": config}})))
    with pytest.raises(PlinthError, match=r"plinth:platform.mlflow: externalAddress 127.0.0.1: the API server refuses loopback"):
        load_stack("platform-prod")


def test_the_spark_operators_crds_belong_to_the_stack_not_to_helms_crds_folder(platform) -> None:
    # Helm installs a chart's crds/ once and never deletes it; the stack's own CRD resources go
    # with `pulumi destroy`.
    assert platform.manifest_files() == [
        "platform_cli/render/crds/spark-operator/v2.5.2/sparkoperator.k8s.io_scheduledsparkapplications.yaml",
        "platform_cli/render/crds/spark-operator/v2.5.2/sparkoperator.k8s.io_sparkapplications.yaml",
    ]
    spark = resource(platform, "spark-operator")
    assert spark.inputs["skipCrds"] is True
    assert set(spark.depends_on) == {"crds-sparkoperator-k8s-io-sparkapplications", "crds-sparkoperator-k8s-io-scheduledsparkapplications"}
PARAMETER_STORE_PASSWORD = "r3dis/Pass+word=7"


@pytest.fixture(scope="module")
def with_parameter_service(tmp_path_factory):
    """platform-prod with the parameter service, its password set as a Pulumi secret."""
    config = dict(stack_config("platform-prod", "plinth:platform"), parameterService={"memory": "2Gi"})
    root = variant_project(tmp_path_factory.mktemp("parameters"), {"platform-prod": {
        "plinth:platform": config, "plinth:parameterStorePassword": {"secure": "v1:ciphertext"}}})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PLINTH_PROJECT_DIR", str(root))
        return render_stack("platform-prod", secrets={"parameterStorePassword": PARAMETER_STORE_PASSWORD})


def test_the_parameter_service_is_redis_behind_a_service_with_its_password_in_a_secret(with_parameter_service) -> None:
    from tests.unit.test_infra_team import _plain_strings

    rendering = with_parameter_service
    assert validate_rendering(rendering)  # the Deployment, Service and Secret against Kubernetes' schemas (NodePools skipped)
    deployment = by_kind(rendering, "Deployment")["plinth-system/plinth-parameters"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert args[args.index("--maxmemory") + 1] == str(2 * 2**30 * 9 // 10) and "noeviction" in args
    assert container["env"] == [{"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "plinth-parameters", "key": "password"}}}]
    service = by_kind(rendering, "Service")["plinth-system/plinth-parameters"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [{"name": "redis", "port": 6379, "targetPort": 6379}]
    assert rendering.outputs["parameterService"] == {"url": "redis://plinth-parameters.plinth-system.svc:6379/0"}
    # The password reaches the Secret, as a secret input, and nothing else.
    holders = set()
    for resource in rendering.resources:
        for text, secret in _plain_strings(resource.inputs):
            if PARAMETER_STORE_PASSWORD in text:
                assert secret, f"{resource.type} {resource.name} has the password in a plain input"
                holders.add((resource.type, resource.name))
    assert holders == {("kubernetes:core/v1:Secret", "parameter-service-password")}
    assert PARAMETER_STORE_PASSWORD not in str(rendering.objects())


def test_without_the_parameter_service_the_platform_exports_none(platform) -> None:
    assert platform.outputs["parameterService"] is None
    assert "plinth-system/plinth-parameters" not in by_kind(platform, "Deployment")


def test_the_parameter_service_without_its_password_is_refused(tmp_path, monkeypatch) -> None:
    config = dict(stack_config("platform-prod", "plinth:platform"), parameterService={})
    root = variant_project(tmp_path / "project", {"platform-prod": {"plinth:platform": config}})
    monkeypatch.setenv("PLINTH_PROJECT_DIR", str(root))
    with pytest.raises(PlinthError, match=r"parameterService needs its password as a secret: run `pulumi config set --secret plinth:parameterStorePassword VALUE`"):
        load_stack("platform-prod")
