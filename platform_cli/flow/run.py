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
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from platform_cli.atomic import write_json
from platform_cli.errors import PlinthError
from platform_cli.processes import running, terminate_tree
from platform_cli.runs import RunStore, new_id, now
from platform_cli.status import FlowRunStatus, StepStatus

if TYPE_CHECKING:
    from platform_cli.flow.plan import Plan
    from platform_cli.spec.flow import LoadedFlow
    from platform_cli.spec.stack import Stack

CANCEL_GRACE_SECONDS = 10.0


class StepRecord(BaseModel):
    status: StepStatus = StepStatus.PENDING
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
    status: FlowRunStatus = FlowRunStatus.PENDING
    params: dict[str, str] = {}
    submitted: datetime
    started: datetime | None = None
    finished: datetime | None = None
    resumed: int = 0
    message: str = ""
    steps: dict[str, StepRecord]


class FlowRunStore(RunStore[FlowRunRecord]):
    noun, plural = "flow run", "runs"
    model, record_file, failed = FlowRunRecord, "state.json", FlowRunStatus.FAILED
    runner, runner_name = "platform_cli.flow.runner:main", "flow runner"

    def attempt(self, record: FlowRunRecord) -> int:
        return record.resumed  # each resume starts a new runner

    def dead_runner_message(self, record: FlowRunRecord, why: str) -> str:
        return f"{super().dead_runner_message(record, why)}; continue with: plinth flow resume {record.id}"


def store(stack: Stack) -> FlowRunStore:
    return FlowRunStore(stack.home / "flows", stack.name)


def read_state(run_dir: Path) -> FlowRunRecord:
    return FlowRunStore.read(run_dir)


def write_state(run_dir: Path, record: FlowRunRecord) -> None:
    FlowRunStore.write(run_dir, record)


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
    record = FlowRunRecord(
        id=new_id(spec.name),
        flow=spec.name,
        file=str(plan.flow.file),
        stack=stack.name,
        params=plan.params,
        submitted=now(),
        steps={key: StepRecord(retries=plan.step(key).retries) for key in plan.order},
    )

    def fill(staging: Path) -> None:
        (staging / "steps").mkdir()
        write_json(staging / "flow.json", snapshot(plan.flow, plan.params))

    store(stack).submit(record, fill, runner_env(stack))
    return record


def runner_env(stack: Stack) -> dict[str, str]:
    return {"PLINTH_PROJECT_DIR": str(stack.project_root), "PLINTH_STACK": stack.name}


def run_dir(stack: Stack, run_id: str) -> Path:
    return store(stack).directory(run_id)


def reconciled(directory: Path) -> FlowRunRecord:
    """The stored record, marked Failed if its runner died without recording an end."""
    return FlowRunStore(directory.parent, "").reconciled(directory)


def wait_runner(directory: Path, timeout: float) -> None:
    """Return when the run's runner ends (the run has then ended), or after `timeout` seconds."""
    FlowRunStore(directory.parent, "").wait(directory, timeout)


def list_runs(stack: Stack) -> list[FlowRunRecord]:
    return store(stack).list()


def resume_run(stack: Stack, run_id: str) -> FlowRunRecord:
    """Continue a failed, cancelled or interrupted run: steps that succeeded (or were skipped)
    keep their outputs; every other step runs again (a job step restarts its own job, so a
    training job resumes from its checkpoints)."""
    runs = store(stack)
    directory = runs.directory(run_id)
    record = runs.reconciled(directory)
    if runs.runner_alive(directory):
        raise PlinthError(f"flow run {run_id} is still running", f"cancel it first: plinth flow cancel {run_id}")
    if record.status is FlowRunStatus.SUCCEEDED:
        raise PlinthError(f"flow run {run_id} already succeeded; there is nothing to resume")
    flow, _ = load_snapshot(directory)
    # Each resumed step gets its retries afresh, on top of the attempts it has used.
    steps = {
        key: step if step.status.done else step.model_copy(update={"status": StepStatus.PENDING, "message": "", "finished": None, "retries": step.attempt + _step(flow, key).retries})
        for key, step in record.steps.items()
    }
    record = record.model_copy(update={"status": FlowRunStatus.PENDING, "message": "", "finished": None, "resumed": record.resumed + 1, "steps": steps})
    (directory / "cancel").unlink(missing_ok=True)
    write_state(directory, record)
    runs.start_runner(directory, runs.attempt(record), runner_env(stack))
    return record


def _step(flow: LoadedFlow, key: str):
    node, step = key.split("/")
    return flow.spec.nodes[node].steps[step]


def cancel_run(stack: Stack, run_id: str, grace: float = 30.0) -> FlowRunRecord:
    runs = store(stack)
    directory = runs.directory(run_id)
    if read_state(directory).status.finished:
        return read_state(directory)
    if runs.runner_alive(directory):
        (directory / "cancel").touch()
        deadline = time.monotonic() + grace
        while runs.runner_alive(directory) and time.monotonic() < deadline:
            runs.wait(directory, 0.1)
        if read_state(directory).status.finished or runs.runner_alive(directory):
            return runs.reconciled(directory)
    return cancel_leftovers(directory, stack, read_state(directory))


def cancel_leftovers(directory: Path, stack: Stack, record: FlowRunRecord) -> FlowRunRecord:
    """Cancel a run whose runner is gone: end the jobs and processes it left, record Cancelled."""
    from platform_cli.targets import get_target

    target = get_target(stack)
    steps = {}
    for key, step in record.steps.items():
        if step.status in (StepStatus.RUNNING, StepStatus.PENDING):
            if step.job_id:
                target.cancel(step.job_id)
            if step.pid and running(step.pid, step.pid_started):
                terminate_tree(step.pid, step.pid, CANCEL_GRACE_SECONDS)
            step = step.model_copy(update={"status": StepStatus.CANCELLED, "message": "cancelled by user", "pid": None})
        steps[key] = step
    record = record.model_copy(update={"status": FlowRunStatus.CANCELLED, "finished": now(), "message": "cancelled by user", "steps": steps})
    write_state(directory, record)
    return record


def step_log_path(directory: Path, key: str) -> Path:
    return directory / "steps" / f"{key.replace('/', '.')}.log"


def wait_run(directory: Path, poll: float = 1.0) -> FlowRunRecord:
    """The run's final record, as soon as its runner has written it."""
    while not (record := reconciled(directory)).status.finished:
        wait_runner(directory, poll)
    return record
