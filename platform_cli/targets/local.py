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

import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from platform_cli.errors import PlinthError
from platform_cli.kinds import job_kind
from platform_cli.processes import read_tail, running, terminate_tree
from platform_cli.registry.lineage import file_sha256, source_revision
from platform_cli.runs import RunStore, new_id, now, parsed_file, read_process, tool_path
from platform_cli.spec.job import dump_job_spec
from platform_cli.spec.launch import LocalLaunch
from platform_cli.status import JobStatus
from platform_cli.targets import TargetInfo, Unsupported
from platform_cli.targets.base import JobRecord

if TYPE_CHECKING:
    from platform_cli.render.context import RenderedJob
    from platform_cli.spec.job import LoadedJob
    from platform_cli.spec.stack import Stack

TARGET = TargetInfo(
    name="local",
    runner="platform_cli.targets.local:LocalTarget",
    renderers={"*": "platform_cli.render.local:render_local_job"},
    preview_id_suffix="<id>",
    serving="local",
    unsupported={
        "flow submit": Unsupported("Argo Workflows runs flows on a cluster; the local platform runs them itself", "plinth flow run -f FLOW --stack {stack}"),
    },
)

CANCEL_GRACE_SECONDS = 10.0
LOG_TAIL_LINES = 15
# The lines the runner writes into a job's log around each attempt, and `attempts` reads back.
ATTEMPT_STARTED = re.compile(r"^\[plinth\] (?P<at>\S+ \S+) attempt (?P<attempt>\d+): (?P<command>.*)$")
ATTEMPT_ENDED = re.compile(r"^\[plinth\] (?P<at>\S+ \S+) attempt (?P<attempt>\d+) exited with code (?P<code>-?\d+)$")
# libyaml's emitter and parser where PyYAML was built with it: ~10x faster on every submission
# and every runner start, the same YAML.
SAFE_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class JobStore(RunStore[JobRecord]):
    noun, plural = "job", "jobs"
    model, record_file, failed = JobRecord, "record.json", JobStatus.FAILED
    runner, runner_name = "platform_cli.targets.local_runner:run", "local runner"


class LocalTarget:
    def __init__(self, stack: Stack):
        self.stack = stack
        self.jobs_dir = stack.home / "jobs"
        self.jobs_dir_text = str(self.jobs_dir)

    @property
    def store(self) -> JobStore:
        return JobStore(self.jobs_dir, self.stack.name)  # jobs_dir is reassigned by the YARN target

    # -- verbs -----------------------------------------------------------------------------

    def new_job_id(self, name: str) -> str:
        return new_id(name)

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
            samples=rendered.samples,
            sample_output=rendered.sample_output,
            script_sha256=file_sha256(job.script_path),
            code_revision=source_revision(job.base_dir) or "",
        )

        def fill(staging: Path) -> None:
            (staging / "job.yaml").write_text(yaml.dump(dump_job_spec(job.spec), Dumper=SAFE_DUMPER, sort_keys=False))
            (staging / "launch.yaml").write_text(rendered.text)
            (staging / "attempt-1").touch()

        self.store.submit(record, fill)
        return record

    def restart(self, job_id: str) -> JobRecord:
        """Run a finished submission again with the same id, outputs and checkpoints, so a
        training job that was killed resumes from its last checkpoint."""
        store = self.store
        job_dir = store.directory(job_id)
        record = store.reconciled(job_dir)
        if not record.status.finished or self._job_running(job_dir):
            raise PlinthError(f"job {job_id} is {'still running' if record.status.finished else record.status.value}", f"cancel it first: plinth job cancel {job_id}")
        if record.sample_output is not None and record.sample_output.version is not None:
            output = record.sample_output
            raise PlinthError(f"job {job_id} wrote version {output.version} of sample table {output.table}; a restart would rewrite that version's files",
                              "submit the job again for a new version")
        attempt = record.attempt + 1
        try:  # exactly one of two concurrent restarts gets attempt N
            os.close(os.open(job_dir / f"attempt-{attempt}", os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            raise PlinthError(f"job {job_id} is already being restarted (attempt {attempt})") from None
        (job_dir / "process.json").unlink(missing_ok=True)  # the last attempt's pids are not ours to signal
        (job_dir / "cancel").unlink(missing_ok=True)
        record = record.model_copy(update={"status": JobStatus.PENDING, "attempt": attempt, "started": None, "finished": None, "exit_code": None, "message": ""})
        store.write(job_dir, record)
        store.start_runner(job_dir, attempt)
        return record

    def status(self, job_id: str) -> JobRecord:
        store = self.store
        record = store.reconciled(store.directory(job_id))
        if record.status is JobStatus.RUNNING and (lag := job_kind(record.kind).live_lag(record)) is not None:
            record = record.model_copy(update={"lag": lag})
        return record

    def list(self) -> list[JobRecord]:
        return self.store.list()

    def loaded_job(self, job_id: str, record: JobRecord | None = None) -> LoadedJob:
        """The job spec as it was submitted (kept in job.yaml), with the job file it came from.
        A caller that has the job's record passes it, which saves reading it again."""
        from platform_cli.spec.job import LoadedJob, parse_job_spec

        job_dir = self.store.directory(job_id) if record is None else os.path.join(self.jobs_dir_text, job_id)
        record = record or JobStore.read(job_dir)
        path = os.path.join(job_dir, "job.yaml")
        return parsed_file(path, lambda text: LoadedJob(spec=parse_job_spec(yaml.load(text, Loader=SAFE_LOADER), where=path), file=Path(record.job_file or path)))

    def attempts(self, job_id: str) -> list[dict]:
        """Every attempt's start, end and exit code, from the lines the runner writes into the
        job's log around each attempt (ATTEMPT_STARTED, ATTEMPT_ENDED)."""

        log = self.store.directory(job_id) / "log"
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
        return (self.store.directory(job_id) / "launch.yaml").read_text()

    def logs(self, job_id: str, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        store = self.store
        job_dir = store.directory(job_id)
        log = job_dir / "log"
        offset = 0
        if tail is not None:
            lines, offset = read_tail(log, tail)
            yield from (line + "\n" for line in lines)
            if not follow:
                return
        while True:
            finished = store.reconciled(job_dir).status.finished
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
            store.wait(job_dir, 0.2)

    def cancel(self, job_id: str) -> JobRecord:
        store = self.store
        job_dir = store.directory(job_id)
        record = store.reconciled(job_dir)
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
        while not (record := store.reconciled(job_dir)).status.finished and time.monotonic() < deadline:
            store.wait(job_dir, 0.1)
        return record

    def wait(self, job_id: str, poll: float = 1.0) -> JobRecord:
        """The job's final record, as soon as its runner has written it (`poll`: the longest
        time between two looks at the record, for a runner that cannot be waited on)."""
        store = self.store
        job_dir = store.directory(job_id)
        while not (record := store.reconciled(job_dir)).status.finished:
            store.wait(job_dir, poll)
        return record

    def runner_process(self, job_id: str) -> tuple[int, float | None] | None:
        """(pid, creation time) of the job's current runner, for callers that wait on several."""
        process = read_process(self.jobs_dir / job_id)
        return (process["runner_pid"], process.get("runner_started")) if process.get("runner_pid") else None

    # -- internals -------------------------------------------------------------------------

    def _preflight(self, launch: LocalLaunch) -> None:
        path = tool_path()
        program = launch.spec.command[0]
        job_kind(launch.metadata.job_kind).local_requirements(path)
        if not shutil.which(program, path=path):
            raise PlinthError(f"{program!r} not found in {Path(sys.executable).parent}", "run scripts/bootstrap to install the Plinth environment")

    def _job_running(self, job_dir: Path) -> bool:
        process = read_process(job_dir)
        return running(process.get("job_pid"), process.get("job_started"))
