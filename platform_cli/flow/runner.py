"""Drives one flow run to its end: `main(RUN_DIR)`, in a detached process of its own.

Started detached by platform_cli.flow.run. One loop, one writer of state.json: it starts ready
steps while worker slots are free, polls the running ones, retries and times them out, and
records every change. Job steps go through the stack's target (submit, status, restart,
cancel): this module never starts a job's processes itself. Built-in steps run the `plinth`
command they stand for (`plinth model register|evaluate|promote`), the same argv a cluster
workflow runs, and publish the fields of its JSON output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from platform_cli import job_outputs
from platform_cli.errors import PlinthError
from platform_cli.flow.plan import Plan, blocked_steps, builtin_argv, check_condition, parse_condition, plan_flow, ready_steps, step_outputs, substitute_refs
from platform_cli.flow.run import CANCEL_GRACE_SECONDS, StepRecord, load_snapshot, read_state, step_log_path, write_state
from platform_cli.processes import created_at, running, tail_lines, terminate_tree, wait_for_exit
from platform_cli.runs import now
from platform_cli.status import FlowRunStatus, JobStatus, StepStatus

# How long the runner may take to notice a cancel asked for from another shell.
CANCEL_CHECK_SECONDS = 0.1
LOG_TAIL_LINES = 15


@dataclass
class Active:
    key: str
    deadline: float | None
    job_id: str | None = None
    process: subprocess.Popen | None = None
    stdout: IO | None = None
    slots: int = 1
    adopted: bool = False


class FlowRunner:
    def __init__(self, directory: Path):
        from platform_cli.spec.stack import load_stack
        from platform_cli.targets import get_target

        self.dir = directory
        self.record = read_state(directory)
        self.stack = load_stack(self.record.stack)
        self.target = get_target(self.stack)
        flow, params = load_snapshot(directory)
        self.plan: Plan = plan_flow(flow, params)
        self.active: dict[str, Active] = {}
        self.slots = self.stack.config.local.flow_slots
        self.dirty = False

    # -- state ----------------------------------------------------------------------------

    def step(self, key: str) -> StepRecord:
        return self.record.steps[key]

    def update(self, key: str, **changes) -> None:
        self.record.steps[key] = self.step(key).model_copy(update=changes)
        self.dirty = True

    def save(self) -> None:
        if self.dirty:
            write_state(self.dir, self.record)
            self.dirty = False

    def states(self) -> dict[str, StepStatus]:
        return {key: step.status for key, step in self.record.steps.items()}

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> int:
        self.record = self.record.model_copy(update={"status": FlowRunStatus.RUNNING, "started": self.record.started or now()})
        self.dirty = True
        self.adopt_interrupted()
        while True:
            if (self.dir / "cancel").exists():
                return self.cancel_all()
            progressed = self.poll_active()
            for key in blocked_steps(self.plan, self.states()):  # in plan order: upstream ones first
                failed = next(n for n in self.plan.order if n in self.plan.needs[key] and self.step(n).status.dead)
                self.update(key, status=StepStatus.OMITTED, message=f"not run: {failed} {self.step(failed).status.lower()}")
            for key in ready_steps(self.plan, self.states()):
                weight = self.weight(key)
                used = sum(a.slots for a in self.active.values())
                if self.active and used + weight > self.slots:
                    continue  # a later, smaller step may still fit
                self.start(key)
                progressed = True
            self.save()
            if not self.active and not ready_steps(self.plan, self.states()):
                return self.finish()
            if not progressed:
                self.wait_for_progress()

    def finish(self) -> int:
        failed = [key for key in self.plan.order if self.step(key).status.dead]
        first = next((key for key in failed if self.step(key).status is StepStatus.FAILED), None)
        status = FlowRunStatus.FAILED if failed else FlowRunStatus.SUCCEEDED
        message = f"step {first} failed: {self.step(first).message}" if first else ("" if not failed else f"steps not run: {', '.join(failed)}")
        self.record = self.record.model_copy(update={"status": status, "finished": now(), "message": message})
        self.dirty = True
        self.save()
        return 0

    def wait_for_progress(self) -> None:
        """Sleep until a running step's process ends (a job's runner, which has then recorded
        its end; a built-in step's command), a step's timeout comes, or it is time to look for a
        cancel again."""
        timeout = CANCEL_CHECK_SECONDS
        processes = []
        for active in self.active.values():
            if active.deadline is not None:
                timeout = min(timeout, active.deadline - time.monotonic())
            if active.process is not None:
                processes.append((active.process.pid, None))
            elif (runner := self.target.runner_process(active.job_id)) is not None:
                processes.append(runner)
        wait_for_exit(processes, timeout)

    def weight(self, key: str) -> int:
        job = self.plan.flow.jobs.get(key)
        return min(job.spec.workers, self.slots) if job else 1

    # -- starting -------------------------------------------------------------------------

    def variables(self) -> dict[str, str]:
        return {"storage": self.stack.storage_root}

    def start(self, key: str) -> None:
        step = self.plan.step(key)
        record = self.step(key)
        try:
            if step.when is not None:
                left, op, right = parse_condition(step.when)
                values = [substitute_refs(v, key, self.plan.params, self.outputs(), self.variables()) for v in (left, right)]
                if not check_condition(values[0], op, values[1]):
                    self.update(key, status=StepStatus.SKIPPED, message=f"when: {values[0]} {op} {values[1]} is false", finished=now())
                    return
            attempt = record.attempt + 1
            deadline = time.monotonic() + step.timeout if step.timeout else None
            if step.kind == "job":
                active = self.start_job(key, record, deadline)
            else:
                active = self.start_builtin(key, attempt, deadline)
        except PlinthError as exc:  # a submission refused, an output missing: retrying will not help
            self.update(key, status=StepStatus.FAILED, message=str(exc), finished=now(), attempt=record.attempt + 1)
            return
        self.active[key] = active
        if active.adopted:  # a resumed run picking up a job that is still running: same attempt
            attempt = record.attempt
        self.update(key, status=StepStatus.RUNNING, attempt=attempt, started=record.started or now(), job_id=active.job_id, message="")

    def start_job(self, key: str, record: StepRecord, deadline: float | None) -> Active:
        from platform_cli.render.job import render_submission

        if record.job_id:  # resumed, or retried: the same job again, so training resumes from its checkpoints
            job_record = self.target.status(record.job_id)
            if not job_record.status.finished:
                return Active(key, deadline, job_id=record.job_id, slots=self.weight(key), adopted=True)
            self.target.restart(record.job_id)
            return Active(key, deadline, job_id=record.job_id, slots=self.weight(key))
        job = self.plan.flow.jobs[key]
        params, outputs = self.plan.params, self.outputs()
        spec = job.spec.model_copy(
            update={
                "args": [substitute_refs(a, key, params, outputs) for a in job.spec.args],
                "env": {k: substitute_refs(v, key, params, outputs) for k, v in job.spec.env.items()},
                "labels": {**job.spec.labels, "plinth.dev/flow": self.record.flow, "plinth.dev/flow-run": self.record.id},
            }
        )
        job = job.model_copy(update={"spec": spec})
        job_id = self.target.new_job_id(spec.name)
        submitted = self.target.submit(job, render_submission(job, self.stack, job_id=job_id))
        return Active(key, deadline, job_id=submitted.id, slots=self.weight(key))

    def start_builtin(self, key: str, attempt: int, deadline: float | None) -> Active:
        step = self.plan.step(key)
        action = step.action
        values = {
            name: ([substitute_refs(v, key, self.plan.params, self.outputs(), self.variables()) for v in value] if isinstance(value, list) else substitute_refs(str(value), key, self.plan.params, self.outputs(), self.variables()))
            for name, value in action.model_dump().items()
        }
        argv = [sys.executable, "-m", "platform_cli", *builtin_argv(step.kind, values, self.stack.name)]
        log_path = step_log_path(self.dir, key)
        with log_path.open("ab") as log:
            log.write(f"[plinth] {now():%Y-%m-%d %H:%M:%S} attempt {attempt}: plinth {' '.join(argv[3:])}\n".encode())
        stdout = log_path.with_suffix(".out").open("wb")
        with log_path.open("ab") as stderr:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, start_new_session=True, env={**os.environ, "PLINTH_STACK": self.stack.name})
        self.update(key, pid=process.pid, pid_started=created_at(process.pid))
        return Active(key, deadline, process=process, stdout=stdout)

    # -- polling --------------------------------------------------------------------------

    def poll_active(self) -> bool:
        progressed = False
        for key, active in list(self.active.items()):
            timed_out = active.deadline is not None and time.monotonic() > active.deadline
            if active.job_id:
                job = self.target.status(active.job_id)
                if not job.status.finished and not timed_out:
                    continue
                if timed_out and not job.status.finished:
                    self.target.cancel(active.job_id)
                    ok, message = False, f"timed out after {self.plan.step(key).timeout:g}s"
                else:
                    ok, message = job.status is JobStatus.SUCCEEDED, job.message or f"job {active.job_id} {job.status.value.lower()}"
            else:
                code = active.process.poll()
                if code is None and not timed_out:
                    continue
                if code is None:
                    terminate_tree(active.process.pid, active.process.pid, CANCEL_GRACE_SECONDS)
                    active.process.wait()
                    ok, message = False, f"timed out after {self.plan.step(key).timeout:g}s"
                else:
                    ok = code == 0
                    tail = "\n".join(tail_lines(step_log_path(self.dir, key), LOG_TAIL_LINES))
                    message = f"exit code {code}; last lines of the log:\n{tail}"
                active.stdout.close()
            del self.active[key]
            progressed = True
            if ok:
                try:
                    outputs = self.collect_outputs(key, active)
                except PlinthError as exc:
                    ok, message = False, str(exc)
                else:
                    self.update(key, status=StepStatus.SUCCEEDED, outputs=outputs, finished=now(), pid=None, message="")
                    continue
            record = self.step(key)
            if record.attempt <= record.retries:
                self.update(key, status=StepStatus.PENDING, message=f"attempt {record.attempt} failed, retrying: {message.splitlines()[0]}")
            else:
                self.update(key, status=StepStatus.FAILED, message=message, finished=now(), pid=None)
        return progressed

    def collect_outputs(self, key: str, active: Active) -> dict[str, str]:
        step = self.plan.step(key)
        if step.kind == "job":
            job = self.target.status(active.job_id)
            outputs = {"job_id": job.id, "output_dir": job.output_dir, "checkpoint_dir": job.checkpoint_dir, "model_dir": job_outputs.model_dir(job.output_dir)}
            if step.outputs:
                metrics_file = job_outputs.metrics_file(job.output_dir)
                try:
                    metrics = job_outputs.read_metrics(job.output_dir)
                except PlinthError as exc:
                    raise PlinthError(f"outputs: {exc.message}", exc.fix) from None
                if metrics is None:
                    raise PlinthError(f"outputs: the job wrote no {metrics_file}")
                for name in step.outputs:
                    if name not in metrics:
                        raise PlinthError(f"outputs: {metrics_file} has no key {name!r} (keys: {', '.join(metrics)})")
                    outputs[name] = _text(metrics[name])
            return outputs
        try:
            published = json.loads(step_log_path(self.dir, key).with_suffix(".out").read_text() or "{}")
        except ValueError as exc:
            raise PlinthError(f"plinth model {step.kind} printed no JSON ({exc})") from None
        return {name: _text(published[name]) for name in step_outputs(step) if name in published}

    def outputs(self) -> dict[str, dict[str, str]]:
        return {key: step.outputs for key, step in self.record.steps.items() if step.status is StepStatus.SUCCEEDED}

    # -- resume and cancel ----------------------------------------------------------------

    def adopt_interrupted(self) -> None:
        """A resumed run: built-in steps left running by a killed runner are ended (they run
        again); job steps keep their job id and are picked up by start_job."""
        for key, step in self.record.steps.items():
            if step.pid and running(step.pid, step.pid_started):
                terminate_tree(step.pid, step.pid, CANCEL_GRACE_SECONDS)
            if step.pid:
                self.update(key, pid=None)
            if step.status is StepStatus.RUNNING:
                self.update(key, status=StepStatus.PENDING)

    def cancel_all(self) -> int:
        for key, active in self.active.items():
            if active.job_id:
                self.target.cancel(active.job_id)
            else:
                terminate_tree(active.process.pid, active.process.pid, CANCEL_GRACE_SECONDS)
                active.process.wait()
            self.update(key, status=StepStatus.CANCELLED, message="cancelled by user", finished=now(), pid=None)
        for key in self.plan.order:
            if self.step(key).status is StepStatus.PENDING:
                self.update(key, status=StepStatus.CANCELLED, message="cancelled before it started")
        self.record = self.record.model_copy(update={"status": FlowRunStatus.CANCELLED, "finished": now(), "message": "cancelled by user"})
        self.dirty = True
        self.save()
        return 0


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    return str(value)


def main(directory: Path) -> int:
    runner = FlowRunner(directory)
    try:
        return runner.run()
    except BaseException as exc:
        # Whatever went wrong, leave the run Failed with the reason rather than Running forever.
        runner.record = runner.record.model_copy(update={"status": FlowRunStatus.FAILED, "finished": now(), "message": f"flow runner error: {exc}"})
        runner.dirty = True
        runner.save()
        raise

