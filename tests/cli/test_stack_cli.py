"""`plinth stack ls|show|render|preview|up|destroy` driven as a user would.

There is no Pulumi CLI (and no cluster) on this machine, so preview/up/destroy are tested two
ways: the real missing-CLI path, and the code path up to the Automation API boundary
(`pulumi_engine._select`, which returns `pulumi.automation.create_or_select_stack(...)`, and
`pulumi_engine._workspace`, a LocalWorkspace)
with a stand-in stack that records what it is asked to do. What the stand-in does not prove:
that the Pulumi CLI accepts the project (Pulumi.yaml, stackConfigDir), decrypts the secrets,
runs the program, or what it prints; and that `plinth stack ls/show` parse a real backend's
answers.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from typer.testing import CliRunner

from platform_cli.main import app
from platform_cli.targets import pulumi_engine
from tests.unit.infra_support import variant_project

runner = CliRunner()
MISSING = "error: pulumi CLI not found on PATH (Plinth deploys stacks through Pulumi's Automation API, which runs it); install it: curl -fsSL https://get.pulumi.com | sh\n"


def plinth(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture
def no_pulumi(monkeypatch):
    monkeypatch.setattr(pulumi_engine.shutil, "which", lambda name: None)


class StandInStack:
    """Records the Automation API calls; returns results shaped like pulumi.automation's."""

    def __init__(self, calls: list, name: str):
        self.calls, self.name = calls, name

    def preview(self, on_output):
        self.calls.append(("preview", self.name))
        on_output("Previewing update (team-feed):")
        return SimpleNamespace(change_summary={"create": 20})

    def up(self, on_output):
        self.calls.append(("up", self.name))
        on_output("Updating (team-feed):")
        outputs = {"namespace": SimpleNamespace(value="feed", secret=False), "token": SimpleNamespace(value="xyz", secret=True)}
        return SimpleNamespace(summary=SimpleNamespace(resource_changes={"create": 20}), outputs=outputs)

    def destroy(self, on_output):
        self.calls.append(("destroy", self.name))
        return SimpleNamespace(summary=SimpleNamespace(resource_changes={"delete": 20}))


@pytest.fixture
def stand_in(monkeypatch, project: Path):
    calls: list = []

    def select(stack):
        calls.append(("select", stack.name, str(stack.project_root)))
        return StandInStack(calls, stack.name)

    monkeypatch.setattr(pulumi_engine.shutil, "which", lambda name: "/opt/pulumi/bin/pulumi")
    monkeypatch.setattr(pulumi_engine, "_select", select)
    return calls


def test_render_prints_the_objects_pulumi_up_would_create(project: Path) -> None:
    result = plinth("stack", "render", "team-feed")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "# stack team-feed: 22 Kubernetes objects, 0 Helm releases (rendered by plinth stack render)"
    objects = list(yaml.safe_load_all(result.stdout))
    assert [obj["kind"] for obj in objects][:3] == ["Namespace", "Queue", "ResourceQuota"]
    assert {(obj["kind"], obj["metadata"]["name"]) for obj in objects} >= {("Queue", "feed"), ("NetworkPolicy", "default-deny"), ("RoleBinding", "plinth-team")}
    assert plinth("stack", "render", "team-feed").stdout == result.stdout   # same stack, same bytes


def test_render_lists_helm_releases_and_says_what_it_could_not_validate(project: Path) -> None:
    result = plinth("stack", "render", "platform-prod", "-o", "json")
    assert result.exit_code == 0, result.output
    rendered = json.loads(result.stdout)
    assert {r["name"]: r["version"] for r in rendered["helmReleases"]} == {
        "cert-manager": "v1.16.2", "kserve": "v0.15.2", "kserve-crd": "v0.15.2", "kserve-runtimes": "v0.15.2", "nvidia-device-plugin": "0.17.1", "volcano": "1.15.1",
        "spark-operator": "2.5.2", "argo-workflows": "2.0.1",
    }
    assert "NodePool" in {obj["kind"] for obj in rendered["objects"]}
    assert "note: NodePool gpu-a100 not schema-validated: no Karpenter CRD schema is vendored" in result.stderr


def test_render_of_a_bad_stack_is_one_line_naming_the_key(project: Path) -> None:
    text = (project / "stacks" / "Pulumi.team-feed.yaml").read_text().replace("gpu: 16", "gpu: lots")
    (project / "stacks" / "Pulumi.team-feed.yaml").write_text(text)
    result = plinth("stack", "render", "team-feed")
    assert result.exit_code == 1
    assert result.stderr == "error: stacks/Pulumi.team-feed.yaml: plinth:team.quota.gpu: Input should be a valid integer, unable to parse string as an integer\n"


@pytest.mark.parametrize("verb", [["preview"], ["up"], ["destroy", "--yes"]])
def test_deploying_without_the_pulumi_cli_says_so_with_the_fix(project: Path, no_pulumi, verb) -> None:
    result = plinth("stack", *verb, "team-feed")
    assert result.exit_code == 1
    assert result.stderr == MISSING


@pytest.mark.parametrize("verb", ["ls", "show"])
def test_listing_without_the_pulumi_cli_works_and_says_what_is_missing(project: Path, no_pulumi, verb) -> None:
    result = plinth("stack", verb, *(["team-feed"] if verb == "show" else []))
    assert result.exit_code == 0, result.output
    assert "team-feed" in result.stdout
    assert result.stderr == "note: deployment state not shown: " + MISSING.removeprefix("error: ")


def test_ls_shows_each_stacks_role(project: Path, no_pulumi) -> None:
    rows = {line.split()[0]: line.split()[1:3] for line in plinth("stack", "ls").stdout.splitlines()[1:]}
    assert rows == {
        "local": ["local", "local"], "platform-prod": ["platform", "kubernetes"], "platform-sim": ["platform", "kubernetes"],
        "team-antispam": ["team", "kubernetes"], "team-feed": ["team", "kubernetes"], "team-sim": ["team", "kubernetes"],
        "platform-sim-volcano": ["platform", "kubernetes"], "team-sim-feed": ["team", "kubernetes"], "team-sim-ranking": ["team", "kubernetes"],
    }


def test_ls_shows_paths_inside_the_project_relative_to_it(project: Path, no_pulumi) -> None:
    rows = {line.split()[0]: line.split()[3:5] for line in plinth("stack", "ls").stdout.splitlines()[1:]}
    assert rows["local"] == [".plinth/local/storage", "stacks/Pulumi.local.yaml"]  # as on every checkout
    assert rows["team-feed"] == ["hdfs://hdfs-namenode.plinth-storage.svc:8020/teams/feed", "stacks/Pulumi.team-feed.yaml"]


def test_a_bad_stack_file_is_refused_before_pulumi_runs(project: Path, stand_in, tmp_path, monkeypatch) -> None:
    team = yaml.safe_load((project / "stacks" / "Pulumi.team-feed.yaml").read_text())["config"]["plinth:team"]
    variant_project(project, {"team-feed": {"plinth:team": {**team, "gpuPools": ["h100"]}}})
    result = plinth("stack", "up", "team-feed")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: stacks/Pulumi.team-feed.yaml: plinth:team.gpuPools[0]: 'h100' is not a GPU pool of platform stack platform-prod")
    assert stand_in == []   # the Automation API was never reached


def test_preview_and_up_drive_the_project_program_through_the_automation_api(project: Path, stand_in) -> None:
    preview = plinth("stack", "preview", "team-feed")
    assert preview.exit_code == 0, preview.output
    assert preview.stdout == "Previewing update (team-feed):\nstack/team-feed preview: 20 create\n"
    up = plinth("stack", "up", "team-feed")
    assert up.exit_code == 0, up.output
    assert up.stdout == 'Updating (team-feed):\nstack/team-feed up: 20 create\n  namespace: "feed"\n  token: "[secret]"\n'
    # a local program: the project directory (Pulumi.yaml, stacks/) is the work dir
    assert stand_in == [
        ("select", "team-feed", str(project)), ("preview", "team-feed"),
        ("select", "team-feed", str(project)), ("up", "team-feed"),
    ]


def test_destroy_asks_first(project: Path, stand_in) -> None:
    declined = runner.invoke(app, ["stack", "destroy", "team-antispam"], input="n\n")
    assert declined.exit_code == 1 and "pass --yes" in declined.stderr
    assert stand_in == []
    done = runner.invoke(app, ["stack", "destroy", "team-antispam"], input="y\n")
    assert done.exit_code == 0, done.output
    assert done.stdout.endswith("stack/team-antispam destroyed: 20 delete\n")
    assert stand_in[-1] == ("destroy", "team-antispam")


def test_a_failing_pulumi_run_is_one_line(project: Path, stand_in, monkeypatch) -> None:
    from pulumi.automation._cmd import CommandResult
    from pulumi.automation.errors import CommandError

    def fail(self, on_output):
        raise CommandError(CommandResult(stdout="Updating (team-feed):\n", stderr="error: configured Kubernetes cluster is unreachable\n", code=255))

    monkeypatch.setattr(StandInStack, "up", fail)
    result = plinth("stack", "up", "team-feed")
    assert result.exit_code == 1
    assert result.stderr == "error: pulumi failed: error: configured Kubernetes cluster is unreachable; see Pulumi's output above\n"


def test_ls_and_show_add_what_the_backend_records(project: Path, monkeypatch) -> None:
    from datetime import datetime, timedelta, timezone

    class StandInWorkspace:
        def __init__(self, root):
            assert root == str(project)

        def list_stacks(self):
            an_hour_ago = datetime.now(timezone.utc) - timedelta(hours=1, minutes=5)
            return [SimpleNamespace(name="organization/plinth/team-feed", last_update=an_hour_ago, resource_count=21, update_in_progress=False)]

        def stack_outputs(self, name):
            assert name == "team-feed"
            return {"namespace": SimpleNamespace(value="feed", secret=False), "config": SimpleNamespace(value={"a": 1}, secret=True)}

    monkeypatch.setattr(pulumi_engine.shutil, "which", lambda name: "/opt/pulumi/bin/pulumi")
    monkeypatch.setattr(pulumi_engine, "_workspace", StandInWorkspace)
    listed = plinth("stack", "ls")
    assert listed.exit_code == 0 and listed.stderr == ""
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert rows[0] == ["NAME", "ROLE", "TARGET", "STORAGE", "FILE", "DEPLOYED", "RESOURCES"]
    by_name = {row[0]: row for row in rows[1:]}
    assert by_name["team-feed"][-2:] == ["1h", "21"]
    assert by_name["team-antispam"][-2:] == ["-", "-"]
    shown = json.loads(plinth("stack", "show", "team-feed", "-o", "json").stdout)
    assert shown["deployed"]["resources"] == 21
    assert shown["deployed"]["outputs"] == {"namespace": "feed", "config": "[secret]"}
    assert json.loads(plinth("stack", "show", "team-antispam", "-o", "json").stdout)["deployed"] is None


def test_the_boundary_asks_the_automation_api_for_the_projects_own_program(project: Path, monkeypatch) -> None:
    import pulumi.automation

    from platform_cli.spec.stack import load_stack

    asked = []
    monkeypatch.setattr(pulumi.automation, "create_or_select_stack", lambda **kwargs: asked.append(kwargs) or "stack")
    assert pulumi_engine._select(load_stack("team-feed")) == "stack"
    # a local program (no `program=`): Pulumi runs Pulumi.yaml's main (infra/) in the project
    assert asked == [{"stack_name": "team-feed", "work_dir": str(project)}]


def test_check_reads_every_values_key_against_the_charts_and_says_what_it_cannot_verify(project: Path) -> None:
    result = plinth("stack", "check", "platform-prod", "-o", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    statuses = {(k["release"], k["key"]): k["status"] for k in report["keys"]}
    assert statuses[("kserve", "kserve.controller.gateway.domain")] == "read"
    assert statuses[("spark-operator", "controller.batchScheduler.default")] == "read"
    assert statuses[("cert-manager", "crds.enabled")] == "read"
    # No source of these chart versions could be fetched: said so, not passed off as read.
    assert statuses[("argo-workflows", "*")] == statuses[("nvidia-device-plugin", "*")] == "unverified"
    assert report["ignored"] == 0 and report["unverified"] == 2
    released = {r["release"]: r["released"] for r in report["releases"]}
    assert released["volcano"].startswith("2026-07-30") and released["kserve"].startswith("2025-05-27")


def test_check_exits_1_naming_a_key_the_chart_version_never_reads(project: Path, tmp_path: Path, monkeypatch) -> None:
    # A kserve chart whose templates do not read gateway.domain (as one before the key existed).
    from platform_cli import charts

    data = tmp_path / "data"
    data.mkdir()
    for path in charts.DATA.glob("*.json"):
        record = json.loads(path.read_text())
        if record["chart"] == "kserve":
            record["reads"] = [r for r in record["reads"] if r != "kserve.controller.gateway.domain"]
        (data / path.name).write_text(json.dumps(record))
    monkeypatch.setattr(charts, "DATA", data)
    charts.chart_record.cache_clear()
    try:
        result = plinth("stack", "check", "platform-prod")
    finally:
        charts.chart_record.cache_clear()
    assert result.exit_code == 1
    line = next(line for line in result.stdout.splitlines() if line.startswith("kserve ") and "gateway.domain" in line)
    assert line.split()[4] == "ignored" and "no template of kserve v0.15.2 reads it (set in values.yaml, referenced by no template)" in line
    assert "2 ignored" in result.stdout   # the controller's release and the runtimes' release


def test_check_of_a_team_stack_points_at_its_platform(project: Path) -> None:
    result = plinth("stack", "check", "team-feed")
    assert result.exit_code == 1
    assert "stack team-feed is a team stack; only a platform stack installs engines" in result.output
    assert "plinth stack check platform-prod" in result.output
