"""The example flow rendered for a team stack: an Argo CronWorkflow (a Workflow without a
schedule) whose outer DAG calls one DAG template per node, golden-pinned and schema-validated.

What this does not prove: that Argo accepts it on a live cluster (no API server here); the
objects are checked against the vendored Argo 4.1.2 CRD schemas, and the workloads inside the
resource templates against their operators' schemas, by the cluster renderer.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from platform_cli.errors import PlinthError
from platform_cli.flow.plan import plan_flow
from platform_cli.render.argo import render_flow
from platform_cli.samples.launch import LAUNCHER_FILE
from platform_cli.spec.flow import load_flow
from platform_cli.spec.stack import load_stack
from tests.conftest import REPO, assert_matches_golden

GOLDEN = REPO / "tests" / "golden" / "argo"
FLOW = REPO / "examples" / "ctr" / "flow.yaml"


def normalised(text: str, project: Path) -> str:
    return text.replace(str(project), "$PROJECT").replace(str(REPO), "$REPO")


def without_sources(objects: list[dict]) -> list[dict]:
    """The shipped scripts' sources out of the ConfigMaps the workflow applies (the cluster
    renderer's golden tests pin them), so editing an example script does not rewrite this golden file."""
    for template in objects[0]["spec"]["workflowSpec"]["templates"]:
        manifest = yaml.safe_load(template.get("resource", {}).get("manifest", "{}"))
        if manifest.get("kind") == "ConfigMap":
            manifest["data"] = {name: text if name == LAUNCHER_FILE else f"<contents of examples/ctr/{name}>" for name, text in manifest["data"].items()}
            template["resource"]["manifest"] = yaml.safe_dump(manifest, sort_keys=False)
    return objects


def check_golden(name: str, objects: list[dict], project: Path) -> None:
    text = normalised(yaml.safe_dump_all(without_sources(objects), sort_keys=False), project)
    golden = GOLDEN / name
    assert_matches_golden(golden, text)


def test_scheduled_example_flow_is_a_cron_workflow_matching_its_golden(project: Path) -> None:
    [cron] = render_flow(plan_flow(load_flow(FLOW)), load_stack("team-feed"))
    check_golden("ctr-flow.team-feed.yaml", [yaml.safe_load(yaml.safe_dump(cron))], project)
    assert cron["kind"] == "CronWorkflow" and cron["spec"]["schedules"] == ["0 3 * * *"]
    spec = cron["spec"]["workflowSpec"]
    templates = {t["name"]: t for t in spec["templates"]}
    # outer DAG: one task per node, each calling that node's DAG template
    outer = templates[spec["entrypoint"]]["dag"]["tasks"]
    assert [(t["name"], t["template"], t.get("dependencies", [])) for t in outer] == [
        ("data", "node-data", []),
        ("features", "node-features", ["data"]),
        ("train", "node-train", ["features"]),
        ("release", "node-release", ["train"]),
    ]
    # node DAGs: one task per step
    assert [t["name"] for t in templates["node-release"]["dag"]["tasks"]] == ["register", "evaluate", "promote"]
    assert templates["node-release"]["dag"]["tasks"][2]["when"].endswith("== true")
    # job steps create their workload with the operator's success and failure conditions
    workloads = {name: t["resource"] for name, t in templates.items() if "resource" in t and t["resource"]["action"] == "create"}
    kinds = {name: yaml.safe_load(r["manifest"])["kind"] for name, r in workloads.items()}
    assert sorted(kinds.values()) == sorted(["Job", "SparkApplication", "MPIJob"])
    for resource in workloads.values():
        assert resource["setOwnerReference"] is True and resource["successCondition"] and resource["failureCondition"]
    # the train step's retry is the MPIJob's own restart of the same job (same checkpoints)
    mpijob = next(yaml.safe_load(r["manifest"]) for r in workloads.values() if "MPIJob" in r["manifest"])
    assert mpijob["spec"]["runPolicy"]["backoffLimit"] == 1
    assert mpijob["metadata"]["name"] == "ctr-train-{{workflow.name}}"
    # built-in steps run the same plinth argv as locally, in the team image
    evaluate = templates["release-evaluate"]["container"]
    assert evaluate["command"] == ["plinth"] and evaluate["args"][:4] == ["model", "evaluate", "ctr", "{{inputs.parameters.register-version}}"]


def test_without_a_schedule_the_flow_is_a_workflow(project: Path, tmp_path: Path) -> None:
    document = yaml.safe_load(FLOW.read_text())
    del document["schedule"]
    for name in ("generate", "preprocess", "train"):
        (tmp_path / f"{name}.job.yaml").write_text((FLOW.parent / f"{name}.job.yaml").read_text().replace(f"script: {name}.py", f"script: {FLOW.parent / (name + '.py')}"))
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    [workflow] = render_flow(plan_flow(load_flow(path)), load_stack("team-feed"))
    assert workflow["kind"] == "Workflow" and workflow["metadata"]["generateName"] == "ctr-"
    assert workflow["spec"]["arguments"]["parameters"][0] == {"name": "rows", "value": "40000"}


def test_local_stack_and_unsupported_references_are_refused(project: Path, tmp_path: Path) -> None:
    plan = plan_flow(load_flow(FLOW))
    with pytest.raises(PlinthError, match=r"^flow submit is not available on stack 'local' \(target local\): Argo Workflows runs flows on a cluster; the local platform runs them itself; plinth flow run -f FLOW --stack local$"):
        render_flow(plan, load_stack("local"))
    # a job step reading another job's metrics.json: Argo resource templates cannot read it
    (tmp_path / "s.py").write_text("print()\n")
    document = {"kind": "flow", "name": "m", "nodes": {"a": {"steps": {
        "t": {"job": {"kind": "python", "name": "t", "script": "s.py"}, "outputs": ["auc"]},
        "u": {"after": ["t"], "job": {"kind": "python", "name": "u", "script": "s.py", "args": ["${steps.t.outputs.auc}"]}},
    }}}}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(PlinthError, match=r"nodes.a.steps.u: \$\{steps.t.outputs.auc\}: a job's metrics.json outputs cannot be read by Argo"):
        render_flow(plan_flow(load_flow(tmp_path / "m.yaml")), load_stack("team-feed"))


def test_submit_creates_the_rendered_object_through_the_kubernetes_api(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in at the API client's HTTP boundary (tests/kube_stand_in.py). It proves which
    object is sent where and that a refusal carries the API server's own message; not that a
    real API server and Argo accept it."""
    from platform_cli import kube
    from platform_cli.targets import submit_workflow
    from tests.kube_stand_in import RecordingApiClient

    def respond(call):
        if call.body["metadata"].get("generateName") == "refused-":
            return 403, {"kind": "Status", "code": 403, "message": 'workflows.argoproj.io is forbidden: User "ann" cannot create resource "workflows" in the namespace "feed"'}
        return 201, call.body

    client = RecordingApiClient(respond)
    monkeypatch.setattr(kube, "connect", lambda stack: client)
    stack = load_stack("team-feed")
    cron = {"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow", "metadata": {"name": "ctr", "namespace": "feed"}, "spec": {}}
    assert submit_workflow(stack, [cron]) == ["cronworkflow/ctr created in namespace feed"]
    assert (client.calls[0].method, client.calls[0].path, client.calls[0].body) == ("POST", "/apis/argoproj.io/v1alpha1/namespaces/feed/cronworkflows", cron)
    refused = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"generateName": "refused-", "namespace": "feed"}, "spec": {}}
    with pytest.raises(PlinthError, match=r'creating Workflow feed/refused-\*: workflows.argoproj.io is forbidden: User "ann" cannot create.*; check that your identity is in the team\'s group'):
        submit_workflow(stack, [refused])

