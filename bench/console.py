"""The console's page times with a large history, against the same pages of an empty platform.

    .venv/bin/python bench/console.py              # ~3 minutes: builds the history, then measures
    .venv/bin/python bench/console.py --requests 60

1. History: a throw-away project whose local stack holds 1,000 finished jobs, 200 flow runs and
   100 model versions, written through the stores' own code: job directories as LocalTarget
   lays them out (record.json via JobRecord, job.yaml via dump_job_spec, launch.yaml as
   render_job renders it, a log with the runner's attempt lines), flow runs through
   flow.run's snapshot/write_state for examples/ctr/flow.yaml, and model versions registered in
   the embedded MLflow registry through ModelRegistry.register (plus a traffic split made by
   serving.traffic's transitions and an evaluation report for some versions).
2. Baseline: an empty project (the same stack files, no history).
3. Each side runs `plinth console -s local` as a real server; every page is requested
   --requests times after one warm-up request, and its server time is read from the
   Server-Timing header the console sets (time spent in the application, not on the wire).
   Report: p50 and p95 per page, both sides, in ms. Results: bench/results-console.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

JOBS, RUNS, VERSIONS = 1000, 200, 100
EXAMPLE_JOBS = ["examples/ctr/generate.job.yaml", "examples/ctr/preprocess.job.yaml", "examples/ctr/train.job.yaml"]
TEAMS = ["feed", "antispam", "ads"]


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def new_project(root: Path) -> Path:
    root.mkdir(parents=True)
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copytree(REPO / "stacks", root / "stacks")
    shutil.copytree(REPO / "examples", root / "examples")
    return root


def write_jobs(stack, count: int, rng: random.Random, now: datetime) -> list[str]:
    """`count` finished jobs laid out as LocalTarget.submit and the runner leave them."""
    from platform_cli.atomic import write_json
    from platform_cli.render.job import render_job
    from platform_cli.spec.job import LoadedJob, dump_job_spec, load_job
    from platform_cli.runs import new_id as new_job_id
    from platform_cli.status import JobStatus
    from platform_cli.targets.base import JobRecord

    import yaml

    examples = [load_job(stack.project_root / path) for path in EXAMPLE_JOBS]
    jobs_dir = stack.home / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(count):
        example = examples[i % len(examples)]
        team = TEAMS[i % len(TEAMS)]
        job = LoadedJob(spec=example.spec.model_copy(update={"labels": {**example.spec.labels, "team": team}}), file=example.file)
        job_id = new_job_id(job.spec.name)
        rendered = render_job(job, stack, job_id=job_id)
        submitted = now - timedelta(minutes=rng.uniform(5, 7 * 24 * 60))
        started = submitted + timedelta(seconds=rng.uniform(0.5, 3))
        finished = started + timedelta(seconds=rng.uniform(20, 1800))
        status = rng.choices([JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED], weights=[90, 7, 3])[0]
        exit_code = {JobStatus.SUCCEEDED: 0, JobStatus.FAILED: 1, JobStatus.CANCELLED: -15}[status]
        record = JobRecord(
            id=job_id, name=job.spec.name, kind=job.spec.kind, stack=stack.name, status=status, submitted=submitted,
            started=started, finished=finished, exit_code=exit_code, message="" if status is JobStatus.SUCCEEDED else f"exit code {exit_code}",
            output_dir=str(stack.home / "outputs" / job_id), checkpoint_dir=str(stack.home / "checkpoints" / job_id),
            job_file=str(job.file), args=rendered.args, data_inputs=rendered.data_inputs, code_revision="0123456789ab",
        )
        job_dir = jobs_dir / job_id
        job_dir.mkdir()
        (job_dir / "job.yaml").write_text(yaml.safe_dump(dump_job_spec(job.spec), sort_keys=False))
        (job_dir / "launch.yaml").write_text(rendered.text)
        write_json(job_dir / "record.json", record.model_dump(mode="json"))
        (job_dir / "attempt-1").touch()
        (job_dir / "log").write_text(
            f"[plinth] {started:%Y-%m-%d %H:%M:%S} attempt 1: python {job.spec.script}\n"
            + "".join(f"step {n}: loss {1 / (n + 1):.4f}\n" for n in range(40))
            + f"[plinth] {finished:%Y-%m-%d %H:%M:%S} attempt 1 exited with code {exit_code}\n"
        )
        ids.append(job_id)
    return ids


def write_runs(stack, count: int, job_ids: list[str], rng: random.Random, now: datetime) -> None:
    """`count` runs of the example flow, recorded through flow.run's own writers."""
    from platform_cli.atomic import write_json
    from platform_cli.flow.plan import plan_flow
    from platform_cli.flow.run import FlowRunRecord, StepRecord, flows_dir, snapshot, write_state
    from platform_cli.spec.flow import load_flow

    flow = load_flow(stack.project_root / "examples/ctr/flow.yaml")
    plan = plan_flow(flow)
    base = flows_dir(stack)
    base.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        submitted = now - timedelta(minutes=rng.uniform(5, 7 * 24 * 60))
        failed_at = rng.randrange(len(plan.order)) if rng.random() < 0.1 else None
        steps, moment = {}, submitted
        for index, key in enumerate(plan.order):
            status = "Succeeded" if failed_at is None or index < failed_at else ("Failed" if index == failed_at else "Omitted")
            started = moment if status != "Omitted" else None
            moment += timedelta(seconds=rng.uniform(10, 300))
            steps[key] = StepRecord(status=status, attempt=1 if started else 0, job_id=rng.choice(job_ids) if plan.step(key).kind == "job" else None,
                                    started=started, finished=moment if started else None,
                                    outputs={"version": str(i % 50 + 1)} if key.endswith("register") and status == "Succeeded" else {})
        record = FlowRunRecord(id=f"ctr-{i:05d}", flow="ctr", file=str(flow.file), stack=stack.name, params=plan.params,
                               status="Succeeded" if failed_at is None else "Failed", submitted=submitted, started=submitted,
                               finished=moment, steps=steps)
        directory = base / record.id
        (directory / "steps").mkdir(parents=True)
        write_json(directory / "flow.json", snapshot(flow, plan.params))
        write_state(directory, record)


def write_models(stack, count: int, rng: random.Random, work: Path) -> None:
    """`count` versions of two models in the stack's MLflow registry, a live-looking traffic
    split for one of them, and evaluation reports for its last versions."""
    import numpy as np

    from platform_cli.atomic import write_json
    from platform_cli.evaluate import default_report_dir
    from platform_cli.evaluate.metrics import score
    from platform_cli.registry import ModelRegistry
    from platform_cli.serving import release, traffic
    from platform_cli.serving import state as store

    registry = ModelRegistry(stack.tracking_uri, stack.artifact_root)
    model_dir = work / "model"
    model_dir.mkdir()
    (model_dir / "saved_model.pb").write_bytes(os.urandom(2048))
    (model_dir / "feature_spec.json").write_text("{}")
    for i in range(count):
        name = "ctr" if i % 5 else "antispam"
        registry.register(name, model_dir, {"auc": 0.70 + rng.random() * 0.1, "logloss": 0.4 + rng.random() * 0.1},
                          {"job_id": f"ctr-train-{i:05d}", "stack": stack.name, "data": "storage/ctr/features", "code_revision": "0123456789ab"})
    versions = [v.version for v in registry.versions("ctr")]
    policy = stack.config.serving.gray_release
    state = traffic.promote(store.load(release.state_path(stack, "ctr"), "ctr"), versions[-2], None, policy)
    state = traffic.promote(state, versions[-1], 10, policy)
    store.save(release.state_path(stack, "ctr"), state)
    registry.set_aliases("ctr", {"production": state.production, "canary": state.canary})
    labels = (np.random.default_rng(1).random(5000) < 0.2).astype(float)
    for version in versions[-5:]:
        predictions = np.clip(labels * 0.3 + np.random.default_rng(version).random(5000) * 0.5, 0, 1)
        evaluation = {"model": "ctr", "version": version, "data": "storage/ctr/holdout", "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      "production_version": state.production, "new": score(labels, predictions), "production": score(labels, np.clip(predictions * 0.9, 0, 1)),
                      "segments": {}, "better": True, "reason": "synthetic scores for the benchmark"}
        directory = default_report_dir(stack, "ctr", version)
        directory.mkdir(parents=True, exist_ok=True)
        write_json(directory / "evaluation.json", evaluation)
        registry.record_evaluation("ctr", version, {"auc": evaluation["new"]["auc"]}, {}, directory)


def start_console(project: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PLINTH_PROJECT_DIR": str(project)}
    process = subprocess.Popen([sys.executable, "-m", "platform_cli", "console", "-s", "local", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=project)
    line = process.stdout.readline()
    if not line.startswith("console at "):
        process.kill()
        raise SystemExit(f"console did not start: {line}{process.stderr.read()}")
    return process, line.split()[2]


def pages(project: Path) -> dict[str, str]:
    """The pages to time; on the history project also a job, a run and a model page."""
    from platform_cli.spec.stack import load_stack

    os.environ["PLINTH_PROJECT_DIR"] = str(project)
    stack = load_stack("local")
    found = {"overview": "/", "jobs": "/jobs", "flows": "/flows", "models": "/models", "usage (7d)": "/usage"}
    jobs = sorted((stack.home / "jobs").glob("*/record.json"))
    runs = sorted((stack.home / "flows").glob("*/state.json"))
    if jobs:
        found["job"] = f"/jobs/local/{jobs[len(jobs) // 2].parent.name}"
        found["jobs filtered"] = "/jobs?kind=horovod&status=Failed"
    if runs:
        found["flow run"] = f"/flows/local/{runs[len(runs) // 2].parent.name}"
    if jobs and (stack.home / "registry").exists():
        found["model"] = "/models/local/ctr"
    return found


def measure(project: Path, requests: int) -> dict:
    process, url = start_console(project)
    base = url.rstrip("/")
    results = {}
    try:
        with httpx.Client(timeout=60) as client:
            for name, path in pages(project).items():
                first = client.get(base + path)
                first.raise_for_status()
                times = []
                for _ in range(requests):
                    response = client.get(base + path)
                    response.raise_for_status()
                    times.append(float(response.headers["server-timing"].split("dur=")[1]))
                times.sort()
                results[name] = {"path": path, "p50_ms": round(statistics.median(times), 1), "p95_ms": round(times[int(0.95 * (len(times) - 1))], 1),
                                 "first_ms": round(float(first.headers["server-timing"].split("dur=")[1]), 1), "bytes": len(first.content)}
                log(f"{project.name}: {name:14} p50 {results[name]['p50_ms']:7.1f} ms  p95 {results[name]['p95_ms']:7.1f} ms")
    finally:
        process.terminate()
        process.wait(10)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40, help="timed requests per page (after one warm-up)")
    parser.add_argument("--keep", action="store_true", help="keep the projects (their path is printed) to look at the console by hand")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="plinth-bench-console-"))
    try:
        empty, history = new_project(work / "empty"), new_project(work / "history")
        os.environ["PLINTH_PROJECT_DIR"] = str(history)
        from platform_cli.spec.stack import load_stack

        stack = load_stack("local")
        rng, now = random.Random(7), datetime.now(timezone.utc)
        started = time.perf_counter()
        log(f"writing {JOBS} job records")
        job_ids = write_jobs(stack, JOBS, rng, now)
        log(f"writing {RUNS} flow runs")
        write_runs(stack, RUNS, job_ids, rng, now)
        log(f"registering {VERSIONS} model versions in MLflow")
        write_models(stack, VERSIONS, rng, work)
        log(f"history written in {time.perf_counter() - started:.0f} s")
        baseline = measure(empty, args.requests)
        large = measure(history, args.requests)
        load = os.getloadavg()
        result = {"when": now.isoformat(timespec="seconds"), "requests_per_page": args.requests, "jobs": JOBS, "flow_runs": RUNS, "model_versions": VERSIONS,
                  "load_average": [round(x, 2) for x in load], "empty": baseline, "history": large}
        (REPO / "bench" / "results-console.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"\n| page | empty p50 | empty p95 | {JOBS} jobs, {RUNS} runs, {VERSIONS} versions: p50 | p95 |")
        print("|---|---:|---:|---:|---:|")
        for name, timing in large.items():
            empty_timing = baseline.get(name)
            shown = (f"{empty_timing['p50_ms']} ms", f"{empty_timing['p95_ms']} ms") if empty_timing else ("-", "-")
            print(f"| {name} (`{timing['path']}`) | {shown[0]} | {shown[1]} | {timing['p50_ms']} ms | {timing['p95_ms']} ms |")
        print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    finally:
        if args.keep:
            log(f"projects kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
