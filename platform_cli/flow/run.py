"""Flow runs on the local platform: records on disk and the verbs that act on them.

Each run gets `<local.home>/flows/<run-id>/`:

    flow.json     the flow as submitted (spec, resolved jobs, parameters): resume runs this
    state.json    FlowRunRecord, written atomically, only by the run's runner process
    process.json  pid and start time of the current runner
    cancel        marker: a cancel was asked for
    steps/        logs of built-in steps (job steps log in their job's directory)
    runner.log    the runner's own errors

A detached runner process (platform_cli.flow.runner) drives the run, so `plinth flow ls,
status, logs, cancel` work from any shell, and `plinth flow resume` starts a new runner on the
same directory that runs again only what did not succeed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from platform_cli.atomic import write_json
from platform_cli.errors import PlinthError
from platform_cli.processes import created_at, running, tail_lines

if TYPE_CHECKING:
    from platform_cli.flow.plan import Plan
    from platform_cli.spec.flow import LoadedFlow
    from platform_cli.spec.stack import Stack

_ID_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
FINISHED = ("Succeeded", "Failed", "Cancelled")
# Step states: Pending (also between retries), Running, Succeeded, Failed, Skipped (its `when` was false),
# Omitted (something it waits for failed), Cancelled.
STEP_DONE = ("Succeeded", "Skipped")


def now() -> datetime:
    return datetime.now(timezone.utc)


class StepRecord(BaseModel):
    status: str = "Pending"
    attempt: int = 0
    retries: int = 0
    job_id: str | None = None
    outputs: dict[str, str] = {}
    message: str = ""
    started: datetime | None = None
    finished: datetime | None = None
    pid: int | None = None  # a built-in step's process
    pid_started: float | None = None


class FlowRunRecord(BaseModel):
    id: str
    flow: str
    file: str
    stack: str
    status: str = "Pending"
    params: dict[str, str] = {}
    submitted: datetime
    started: datetime | None = None
    finished: datetime | None = None
    resumed: int = 0
    message: str = ""
    steps: dict[str, StepRecord]


def flows_dir(stack: Stack) -> Path:
    return stack.home / "flows"


def read_state(run_dir: Path) -> FlowRunRecord:
    try:
        return FlowRunRecord.model_validate_json((run_dir / "state.json").read_text())
    except ValueError as exc:
        raise PlinthError(f"{run_dir / 'state.json'} is corrupt ({' '.join(str(exc).split())[:120]})", "remove that run directory") from None


def write_state(run_dir: Path, record: FlowRunRecord) -> None:
    write_json(run_dir / "state.json", record.model_dump(mode="json"))


def snapshot(flow: LoadedFlow, params: dict[str, str]) -> dict:
    return {
        "file": str(flow.file),
        "spec": flow.spec.model_dump(mode="json"),
        "jobs": {key: {"file": str(job.file), "spec": job.spec.model_dump(mode="json")} for key, job in flow.jobs.items()},
        "params": params,
    }


def load_snapshot(run_dir: Path) -> tuple[LoadedFlow, dict[str, str]]:
    from platform_cli.spec.flow import FlowSpec, LoadedFlow
    from platform_cli.spec.job import LoadedJob, parse_job_spec

    data = json.loads((run_dir / "flow.json").read_text())
    jobs = {key: LoadedJob(spec=parse_job_spec(job["spec"], where=key), file=Path(job["file"])) for key, job in data["jobs"].items()}
    return LoadedFlow(spec=FlowSpec.model_validate(data["spec"]), file=Path(data["file"]), jobs=jobs), data["params"]


def submit_run(plan: Plan, stack: Stack) -> FlowRunRecord:
    """Record a new run of a planned flow and start its runner."""
    from platform_cli.targets import require

    require(stack, "flow run")
    spec = plan.spec
    run_id = f"{spec.name}-{''.join(secrets.choice(_ID_ALPHABET) for _ in range(5))}"
    record = FlowRunRecord(
        id=run_id,
        flow=spec.name,
        file=str(plan.flow.file),
        stack=stack.name,
        params=plan.params,
        submitted=now(),
        steps={key: StepRecord(retries=plan.step(key).retries) for key in plan.order},
    )
    base = flows_dir(stack)
    base.mkdir(parents=True, exist_ok=True)
    staging = base / f".{run_id}.submitting"
    staging.mkdir()
    try:
        (staging / "steps").mkdir()
        write_json(staging / "flow.json", snapshot(plan.flow, plan.params))
        write_state(staging, record)
        os.rename(staging, base / run_id)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    start_runner(base / run_id, stack)
    return record


def start_runner(run_dir: Path, stack: Stack) -> None:
    from platform_cli.targets.local import tool_path

    env = {**os.environ, "PATH": tool_path(), "PLINTH_PROJECT_DIR": str(stack.project_root), "PLINTH_STACK": stack.name}
    with (run_dir / "runner.log").open("ab") as runner_log:
        runner = subprocess.Popen(
            [sys.executable, "-m", "platform_cli.flow.runner", str(run_dir)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=runner_log,
            start_new_session=True,
            env=env,
        )
    write_json(run_dir / "process.json", {"runner_pid": runner.pid, "runner_started": created_at(runner.pid)})


def runner_alive(run_dir: Path) -> bool:
    try:
        process = json.loads((run_dir / "process.json").read_text())
    except (FileNotFoundError, ValueError):
        return False
    return running(process.get("runner_pid"), process.get("runner_started"))


def run_dir(stack: Stack, run_id: str) -> Path:
    directory = flows_dir(stack) / run_id
    if "/" in run_id or run_id.startswith(".") or not (directory / "state.json").is_file():
        recent = ", ".join(r.id for r in list_runs(stack)[-5:]) or "none"
        raise PlinthError(f"flow run {run_id!r} not found on stack {stack.name!r}", f"recent runs: {recent}")
    return directory


def reconciled(directory: Path) -> FlowRunRecord:
    """The stored record, marked Failed if its runner died without recording an end."""
    record = read_state(directory)
    if record.status in FINISHED or runner_alive(directory):
        return record
    record = read_state(directory)  # it may have finished between the two reads
    if record.status in FINISHED:
        return record
    why = next((line for line in reversed(tail_lines(directory / "runner.log", 20)) if line.strip()), "killed?")
    return record.model_copy(update={"status": "Failed", "message": f"the flow runner exited without recording an end ({why}); continue with: plinth flow resume {record.id}"})


def list_runs(stack: Stack) -> list[FlowRunRecord]:
    base = flows_dir(stack)
    if not base.is_dir():
        return []
    return sorted((reconciled(d) for d in base.iterdir() if (d / "state.json").is_file()), key=lambda r: r.submitted)


def resume_run(stack: Stack, run_id: str) -> FlowRunRecord:
    """Continue a failed, cancelled or interrupted run: steps that succeeded (or were skipped)
    keep their outputs; every other step runs again (a job step restarts its own job, so a
    training job resumes from its checkpoints)."""
    directory = run_dir(stack, run_id)
    record = reconciled(directory)
    if runner_alive(directory):
        raise PlinthError(f"flow run {run_id} is still running", f"cancel it first: plinth flow cancel {run_id}")
    if record.status == "Succeeded":
        raise PlinthError(f"flow run {run_id} already succeeded; there is nothing to resume")
    flow, _ = load_snapshot(directory)
    # Each resumed step gets its retries afresh, on top of the attempts it has used.
    steps = {
        key: step if step.status in STEP_DONE else step.model_copy(update={"status": "Pending", "message": "", "finished": None, "retries": step.attempt + _step(flow, key).retries})
        for key, step in record.steps.items()
    }
    record = record.model_copy(update={"status": "Pending", "message": "", "finished": None, "resumed": record.resumed + 1, "steps": steps})
    (directory / "cancel").unlink(missing_ok=True)
    write_state(directory, record)
    start_runner(directory, stack)
    return record


def _step(flow: LoadedFlow, key: str):
    node, step = key.split("/")
    return flow.spec.nodes[node].steps[step]


def cancel_run(stack: Stack, run_id: str, grace: float = 30.0) -> FlowRunRecord:
    directory = run_dir(stack, run_id)
    if read_state(directory).status in FINISHED:
        return read_state(directory)
    if runner_alive(directory):
        (directory / "cancel").touch()
        deadline = time.monotonic() + grace
        while runner_alive(directory) and time.monotonic() < deadline:
            time.sleep(0.1)
        if read_state(directory).status in FINISHED or runner_alive(directory):
            return reconciled(directory)
    # The runner is gone (killed): end the jobs it left running ourselves.
    from platform_cli.flow.runner import cancel_leftovers

    return cancel_leftovers(directory, stack, read_state(directory))


def step_log_path(directory: Path, key: str) -> Path:
    return directory / "steps" / f"{key.replace('/', '.')}.log"


def wait_run(directory: Path, poll: float = 0.2) -> FlowRunRecord:
    while (record := reconciled(directory)).status not in FINISHED:
        time.sleep(poll)
    return record
