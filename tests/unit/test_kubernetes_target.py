"""The Kubernetes and YARN targets against a stand-in at the API client's HTTP boundary.

`RecordingApiClient` (tests/kube_stand_in.py) replaces only `ApiClient.call_api`, the one method
through which the kubernetes client sends HTTP: everything above it (platform_cli.kube, the
client's request building and auth, ApiException) is real. Each test asserts the exact requests
Plinth makes and how it reads the answers.

What this does NOT prove: that a real API server accepts the applied objects (admission
webhooks, RBAC, quota admission, CEL rules, field-ownership conflicts), that the operators
are installed and act on them (Spark operator, mpi-operator, training operator, Volcano or
Kueue gang scheduling), that the status shapes recorded here match every operator version,
or that log streaming works over a real connection. Schema validity of the objects is proven
separately (tests/unit/test_render_cluster.py); the rest needs a cluster.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from platform_cli.errors import PlinthError
from platform_cli.main import app
from platform_cli.render.job import render_job
from platform_cli.spec.job import load_job
from platform_cli.spec.stack import load_stack
from platform_cli import kube
from platform_cli.targets import base, kubernetes
from platform_cli.status import JobStatus
from platform_cli.targets.kubernetes import KubernetesTarget
from platform_cli.targets.yarn import YarnTarget
from tests.conftest import REPO, write_job
from tests.kube_stand_in import Call, RecordingApiClient

TRAIN = REPO / "examples" / "ctr" / "train.job.yaml"
MPIJOBS = "/apis/kubeflow.org/v2beta1/namespaces/feed/mpijobs"


def empty_lists(call: Call):
    if call.method == "GET":
        return 200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": []}
    return 200, call.body or {}


@pytest.fixture
def lab(project: Path) -> Path:
    for stack in (REPO / "tests" / "fixtures" / "stacks").glob("Pulumi.*.yaml"):
        shutil.copy(stack, project / "stacks" / stack.name)
    return project


def test_submit_server_side_applies_the_configmap_then_the_workload(project: Path) -> None:
    stack = load_stack("team-feed")
    rendered = render_job(load_job(TRAIN), stack, job_id="ctr-train-abcde")
    client = RecordingApiClient(lambda call: (200, {**call.body, "metadata": {**call.body["metadata"], "creationTimestamp": "2026-11-23T17:00:00Z"}}))
    record = KubernetesTarget(stack, api_client=client).submit(load_job(TRAIN), rendered)

    assert [(c.method, c.path) for c in client.calls] == [
        ("PATCH", "/api/v1/namespaces/feed/configmaps/ctr-train-abcde-code"),
        ("PATCH", f"{MPIJOBS}/ctr-train-abcde"),
    ]
    for call, obj in zip(client.calls, rendered.documents, strict=True):
        assert call.query == {"fieldManager": "plinth", "force": "true"}  # server-side apply, fixed manager
        assert call.content_type == "application/apply-patch+yaml"
        assert call.body == obj  # exactly what `plinth job render` printed and validated
    assert record.id == "ctr-train-abcde" and record.kind == "horovod" and record.status is JobStatus.PENDING
    assert record.checkpoint_dir == "hdfs://hdfs-namenode.plinth-storage.svc:8020/teams/feed/jobs/ctr-train-abcde/checkpoints"


def test_a_refused_workload_takes_its_configmap_back(project: Path) -> None:
    def respond(call: Call):
        if call.method == "PATCH" and call.path.startswith(MPIJOBS):
            return 404, {"kind": "Status", "message": "the server could not find the requested resource", "code": 404}
        return 200, call.body or {"kind": "Status"}

    stack = load_stack("team-feed")
    client = RecordingApiClient(respond)
    with pytest.raises(PlinthError) as error:
        KubernetesTarget(stack, api_client=client).submit(load_job(TRAIN), render_job(load_job(TRAIN), stack, job_id="ctr-train-abcde"))
    assert str(error.value).startswith("applying MPIJob feed/ctr-train-abcde: the server could not find the requested resource; the cluster lacks this API")
    assert [(c.method, c.path) for c in client.calls][-1] == ("DELETE", "/api/v1/namespaces/feed/configmaps/ctr-train-abcde-code")


def workload(kind: str, job_id: str, job_kind: str, status: dict, created: str = "2026-11-23T17:00:00Z") -> dict:
    labels = {"plinth.dev/job-id": job_id, "plinth.dev/job": job_id.rsplit("-", 1)[0], "plinth.dev/team": "feed", "plinth.dev/kind": job_kind}
    return {"kind": kind, "metadata": {"name": job_id, "namespace": "feed", "labels": labels, "creationTimestamp": created}, "status": status}


CLUSTER = {
    "sparkapplications": [workload("SparkApplication", "ctr-preprocess-bbbbb", "spark", {
        "applicationState": {"state": "COMPLETED"}, "lastSubmissionAttemptTime": "2026-11-23T17:00:05Z",
        "terminationTime": "2026-11-23T17:03:05Z", "submissionAttempts": 1}, created="2026-11-23T16:00:00Z")],
    "mpijobs": [workload("MPIJob", "ctr-train-ccccc", "horovod", {
        "conditions": [{"type": "Created", "status": "True"}, {"type": "Running", "status": "True"}],
        "replicaStatuses": {"Launcher": {"active": 1}, "Worker": {"active": 2}}, "startTime": "2026-11-23T17:01:00Z"})],
    "tfjobs": [],
    "jobs": [workload("Job", "ctr-generate-ddddd", "python", {
        "conditions": [{"type": "Failed", "status": "True", "message": "Job has reached the specified backoff limit"}],
        "failed": 4, "startTime": "2026-11-23T17:00:00Z", "completionTime": "2026-11-23T17:02:00Z"}, created="2026-11-23T15:00:00Z")],
}


def cluster(call: Call):
    if call.method == "GET" and call.path.endswith("/log"):
        return 200, b"step 1\nstep 2\nexported\n"
    if call.method == "GET" and call.path.endswith("/pods"):
        pod = {"metadata": {"name": "ctr-train-ccccc-launcher-x7k2p", "creationTimestamp": "2026-11-23T17:01:00Z"}, "status": {"phase": "Running"}}
        return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [pod]}
    if call.method == "GET":
        selector = dict(part.split("=") for part in call.query["labelSelector"].split(","))
        items = [w for w in CLUSTER[call.path.rsplit("/", 1)[1]] if all(w["metadata"]["labels"].get(k) == v for k, v in selector.items())]
        return 200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": items}
    return 200, {"kind": "Status", "status": "Success"}


def test_ls_finds_the_team_jobs_by_label_and_reads_each_operator_status(project: Path) -> None:
    client = RecordingApiClient(cluster)
    records = KubernetesTarget(load_stack("team-feed"), api_client=client).list()
    assert {(c.path, c.query["labelSelector"]) for c in client.calls} == {
        # Each kind's own label keeps look-alikes out (mpi-operator's launchers are batch Jobs too).
        ("/apis/sparkoperator.k8s.io/v1beta2/namespaces/feed/sparkapplications", "plinth.dev/team=feed,plinth.dev/kind=spark"),
        (MPIJOBS, "plinth.dev/team=feed,plinth.dev/kind=horovod"),
        ("/apis/kubeflow.org/v1/namespaces/feed/tfjobs", "plinth.dev/team=feed,plinth.dev/kind=tf-ps"),
        ("/apis/batch/v1/namespaces/feed/jobs", "plinth.dev/team=feed,plinth.dev/kind=python"),
        ("/apis/sparkoperator.k8s.io/v1beta2/namespaces/feed/sparkapplications", "plinth.dev/team=feed,plinth.dev/kind=streaming"),
    }
    assert [(r.id, r.kind, r.status) for r in records] == [
        ("ctr-generate-ddddd", "python", JobStatus.FAILED),
        ("ctr-preprocess-bbbbb", "spark", JobStatus.SUCCEEDED),
        ("ctr-train-ccccc", "horovod", JobStatus.RUNNING),
    ]
    generate, preprocess, train = records
    assert generate.message == "Job has reached the specified backoff limit" and generate.attempt == 5
    assert (preprocess.finished - preprocess.started).total_seconds() == 180
    assert train.message == "Launcher 1 active, Worker 2 active"


def test_status_logs_and_cancel_select_one_job_by_its_id(project: Path) -> None:
    client = RecordingApiClient(cluster)
    target = KubernetesTarget(load_stack("team-feed"), api_client=client)
    assert target.status("ctr-train-ccccc").status is JobStatus.RUNNING
    assert all(c.query["labelSelector"].startswith("plinth.dev/team=feed,plinth.dev/job-id=ctr-train-ccccc") for c in client.calls)

    client.calls.clear()
    assert "".join(target.logs("ctr-train-ccccc", tail=5)) == "step 1\nstep 2\nexported\n"
    pods, log = client.calls[-2:]
    assert pods.query["labelSelector"] == "plinth.dev/job-id=ctr-train-ccccc,plinth.dev/role=launcher"
    assert (log.path, log.query) == ("/api/v1/namespaces/feed/pods/ctr-train-ccccc-launcher-x7k2p/log", {"container": "launcher", "follow": "false", "tailLines": "5"})

    client.calls.clear()
    assert target.cancel("ctr-train-ccccc").status is JobStatus.CANCELLED
    deletes = [(c.path, c.query) for c in client.calls if c.method == "DELETE"]
    assert deletes == [
        (f"{MPIJOBS}/ctr-train-ccccc", {"propagationPolicy": "Background"}),
        ("/api/v1/namespaces/feed/configmaps", {"labelSelector": "plinth.dev/job-id=ctr-train-ccccc"}),
    ]
    with pytest.raises(PlinthError, match="job 'nope-bbbbb' not found in namespace 'feed' of stack 'team-feed'"):
        target.status("nope-bbbbb")


def test_cli_submit_watch_shows_progress_until_the_job_ends(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    states = iter([
        {},
        {"conditions": [{"type": "Created", "status": "True"}]},
        {"conditions": [{"type": "Running", "status": "True"}], "replicaStatuses": {"Launcher": {"active": 1}, "Worker": {"active": 2}}},
        {"conditions": [{"type": "Running", "status": "True"}, {"type": "Succeeded", "status": "True"}], "startTime": "2026-11-23T17:00:00Z", "completionTime": "2026-11-23T17:05:00Z"},
    ])
    applied = {}

    def respond(call: Call):
        if call.method == "PATCH":
            applied[call.body["kind"]] = call.body
            return 200, call.body
        if call.path == MPIJOBS:
            return 200, {"items": [{**applied["MPIJob"], "status": next(states)}]}
        return empty_lists(call)

    client = RecordingApiClient(respond)
    monkeypatch.setattr(kube, "connect", lambda stack: client)
    monkeypatch.setattr(base, "WATCH_POLL_SECONDS", 0.0)
    result = CliRunner().invoke(app, ["job", "submit", "-f", str(TRAIN), "--stack", "team-feed", "--watch"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("job/ctr-train-") and lines[0].endswith(" submitted to stack team-feed")
    assert [line[10:] for line in lines[1:-1]] == ["Pending    waiting for the operator", "Pending    created", "Running    Launcher 1 active, Worker 2 active", "Succeeded"]
    assert lines[-1].endswith("succeeded in 5m00s")


def test_cli_preflight_refusal_sends_nothing(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = RecordingApiClient(empty_lists)
    monkeypatch.setattr(kube, "connect", lambda stack: client)
    job = write_job(project / "jobs", "big", "kind: horovod\nname: big\nscript: big.py\nworkers: 3\npool: a100\nresources: {gpu: 8}\n", script="")
    result = CliRunner().invoke(app, ["job", "submit", "-f", str(job), "--stack", "team-feed"])
    assert result.exit_code == 1
    assert "the job requests 24 gpu in total (1 launcher + 3 workers), over the 16 of team feed's quota" in result.output
    assert client.calls == []


def test_yarn_stack_routes_spark_to_yarn_and_the_rest_to_kubernetes(lab: Path) -> None:
    stack = load_stack("team-lab-yarn")
    client = RecordingApiClient(empty_lists)
    target = YarnTarget(stack, api_client=client)
    train = load_job(TRAIN)
    target.submit(train, render_job(train, stack, job_id="ctr-train-abcde"))
    assert [c.path for c in client.calls] == ["/api/v1/namespaces/lab/configmaps/ctr-train-abcde-code", "/apis/kubeflow.org/v2beta1/namespaces/lab/mpijobs/ctr-train-abcde"]

    rendered = render_job(load_job(REPO / "examples" / "ctr" / "preprocess.job.yaml"), stack, job_id="ctr-preprocess-abcde")
    conf_dir = Path(rendered.documents[0]["spec"]["env"]["HADOOP_CONF_DIR"])
    target._write_hadoop_conf(str(conf_dir))  # what submit does before spark-submit starts
    assert "<name>fs.defaultFS</name><value>hdfs://nn.hadoop.lab:8020</value>" in (conf_dir / "core-site.xml").read_text()
    assert "<name>yarn.resourcemanager.address</name><value>rm.hadoop.lab:8032</value>" in (conf_dir / "yarn-site.xml").read_text()
    assert target._owner("ctr-train-abcde") is target.kubernetes


def test_cli_render_prints_every_object_as_yaml_or_json_without_connecting(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube, "connect", lambda stack: pytest.fail("render must not reach the cluster"))
    as_json = CliRunner().invoke(app, ["job", "render", "-f", str(TRAIN), "--stack", "team-feed", "-o", "json"])
    assert as_json.exit_code == 0, as_json.output
    objects = json.loads(as_json.output)
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [("ConfigMap", "ctr-train-xxxxx-code"), ("MPIJob", "ctr-train-xxxxx")]
    as_yaml = CliRunner().invoke(app, ["job", "render", "-f", str(TRAIN), "--stack", "team-feed"])
    import yaml

    assert list(yaml.safe_load_all(as_yaml.output)) == objects


def test_cli_submit_wait_streams_the_launcher_log_then_reports_the_end(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    applied = {}
    polls = iter([{"conditions": [{"type": "Running", "status": "True"}]}] * 2)
    done = {"conditions": [{"type": "Succeeded", "status": "True"}], "startTime": "2026-11-23T17:00:00Z", "completionTime": "2026-11-23T17:00:42Z"}

    def respond(call: Call):
        if call.method == "PATCH":
            applied[call.body["kind"]] = call.body
            return 200, call.body
        if call.path == MPIJOBS:
            return 200, {"items": [{**applied["MPIJob"], "status": next(polls, done)}]}
        if call.path.endswith("/pods"):
            pod = {"metadata": {"name": "launcher-pod", "creationTimestamp": "2026-11-23T17:00:01Z"}, "status": {"phase": "Running"}}
            return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [pod]}
        if call.path.endswith("/log"):
            assert call.query == {"container": "launcher", "follow": "true"}
            return 200, b"epoch 1/4 loss=0.45\nexported\n"
        return empty_lists(call)

    monkeypatch.setattr(kube, "connect", lambda stack: RecordingApiClient(respond))
    monkeypatch.setattr(kubernetes, "POLL_SECONDS", 0.0)
    result = CliRunner().invoke(app, ["job", "submit", "-f", str(TRAIN), "--stack", "team-feed", "--wait"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == ["epoch 1/4 loss=0.45", "exported", result.output.splitlines()[-1]]
    assert result.output.splitlines()[-1].endswith("succeeded in 42s")


def test_usage_reads_the_teams_plinth_pods_by_label(project: Path) -> None:
    """Pods are listed by Plinth's label as the API returns them; usage is computed on what comes
    out (the arithmetic itself: tests/unit/test_usage.py)."""
    from datetime import datetime, timedelta, timezone

    from tests.unit.test_usage import PODS, PRICES
    from platform_cli.usage import pod_usage

    client = RecordingApiClient(lambda call: (200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": PODS[:3]}))
    pods = KubernetesTarget(load_stack("team-feed"), api_client=client).pods()
    assert [(c.method, c.path, c.query) for c in client.calls] == [("GET", "/api/v1/namespaces/feed/pods", {"labelSelector": "app.kubernetes.io/managed-by=plinth"})]
    start = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
    [usage] = pod_usage(pods, "team-feed", PRICES, start - timedelta(days=1), start + timedelta(hours=4))
    assert (usage.job, usage.team, usage.pool, usage.gpu) == ("ctr-train-x7k2p", "feed", "a100", 2)
    assert usage.gpu_hours == 3.5 and usage.finished == start + timedelta(hours=2)


def test_a_batch_job_whose_pod_waits_for_a_node_is_pending_not_running() -> None:
    from platform_cli.kinds import job_kind

    python = job_kind("python")
    # Volcano holds the pod for the team's share: the Job controller counts it active, not ready.
    waiting = python.read_status({"status": {"active": 1, "ready": 0, "startTime": "2026-11-23T17:00:00Z"}})
    assert (waiting.status, waiting.message) == (JobStatus.PENDING, "1 pod(s) active, 0 ready, 0 failed")
    running = python.read_status({"status": {"active": 1, "ready": 1, "failed": 1, "startTime": "2026-11-23T17:00:00Z"}})
    assert (running.status, running.attempt) == (JobStatus.RUNNING, 2)
