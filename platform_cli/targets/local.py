"""The local target: runs rendered jobs as process groups on this machine.

Each submission gets a directory `<local.home>/jobs/<job-id>/`:

    job.yaml       the spec as submitted          launch.yaml  the rendered LocalLaunch
    record.json    JobRecord (written by runner)  process.json pids of the runner and the job
    log            stdout+stderr of every attempt cancel        marker: a cancel was asked for

A detached runner process (platform_cli.targets.local_runner) starts the job, waits for it and
records how it ended, so `plinth job ls/status/logs/cancel` work from any shell after the
submitting command has exited.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from platform_cli.atomic import write_json
from platform_cli.errors import PlinthError
from platform_cli.spec.job import dump_job_spec
from platform_cli.spec.launch import LocalLaunch
from platform_cli.targets.base import JobRecord, JobStatus

if TYPE_CHECKING:
    from platform_cli.render.job import RenderedJob
    from platform_cli.spec.job import LoadedJob
    from platform_cli.spec.stack import Stack

_ID_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' generateName alphabet: no vowels, no look-alikes
CANCEL_GRACE_SECONDS = 10.0
LOG_TAIL_LINES = 15


def now() -> datetime:
    return datetime.now(timezone.utc)


def tool_path() -> str:
    """PATH for jobs: this environment's bin first, so `python`, `spark-submit` and `horovodrun`
    in a rendered command are the ones installed with Plinth."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def tail_lines(path: Path, count: int) -> list[str]:
    if count <= 0 or not path.exists():
        return []
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 64 * 1024))
        lines = handle.read().decode("utf-8", "replace").splitlines()
    return lines[-count:]


class LocalTarget:
    def __init__(self, stack: Stack):
        self.stack = stack
        self.jobs_dir = stack.home / "jobs"

    # -- verbs -----------------------------------------------------------------------------

    def submit(self, job: LoadedJob, rendered: RenderedJob) -> JobRecord:
        launch = LocalLaunch.model_validate(rendered.documents[0])
        self._preflight(launch)
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        job_dir = self.jobs_dir / rendered.job_id
        try:
            job_dir.mkdir()
        except FileExistsError:
            raise PlinthError(f"job {rendered.job_id!r} already exists", "submit without a fixed job id") from None
        (job_dir / "job.yaml").write_text(yaml.safe_dump(dump_job_spec(job.spec), sort_keys=False))
        (job_dir / "launch.yaml").write_text(rendered.text)
        record = JobRecord(
            id=rendered.job_id,
            name=job.spec.name,
            kind=job.spec.kind,
            stack=self.stack.name,
            status=JobStatus.PENDING,
            submitted=now(),
            output_dir=launch.spec.output_dir,
            checkpoint_dir=launch.spec.checkpoint_dir,
            job_file=str(job.file),
        )
        write_json(job_dir / "record.json", record.model_dump(mode="json"))
        self._start_runner(job_dir)
        return record

    def new_job_id(self, name: str) -> str:
        return f"{name}-{''.join(secrets.choice(_ID_ALPHABET) for _ in range(5))}"

    def restart(self, job_id: str) -> JobRecord:
        """Run a finished submission again with the same id, outputs and checkpoints, so a
        training job that was killed resumes from its last checkpoint."""
        record = self.status(job_id)
        if not record.status.finished:
            raise PlinthError(f"job {job_id} is {record.status.value}", f"cancel it first: plinth job cancel {job_id}")
        job_dir = self._job_dir(job_id)
        (job_dir / "cancel").unlink(missing_ok=True)
        record = record.model_copy(
            update={"status": JobStatus.PENDING, "attempt": record.attempt + 1, "started": None, "finished": None, "exit_code": None, "message": ""}
        )
        write_json(job_dir / "record.json", record.model_dump(mode="json"))
        self._start_runner(job_dir)
        return record

    def status(self, job_id: str) -> JobRecord:
        return self._reconciled(self._job_dir(job_id))

    def list(self) -> list[JobRecord]:
        if not self.jobs_dir.is_dir():
            return []
        records = [self._reconciled(d) for d in self.jobs_dir.iterdir() if (d / "record.json").is_file()]
        return sorted(records, key=lambda r: r.submitted)

    def logs(self, job_id: str, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        job_dir = self._job_dir(job_id)
        log = job_dir / "log"
        if tail is not None:
            yield from (line + "\n" for line in tail_lines(log, tail))
            if not follow:
                return
            offset = log.stat().st_size if log.exists() else 0
        else:
            offset = 0
        while True:
            finished = self._reconciled(job_dir).status.finished
            if log.exists():
                with log.open("rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
                # Only hand out whole lines while the job runs; the rest comes with the next read.
                cut = len(chunk) if finished else chunk.rfind(b"\n") + 1
                if cut:
                    yield chunk[:cut].decode("utf-8", "replace")
                    offset += cut
            if not follow or finished:
                return
            time.sleep(0.2)

    def cancel(self, job_id: str) -> JobRecord:
        job_dir = self._job_dir(job_id)
        record = self._reconciled(job_dir)
        if record.status.finished:
            return record
        (job_dir / "cancel").touch()
        process = _read_json(job_dir / "process.json")
        if process.get("job_pid"):
            terminate_tree(process["job_pid"], process.get("job_pgid"), CANCEL_GRACE_SECONDS)
        # The runner records Cancelled when the job exits; wait for it briefly so the caller
        # sees the final state.
        deadline = time.monotonic() + CANCEL_GRACE_SECONDS + 5
        while time.monotonic() < deadline:
            record = self._reconciled(job_dir)
            if record.status.finished:
                return record
            time.sleep(0.1)
        return record

    def wait(self, job_id: str, poll: float = 0.5) -> JobRecord:
        while not (record := self.status(job_id)).status.finished:
            time.sleep(poll)
        return record

    # -- internals -------------------------------------------------------------------------

    def _preflight(self, launch: LocalLaunch) -> None:
        path = tool_path()
        program = launch.spec.command[0]
        if launch.metadata.job_kind == "spark" and not (os.environ.get("JAVA_HOME") or shutil.which("java", path=path)):
            raise PlinthError("Java not found: Spark jobs need Java 17", "install it (apt-get install openjdk-17-jre-headless) or set JAVA_HOME")
        if not shutil.which(program, path=path):
            raise PlinthError(f"{program!r} not found in {Path(sys.executable).parent}", "run scripts/bootstrap to install the Plinth environment")

    def _start_runner(self, job_dir: Path) -> None:
        env = {**os.environ, "PATH": tool_path()}
        subprocess.Popen(
            [sys.executable, "-m", "platform_cli.targets.local_runner", str(job_dir)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(job_dir / "runner.log").open("ab"),
            start_new_session=True,  # outlives this command and its terminal
            env=env,
        )

    def _job_dir(self, job_id: str) -> Path:
        job_dir = self.jobs_dir / job_id
        if not (job_dir / "record.json").is_file() or "/" in job_id:
            recent = ", ".join(r.id for r in self.list()[-5:]) or "none"
            raise PlinthError(f"job {job_id!r} not found on stack {self.stack.name!r}", f"recent jobs: {recent}")
        return job_dir

    def _reconciled(self, job_dir: Path) -> JobRecord:
        """The stored record, corrected if its runner died without recording an end."""
        record = JobRecord.model_validate(_read_json(job_dir / "record.json"))
        if record.status.finished:
            return record
        process = _read_json(job_dir / "process.json")
        runner_alive = _alive(process.get("runner_pid"), process.get("runner_started"))
        if process.get("attempt") == record.attempt and not runner_alive:
            record = _read_record(job_dir)  # the runner may have finished between the two reads
            if not record.status.finished:
                return record.model_copy(update={"status": JobStatus.FAILED, "message": "the local runner exited without recording an end (machine restart?)"})
        return record


def _read_record(job_dir: Path) -> JobRecord:
    return JobRecord.model_validate(_read_json(job_dir / "record.json"))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}


def _alive(pid: int | None, started: float | None) -> bool:
    """Is `pid` still the process we started (not a reused pid)?"""
    import psutil

    if not pid:
        return False
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and (started is None or abs(process.create_time() - started) < 1.0)
    except psutil.NoSuchProcess:
        return False


def terminate_tree(pid: int, pgid: int | None, grace: float) -> None:
    """SIGTERM the job's process group and every descendant (launchers such as horovodrun put
    workers in sessions of their own), then SIGKILL whatever is left after `grace` seconds."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        processes = []
    if pgid:
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for process in processes:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(processes, timeout=grace)
    if pgid:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
