"""Runs one attempt of a local job submission to its end and records how it ended.

Started detached by LocalTarget (platform_cli.runs: `run(JOB_DIR)` in a process of its own). The job
runs in a session (process group) of its own so that `plinth job cancel` can end it whole,
while this runner survives to record the result.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

import yaml

from platform_cli.atomic import write_json
from platform_cli.errors import PlinthError
from platform_cli.processes import created_at, tail_lines, terminate_tree
from platform_cli.runs import now, read_process
from platform_cli.spec.launch import LocalLaunch
from platform_cli.status import JobStatus
from platform_cli.targets.base import JobRecord
from platform_cli.targets.local import CANCEL_GRACE_SECONDS, LOG_TAIL_LINES, SAFE_LOADER, JobStore


def commit_sample_output(record: JobRecord, log_path: Path) -> JobRecord:
    """Commit the Parquet files the job wrote into its ${sample_dir} as the table's next version."""
    from platform_cli.samples.table import commit_job_output, committed_line

    started = time.perf_counter()
    version, _ = commit_job_output(record.sample_output, {"id": record.id, "name": record.name, "stack": record.stack})
    with log_path.open("ab") as log:
        log.write(f"[plinth] {now():%Y-%m-%d %H:%M:%S} {committed_line(version, time.perf_counter() - started)}\n".encode())
    return record.model_copy(update={"sample_output": record.sample_output.model_copy(update={"version": version.version, "digest": version.digest})})


def run(job_dir: Path) -> int:
    record = JobStore.read(job_dir)
    launch = LocalLaunch.model_validate(yaml.load((job_dir / "launch.yaml").read_text(), Loader=SAFE_LOADER))
    cancel_requested = (job_dir / "cancel").exists

    def finish(status: JobStatus, exit_code: int | None, message: str = "") -> int:
        ended = record.model_copy(update={"status": status, "exit_code": exit_code, "finished": now(), "message": message})
        JobStore.write(job_dir, ended)
        return 0

    if cancel_requested():
        return finish(JobStatus.CANCELLED, None, "cancelled before it started")
    for directory in (launch.spec.output_dir, launch.spec.checkpoint_dir):
        if "://" not in directory:
            Path(directory).mkdir(parents=True, exist_ok=True)

    log_path = job_dir / "log"
    with log_path.open("ab") as log:
        log.write(f"[plinth] {now():%Y-%m-%d %H:%M:%S} attempt {record.attempt}: {shlex.join(launch.spec.command)}\n".encode())
        log.flush()
        try:
            child = subprocess.Popen(
                launch.spec.command,
                cwd=launch.spec.workdir,
                env={**os.environ, **launch.spec.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            log.write(f"[plinth] could not start: {exc}\n".encode())
            return finish(JobStatus.FAILED, None, f"could not start {launch.spec.command[0]}: {exc.strerror}")
        process = {**read_process(job_dir), "job_pid": child.pid, "job_pgid": os.getpgid(child.pid), "job_started": created_at(child.pid)}
        write_json(job_dir / "process.json", process)
        record = record.model_copy(update={"status": JobStatus.RUNNING, "started": now()})
        JobStore.write(job_dir, record)
        if cancel_requested():  # a cancel that raced with the start
            terminate_tree(child.pid, process["job_pgid"], CANCEL_GRACE_SECONDS)
        exit_code = child.wait()
        log.write(f"[plinth] {now():%Y-%m-%d %H:%M:%S} attempt {record.attempt} exited with code {exit_code}\n".encode())

    if exit_code == 0:  # a job that finished just as a cancel arrived still succeeded
        if record.sample_output is not None:
            try:
                record = commit_sample_output(record, log_path)
            except PlinthError as error:
                return finish(JobStatus.FAILED, 0, f"the job succeeded but its sample table version was not committed: {error}")
        return finish(JobStatus.SUCCEEDED, 0)
    if cancel_requested():
        return finish(JobStatus.CANCELLED, exit_code, "cancelled by user")
    tail = "\n".join(tail_lines(log_path, LOG_TAIL_LINES))
    return finish(JobStatus.FAILED, exit_code, f"exit code {exit_code}; last lines of the log:\n{tail}")

