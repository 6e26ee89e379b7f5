"""The local platform's fixed costs, this checkout against an earlier revision, in one run.

    .venv/bin/python bench/flow.py                    # ~3 minutes
    .venv/bin/python bench/flow.py --baseline REV     # compare against another revision
    .venv/bin/python bench/flow.py --ctr              # also the CTR pipeline, flow vs by hand (~6 minutes)

Each row is measured for both code versions in the same run and the same throw-away project,
the versions alternating which goes first. The baseline's `platform_cli` and `templates` are
taken from git (`git archive REV`) and run with this environment's Python, so only Plinth's own
code differs. Next to them, `python -c pass`: the floor any Python process pays.

1. `plinth --help`: the CLI's start.
2. `plinth job submit -f noop.job.yaml --wait` of a script that does nothing: wall time of the
   command, as a user sees it.
3. A flow of N python no-op steps chained one after another (so nothing runs in parallel): per
   step, from one step's start (its job's submission) to the next step's start, median over
   the run's steps and the repeats; and the whole run divided by N.
4. The same N jobs rendered, submitted and waited for one after another in one process, the
   way a script would drive the local target: what a step costs without the flow runner.
5. --ctr: examples/ctr/flow.yaml (tiny data) vs its jobs submitted directly in order, then
   `plinth model register`, `evaluate` and `promote` run by hand (this checkout only). The
   machine is shared, so beside the totals it reports each side's time outside the steps' own
   work (jobs' process lifetimes, the plinth commands' run time): the runner's cost, free of
   the jobs' variance.

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
BIN = Path(sys.executable).parent
NOOP = "import sys\n"
# The last revision before the local platform's fast path (forked runners, event-driven waits).
BASELINE = "e77fff4a076b4f97c0a2cd8b733582bd4d821fd9"


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def noop_flow(directory: Path, steps: int) -> Path:
    import yaml

    (directory / "noop.py").write_text(NOOP)
    nodes = {"chain": {"steps": {f"s{i}": {"job": {"kind": "python", "name": f"noop{i}", "script": "noop.py"}, **({"after": [f"s{i - 1}"]} if i else {})} for i in range(steps)}}}
    path = directory / "noop.flow.yaml"
    path.write_text(yaml.safe_dump({"kind": "flow", "name": "noop", "nodes": nodes}, sort_keys=False))
    (directory / "noop.job.yaml").write_text("kind: python\nname: noop\nscript: noop.py\n")
    return path


# -- worker side: runs with one code version's platform_cli first on sys.path ------------------


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


def run_direct(jobs: list, ids: list | None = None) -> float:
    """Each job rendered, submitted and waited for, one after another, in-process."""
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


def worker(mode: str, path: Path) -> dict:
    from datetime import datetime

    from platform_cli.flow.plan import plan_flow
    from platform_cli.spec.flow import load_flow

    plan = plan_flow(load_flow(path))
    if mode == "flow":
        from platform_cli.spec.stack import load_stack
        from platform_cli.targets import get_target

        elapsed, record = run_flow(path)
        starts = [datetime.fromisoformat(record["steps"][key]["started"]) for key in plan.order]
        # A job's recorded end to the next job's submission: what the runner adds between two
        # steps (noticing the end, recording it, rendering and submitting the next), free of the
        # jobs' own time; the figure that carries over to long real jobs.
        target = get_target(load_stack("local"))
        jobs = [target.status(record["steps"][key]["job_id"]) for key in plan.order]
        handoffs = [(b.submitted - a.finished).total_seconds() * 1000 for a, b in zip(jobs, jobs[1:])]
        return {"seconds": elapsed, "step_ms": [(b - a).total_seconds() * 1000 for a, b in zip(starts, starts[1:])], "handoff_ms": handoffs}
    jobs = [plan.flow.jobs[key] for key in plan.order]
    return {"seconds": run_direct(jobs)}


# -- driver side --------------------------------------------------------------------------------


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def side_env(tree: Path, project: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "PLINTH_PROJECT_DIR": str(project), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PLINTH_STACK", None)
    # Python's default: compiled modules are cached (the warm-up run writes them for both sides).
    # Without the cache every command compiles its ~150 modules again, ~0.35 s here.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def bench_sides(trees: dict[str, Path], project: Path, flow_path: Path, steps: int, repeats: int, cli_repeats: int) -> dict:
    envs = {side: side_env(tree, project) for side, tree in trees.items()}
    results: dict = {"python -c pass": []}
    for side in trees:
        results[side] = {"help": [], "submit_wait": [], "flow_seconds": [], "flow_step_ms": [], "flow_handoff_ms": [], "direct_seconds": []}
    python = [sys.executable]
    # warm the page cache for every side
    for side, env in envs.items():
        timed([*python, "-m", "platform_cli", "job", "submit", "-f", "noop.job.yaml", "--wait"], env, project)
    order = list(trees)
    for i in range(cli_repeats):
        log(f"CLI: repeat {i + 1}/{cli_repeats}")
        results["python -c pass"].append(timed([*python, "-c", "pass"], envs[order[0]], project))
        for side in order if i % 2 == 0 else order[::-1]:
            results[side]["help"].append(timed([*python, "-m", "platform_cli", "--help"], envs[side], project))
            results[side]["submit_wait"].append(timed([*python, "-m", "platform_cli", "job", "submit", "-f", "noop.job.yaml", "--wait"], envs[side], project))
    for i in range(repeats):
        log(f"{steps} no-op steps: repeat {i + 1}/{repeats}")
        for side in order if i % 2 == 0 else order[::-1]:
            for mode in ("flow", "direct"):
                out = subprocess.run([*python, __file__, "--worker", mode, str(flow_path)], env=envs[side], cwd=project, check=True, capture_output=True, text=True).stdout
                measured = json.loads(out)
                if mode == "flow":
                    results[side]["flow_seconds"].append(measured["seconds"])
                    results[side]["flow_step_ms"] += measured["step_ms"]
                    results[side]["flow_handoff_ms"] += measured["handoff_ms"]
                else:
                    results[side]["direct_seconds"].append(measured["seconds"])
    return results


def summary(results: dict, steps: int) -> dict:
    ms = lambda values: round(statistics.median(values) * 1000, 1)  # noqa: E731
    out = {"python -c pass ms": ms(results["python -c pass"])}
    for side, r in results.items():
        if side == "python -c pass":
            continue
        out[side] = {
            "help_ms": ms(r["help"]),
            "submit_wait_ms": ms(r["submit_wait"]),
            "flow_step_ms_median": round(statistics.median(r["flow_step_ms"]), 1),
            "flow_run_ms_per_step": round(statistics.median(r["flow_seconds"]) / steps * 1000, 1),
            "flow_handoff_ms_median": round(statistics.median(r["flow_handoff_ms"]), 1),
            "direct_ms_per_step": round(statistics.median(r["direct_seconds"]) / steps * 1000, 1),
        }
    return out


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
                for step in record["steps"].values():
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
    parser.add_argument("--repeats", type=int, default=3, help="runs of the no-op flow per side")
    parser.add_argument("--cli-repeats", type=int, default=11, help="runs of each CLI command per side")
    parser.add_argument("--baseline", default=BASELINE, help="git revision to compare against")
    parser.add_argument("--ctr", action="store_true", help="also the CTR pipeline, flow vs direct (this checkout)")
    parser.add_argument("--ctr-repeats", type=int, default=1)
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "FLOW"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], Path(args.worker[1]))))
        return 0

    sys.path.insert(0, str(REPO))
    work = Path(tempfile.mkdtemp(prefix="plinth-bench-flow-"))
    try:
        project = work / "project"
        project.mkdir()
        shutil.copy(REPO / "Pulumi.yaml", project / "Pulumi.yaml")
        shutil.copytree(REPO / "stacks", project / "stacks")
        baseline = work / "baseline"
        baseline.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline, "platform_cli", "templates"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive, check=True)
        flow_path = noop_flow(project, args.steps)
        trees = {"before": baseline, "after": REPO}
        load_before = os.getloadavg()[0]  # other work on the machine, 1-minute average
        raw = bench_sides(trees, project, flow_path, args.steps, args.repeats, args.cli_repeats)
        results = {"machine": f"{os.cpu_count()} cores", "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)], "baseline": args.baseline, "steps": args.steps, "repeats": args.repeats, "cli_repeats": args.cli_repeats, "summary": summary(raw, args.steps), "raw": raw}
        if args.ctr:
            os.environ.update({"PLINTH_PROJECT_DIR": str(project), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
            os.environ.pop("PLINTH_STACK", None)
            results["ctr"] = bench_ctr(args.ctr_repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (REPO / "bench" / "results-flow.json").write_text(json.dumps(results, indent=2) + "\n")
    s, before, after = results["summary"], results["summary"]["before"], results["summary"]["after"]
    print(f"load average {results['load_average'][0]} at the start, {results['load_average'][1]} at the end ({results['machine']})\n")
    print(f"| measurement (median) | before ({args.baseline[:7]}) | after | `python -c pass` |")
    print("|---|---|---|---|")
    print(f"| `plinth --help` | {before['help_ms']:.0f} ms | {after['help_ms']:.0f} ms | {s['python -c pass ms']:.0f} ms |")
    print(f"| `plinth job submit --wait`, no-op job | {before['submit_wait_ms']:.0f} ms | {after['submit_wait_ms']:.0f} ms | |")
    print(f"| no-op flow step, a step's start to the next one's ({args.steps} chained steps x {args.repeats}) | {before['flow_step_ms_median']:.1f} ms | {after['flow_step_ms_median']:.1f} ms | |")
    print(f"| no-op flow, whole run / steps | {before['flow_run_ms_per_step']:.1f} ms | {after['flow_run_ms_per_step']:.1f} ms | |")
    print(f"| hand-off: a step's job recorded as ended to the next step's job submitted | {before['flow_handoff_ms_median']:.1f} ms | {after['flow_handoff_ms_median']:.1f} ms | |")
    print(f"| no-op jobs submitted and waited for one after another, per job | {before['direct_ms_per_step']:.1f} ms | {after['direct_ms_per_step']:.1f} ms | |")
    if "ctr" in results:
        ctr, m = results["ctr"], results["ctr"]["median"]
        print(f"\n| CTR pipeline, tiny data (median of {ctr['repeats']}) | flow runner | by hand | difference |")
        print("|---|---|---|---|")
        print(f"| whole run | {m['flow']['total']:.1f} s | {m['direct']['total']:.1f} s | {m['flow']['total'] - m['direct']['total']:+.1f} s |")
        print(f"| time outside the steps' own work | {m['flow']['outside_work']:.1f} s | {m['direct']['outside_work']:.1f} s | {ctr['runner_added_seconds']:+.1f} s = {ctr['runner_added_percent_of_pipeline']:+.2f} % of the pipeline |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
