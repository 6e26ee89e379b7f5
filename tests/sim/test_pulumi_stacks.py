"""`pulumi up` of platform-sim and team-sim with the real Pulumi CLI and Kubernetes provider
against the live API server: what the program declares exists there, the team stack reads the
platform's outputs through a real StackReference, secrets stay encrypted in the state, a second
`up` changes nothing and `preview` shows a config change."""

from __future__ import annotations

import base64
import json

import pytest

from platform_cli.kube import Resource
from tests.sim.conftest import SIM_TIMEOUT, Sim

# The first test of a session may build the cluster tools (scripts/cluster-tools) first.
pytestmark = pytest.mark.timeout(SIM_TIMEOUT)

CRD = Resource("apiextensions.k8s.io/v1", "CustomResourceDefinition")
ACCESS_KEY = "sim-access-key"      # what the stack file's ciphertext decrypts to (README)
SECRET_KEY = "sim-secret-key"


def contains(live, declared, where: str = "") -> list[str]:
    """Where `live` lacks or differs from what `declared` says (maps: declared keys only)."""
    if isinstance(declared, dict):
        if not isinstance(live, dict):
            return [f"{where}: {live!r} is not a mapping"]
        return [gap for key, value in declared.items() for gap in contains(live.get(key), value, f"{where}.{key}")]
    if isinstance(declared, list):
        if not isinstance(live, list) or len(live) != len(declared):
            return [f"{where}: {live!r} != {declared!r}"]
        return [gap for index, (a, b) in enumerate(zip(live, declared)) for gap in contains(a, b, f"{where}[{index}]")]
    if live is None and declared in (False, 0, ""):
        return []   # the API server omits zero values (globalDefault: false)
    return [] if live == declared or str(live) == str(declared) else [f"{where}: {live!r} != {declared!r}"]


def rendered(sim: Sim, stack: str) -> dict:
    return json.loads(sim.plinth("stack", "render", stack, "-o", "json").stdout)


def test_every_object_the_program_declares_exists_as_declared(deployed: Sim) -> None:
    kube = deployed.kube()
    checked = set()
    for stack in ("platform-sim", "team-sim"):
        for declared in rendered(deployed, stack)["objects"]:
            meta = declared["metadata"]
            live = kube.get(Resource.of(declared), meta.get("namespace"), meta["name"])
            assert live is not None, f"{stack}: {declared['kind']} {meta['name']} missing"
            if declared["kind"] == "Secret":
                declared = {k: v for k, v in declared.items() if k not in ("stringData", "data")}
            assert contains(live, declared) == [], f"{stack}: {declared['kind']} {meta['name']}"
            checked.add(declared["kind"])
    assert checked >= {"Namespace", "PriorityClass", "ResourceFlavor", "ResourceQuota", "LimitRange", "Secret", "ServiceAccount",
                       "Role", "RoleBinding", "NetworkPolicy", "ClusterQueue", "LocalQueue", "ConfigMap"}
    # crds-only: every vendored engine CRD is installed, with the schema of the vendored file.
    files = rendered(deployed, "platform-sim")["manifestFiles"]
    assert len(files) == 14
    names = {crd["metadata"]["name"] for crd in kube.list(CRD, None)}
    assert {"workflows.argoproj.io", "inferenceservices.serving.kserve.io", "mpijobs.kubeflow.org", "tfjobs.kubeflow.org",
            "sparkapplications.sparkoperator.k8s.io", "clusterqueues.kueue.x-k8s.io", "localqueues.kueue.x-k8s.io"} <= names


def test_the_team_stack_reads_the_platforms_outputs_through_a_stack_reference(deployed: Sim) -> None:
    kube = deployed.kube()
    # The namespace label and the ClusterQueue's flavors come from platform-sim's deployed outputs.
    namespace = kube.get(Resource("v1", "Namespace"), None, "ranking")
    assert namespace["metadata"]["labels"]["plinth.dev/scheduler"] == "kueue"
    queue = kube.get(Resource("kueue.x-k8s.io/v1beta2", "ClusterQueue"), None, "ranking")
    assert [f["name"] for f in queue["spec"]["resourceGroups"][1]["flavors"]] == ["gpu-a100", "gpu-t4"]
    outputs = json.loads(deployed.pulumi("stack", "output", "-s", "team-sim", "--json").stdout)
    assert outputs["namespace"] == "ranking" and outputs["queue"] == "ranking"
    platform = json.loads(deployed.pulumi("stack", "output", "-s", "platform-sim", "--json").stdout)
    assert platform["kueueFlavors"] == {"a100": "gpu-a100", "t4": "gpu-t4"}


def test_secrets_stay_encrypted_in_the_state_and_reach_the_cluster(deployed: Sim) -> None:
    state_text = json.dumps(deployed.state("team-sim"))
    assert ACCESS_KEY not in state_text and SECRET_KEY not in state_text
    assert base64.b64encode(ACCESS_KEY.encode()).decode() not in state_text
    resources = deployed.state("team-sim")["checkpoint"]["latest"]["resources"]
    secret = next(r for r in resources if r["urn"].endswith("::storage-credentials"))
    assert set(secret["outputs"]["data"]) == {"4dabf18193072939515e22adb298388d", "ciphertext"}   # Pulumi's secret envelope
    stack_file = deployed.stack_file("team-sim").read_text()
    assert ACCESS_KEY not in stack_file and "secure: v1:" in stack_file
    live = deployed.kube().get(Resource("v1", "Secret"), "ranking", "plinth-storage-credentials")
    assert base64.b64decode(live["data"]["AWS_ACCESS_KEY_ID"]).decode() == ACCESS_KEY


def test_a_second_up_changes_nothing(deployed: Sim) -> None:
    for stack in ("platform-sim", "team-sim"):
        result = deployed.pulumi("up", "--yes", "--skip-preview", "--expect-no-changes", "-s", stack)
        assert "unchanged" in result.stdout


def test_preview_shows_the_diff_of_a_config_change(deployed: Sim) -> None:
    original = deployed.stack_file("team-sim").read_text()
    try:
        deployed.edit_stack("team-sim", lambda config: config["plinth:team"]["quota"].update(gpu=12))
        preview = deployed.pulumi("preview", "--diff", "-s", "team-sim").stdout
    finally:
        deployed.stack_file("team-sim").write_text(original)
    updated = [line.strip() for line in preview.splitlines() if line.strip().startswith("~ kubernetes:")]
    assert updated == ["~ kubernetes:core/v1:ResourceQuota: (update)"], preview
    assert '~ requests.nvidia.com/gpu: "16" => "12"' in preview
    assert "1 to update" in preview
