"""Kueue's manager against the live sim: two teams' ClusterQueues (from their stacks, through
`pulumi up`) in one cohort, each team submitting more GPU jobs than its quota with `plinth job
submit`. Kueue admits up to quota plus what it can borrow, holds the rest (suspended Jobs, no
pods), reclaims what was lent when its owner needs it, and admits held jobs as earlier ones finish.

ranking (team-sim) is guaranteed 8 GPUs of pool a100, feed (a copy of team-sim) 4; each job asks
for 2. A Job's pod runs 45-60 s in the sim (KWOK), so the admitted jobs are still running while
the other team submits."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml

from platform_cli.kube import KUEUE_JOB_UID_LABEL, KUEUE_WORKLOAD, Resource
from tests.conftest import write_job
from tests.sim.conftest import SIM_TIMEOUT, Sim, wait_for

pytestmark = pytest.mark.timeout(SIM_TIMEOUT)

JOB = Resource("batch/v1", "Job")
CLUSTER_QUEUE = Resource("kueue.x-k8s.io/v1beta2", "ClusterQueue")
GPU = "nvidia.com/gpu"
TEAMS = {"team-sim": "ranking", "team-sim-feed": "feed"}


def add_feed_team(sim: Sim) -> None:
    """A second team stack on platform-sim: team-sim's file (same passphrase and salt) with
    another name, group and a guaranteed share of 4 GPUs."""
    document = yaml.safe_load(sim.stack_file("team-sim").read_text())
    team = document["config"]["plinth:team"]
    team.update(name="feed", group="feed-team", queue={**team["queue"], "weight": 1, "gpuShare": 4})
    document["config"]["plinth:storage"]["root"] = "s3a://plinth-sim/teams/feed"
    sim.stack_file("team-sim-feed").write_text(yaml.safe_dump(document, sort_keys=False))
    sim.up("team-sim-feed")


def submit(sim: Sim, stack: str, spec: Path) -> str:
    out = sim.plinth("job", "submit", "-s", stack, "-f", str(spec)).stdout
    found = re.search(rf"^job/(\S+) submitted to stack {stack}$", out, re.MULTILINE)
    assert found, out
    return found.group(1)


def gpus_in_use(sim: Sim, team: str) -> tuple[int, int]:
    """(GPUs of admitted jobs, of which borrowed) in the team's ClusterQueue, as Kueue counts them."""
    queue = sim.kube().get(CLUSTER_QUEUE, None, team) or {}
    for flavor in queue.get("status", {}).get("flavorsUsage") or []:
        for resource in flavor["resources"]:
            if resource["name"] == GPU and flavor["name"] == "gpu-a100":
                return int(resource.get("total", 0)), int(resource.get("borrowed", 0))
    return 0, 0


def running(sim: Sim, team: str, jobs: list[str]) -> list[str]:
    """The jobs Kueue has let run (unsuspended), in submission order."""
    unsuspended = {job["metadata"]["name"] for job in sim.kube().list(JOB, team) if not job["spec"].get("suspend")}
    return [job for job in jobs if job in unsuspended]


def preemptions(sim: Sim, team: str, jobs: list[str]) -> list[str]:
    """The jobs whose Kueue Workload was preempted (reason), in submission order."""
    uids = {job["metadata"]["uid"]: job["metadata"]["name"] for job in sim.kube().list(JOB, team)}
    preempted = {}
    for workload in sim.kube().list(KUEUE_WORKLOAD, team):
        for condition in workload.get("status", {}).get("conditions") or []:
            if condition["type"] == "Preempted" and condition["status"] == "True":
                preempted[uids.get(workload["metadata"]["labels"][KUEUE_JOB_UID_LABEL])] = condition["reason"]
    return [f"{job}:{preempted[job]}" for job in jobs if job in preempted]


def test_two_teams_over_quota_get_their_gpu_shares_and_queue_the_rest(deployed: Sim, tmp_path: Path) -> None:
    add_feed_team(deployed)
    spec = write_job(tmp_path, "train", "kind: python\nname: train\nscript: train.py\npool: a100\nresources: {cpu: 2, memory: 4Gi, gpu: 2}\n",
                     script="print('train')\n")
    jobs: dict[str, list[str]] = {"ranking": [], "feed": []}
    try:
        # ranking asks for 16 GPUs while feed is idle: its 8 plus feed's 4, borrowed; two jobs wait.
        jobs["ranking"] = [submit(deployed, "team-sim", spec) for _ in range(8)]
        wait_for("ranking's jobs admitted up to its quota plus feed's", lambda: len(running(deployed, "ranking", jobs["ranking"])) == 6, timeout=30)
        assert running(deployed, "ranking", jobs["ranking"]) == jobs["ranking"][:6]   # first come, first admitted
        assert gpus_in_use(deployed, "ranking") == (12, 4)
        held = deployed.plinth("job", "status", jobs["ranking"][6], "-s", "team-sim").stdout.splitlines()
        assert held[1].split()[:3] == [jobs["ranking"][6], "python", "Pending"]
        # (team-sim's pools are a100 and t4: the job asks for a100, so t4 does not match either)
        assert held[-1].startswith("queued in ranking: couldn't assign flavors to pod set main: ")
        assert held[-1].endswith("insufficient unused quota for nvidia.com/gpu in flavor gpu-a100, 2 more needed")
        assert deployed.kube().list(Resource("v1", "Pod"), "ranking", f"plinth.dev/job-id={jobs['ranking'][6]}") == []   # no pod while held

        # feed asks for 8: Kueue takes back the 4 GPUs ranking borrowed (preempting two of its
        # jobs) and each team then holds exactly its guaranteed share, 8:4.
        jobs["feed"] = [submit(deployed, "team-sim-feed", spec) for _ in range(4)]
        wait_for("feed's share reclaimed", lambda: (gpus_in_use(deployed, "ranking"), gpus_in_use(deployed, "feed")) == ((8, 0), (4, 0)), timeout=30)
        assert running(deployed, "feed", jobs["feed"]) == jobs["feed"][:2]
        reclaimed = preemptions(deployed, "ranking", jobs["ranking"])
        # two of ranking's running jobs, reclaimed for the cohort (Kueue takes the ones admitted
        # last; six admitted within the same second are a tie it breaks its own way)
        assert len(reclaimed) == 2 and all(r.endswith(":InCohortReclamation") for r in reclaimed), reclaimed
        assert {r.split(":")[0] for r in reclaimed} <= set(jobs["ranking"][:6]), reclaimed
        listed = {row.split()[0]: row.split()[2] for row in deployed.plinth("job", "ls", "-s", "team-sim").stdout.splitlines()[1:]}
        assert sorted(listed[job] for job in jobs["ranking"]) == ["Pending"] * 4 + ["Running"] * 4
        preempted = reclaimed[0].split(":")[0]
        assert deployed.plinth("job", "status", preempted, "-s", "team-sim").stdout.splitlines()[-1].endswith("(preempted earlier: InCohortReclamation)")

        # As jobs finish, held ones are admitted.
        order: dict[str, list[str]] = {"ranking": [], "feed": []}
        peak = {"ranking": 0, "feed": 0}

        def all_succeeded() -> bool:
            for team in order:
                # Jobs first seen running in the same poll were admitted within one second of
                # each other: they count as admitted in their submission order.
                admitted = [job for job in running(deployed, team, jobs[team]) if job not in order[team]]
                order[team].extend(sorted(admitted, key=jobs[team].index))
                peak[team] = max(peak[team], gpus_in_use(deployed, team)[0])
            return all(succeeded(team) == len(jobs[team]) for team in jobs)

        def succeeded(team: str) -> int:
            return sum(any(c["type"] == "Complete" and c["status"] == "True" for c in job.get("status", {}).get("conditions") or [])
                       for job in deployed.kube().list(JOB, team) if job["metadata"]["name"] in jobs[team])

        wait_for("every job to succeed", all_succeeded, timeout=420, interval=1)
        for stack, team in TEAMS.items():
            rows = [row.split() for row in deployed.plinth("job", "ls", "-s", stack).stdout.splitlines()[1:]]
            assert sorted(row[2] for row in rows if row[0] in jobs[team]) == ["Succeeded"] * len(jobs[team])
        # Every held job was admitted in the end. (The exact order is not asserted: jobs admitted
        # or preempted within the same second are ties Kueue breaks its own way.)
        assert set(order["ranking"]) == set(jobs["ranking"]), (order, reclaimed)
        assert set(order["feed"]) == set(jobs["feed"]), order
        # A team never holds more than the cohort's 12 guaranteed GPUs, borrowing included.
        assert 8 <= peak["ranking"] <= 12 and 4 <= peak["feed"] <= 12, peak
    finally:
        for stack, team in TEAMS.items():
            for job in jobs[team]:
                deployed.plinth("job", "cancel", job, "-s", stack, check=False)
        deployed.destroy("team-sim-feed")
