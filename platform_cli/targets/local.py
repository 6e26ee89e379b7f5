"""The local target: runs rendered jobs as process groups on this machine.

Each submission gets a directory `<local.home>/jobs/<job-id>/`:

    job.yaml       the spec as submitted          launch.yaml  the rendered LocalLaunch
    record.json    JobRecord                      process.json pids of this attempt's runner and job
    log            stdout+stderr of every attempt runner.log   the runner's own errors
    cancel         marker: a cancel was asked for attempt-N  marker: attempt N was started

A detached runner process (platform_cli.targets.local_runner) starts the job, waits for it and
records how it ended, so `plinth job ls/status/logs/cancel` work from any shell after the
submitting command has exited. Who writes what: the submitter writes the record and the
runner's pid; the runner adds the job's pid and writes every later state of the record.
"""

from __future__ import annotations

import json
import os
import re
import shutil
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
from platform_cli.lineage import file_sha256, source_revision
from platform_cli.processes import created_at, read_tail, running, tail_lines, terminate_tree
from platform_cli.spec.job import dump_job_spec
from platform_cli.spec.launch import LocalLaunch
from platform_cli.targets.base import JobRecord, JobStatus, new_job_id

if TYPE_CHECKING:
    from platform_cli.render.job import RenderedJob
    from platform_cli.spec.job import LoadedJob
    from platform_cli.spec.stack import Stack

CANCEL_GRACE_SECONDS = 10.0
# libyaml's parser where PyYAML was built with it: job.yaml is read for every job usage counts.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
LOG_TAIL_LINES = 15


def now() -> datetime:
    return datetime.now(timezone.utc)


def tool_path() -> str:
    """PATH for jobs: this environment's bin first, so `python`, `spark-submit` and `horovodrun`
    in a rendered command are the ones installed with Plinth."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


# A long-running reader (the console) asks for the same records again and again. Every write
# of a record replaces the file (atomic.write_json: a new inode), and a job's spec is written once
# at submission, so a parsed file is reused for as long as the file's identity is unchanged.
_parsed: dict[str, tuple[tuple[int, int, int], object]] = {}


def _cached(path: str, parse):
    info = os.stat(path)
    identity = (info.st_ino, info.st_mtime_ns, info.st_size)
    hit = _parsed.get(path)
    if hit is not None and hit[0] == identity:
        return hit[1]
    with open(path) as handle:
        value = parse(handle.read())
    _parsed[path] = (identity, value)
    return value


def read_record(job_dir: Path | str) -> JobRecord:
    try:
        return _cached(os.path.join(job_dir, "record.json"), JobRecord.model_validate_json)
    except ValueError as exc:
        raise PlinthError(f"{job_dir / 'record.json'} is corrupt ({' '.join(str(exc).split())[:120]})", "remove that job directory") from None


def read_process(job_dir: Path) -> dict:
    try:
        return json.loads((job_dir / "process.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


class LocalTarget:
    def __init__(self, stack: Stack):
        self.stack = stack
        self.jobs_dir = stack.home / "jobs"
        self.jobs_dir_text = str(self.jobs_dir)

    # -- verbs -----------------------------------------------------------------------------

    def new_job_id(self, name: str) -> str:
        return new_job_id(name)

    def submit(self, job: LoadedJob, rendered: RenderedJob) -> JobRecord:
        launch = LocalLaunch.model_validate(rendered.documents[0])
        self._preflight(launch)
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
            args=rendered.args,
            data_inputs=rendered.data_inputs,
            script_sha256=file_sha256(job.script_path),
            code_revision=source_revision(job.base_dir) or "",
        )
        # Build the directory aside and rename it into place: other shells never see a job
        # without its record, and a failed submission leaves nothing behind.
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        staging = self.jobs_dir / f".{rendered.job_id}.submitting"
        staging.mkdir()
        try:
            (staging / "job.yaml").write_text(yaml.safe_dump(dump_job_spec(job.spec), sort_keys=False))
            (staging / "launch.yaml").write_text(rendered.text)
            write_json(staging / "record.json", record.model_dump(mode="json"))
            (staging / "attempt-1").touch()
            try:
                os.rename(staging, self.jobs_dir / rendered.job_id)
            except OSError:
                raise PlinthError(f"job {rendered.job_id!r} already exists", "submit without a fixed job id") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        job_dir = self.jobs_dir / rendered.job_id
        try:
            self._start_runner(job_dir, attempt=1)
        except OSError as exc:
            shutil.rmtree(job_dir, ignore_errors=True)
            raise PlinthError(f"could not start the local runner: {exc}") from None
        return record

    def restart(self, job_id: str) -> JobRecord:
        """Run a finished submission again with the same id, outputs and checkpoints, so a
        training job that was killed resumes from its last checkpoint."""
        job_dir = self._job_dir(job_id)
        record = self._reconciled(job_dir)
        if not record.status.finished or self._job_running(job_dir):
            raise PlinthError(f"job {job_id} is {'still running' if record.status.finished else record.status.value}", f"cancel it first: plinth job cancel {job_id}")
        attempt = record.attempt + 1
        try:  # exactly one of two concurrent restarts gets attempt N
            os.close(os.open(job_dir / f"attempt-{attempt}", os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            raise PlinthError(f"job {job_id} is already being restarted (attempt {attempt})") from None
        (job_dir / "process.json").unlink(missing_ok=True)  # the last attempt's pids are not ours to signal
        (job_dir / "cancel").unlink(missing_ok=True)
        record = record.model_copy(update={"status": JobStatus.PENDING, "attempt": attempt, "started": None, "finished": None, "exit_code": None, "message": ""})
        write_json(job_dir / "record.json", record.model_dump(mode="json"))
        self._start_runner(job_dir, attempt=attempt)
        return record

    def status(self, job_id: str) -> JobRecord:
        return self._reconciled(self._job_dir(job_id))

    def list(self) -> list[JobRecord]:
        if not self.jobs_dir.is_dir():
            return []
        records = []
        with os.scandir(self.jobs_dir) as entries:
            for entry in entries:
                if entry.name.startswith("."):  # a submission being staged, not a job yet
                    continue
                try:
                    record = read_record(entry.path)  # a string path: pathlib costs more than the read here
                except (FileNotFoundError, NotADirectoryError):
                    continue  # not a job directory
                records.append(record if record.status.finished else self._reconciled(Path(entry.path)))
        return sorted(records, key=lambda r: r.submitted)

    def loaded_job(self, job_id: str, record: JobRecord | None = None) -> LoadedJob:
        """The job spec as it was submitted (kept in job.yaml), with the job file it came from.
        A caller that has the job's record passes it, which saves reading it again."""
        from platform_cli.spec.job import LoadedJob, parse_job_spec

        job_dir = self._job_dir(job_id) if record is None else os.path.join(self.jobs_dir_text, job_id)
        record = record or read_record(job_dir)
        path = os.path.join(job_dir, "job.yaml")
        return _cached(path, lambda text: LoadedJob(spec=parse_job_spec(yaml.load(text, Loader=_YAML_LOADER), where=path), file=Path(record.job_file or path)))

    def attempts(self, job_id: str) -> list[dict]:
        """Every attempt's start, end and exit code, from the lines the runner writes into the
        job's log around each attempt (local_runner.py: ATTEMPT_STARTED, ATTEMPT_ENDED)."""
        from platform_cli.targets.local_runner import ATTEMPT_ENDED, ATTEMPT_STARTED

        log = self._job_dir(job_id) / "log"
        found: dict[int, dict] = {}
        if log.exists():
            with log.open("rb") as handle:
                for raw in handle:
                    if not raw.startswith(b"[plinth] "):
                        continue
                    line = raw.decode("utf-8", "replace").rstrip("\n")
                    if started := ATTEMPT_STARTED.match(line):
                        found[int(started["attempt"])] = {"attempt": int(started["attempt"]), "started": started["at"], "ended": None, "exit_code": None, "command": started["command"]}
                    elif ended := ATTEMPT_ENDED.match(line):
                        entry = found.setdefault(int(ended["attempt"]), {"attempt": int(ended["attempt"]), "started": None, "command": ""})
                        entry.update(ended=ended["at"], exit_code=int(ended["code"]))
        return [found[n] for n in sorted(found)]

    def manifest(self, job_id: str) -> str:
        """What the job runs, as rendered at submission (the LocalLaunch document)."""
        return (self._job_dir(job_id) / "launch.yaml").read_text()

    def logs(self, job_id: str, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        job_dir = self._job_dir(job_id)
        log = job_dir / "log"
        offset = 0
        if tail is not None:
            lines, offset = read_tail(log, tail)
            yield from (line + "\n" for line in lines)
            if not follow:
                return
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
        job_alive = self._job_running(job_dir)
        if record.status.finished and not job_alive:
            return record
        (job_dir / "cancel").touch()
        if job_alive:  # also ends a job whose runner died (the record already says Failed)
            process = read_process(job_dir)
            terminate_tree(process["job_pid"], process.get("job_pgid"), CANCEL_GRACE_SECONDS)
        # The runner records Cancelled when the job exits; wait for it briefly so the caller
        # sees the final state.
        deadline = time.monotonic() + CANCEL_GRACE_SECONDS + 5
        while not (record := self._reconciled(job_dir)).status.finished and time.monotonic() < deadline:
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

    def _start_runner(self, job_dir: Path, attempt: int) -> None:
        with (job_dir / "runner.log").open("ab") as runner_log:
            runner = subprocess.Popen(
                [sys.executable, "-m", "platform_cli.targets.local_runner", str(job_dir)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=runner_log,
                start_new_session=True,  # outlives this command and its terminal
                env={**os.environ, "PATH": tool_path()},
            )
        # Recorded here, not by the runner: a runner that dies before its first line of Python
        # must still be seen as dead rather than leave the job Pending forever.
        write_json(job_dir / "process.json", {"attempt": attempt, "runner_pid": runner.pid, "runner_started": created_at(runner.pid)})

    def _job_dir(self, job_id: str) -> Path:
        job_dir = self.jobs_dir / job_id
        if "/" in job_id or job_id.startswith(".") or not (job_dir / "record.json").is_file():
            recent = ", ".join(r.id for r in self.list()[-5:]) or "none"
            raise PlinthError(f"job {job_id!r} not found on stack {self.stack.name!r}", f"recent jobs: {recent}")
        return job_dir

    def _job_running(self, job_dir: Path) -> bool:
        process = read_process(job_dir)
        return running(process.get("job_pid"), process.get("job_started"))

    def _reconciled(self, job_dir: Path) -> JobRecord:
        """The stored record, corrected if its runner died without recording an end."""
        record = read_record(job_dir)
        if record.status.finished:
            return record
        process = read_process(job_dir)
        if process.get("attempt") != record.attempt or running(process.get("runner_pid"), process.get("runner_started")):
            return record
        record = read_record(job_dir)  # the runner may have finished between the two reads
        if record.status.finished:
            return record
        why = _last_error_line(job_dir / "runner.log") or "no error recorded (machine restart?)"
        return record.model_copy(update={"status": JobStatus.FAILED, "message": f"the local runner exited without recording an end: {why}"})


def _last_error_line(path: Path) -> str | None:
    """The exception line of a Python traceback in `path` (its type names the problem), else
    the last line; multi-line exception messages make "the last line" a poor summary alone."""
    lines = [line.strip() for line in tail_lines(path, 40) if line.strip()]
    exception = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b")
    return next((line for line in reversed(lines) if exception.match(line)), lines[-1] if lines else None)
