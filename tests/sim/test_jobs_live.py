"""`plinth job` on team-sim against the live API server: every example job kind is accepted
(server-side apply, field manager plinth), read back and cancelled; a python job runs through the
Job controller, the scheduler and KWOK; the team's ResourceQuota and RBAC are the API server's."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from platform_cli.errors import PlinthError
from platform_cli.kube import CONFIG_MAP, POD, Resource
from tests.conftest import REPO, write_job
from tests.sim.conftest import SIM_TIMEOUT, Sim, wait_for

# The first test of a session may build the cluster tools (scripts/cluster-tools) first.
pytestmark = pytest.mark.timeout(SIM_TIMEOUT)

EXAMPLES = sorted((REPO / "examples").glob("*/*.job.yaml"))
JOB = Resource("batch/v1", "Job")
WORKLOADS = {"python": JOB, "spark": Resource("sparkoperator.k8s.io/v1beta2", "SparkApplication"),
             "horovod": Resource("kubeflow.org/v2beta1", "MPIJob"), "tf-ps": Resource("kubeflow.org/v1", "TFJob")}


def submitted_id(result) -> str:
    found = re.search(r"^job/(\S+) submitted to stack team-sim$", result.stdout, re.MULTILINE)
    assert found, result.stdout
    return found.group(1)


def by_id(sim: Sim, job_id: str) -> list[dict]:
    """Every object of the job in the team namespace (the workload of its kind and its ConfigMap)."""
    kube = sim.kube()
    return [obj for resource in {*WORKLOADS.values(), CONFIG_MAP} for obj in kube.list(resource, "ranking", f"plinth.dev/job-id={job_id}")]


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_example_job_is_accepted_read_back_and_cancelled(deployed: Sim, spec: Path) -> None:
    job_id = submitted_id(deployed.plinth("job", "submit", "-s", "team-sim", "-f", str(spec)))
    objects = by_id(deployed, job_id)
    assert {obj["kind"] for obj in objects} >= {"ConfigMap"} and len(objects) == 2
    for obj in objects:   # server-side apply by plinth
        assert [(m["manager"], m["operation"]) for m in obj["metadata"]["managedFields"] if m["manager"] == "plinth"] == [("plinth", "Apply")]

    listed = {job["id"]: job for job in json.loads(deployed.plinth("job", "ls", "-s", "team-sim", "-o", "json").stdout)}
    assert listed[job_id]["kind"] == yaml.safe_load(spec.read_text())["kind"] and listed[job_id]["stack"] == "team-sim"
    status = json.loads(deployed.plinth("job", "status", job_id, "-s", "team-sim", "-o", "json").stdout)
    assert status["id"] == job_id and status["status"] in ("Pending", "Running")   # a Job's pod runs 45-60 s in the sim

    assert deployed.plinth("job", "cancel", job_id, "-s", "team-sim").stdout == f"job/{job_id} cancelled\n"
    wait_for(f"job {job_id}'s objects deleted", lambda: by_id(deployed, job_id) == [], timeout=60)
    gone = deployed.plinth("job", "status", job_id, "-s", "team-sim", check=False)
    assert gone.returncode == 1 and gone.stderr.startswith(f"error: job {job_id!r} not found in namespace 'ranking'")


def test_a_python_job_goes_pending_running_succeeded(deployed: Sim) -> None:
    job_id = submitted_id(deployed.plinth("job", "submit", "-s", "team-sim", "-f", str(REPO / "examples/ctr/generate.job.yaml")))
    seen: list[str] = []

    def finished():
        status = json.loads(deployed.plinth("job", "status", job_id, "-s", "team-sim", "-o", "json").stdout)["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        return status in ("Succeeded", "Failed")

    wait_for(f"job {job_id} to end", finished, timeout=180, interval=0.2)
    assert seen[-1] == "Succeeded" and "Running" in seen, seen
    assert seen.index("Running") > (seen.index("Pending") if "Pending" in seen else -1)
    # The Job controller made a pod, the scheduler put it on a CPU node, KWOK ran it.
    pod = deployed.kube().list(POD, "ranking", f"plinth.dev/job-id={job_id}")[0]
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["spec"]["nodeName"].startswith("sim-cpu-")
    table = deployed.plinth("job", "status", job_id, "-s", "team-sim").stdout
    assert table.splitlines()[1].split()[:3] == [job_id, "python", "Succeeded"]


def test_submit_wait_streams_the_log_and_reports_success(deployed: Sim) -> None:
    result = deployed.plinth("job", "submit", "-s", "team-sim", "-f", str(REPO / "examples/ctr/generate.job.yaml"), "--wait")
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"job/ctr-generate-\w+ submitted to stack team-sim", lines[0])
    assert "this pod ran no container" in result.stdout   # what KWOK serves as the pod's log
    assert re.fullmatch(r"job/ctr-generate-\w+ succeeded in (\d+m)?\d+s", lines[-1])


def test_a_job_over_the_quota_left_is_refused_by_the_api_server_in_one_line(deployed: Sim, tmp_path: Path) -> None:
    kube = deployed.kube()
    # Something else of the team's holds 60 of its 64 CPUs (a pod KWOK keeps Running).
    holder = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "cpu-holder", "namespace": "ranking"},
              "spec": {"containers": [{"name": "hold", "image": "busybox", "resources": {"requests": {"cpu": "60", "memory": "1Gi"}, "limits": {"cpu": "60", "memory": "1Gi"}}}]}}
    kube.create(holder)
    try:
        spec = write_job(tmp_path, "big", "kind: python\nname: big\nscript: big.py\nresources: {cpu: 8, memory: 1Gi}\n", script="print('hi')\n")
        job_id = submitted_id(deployed.plinth("job", "submit", "-s", "team-sim", "-f", str(spec)))   # within the quota on paper
        message = wait_for("the refusal", lambda: (lambda out: out.splitlines()[-1] if "exceeded quota" in out else None)(
            deployed.plinth("job", "status", job_id, "-s", "team-sim").stdout), timeout=60)
        assert message.startswith(f'FailedCreate: Error creating: pods "{job_id}-') and "is forbidden: exceeded quota: plinth-quota" in message
        assert "requested: requests.cpu=8, used: requests.cpu=60, limited: requests.cpu=64" in message
        deployed.plinth("job", "cancel", job_id, "-s", "team-sim")
    finally:
        kube.delete(POD, "ranking", "cpu-holder")


def test_the_teams_group_may_run_jobs_in_its_namespace_and_not_in_another(deployed: Sim) -> None:
    admin = deployed.kube()
    admin.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other-team"}})
    member = deployed.kube(as_group="ranking-team")
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "rbac-probe", "namespace": "ranking"},
           "spec": {"suspend": True, "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}}}
    try:
        assert member.apply(job)["metadata"]["name"] == "rbac-probe"
        with pytest.raises(PlinthError) as refused:
            member.apply({**job, "metadata": {"name": "rbac-probe", "namespace": "other-team"}})
        assert str(refused.value) == (
            'applying Job other-team/rbac-probe: jobs.batch "rbac-probe" is forbidden: User "someone@example.com" cannot patch resource "jobs" '
            'in API group "batch" in the namespace "other-team"; check that your identity is in the team\'s group (ranking-team) and the stack\'s kubernetes:context'
        )
        outsider = deployed.kube(as_group="another-team")
        with pytest.raises(PlinthError, match="is forbidden"):
            outsider.apply(job)
    finally:
        admin.delete(JOB, "ranking", "rbac-probe")
        admin.delete(Resource("v1", "Namespace"), None, "other-team")
    # The job pods' identity exists and its Role is bound to it.
    assert admin.get(Resource("v1", "ServiceAccount"), "ranking", "plinth-jobs") is not None
    binding = admin.get(Resource("rbac.authorization.k8s.io/v1", "RoleBinding"), "ranking", "plinth-jobs")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "plinth-jobs", "namespace": "ranking"}]
    assert binding["roleRef"]["name"] == "plinth-jobs"


def test_jobs_with_sample_tables_are_accepted_with_their_launcher_and_what_they_read_and_write(deployed: Sim) -> None:
    """The API server keeps what the launcher and `plinth job status` need (the containers never
    run in the sim, so nothing is committed here: tests/integration/test_sample_launcher.py runs
    the launcher itself)."""
    storage = "s3a://plinth-sim/teams/ranking/samples"
    preprocess = submitted_id(deployed.plinth("job", "submit", "-s", "team-sim", "-f", str(REPO / "examples/ctr/preprocess.job.yaml")))
    train = submitted_id(deployed.plinth("job", "submit", "-s", "team-sim", "-f", str(REPO / "examples/ctr/train.job.yaml")))
    kube = deployed.kube()
    app = kube.list(WORKLOADS["spark"], "ranking", f"plinth.dev/job-id={preprocess}")[0]
    assert app["spec"]["mainApplicationFile"] == "local:///opt/plinth/job/plinth_launch.py"
    assert app["spec"]["arguments"][0] == "/opt/plinth/job/preprocess.py"
    assert json.loads(app["metadata"]["annotations"]["plinth.dev/sample-output"])["dir"] == f"{storage}/ctr/{preprocess}"
    code = kube.list(CONFIG_MAP, "ranking", f"plinth.dev/job-id={preprocess}")[0]
    assert set(code["data"]) == {"preprocess.py", "plinth_launch.py"}
    mpijob = kube.list(WORKLOADS["horovod"], "ranking", f"plinth.dev/job-id={train}")[0]
    launcher = mpijob["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
    assert launcher["command"][:4] == ["python", "/opt/plinth/job/plinth_launch.py", "--exec", "horovodrun"]

    assert "writes: samples ctr (its next version, committed when the job succeeds)" in deployed.plinth("job", "status", preprocess, "-s", "team-sim").stdout
    assert "reads:  samples ctr@latest (resolved when the job starts)" in deployed.plinth("job", "status", train, "-s", "team-sim").stdout
    for job_id in (preprocess, train):
        deployed.plinth("job", "cancel", job_id, "-s", "team-sim")
