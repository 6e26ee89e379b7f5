"""Volcano's scheduler and controller manager against the live sim, running the configuration the
platform stack gives Volcano's chart (platform_cli/spec/volcano.py): the simulated 100-GPU
platform platform-sim-volcano (ten a100 nodes of 8 GPUs, five t4 nodes of 4) with two teams
deployed by `pulumi up`, ranking guaranteed 48 GPUs and feed 32 (their Queues' deserved).

Jobs are rendered and submitted as `plinth job submit` does (batch Jobs whose pods name the
team's Queue and priority class), each asking for a whole a100 node (8 GPUs), so which node a
pod lands on never decides an outcome, and each pod running ten minutes (a KWOK annotation), so
none ends while a test watches. Volcano's controller manager gives every pod its PodGroup,
vc-scheduler binds or evicts, KWOK plays the nodes. The assertions are on GPUs held per team
and on pod states, never on the order of events within one poll: pods bound or evicted in the
same scheduling cycle are ties."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from platform_cli.kube import Resource
from platform_cli.render.job import render_job
from platform_cli.spec.job import load_job
from platform_cli.spec.stack import load_stack
from platform_cli.targets.kubernetes import KubernetesTarget
from tests.conftest import write_job
from tests.sim.conftest import SIM_TIMEOUT, Sim, build_cluster_tools, running_sim, wait_for

pytestmark = pytest.mark.timeout(SIM_TIMEOUT)

PLATFORM = "platform-sim-volcano"
TEAMS = {"team-sim-ranking": "ranking", "team-sim-feed": "feed"}
DESERVED = {"ranking": 48, "feed": 32}
GPU = "nvidia.com/gpu"
POD = Resource("v1", "Pod")
JOB = Resource("batch/v1", "Job")
VOLCANO_JOB = Resource("batch.volcano.sh/v1alpha1", "Job")
POD_GROUP = Resource("scheduling.volcano.sh/v1beta1", "PodGroup")
NODE_GPUS = 8
# KWOK keeps a pod carrying these running ten minutes (delay and its jitter bound: both).
RUNS_LONG = {f"pod-complete.stage.kwok.x-k8s.io/{delay}": "10m" for delay in ("delay", "jitter-delay")}


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Sim:
    """A simulated cluster of platform-sim-volcano, with it and both teams deployed."""
    bin_dir = build_cluster_tools("volcano")
    for sim in running_sim(bin_dir, tmp_path_factory, platform=PLATFORM):
        sim.up(PLATFORM, *TEAMS)
        yield sim


@pytest.fixture
def cluster(platform: Sim) -> Sim:
    """The shared cluster, every team's work removed after the test."""
    try:
        yield platform
    finally:
        kube = platform.kube()
        for team in TEAMS.values():
            # PodGroups too: one left Inqueue would still count against its Queue at admission.
            for resource in (JOB, VOLCANO_JOB, POD_GROUP):
                for job in kube.list(resource, team):
                    kube.delete(resource, team, job["metadata"]["name"])
        wait_for("every pod gone", lambda: not any(kube.list(POD, team) for team in TEAMS.values()), timeout=60)


def gpu_job(tmp_path: Path, priority: str = "plinth-training") -> Path:
    return write_job(tmp_path / priority, "train",
                     f"kind: python\nname: train\nscript: train.py\npool: a100\npriorityClass: {priority}\n"
                     f"resources: {{cpu: 2, memory: 4Gi, gpu: {NODE_GPUS}}}\n", script="print('train')\n")


def submit(sim: Sim, stack_name: str, spec: Path, count: int) -> list[str]:
    """Submit `count` jobs as `plinth job submit` does (the same render, then the Kubernetes
    target's submit), in this process: a `plinth` start per job takes seconds on a loaded
    machine, and the jobs of one step must all be in before the first could end. Each pod is told
    to run ten minutes in KWOK instead of the sim's 45-60 s, so no job ends while a test watches
    the shares. The job ids."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PLINTH_PROJECT_DIR", sim.env["PLINTH_PROJECT_DIR"])
        stack, job = load_stack(stack_name), load_job(spec)
        target = KubernetesTarget(stack, api_client=sim.kube().api_client)
        ids = []
        for _ in range(count):
            rendered = render_job(job, stack, job_id=target.new_job_id(job.spec.name))
            pod = rendered.documents[-1]["spec"]["template"]["metadata"]
            pod.setdefault("annotations", {}).update(RUNS_LONG)
            target.submit(job, rendered)
            ids.append(rendered.job_id)
    return ids


def live_pods(sim: Sim, team: str) -> list[dict]:
    """The team's pods that hold or wait for GPUs: not finished, not being deleted."""
    return [pod for pod in sim.kube().list(POD, team)
            if not pod["metadata"].get("deletionTimestamp") and pod["status"].get("phase") not in ("Succeeded", "Failed")]


def gpus(pod: dict) -> int:
    return sum(int(c["resources"].get("requests", {}).get(GPU, 0)) for c in pod["spec"]["containers"])


def held(sim: Sim) -> dict[str, int]:
    """GPUs of the pods Volcano has bound to a node, per team."""
    return {team: sum(gpus(pod) for pod in live_pods(sim, team) if pod["spec"].get("nodeName")) for team in TEAMS.values()}


def waiting(sim: Sim, team: str) -> int:
    """Pods of the team no node was given."""
    return sum(not pod["spec"].get("nodeName") for pod in live_pods(sim, team))


def bound_pods(sim: Sim, team: str, jobs: list[str]) -> dict[str, str]:
    """pod uid -> job id, for the bound pods of these jobs."""
    return {pod["metadata"]["uid"]: pod["metadata"]["labels"]["plinth.dev/job-id"]
            for pod in live_pods(sim, team) if pod["spec"].get("nodeName") and pod["metadata"]["labels"].get("plinth.dev/job-id") in jobs}


def test_two_teams_over_their_shares_converge_to_their_deserved_gpus(cluster: Sim, tmp_path: Path) -> None:
    spec = gpu_job(tmp_path)
    # ranking asks for all 80 a100 GPUs while feed is idle: it borrows feed's 32.
    submit(cluster, "team-sim-ranking", spec, 10)
    wait_for("ranking holding all 80 a100 GPUs", lambda: held(cluster) == {"ranking": 80, "feed": 0}, timeout=60)

    # feed asks for 48, more than its 32: Volcano reclaims the 32 ranking borrowed (evicting
    # four of its pods) and no more, so both teams end on their deserved shares.
    submit(cluster, "team-sim-feed", spec, 6)
    wait_for("both teams on their deserved GPUs", lambda: held(cluster) == DESERVED, timeout=60)
    # What is over each share waits: ranking's four reclaimed jobs (their pods replaced by the
    # Job controller) and feed's two beyond 32.
    wait_for("the work beyond each share pending", lambda: (waiting(cluster, "ranking"), waiting(cluster, "feed")) == (4, 2), timeout=30)
    # Converged, not passing through: with both teams waiting, neither takes GPUs from the other
    # at its share. (Upper bounds: a pod that finishes, 45-60 s after it started, leaves its team
    # below its share until the team's next pod takes the node.)
    for _ in range(5):
        time.sleep(1)
        now = held(cluster)
        assert now["ranking"] <= DESERVED["ranking"] and now["feed"] <= DESERVED["feed"], now


def test_borrowed_gpus_are_reclaimed_when_their_owner_submits(cluster: Sim, tmp_path: Path) -> None:
    spec = gpu_job(tmp_path)
    # feed borrows beyond its 32 while ranking is idle: 7 nodes, 56 GPUs.
    feed_jobs = submit(cluster, "team-sim-feed", spec, 7)
    wait_for("feed holding 56 GPUs", lambda: held(cluster)["feed"] == 56, timeout=60)
    before = bound_pods(cluster, "feed", feed_jobs)

    # ranking, the owner of 24 of them, needs 48 and the cluster has 24 free: Volcano reclaims
    # exactly what feed borrowed from ranking, three pods, and keeps feed's own 32.
    submit(cluster, "team-sim-ranking", spec, 6)
    wait_for("ranking's 48 placed", lambda: held(cluster) == DESERVED, timeout=60)
    after = bound_pods(cluster, "feed", feed_jobs)
    assert len(set(before) - set(after)) == 3, (before, after)     # three feed pods evicted
    assert set(after) <= set(before)                                # and none replaced on a node
    assert waiting(cluster, "feed") == 3 and waiting(cluster, "ranking") == 0


def test_preemptible_work_is_evicted_first(cluster: Sim, tmp_path: Path) -> None:
    training, preemptible = gpu_job(tmp_path, "plinth-training"), gpu_job(tmp_path, "plinth-preemptible")
    # ranking fills the a100 pool with five training and five preemptible jobs.
    kept = submit(cluster, "team-sim-ranking", training, 5)
    cheap = submit(cluster, "team-sim-ranking", preemptible, 5)
    wait_for("ranking holding all 80 a100 GPUs", lambda: held(cluster)["ranking"] == 80, timeout=60)
    kept_pods = bound_pods(cluster, "ranking", kept)

    # Two more training jobs find no free node: Volcano preempts two preemptible pods for them,
    # never a training pod of the same priority.
    urgent = submit(cluster, "team-sim-ranking", training, 2)
    wait_for("the two new training jobs placed", lambda: len(bound_pods(cluster, "ranking", urgent)) == 2, timeout=60)
    assert bound_pods(cluster, "ranking", kept) == kept_pods          # every training pod still on its node
    assert len(bound_pods(cluster, "ranking", cheap)) == 3            # two preemptible pods gone
    assert held(cluster)["ranking"] == 80
    # The evicted preemptible jobs wait (their replacement pods, which the Job controller makes
    # once the evicted ones are gone): they may not preempt anyone.
    wait_for("the two preemptible jobs waiting", lambda: waiting(cluster, "ranking") == 2, timeout=30)
    assert bound_pods(cluster, "ranking", kept) == kept_pods and len(bound_pods(cluster, "ranking", cheap)) == 3


def gang_job(team: str, workers: int) -> dict:
    """A Volcano Job of `workers` pods of 8 GPUs that only runs whole (minAvailable = workers),
    as a distributed training job's pods must."""
    pod = {
        "metadata": {"annotations": RUNS_LONG},
        "spec": {
            "schedulerName": "volcano",
            "priorityClassName": "plinth-training",
            "restartPolicy": "Never",
            "nodeSelector": {"plinth.dev/gpu-pool": "a100"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [{
                "name": "worker", "image": "ghcr.io/plinth-ml/plinth-runtime:0.1.0",
                "resources": {"requests": {"cpu": "2", "memory": "4Gi", GPU: str(NODE_GPUS)}, "limits": {"memory": "4Gi", GPU: str(NODE_GPUS)}},
            }],
        },
    }
    return {
        "apiVersion": VOLCANO_JOB.api_version, "kind": "Job",
        "metadata": {"name": "allreduce", "namespace": team},
        "spec": {"schedulerName": "volcano", "queue": team, "minAvailable": workers, "priorityClassName": "plinth-training",
                 "tasks": [{"name": "worker", "replicas": workers, "template": pod}]},
    }


def test_a_gang_job_is_never_partially_placed(cluster: Sim, tmp_path: Path) -> None:
    spec = gpu_job(tmp_path)
    # ranking on its 48 GPUs, feed on 16 of its 32: two a100 nodes free.
    submit(cluster, "team-sim-ranking", spec, 6)
    feed_jobs = submit(cluster, "team-sim-feed", spec, 2)
    wait_for("64 GPUs held", lambda: held(cluster) == {"ranking": 48, "feed": 16}, timeout=60)

    # A three-node gang for ranking: two nodes are free, and ranking is at its share, so it
    # reclaims nothing. Volcano binds none of its pods rather than two.
    kube = cluster.kube()
    kube.apply(gang_job("ranking", 3))
    wait_for("the gang's three pods created", lambda: len(kube.list(POD, "ranking", "volcano.sh/job-name=allreduce")) == 3, timeout=30)
    for _ in range(10):
        gang = kube.list(POD, "ranking", "volcano.sh/job-name=allreduce")
        assert not any(pod["spec"].get("nodeName") for pod in gang), [pod["spec"].get("nodeName") for pod in gang]
        time.sleep(1)
    groups = kube.list(POD_GROUP, "ranking")
    gang_group = next(g for g in groups if g["metadata"]["name"].startswith("allreduce"))
    assert gang_group["spec"]["minMember"] == 3 and gang_group["status"].get("running", 0) == 0

    # One of feed's jobs ends: three nodes free, and the whole gang is placed at once.
    kube.delete(JOB, "feed", feed_jobs[0])
    wait_for("the gang placed whole", lambda: sum(bool(p["spec"].get("nodeName")) for p in kube.list(POD, "ranking", "volcano.sh/job-name=allreduce")) == 3, timeout=60)
    assert held(cluster)["ranking"] == 48 + 24
