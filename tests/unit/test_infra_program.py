"""The Pulumi program (infra/) run for real under Pulumi's mocks, for every example stack.

What this proves: `infra/__main__.py` reads a stack's `plinth:` config through Pulumi's own
config API and validates it with the CLI's model; for each example stack it registers the
resources asserted here, with these names and inputs; every Kubernetes object it would send is
valid against the Kubernetes v1.30 OpenAPI schema (kubernetes-validate, strict) or the vendored
upstream CRD schema of its kind; a team stack takes live values from its platform stack through
a StackReference answered with the platform program's real outputs.

What the mocks cannot prove: anything the engine and the Kubernetes provider do (state, diffs,
replacement of immutable fields, await logic, server-side defaults), admission webhooks and CEL
rules of the API server, what each Helm chart expands to (releases are checked as chart,
repository, version and values), that Karpenter, Volcano/Kueue, HDFS or KServe then behave as
configured, and Karpenter NodePools' schema (no Karpenter CRD is vendored; their shape is
asserted field by field in test_infra_platform.py).
"""

from __future__ import annotations

import copy
import json
import runpy

import pulumi
import pytest
import yaml

from platform_cli.errors import PlinthError
from platform_cli.render.infra import UNVALIDATED_KINDS, evaluate, program_path, pulumi_config, render_stack, rendering_yaml, validate_rendering
from platform_cli.render.validate import SchemaError, validate_object
from platform_cli.spec.stack import load_stack
from tests.conftest import REPO, assert_matches_golden
from tests.unit.infra_support import by_kind, render_examples, stack_config, variant_project


@pytest.fixture(scope="module")
def examples():
    return render_examples()


class NoResources(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        raise AssertionError(f"the local stack must create no resources, got {args.typ}")

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


def run_program(stack_file_config: dict) -> dict:
    """Run infra/__main__.py as `pulumi up` would; returns the program's globals."""
    # Pulumi hands structured stack-file values to the program as JSON strings.
    pulumi.runtime.settings.reset_options()
    # secret_keys=[]: no key stays secret from a rendering an earlier test ran in this process.
    pulumi.runtime.set_all_config({k: v if isinstance(v, str) else json.dumps(v) for k, v in stack_file_config.items()}, secret_keys=[])
    pulumi.runtime.set_mocks(NoResources(), project="plinth", stack="local", preview=False)
    return runpy.run_path(str(REPO / "infra" / "__main__.py"), run_name="__main__")


def test_the_program_reads_the_stack_file_as_the_cli_does(project) -> None:
    stack_file = yaml.safe_load((REPO / "stacks" / "Pulumi.local.yaml").read_text())["config"]
    program = run_program(stack_file)
    assert program["read_stack_config"]() == load_stack("local").config


def test_invalid_config_fails_the_program_with_the_key_path() -> None:
    with pytest.raises(pulumi.RunError, match=r"plinth:local.sparkCores: Input should be greater than or equal to 1"):
        run_program({"plinth:target": "local", "plinth:local": {"sparkCores": 0}})


EXPECTED_TYPES = {
    "local": {},
    "platform-prod": {
        "kubernetes:core/v1:Namespace": 2,                      # plinth-system, plinth-storage
        "kubernetes:karpenter.sh/v1:NodePool": 2,               # a100, t4
        "kubernetes:scheduling.k8s.io/v1:PriorityClass": 4,
        "kubernetes:helm.sh/v3:Release": 8,                     # volcano, device plugin, cert-manager, kserve-crd, kserve, kserve-runtimes, spark-operator, argo-workflows
        "kubernetes:core/v1:Service": 4,                        # hdfs-namenode, hdfs-datanode, mlflow, mlflow-database
        "kubernetes:core/v1:ConfigMap": 1,                      # hdfs-config
        "kubernetes:apps/v1:StatefulSet": 3,                    # hdfs-namenode, hdfs-datanode, mlflow-database
        "kubernetes:apps/v1:Deployment": 1,                     # mlflow
        "kubernetes:core/v1:Secret": 1,                         # mlflow-database (its password)
        "kubernetes:networking.k8s.io/v1:NetworkPolicy": 2,     # teams to mlflow, mlflow to its database
        "plinth:platform:MlflowServer": 1,
        "kubernetes:yaml/v2:ConfigFile": 2,                     # the Spark operator's CRDs
        "plinth:platform:GpuPool": 2,
        "plinth:platform:GpuDriver": 1,
        "plinth:platform:Scheduler": 1,
        "plinth:platform:HdfsStorage": 1,
        "plinth:platform:Serving": 1,
        "plinth:platform:WorkloadEngines": 1,
    },
    "team-feed": {
        "kubernetes:core/v1:Namespace": 1,
        "kubernetes:core/v1:ResourceQuota": 1,
        "kubernetes:core/v1:LimitRange": 1,
        "kubernetes:core/v1:ServiceAccount": 2,                  # plinth-jobs, plinth-workflow
        "kubernetes:core/v1:ConfigMap": 2,                      # plinth-team, plinth-hdfs-config
        "kubernetes:rbac.authorization.k8s.io/v1:Role": 3,      # the team's group, the jobs' and the workflows' service accounts
        "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding": 3,
        "kubernetes:networking.k8s.io/v1:NetworkPolicy": 7,
        "kubernetes:scheduling.volcano.sh/v1beta1:Queue": 1,
        "kubernetes:batch/v1:Job": 1,                           # the team's HDFS directory
        "plinth:team:Environment": 1,
        "plinth:team:Queue": 1,
    },
}
EXPECTED_TYPES["team-antispam"] = EXPECTED_TYPES["team-feed"]


@pytest.mark.parametrize("stack", list(EXPECTED_TYPES))
def test_each_example_stack_creates_exactly_these_resources(examples, stack: str) -> None:
    counts: dict[str, int] = {}
    for resource in examples[stack].resources:
        counts[resource.type] = counts.get(resource.type, 0) + 1
    assert counts == EXPECTED_TYPES[stack]


@pytest.mark.parametrize("stack", ["platform-prod", "team-feed", "team-antispam"])
def test_every_object_of_every_example_stack_is_schema_valid(examples, stack: str) -> None:
    rendering = examples[stack]
    skipped = validate_rendering(rendering)   # raises SchemaError on the first invalid object
    # Only kinds without a vendored schema are skipped, and each is named with its reason.
    assert {what.split()[0] for what, _ in skipped} <= {kind for _, kind in UNVALIDATED_KINDS}
    assert len(rendering.objects()) - len(skipped) >= 10


@pytest.mark.parametrize("stack", ["platform-prod", "team-feed", "team-antispam"])
def test_example_stacks_match_their_golden_render(examples, stack: str) -> None:
    # What `plinth stack render` prints: a change to what a stack creates shows up as a diff here.
    text = rendering_yaml(examples[stack])
    golden = REPO / "tests" / "golden" / "stacks" / f"{stack}.yaml"
    assert_matches_golden(golden, text)


def test_the_schema_check_rejects_what_the_api_server_would(examples) -> None:
    # The same validator, fed a broken copy of a real object, must fail: otherwise the test
    # above would pass whatever the program created.
    queue = copy.deepcopy(by_kind(examples["team-feed"], "Queue")["feed"])
    queue["spec"]["weight"] = "heavy"
    with pytest.raises(SchemaError, match=r"Queue feed: spec.weight"):
        validate_object(queue)
    policy = copy.deepcopy(by_kind(examples["team-feed"], "NetworkPolicy")["feed/default-deny"])
    policy["spec"]["podSelecter"] = {}
    with pytest.raises(SchemaError, match=r"unknown field"):
        validate_object(policy)


def test_platform_outputs_are_the_contract_team_stacks_read(examples) -> None:
    outputs = examples["platform-prod"].outputs
    platform = load_stack_from_repo("platform-prod").config.platform
    assert outputs["schedulerKind"] == "volcano"
    assert outputs["priorityClasses"] == ["plinth-online", "plinth-training", "plinth-batch", "plinth-preemptible"]
    # the team check (check_team_on_platform) and the deployed HDFS agree on the storage root
    assert outputs["storage"] == {"kind": "hdfs", "uri": platform.storage.uri, "namespace": "plinth-storage", "image": "apache/hadoop:3.4.1"}
    assert outputs["gpuPools"]["a100"]["nodeLabels"] == {"plinth.dev/gpu-pool": "a100", "plinth.dev/gpu-type": "nvidia-a100"}
    assert outputs["gpuPools"]["a100"]["maxGpus"] == 32
    assert outputs["kserve"]["deploymentMode"] == "RawDeployment"
    assert outputs["yarn"] is None
    assert examples["team-feed"].outputs["queue"] == "feed"


def load_stack_from_repo(name: str):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PLINTH_PROJECT_DIR", str(REPO))
        return load_stack(name)


def test_a_team_refuses_a_platform_deployed_with_another_scheduler(examples, monkeypatch) -> None:
    monkeypatch.setenv("PLINTH_PROJECT_DIR", str(REPO))
    team = load_stack("team-feed")
    config, secret_keys = pulumi_config(team, {})
    deployed = dict(examples["platform-prod"].outputs, schedulerKind="kueue")
    with pytest.raises(PlinthError, match=r"platform stack platform-prod has deployed scheduler kueue, but its stack file says volcano; run `pulumi up -s platform-prod` first"):
        evaluate("team-feed", program_path(REPO), config, secret_keys, {"platform-prod": deployed})


@pytest.mark.parametrize(
    ("team_edit", "expected"),
    [
        ({"gpuPools": ["h100"]}, r"plinth:team.gpuPools\[0\]: 'h100' is not a GPU pool of platform stack platform-prod; use one of: a100, t4"),
        ({"queue": {"priorityClass": "urgent"}}, r"plinth:team.queue.priorityClass: 'urgent' is not a priority class"),
        ({"quota": {"cpu": "8", "memory": "8Gi", "gpu": 64}, "queue": {"gpuShare": 0}}, r"plinth:team.quota.gpu: 64 GPUs exceed the 48"),
    ],
)
def test_team_stacks_are_checked_against_their_platform_before_anything_is_created(tmp_path, monkeypatch, team_edit, expected) -> None:
    team = {**stack_config("team-feed", "plinth:team"), **team_edit}
    monkeypatch.setenv("PLINTH_PROJECT_DIR", str(variant_project(tmp_path / "p", {"team-feed": {"plinth:team": team}})))
    with pytest.raises(PlinthError, match=expected):
        render_stack("team-feed")


def test_a_storage_root_off_the_platform_storage_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PLINTH_PROJECT_DIR", str(variant_project(tmp_path / "p", {"team-feed": {"plinth:storage": {"root": "hdfs://elsewhere:8020/feed"}}})))
    with pytest.raises(PlinthError, match=r"plinth:storage.root: 'hdfs://elsewhere:8020/feed' is not on the storage of platform stack platform-prod"):
        render_stack("team-feed")


PLATFORM = stack_config("platform-prod", "plinth:platform")
TEAM = stack_config("team-feed", "plinth:team")


@pytest.mark.parametrize(
    ("stack", "key", "value", "expected"),
    [
        ("platform-prod", "plinth:platform", {**PLATFORM, "scheduler": {"kind": "slurm"}}, "plinth:platform.scheduler.kind: must be one of 'volcano' or 'kueue'"),
        ("platform-prod", "plinth:platform", {**PLATFORM, "storage": {"kind": "s3"}}, "plinth:platform.storage: kind s3 needs an s3: section (endpoint, bucket)"),
        ("platform-prod", "plinth:platform", {**PLATFORM, "kserve": {"deploymentMode": "ModelMesh"}}, "plinth:platform.kserve.deploymentMode: must be one of 'RawDeployment' or 'Serverless'"),
        ("platform-prod", "plinth:platform", {**PLATFORM, "gpuPools": [{**PLATFORM["gpuPools"][0], "gpusPerNode": 0}]}, "plinth:platform.gpuPools[0].gpusPerNode: Input should be greater than or equal to 1"),
        ("team-feed", "plinth:team", {**TEAM, "queue": {"gpuShare": 20}}, "plinth:team: queue.gpuShare (20) exceeds quota.gpu (16): a team cannot be guaranteed more GPUs than it may use"),
        ("team-feed", "plinth:team", {**TEAM, "egressCidrs": ["10.1.2.3/8"]}, "plinth:team.egressCidrs[0]: '10.1.2.3/8' must be a network in CIDR notation, such as 10.0.0.0/16"),
        ("team-feed", "plinth:team", {**TEAM, "name": "Feed_Team"}, "plinth:team.name: must be a DNS label: lower-case letters, digits and '-', at most 63 (got 'Feed_Team')"),
        ("team-feed", "plinth:team", {**TEAM, "quota": {"cpu": "lots", "memory": "1Ti"}}, "plinth:team.quota.cpu: must be a Kubernetes quantity such as 500m, 64 or 256Gi (got 'lots')"),
    ],
)
def test_cluster_stack_errors_name_the_key_path_and_what_is_allowed(tmp_path, monkeypatch, stack, key, value, expected) -> None:
    monkeypatch.setenv("PLINTH_PROJECT_DIR", str(variant_project(tmp_path / "p", {stack: {key: value}})))
    with pytest.raises(PlinthError) as error:
        load_stack(stack)
    assert str(error.value) == f"stacks/Pulumi.{stack}.yaml: {expected}"
