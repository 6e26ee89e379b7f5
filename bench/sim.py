"""The simulated cluster at scale: what a platform team pays to try its stacks and quotas on GPUs
it does not have.

    .venv/bin/python bench/sim.py                 # 1 and 10 team stacks; writes bench/results-sim.json
    .venv/bin/python bench/sim.py --teams 1 10 50 # also 50 (about 20 more minutes on 2 cores)

Needs the cluster tools (scripts/cluster-tools). Three measurements, each next to a baseline
measured in the same run:

1. `pulumi up` of N team stacks on platform-sim with the real CLI and provider against the live
   API server, one after the other as a platform team's CI would run them; baseline: the same N
   programs under Pulumi's mocks in-process (what bench/infra.py measures), which is all the
   program itself costs.
2. Jobs submitted per second through Plinth's Kubernetes target (render, validate, server-side
   apply of the ConfigMap and the batch Job); baseline: the same already-rendered objects applied
   through the same client, i.e. the API server's share.
3. Time until every pod of 100 two-worker training jobs is Running on a sim of 100 GPU nodes
   (scheduler and KWOK; each job a batch/v1 Job of 2 pods with 1 GPU each, the pool's node
   selector and tolerations, since no MPI operator runs in the sim to make MPIJob pods), for 1,
   10 and 100 jobs; baseline: 200 bare pods created directly (no Job controller).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.sim.conftest import Sim, start_sim, wait_for  # noqa: E402

SUBMITS = 40
BENCH_NAMESPACE = "sim-bench"


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def tools_bin() -> Path:
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "cluster-tools")], check=True, capture_output=True, text=True).stdout
    return Path(out.strip().splitlines()[-1])


def add_team_stacks(sim: Sim, count: int) -> list[str]:
    """`count` team stacks on platform-sim, each with its own namespace, quota and queues."""
    template = yaml.safe_load(sim.stack_file("team-sim").read_text())
    names = []
    for index in range(count):
        name = f"team{index:03d}"
        document = json.loads(json.dumps(template))
        config = document["config"]
        config["plinth:team"] |= {"name": name, "group": f"{name}-engineers", "quota": {"cpu": "16", "memory": "64Gi", "gpu": 4},
                                  "queue": {"weight": 1, "gpuShare": 4, "priorityClass": "plinth-training"}}
        config["plinth:storage"] = {"root": f"s3a://plinth-sim/teams/{name}"}
        config["plinth:registry"] = {"trackingUri": "http://mlflow.plinth-system.svc:5000", "artifactRoot": f"s3a://plinth-sim/teams/{name}/models"}
        sim.stack_file(name).write_text(yaml.safe_dump(document, sort_keys=False))
        names.append(name)
    return names


def bench_pulumi(sim: Sim, counts: list[int]) -> dict:
    from platform_cli.render.infra import render_stack

    os.environ["PLINTH_PROJECT_DIR"] = str(sim.project)
    names = add_team_stacks(sim, max(counts))
    log("pulumi up platform-sim")
    started = time.perf_counter()
    sim.up("platform-sim")
    results = {"platform-sim up (s)": round(time.perf_counter() - started, 1), "teams": {}}
    platform = render_stack("platform-sim").outputs
    from platform_cli.render.infra import evaluate, program_path, pulumi_config
    from platform_cli.spec.stack import load_stack

    done = 0
    for count in counts:
        log(f"pulumi up of team stacks {done}..{count - 1} (live), then {count} under mocks")
        live = []
        for name in names[done:count]:
            started = time.perf_counter()
            sim.up(name)
            live.append(time.perf_counter() - started)
        done = count
        mocked = []
        for name in names[:count]:
            stack = load_stack(name)
            config, secret_keys = pulumi_config(stack, {"storageAccessKey": "x", "storageSecretKey": "y"})
            started = time.perf_counter()
            evaluate(name, program_path(sim.project), config, secret_keys, {"platform-sim": platform})
            mocked.append(time.perf_counter() - started)
        results["teams"][str(count)] = {"live ups this step": len(live), "live per stack, median (s)": round(statistics.median(live), 2),
                                        "mocks total (s)": round(sum(mocked), 2), "mocks per stack, median (s)": round(statistics.median(mocked), 3)}
    results["team stacks deployed"] = done
    return results


def bench_submits(sim: Sim) -> dict:
    from platform_cli.render.job import render_job
    from platform_cli.spec.job import load_job
    from platform_cli.spec.stack import load_stack
    from platform_cli.targets.kubernetes import KubernetesTarget

    os.environ["KUBECONFIG"] = sim.env["KUBECONFIG"]
    stack = load_stack("team-sim")
    target = KubernetesTarget(stack)
    job = load_job(REPO / "examples" / "ctr" / "generate.job.yaml")
    target.submit(job, render_job(job, stack, job_id=target.new_job_id(job.spec.name)))   # connect, warm up

    started = time.perf_counter()
    for _ in range(SUBMITS):
        target.submit(job, render_job(job, stack, job_id=target.new_job_id(job.spec.name)))
    plinth = time.perf_counter() - started

    rendered = [render_job(job, stack, job_id=target.new_job_id(job.spec.name)).documents for _ in range(SUBMITS)]
    started = time.perf_counter()
    for documents in rendered:
        for obj in documents:
            target.kube.apply(obj)
    raw = time.perf_counter() - started
    return {"jobs": SUBMITS, "plinth submit (jobs/s)": round(SUBMITS / plinth, 1), "apply of pre-rendered objects (jobs/s)": round(SUBMITS / raw, 1)}


def two_worker_job(index: int, pool: dict) -> dict:
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": f"train-{index:03d}", "namespace": BENCH_NAMESPACE, "labels": {"bench": "sim"}},
        "spec": {"parallelism": 2, "completions": 2, "backoffLimit": 0, "template": {
            # KWOK keeps a Job's pod Running for this long before it Succeeds (its pod-complete stage).
            "metadata": {"labels": {"bench": "sim"}, "annotations": {"pod-complete.stage.kwok.x-k8s.io/delay": "10m"}},
            "spec": {"restartPolicy": "Never", "nodeSelector": pool["nodeLabels"], "tolerations": pool["tolerations"],
                     "containers": [{"name": "worker", "image": "plinth-runtime", "resources": {
                         "requests": {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1"}, "limits": {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1"}}}]}}},
    }


def all_running(kube, expected: int) -> bool:
    from platform_cli.kube import POD

    pods = kube.list(POD, BENCH_NAMESPACE, "bench=sim")
    return len(pods) == expected and all((p.get("status") or {}).get("phase") == "Running" for p in pods)


def clear(kube) -> None:
    from platform_cli.kube import POD, Resource

    kube.delete_collection(Resource("batch/v1", "Job"), BENCH_NAMESPACE, "bench=sim")
    kube.delete_collection(POD, BENCH_NAMESPACE, "bench=sim")
    wait_for("bench pods gone", lambda: not kube.list(POD, BENCH_NAMESPACE, "bench=sim"), timeout=300, interval=1)


def bench_running(sim: Sim) -> dict:
    kube = sim.kube()
    # A namespace of its own: a team's quota (16 GPUs for team-sim) would hold most pods back.
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": BENCH_NAMESPACE}})
    outputs = json.loads(sim.pulumi("stack", "output", "-s", "platform-sim", "--json").stdout)
    pools = list(outputs["gpuPools"].values())
    results = {}
    for count in (1, 10, 100):
        log(f"{count} two-worker jobs")
        started = time.perf_counter()
        for index in range(count):
            kube.create(two_worker_job(index, pools[index % len(pools)]))
        wait_for(f"{count * 2} pods Running", lambda c=count: all_running(kube, c * 2), timeout=900, interval=0.5)
        results[f"{count} jobs ({count * 2} pods), until all Running (s)"] = round(time.perf_counter() - started, 2)
        clear(kube)
    log("baseline: 200 bare pods")
    started = time.perf_counter()
    for index in range(200):
        pod = two_worker_job(index, pools[index % len(pools)])["spec"]["template"]
        kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": {**pod["metadata"], "name": f"bare-{index:03d}", "namespace": BENCH_NAMESPACE}, "spec": pod["spec"]})
    wait_for("200 bare pods Running", lambda: all_running(kube, 200), timeout=900, interval=0.5)
    results["baseline: 200 bare pods, until all Running (s)"] = round(time.perf_counter() - started, 2)
    clear(kube)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--teams", type=int, nargs="+", default=[1, 10])
    args = parser.parse_args()
    bin_dir = tools_bin()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="plinth-bench-sim-") as tmp:
        root = Path(tmp)
        log("plinth sim up --nodes 50 (100 GPU nodes: 50 a100 x 8, 50 t4 x 4)")
        started = time.perf_counter()
        sim = start_sim(root, bin_dir, nodes=50)
        results["sim up, 102 nodes (s)"] = round(time.perf_counter() - started, 1)
        try:
            results["pulumi"] = bench_pulumi(sim, sorted(args.teams))
            sim.up("team-sim")
            results["submit"] = bench_submits(sim)
            results["running"] = bench_running(sim)
        finally:
            sim.plinth("sim", "down", check=False)
    out = REPO / "bench" / "results-sim.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {out.relative_to(REPO)}")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
