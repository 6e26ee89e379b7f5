"""The flow runner's overhead, against running the same jobs directly one after another.

    .venv/bin/python bench/flow.py              # no-op steps only (~1 minute)
    .venv/bin/python bench/flow.py --ctr        # also the CTR pipeline, flow vs direct (~6 minutes)

1. No-op steps: a flow of N python steps chained one after another (so the runner cannot win
   by running them in parallel), each a script that does nothing, vs the same N jobs rendered
   and submitted through the local target one after another, each waited for before the
   next, polling as often as the runner does. Overhead per step = (flow - direct) / N.
2. --ctr: examples/ctr/flow.yaml (tiny data) vs its jobs submitted directly in order, then
   `plinth model register`, `evaluate` and `promote` run by hand. The machine is shared, so
   beside the totals it reports each side's time outside the steps' own work (jobs' process
   lifetimes, the plinth commands' run time): the runner's cost, free of the jobs' variance.

Both sides run in the same throw-away project, interleaved, median of --repeats.
Results: bench/results-flow.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BIN = Path(sys.executable).parent
NOOP = "import sys\n"


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def noop_flow(directory: Path, steps: int) -> Path:
    (directory / "noop.py").write_text(NOOP)
    nodes = {"chain": {"steps": {f"s{i}": {"job": {"kind": "python", "name": f"noop{i}", "script": "noop.py"}, **({"after": [f"s{i - 1}"]} if i else {})} for i in range(steps)}}}
    path = directory / "noop.flow.yaml"
    import yaml

    path.write_text(yaml.safe_dump({"kind": "flow", "name": "noop", "nodes": nodes}, sort_keys=False))
    return path


def run_flow(path: Path, params: dict[str, str] | None = None) -> tuple[float, dict]:
    from platform_cli.flow.plan import plan_flow
    from platform_cli.flow.run import run_dir, submit_run, wait_run
    from platform_cli.spec.flow import load_flow
    from platform_cli.spec.stack import load_stack

    stack = load_stack("local")
    started = time.perf_counter()
    record = submit_run(plan_flow(load_flow(path), params), stack)
    record = wait_run(run_dir(stack, record.id), poll=0.05)
    elapsed = time.perf_counter() - started
    if record.status != "Succeeded":
        raise SystemExit(f"flow {record.id} {record.status}: {record.message}")
    return elapsed, record.model_dump(mode="json")


def handoffs(job_ids: list[str]) -> list[float]:
    """Seconds from one job's recorded end to the next job's submission: what whoever runs the
    jobs adds between them (noticing the end, deciding, rendering), free of the jobs' own time."""
    from platform_cli.spec.stack import load_stack
    from platform_cli.targets import get_target

    target = get_target(load_stack("local"))
    records = [target.status(job_id) for job_id in job_ids]
    return [(b.submitted - a.finished).total_seconds() for a, b in zip(records, records[1:])]


def run_direct(jobs: list, ids: list | None = None) -> float:
    """Each job rendered, submitted and waited for, one after another, as `plinth job submit
    --wait` would, but in-process (no CLI start-up on this side either)."""
    from platform_cli.render.job import render_job
    from platform_cli.spec.stack import load_stack
    from platform_cli.targets import get_target

    stack = load_stack("local")
    target = get_target(stack)
    started = time.perf_counter()
    for job in jobs:
        record = target.submit(job, render_job(job, stack, job_id=target.new_job_id(job.spec.name)))
        record = target.wait(record.id, poll=0.02)
        if ids is not None:
            ids.append(record.id)
        if record.status.value != "Succeeded":
            raise SystemExit(f"job {record.id} {record.status.value}: {record.message}")
    return time.perf_counter() - started


def bench_noop(work: Path, steps: int, repeats: int) -> dict:
    from platform_cli.flow.plan import plan_flow
    from platform_cli.spec.flow import load_flow

    path = noop_flow(work, steps)
    plan = plan_flow(load_flow(path))
    jobs = [plan.flow.jobs[key] for key in plan.order]
    flow_times, direct_times, flow_gaps, direct_gaps = [], [], [], []
    run_direct(jobs[:2])  # warm the page cache for both sides
    for i in range(repeats):
        log(f"no-op steps: repeat {i + 1}/{repeats}")
        # Alternate which side goes first, so a change in the machine's load hits both.
        for side in (("direct", "flow") if i % 2 == 0 else ("flow", "direct")):
            if side == "direct":
                ids: list[str] = []
                direct_times.append(run_direct(jobs, ids))
                direct_gaps += handoffs(ids)
            else:
                elapsed, record = run_flow(path)
                flow_times.append(elapsed)
                flow_gaps += handoffs([record["steps"][key]["job_id"] for key in plan.order])
    flow, direct = statistics.median(flow_times), statistics.median(direct_times)
    return {
        "steps": steps,
        "repeats": repeats,
        "flow_seconds": round(flow, 3),
        "direct_seconds": round(direct, 3),
        "flow_runs": [round(t, 3) for t in flow_times],
        "direct_runs": [round(t, 3) for t in direct_times],
        "overhead_ms_per_step": round((flow - direct) / steps * 1000, 1),
        "overhead_ms_per_step_best_runs": round((min(flow_times) - min(direct_times)) / steps * 1000, 1),
        "handoff_ms_median": {"flow": round(statistics.median(flow_gaps) * 1000, 1), "direct": round(statistics.median(direct_gaps) * 1000, 1)},
        "direct_ms_per_step": round(direct / steps * 1000, 1),
    }


def bench_ctr(repeats: int) -> dict:
    """The CTR flow vs the same work by hand. Besides the totals (which move with whatever else
    the machine runs), each side's time outside the steps' own work: total minus the time the
    jobs' processes and the plinth commands ran. That difference is what the runner costs."""
    from platform_cli.flow.plan import plan_flow
    from platform_cli.spec.flow import load_flow
    from platform_cli.spec.stack import load_stack
    from platform_cli.targets import get_target

    params = {"rows": "20000", "holdout_rows": "4000", "epochs": "2"}
    path = REPO / "examples" / "ctr" / "flow.yaml"
    plan = plan_flow(load_flow(path), params)
    stack = load_stack("local")
    target = get_target(stack)
    runs = {"flow": [], "direct": []}
    for i in range(repeats):
        for side in (("direct", "flow") if i % 2 == 0 else ("flow", "direct")):
            log(f"ctr pipeline: repeat {i + 1}/{repeats} ({side})")
            if side == "direct":
                total, work = _ctr_direct(plan, stack)
            else:
                total, record = run_flow(path, params)
                work = 0.0
                for key, step in record["steps"].items():
                    if step["job_id"]:
                        job = target.status(step["job_id"])
                        work += (job.finished - job.started).total_seconds()
                    elif step["started"] and step["finished"]:
                        work += (_time(step["finished"]) - _time(step["started"])).total_seconds()
            runs[side].append({"total": round(total, 2), "work": round(work, 2), "outside_work": round(total - work, 2)})
            _stop_model_servers()
    median = {side: {k: round(statistics.median(r[k] for r in runs[side]), 2) for k in ("total", "work", "outside_work")} for side in runs}
    added = median["flow"]["outside_work"] - median["direct"]["outside_work"]
    return {
        "params": params,
        "repeats": repeats,
        "runs": runs,
        "median": median,
        "runner_added_seconds": round(added, 2),
        "runner_added_percent_of_pipeline": round(added / median["direct"]["total"] * 100, 2),
    }


def _time(value: str):
    from datetime import datetime

    return datetime.fromisoformat(value)


def _stop_model_servers() -> None:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run([str(BIN / "plinth"), "model", "stop", "ctr"], env=env, capture_output=True)


def _ctr_direct(plan, stack) -> tuple[float, float]:
    """The same work by hand, as run.sh does it: the three jobs in order, then register,
    evaluate and promote with the CLI. Returns (total, time in the jobs and commands)."""
    from platform_cli.flow.plan import substitute_refs
    from platform_cli.targets import get_target

    target = get_target(stack)
    jobs = []
    for key in ("data/generate", "features/preprocess", "train/train"):
        job = plan.flow.jobs[key]
        args = [substitute_refs(a, key, plan.params, {}) for a in job.spec.args]
        jobs.append(job.model_copy(update={"spec": job.spec.model_copy(update={"args": args})}))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    started = time.perf_counter()
    ids: list[str] = []
    run_direct(jobs, ids)
    work = sum((r.finished - r.started).total_seconds() for r in (target.status(i) for i in ids))

    def cli(*args: str) -> str:
        nonlocal work
        began = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "platform_cli", *args], env=env, capture_output=True, text=True, check=True).stdout
        work += time.perf_counter() - began
        return out

    version = str(json.loads(cli("model", "register", "ctr", "--job", ids[-1], "-o", "json"))["version"])
    better = json.loads(cli("model", "evaluate", "ctr", version, "--data", f"{stack.storage_root}/ctr/holdout", "--segment", "device", "--segment", "category", "-o", "json"))["better"]
    if better:
        cli("model", "promote", "ctr", version, "--canary", "10")
    return time.perf_counter() - started, work


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ctr", action="store_true", help="also the CTR pipeline, flow vs direct")
    parser.add_argument("--ctr-repeats", type=int, default=1)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="plinth-bench-flow-"))
    try:
        shutil.copy(REPO / "Pulumi.yaml", work / "Pulumi.yaml")
        shutil.copytree(REPO / "stacks", work / "stacks")
        os.environ["PLINTH_PROJECT_DIR"] = str(work)
        os.environ.pop("PLINTH_STACK", None)
        os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
        results = {"machine": f"{os.cpu_count()} cores", "noop": bench_noop(work, args.steps, args.repeats)}
        if args.ctr:
            results["ctr"] = bench_ctr(args.ctr_repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (REPO / "bench" / "results-flow.json").write_text(json.dumps(results, indent=2) + "\n")
    noop = results["noop"]
    print("| measurement | flow runner | direct, one after another | overhead |")
    print("|---|---|---|---|")
    print(f"| {noop['steps']} no-op python steps, whole run (median of {noop['repeats']}) | {noop['flow_seconds']:.2f} s | {noop['direct_seconds']:.2f} s | {noop['overhead_ms_per_step']:+.1f} ms per step |")
    print(f"| same, best run of each side | {min(noop['flow_runs']):.2f} s | {min(noop['direct_runs']):.2f} s | {noop['overhead_ms_per_step_best_runs']:+.1f} ms per step |")
    gaps = noop["handoff_ms_median"]
    print(f"| hand-off: a job's end to the next job's submission (median) | {gaps['flow']:.1f} ms | {gaps['direct']:.1f} ms | {gaps['flow'] - gaps['direct']:+.1f} ms per step |")
    if "ctr" in results:
        ctr, m = results["ctr"], results["ctr"]["median"]
        print(f"| CTR pipeline, tiny data, whole run (median of {ctr['repeats']}) | {m['flow']['total']:.1f} s | {m['direct']['total']:.1f} s | {m['flow']['total'] - m['direct']['total']:+.1f} s |")
        print(f"| CTR pipeline, time outside the steps' own work | {m['flow']['outside_work']:.1f} s | {m['direct']['outside_work']:.1f} s | {ctr['runner_added_seconds']:+.1f} s = {ctr['runner_added_percent_of_pipeline']:+.2f} % of the pipeline |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
