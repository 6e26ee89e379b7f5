"""Team stacks under Pulumi's mocks: namespace, quota, limits, RBAC, network policy, queue,
storage and registry access, and secrets that stay secret.

Each team stack reads its platform stack's real (mock-evaluated) outputs through a
StackReference. What the mocks cannot prove is listed in test_infra_program.py; in particular
that a CNI enforces the network policies, that Volcano/Kueue schedule by these queues, and that
the Pulumi engine encrypts secret inputs in its state (the program marks them secret; the
engine's encryption is Pulumi's).
"""

from __future__ import annotations

import base64
import json

import pulumi
import pytest
from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret

from infra.components.scheduler import gpu_share_by_pool
from platform_cli.errors import PlinthError
from platform_cli.render.infra import REDACTED, evaluate, program_path, pulumi_config, render_stack
from platform_cli.spec.stack import GpuPoolConfig, load_stack
from tests.unit.infra_support import by_kind, render_example, stack_config, variant_project

SECRETS = {
    "storageAccessKey": "AKIAPLINTHTEST0001",
    "storageSecretKey": "s3cr3t/Plinth+Key=42",
    "imageRegistryPassword": "hunter2-registry-Pw",
    "onlineStorePassword": "redis-Pw-0nline",
    "parameterStorePassword": "redis-Pw-parameters",
}


@pytest.fixture(scope="module")
def feed():
    return render_example("team-feed")


@pytest.fixture(scope="module")
def secret_team(tmp_path_factory):
    """team-feed on a Kueue + S3 platform, pulling from a private registry, with an online
    feature store: every secret in use."""
    platform = dict(stack_config("platform-prod", "plinth:platform"))
    platform |= {"scheduler": {"kind": "kueue"}, "storage": {"kind": "s3", "s3": {"endpoint": "https://s3.example.com", "bucket": "plinth-prod"}}}
    team = dict(stack_config("team-feed", "plinth:team"), imageRegistry={"server": "registry.example.com", "username": "feed-ci"}, egressCidrs=["10.20.0.0/16"],
                onlineStore={"memory": "2Gi"})
    # What `pulumi config set --secret` writes: only ciphertext in the file.
    encrypted = {f"plinth:{key}": {"secure": f"v1:ciphertext-of-{key}"} for key in SECRETS}
    root = variant_project(tmp_path_factory.mktemp("secrets"), {
        "platform-prod": {"plinth:platform": platform},
        "team-feed": {"plinth:team": team, "plinth:storage": {"root": "s3a://plinth-prod/teams/feed"}, **encrypted},
    })
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PLINTH_PROJECT_DIR", str(root))
        return render_stack("team-feed", secrets=SECRETS), root


def test_the_team_gets_its_namespace_quota_and_defaults(feed) -> None:
    namespaced = [obj for obj in feed.objects() if obj["kind"] not in ("Namespace", "Queue")]
    assert {obj["metadata"]["namespace"] for obj in namespaced} == {"feed"}
    assert by_kind(feed, "Namespace")["feed"]["metadata"]["labels"]["plinth.dev/team"] == "feed"
    quota = by_kind(feed, "ResourceQuota")["feed/plinth-quota"]
    assert quota["spec"]["hard"] == {"requests.cpu": "256", "requests.memory": "1Ti", "requests.nvidia.com/gpu": "16"}
    limits = by_kind(feed, "LimitRange")["feed/plinth-defaults"]["spec"]["limits"][0]
    assert limits == {"type": "Container", "default": {"memory": "2Gi"}, "defaultRequest": {"cpu": "1", "memory": "2Gi"}}   # no default CPU limit
    antispam = by_kind(render_example("team-antispam"), "ResourceQuota")["antispam/plinth-quota"]
    assert antispam["spec"]["hard"]["requests.nvidia.com/gpu"] == "4"


def test_the_teams_group_operates_the_namespace_and_jobs_run_as_their_account(feed) -> None:
    bindings = by_kind(feed, "RoleBinding")
    assert bindings["feed/plinth-team"]["subjects"] == [{"kind": "Group", "name": "feed-ranking", "apiGroup": "rbac.authorization.k8s.io"}]
    assert bindings["feed/plinth-team"]["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "plinth-team"}
    assert bindings["feed/plinth-jobs"]["subjects"] == [{"kind": "ServiceAccount", "name": "plinth-jobs", "namespace": "feed"}]
    rules = by_kind(feed, "Role")["feed/plinth-team"]["rules"]
    may = {(group, resource): rule["verbs"] for rule in rules for group in rule["apiGroups"] for resource in rule["resources"]}
    assert "create" in may[("batch.volcano.sh", "jobs")] and "create" in may[("serving.kserve.io", "inferenceservices")]
    # quotas and network policies are the platform team's: readable, not writable
    assert may[("", "resourcequotas")] == ["get", "list", "watch"]
    assert may[("networking.k8s.io", "networkpolicies")] == ["get", "list", "watch"]
    assert "feed/plinth-jobs" in by_kind(feed, "ServiceAccount")


def test_network_policy_denies_by_default_and_allows_what_the_platform_needs(feed) -> None:
    policies = {name.split("/")[1]: obj["spec"] for name, obj in by_kind(feed, "NetworkPolicy").items()}
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    assert set(policies) == {"default-deny", "allow-same-namespace", "allow-dns", "allow-platform-services", "allow-api-server", "allow-serving-ingress", "allow-storage"}
    storage = policies["allow-storage"]["egress"][0]
    assert storage["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "plinth-storage"}}}]
    assert [port["port"] for port in storage["ports"]] == [8020, 9866]
    assert policies["allow-dns"]["egress"][0]["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    serving = policies["allow-serving-ingress"]
    assert serving["ingress"][0]["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]


def test_the_volcano_queue_is_named_after_the_team_with_its_share_and_weight(feed) -> None:
    queue = by_kind(feed, "Queue")["feed"]           # cluster-scoped; the job renderer uses this name
    assert queue["spec"] == {
        "weight": 4,
        "capability": {"cpu": "256", "memory": "1Ti", "nvidia.com/gpu": 16},
        "deserved": {"nvidia.com/gpu": 16},
        "reclaimable": True,
    }
    assert by_kind(render_example("team-antispam"), "Queue")["antispam"]["spec"]["weight"] == 1


def test_jobs_find_their_storage_registry_and_queue_in_the_team_config_map(feed) -> None:
    settings = by_kind(feed, "ConfigMap")["feed/plinth-team"]["data"]
    assert settings["PLINTH_STORAGE_ROOT"] == "hdfs://hdfs-namenode.plinth-storage.svc:8020/teams/feed"
    assert settings["MLFLOW_TRACKING_URI"] == "http://mlflow.plinth-system.svc:5000"
    assert settings["PLINTH_QUEUE"] == "feed" and settings["PLINTH_PRIORITY_CLASS"] == "plinth-training"
    job = by_kind(feed, "Job")["feed/plinth-storage-init"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item["value"] for item in container["env"]}
    # the HDFS address comes from the platform stack's outputs, the path from the team's file
    assert env["DEFAULT_FS"] == render_example("platform-prod").outputs["storage"]["uri"]
    assert env["TEAM_DIR"] == "/teams/feed" and env["TEAM"] == "feed"
    assert container["command"][:2] == ["bash", "-c"] and "$TEAM_DIR" in container["command"][2]   # values via env, not text


def test_s3_teams_reach_the_endpoint_port_and_their_own_networks(secret_team) -> None:
    rendering, _ = secret_team
    policies = {name.split("/")[1]: obj["spec"] for name, obj in by_kind(rendering, "NetworkPolicy").items()}
    assert policies["allow-storage"]["egress"] == [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 443}]}]
    assert policies["allow-team-egress"]["egress"] == [{"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}]}]
    settings = by_kind(rendering, "ConfigMap")["feed/plinth-team"]["data"]
    assert (settings["AWS_ENDPOINT_URL"], settings["AWS_REGION"]) == ("https://s3.example.com", "us-east-1")


def test_kueue_teams_get_a_cluster_queue_and_local_queue_named_after_them(secret_team) -> None:
    rendering, _ = secret_team
    cluster_queue = by_kind(rendering, "ClusterQueue")["feed"]["spec"]
    assert cluster_queue["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "feed"}}
    gpu_group = cluster_queue["resourceGroups"][1]
    assert gpu_group["coveredResources"] == ["nvidia.com/gpu"]
    # flavor names come from the platform's outputs; the 16-GPU share fits in the a100 pool
    assert [(f["name"], f["resources"][0]["nominalQuota"]) for f in gpu_group["flavors"]] == [("gpu-a100", "16"), ("gpu-t4", "0")]
    assert by_kind(rendering, "LocalQueue")["feed/feed"]["spec"] == {"clusterQueue": "feed"}


def test_gpu_share_fills_the_preferred_pool_first() -> None:
    small = GpuPoolConfig(name="small", gpu_type="t4", gpus_per_node=4, max_nodes=1)
    big = GpuPoolConfig(name="big", gpu_type="a100", gpus_per_node=8, max_nodes=2)
    assert gpu_share_by_pool(10, [small, big]) == {"small": 4, "big": 6}
    assert gpu_share_by_pool(30, [small, big]) == {"small": 4, "big": 16}
    assert gpu_share_by_pool(0, [small, big]) == {"small": 0, "big": 0}


def _plain_strings(value, inside_secret=False):
    """(string, is inside a secret) for every string in a resource's inputs."""
    if is_rpc_secret(value):
        yield from _plain_strings(unwrap_rpc_secret(value), True)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _plain_strings(key, inside_secret)
            yield from _plain_strings(item, inside_secret)
    elif isinstance(value, list):
        for item in value:
            yield from _plain_strings(item, inside_secret)
    elif isinstance(value, str):
        yield value, inside_secret


def test_no_secret_value_appears_in_any_resources_plain_inputs(secret_team) -> None:
    # Pulumi marks secrecy per top-level input (a map with one secret value is secret as a
    # whole), which is also how the engine stores it; a secret copied into any plain input
    # (a ConfigMap value, a label, an env var) fails here.
    rendering, root = secret_team
    basic_auth = base64.b64encode(f"feed-ci:{SECRETS['imageRegistryPassword']}".encode()).decode()
    forbidden = [*SECRETS.values(), basic_auth]
    used_as_secret = set()
    for resource in rendering.resources:
        for text, secret in _plain_strings(resource.inputs):
            for value in forbidden:
                if value in text:
                    assert secret, f"{resource.type} {resource.name} has a secret value in a plain input"
                    used_as_secret.add(value)
    # Not vacuous: every secret did reach a resource, as a secret input.
    assert used_as_secret == set(forbidden)
    credentials = by_kind(rendering, "Secret")["feed/plinth-storage-credentials"]
    assert credentials["stringData"] == {"AWS_ACCESS_KEY_ID": REDACTED, "AWS_SECRET_ACCESS_KEY": REDACTED}
    registry = next(r for r in rendering.resources if r.name == "image-registry")
    config = json.loads(unwrap_rpc_secret(registry.inputs["stringData"])[".dockerconfigjson"])
    assert config["auths"]["registry.example.com"] == {"username": "feed-ci", "password": SECRETS["imageRegistryPassword"], "auth": basic_auth}
    assert {"name": "plinth-image-registry"} in by_kind(rendering, "ServiceAccount")["feed/plinth-jobs"]["imagePullSecrets"]
    # Nor in the stack's outputs, the rendered objects, or the stack file itself.
    shown = json.dumps([rendering.outputs, rendering.objects()])
    stack_file = (root / "stacks" / "Pulumi.team-feed.yaml").read_text()
    assert not [value for value in forbidden if value in shown or value in stack_file]


def test_the_online_store_is_a_redis_whose_password_only_the_secret_holds(secret_team) -> None:
    from platform_cli.render.infra import validate_rendering
    from platform_cli.spec.team_objects import ONLINE_STORE_SECRET, ONLINE_STORE_SERVICE

    rendering, _ = secret_team
    validate_rendering(rendering)  # every object against the Kubernetes schema
    deployment = by_kind(rendering, "Deployment")[f"feed/{ONLINE_STORE_SERVICE}"]["spec"]
    [redis] = deployment["template"]["spec"]["containers"]
    assert redis["args"][:2] == ["--requirepass", "$(REDIS_PASSWORD)"]
    assert redis["env"] == [{"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": ONLINE_STORE_SECRET, "key": "password"}}}]
    assert redis["resources"]["limits"] == {"memory": "2Gi"}
    service = by_kind(rendering, "Service")[f"feed/{ONLINE_STORE_SERVICE}"]["spec"]
    assert service["selector"].items() <= deployment["template"]["metadata"]["labels"].items()
    assert service["ports"] == [{"name": "redis", "port": 6379, "targetPort": "redis"}]
    assert by_kind(rendering, "Secret")[f"feed/{ONLINE_STORE_SECRET}"]["stringData"] == {"password": REDACTED}


def test_version_servers_find_the_parameter_stores_password_in_a_secret_of_the_namespace(secret_team, feed) -> None:
    from platform_cli.spec.team_objects import PARAMETER_STORE_SECRET

    rendering, _ = secret_team
    assert by_kind(rendering, "Secret")[f"feed/{PARAMETER_STORE_SECRET}"]["stringData"] == {"password": REDACTED}
    # A team stack without the secret gets no such Secret (serving from the parameter service
    # is then refused when rendered, with the command that sets it).
    assert f"feed/{PARAMETER_STORE_SECRET}" not in by_kind(feed, "Secret")


def test_an_online_store_needs_its_password_as_a_secret(tmp_path, monkeypatch) -> None:
    team = dict(stack_config("team-feed", "plinth:team"), onlineStore={})
    root = variant_project(tmp_path / "p", {"team-feed": {"plinth:team": team}})
    monkeypatch.setenv("PLINTH_PROJECT_DIR", str(root))
    with pytest.raises(PlinthError, match="pulumi config set --secret plinth:onlineStorePassword"):
        load_stack("team-feed")


def test_a_secret_set_in_clear_text_is_refused(tmp_path, monkeypatch) -> None:
    # in the stack file (the CLI and `pulumi up` read it through the model) ...
    root = variant_project(tmp_path / "p", {"team-feed": {"plinth:imageRegistryPassword": "hunter2"}})
    monkeypatch.setenv("PLINTH_PROJECT_DIR", str(root))
    with pytest.raises(PlinthError, match=r"plinth:imageRegistryPassword: a secret must not be written in clear text; remove it and run `pulumi config set --secret plinth:imageRegistryPassword VALUE`"):
        load_stack("team-feed")
    # ... and in Pulumi's config (`pulumi config set` without --secret)
    monkeypatch.setenv("PLINTH_PROJECT_DIR", str(variant_project(tmp_path / "q", {})))
    config, _ = pulumi_config(load_stack("team-feed"), {})
    with pytest.raises(PlinthError, match=r"plinth:storageSecretKey: a secret must not be written in clear text"):
        evaluate("team-feed", program_path(root), {**config, "plinth:storageSecretKey": "plain"}, [], {})


def test_a_team_on_s3_needs_its_storage_credentials(tmp_path, monkeypatch) -> None:
    platform = dict(stack_config("platform-prod", "plinth:platform"), storage={"kind": "s3", "s3": {"endpoint": "https://s3.example.com", "bucket": "plinth-prod"}})
    root = variant_project(tmp_path / "p", {"platform-prod": {"plinth:platform": platform}, "team-feed": {"plinth:storage": {"root": "s3a://plinth-prod/teams/feed"}}})
    monkeypatch.setenv("PLINTH_PROJECT_DIR", str(root))
    with pytest.raises(PlinthError, match=r"plinth:storageAccessKey: missing; platform stack platform-prod stores data in S3; run `pulumi config set --secret plinth:storageAccessKey VALUE -s team-feed`"):
        render_stack("team-feed")


def test_pulumi_is_left_in_a_clean_state_after_a_rendering(feed) -> None:
    # Renderings reset Pulumi's process-wide settings, so a later program run starts afresh.
    assert pulumi.runtime.settings.get_root_resource() is None
