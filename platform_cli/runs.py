"""Records of things that run on this machine under a detached runner: jobs and flow runs.

Each run is a directory `<root>/<id>/` holding its record (one JSON file, written whole), the
runner's `process.json` (pid and creation time of the runner of the current attempt) and the
runner's own `runner.log`. The runner is a process of its own, in a session of its own, so the
run outlives the command that started it and every later command reads the same directory.

The store owns what every such record needs: ids, creating the directory atomically, starting
the runner, finding a run again by id, and telling a run whose runner died (killed, out of
memory, machine restarted) from one still running. What a record holds and what its runner does
belong to its owner (the local target for jobs, platform_cli.flow.run for flow runs).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from platform_cli.atomic import write_json
from platform_cli.errors import PlinthError
from platform_cli.processes import created_at, running, start_detached, tail_lines, wait_for_exit

ID_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' generateName alphabet: no vowels, no look-alikes

R = TypeVar("R")


def new_id(name: str) -> str:
    """`<name>-<5 random characters>`: the id of a submission, on every target and for flow runs."""
    return f"{name}-{''.join(secrets.choice(ID_ALPHABET) for _ in range(5))}"


def now() -> datetime:
    return datetime.now(timezone.utc)


def tool_path() -> str:
    """PATH for runners and jobs: this environment's bin first, so `python`, `spark-submit` and
    `horovodrun` in a rendered command are the ones installed with Plinth."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def read_process(directory: Path) -> dict:
    try:
        return json.loads((directory / "process.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


# A long-running reader (the console) asks for the same records again and again. Every write of
# a record replaces its file (atomic.write_json: a new inode) and a run's inputs are written
# once, so a parsed file is reused for as long as the file's identity is unchanged.
_parsed: dict[str, tuple[tuple[int, int, int], Any]] = {}


def parsed_file(path: str, parse: Callable[[str], Any]) -> Any:
    """`parse(text of path)`, reusing the last result while the file is the same file."""
    info = os.stat(path)
    identity = (info.st_ino, info.st_mtime_ns, info.st_size)
    hit = _parsed.get(path)
    if hit is not None and hit[0] == identity:
        return hit[1]
    with open(path) as handle:
        value = parse(handle.read())
    _parsed[path] = (identity, value)
    return value


class RunStore(Generic[R]):
    """One kind of run record under `root`. A subclass names the record's model and file, its
    runner module and the words errors use; `attempt` says which runner a record belongs to."""

    noun: ClassVar[str]  # "job": what errors call one run
    plural: ClassVar[str]  # "jobs": the recent ones listed when an id is unknown
    record_file: ClassVar[str]
    model: ClassVar[type]  # a pydantic model with id, submitted and status (an enum with `finished`)
    failed: ClassVar[StrEnum]  # the status a run whose runner died is given
    runner: ClassVar[str]  # "module:function", called with the run's directory in the detached runner process
    runner_name: ClassVar[str]

    def __init__(self, root: Path, stack_name: str):
        self.root = root
        self.stack_name = stack_name

    # -- what a subclass may refine ---------------------------------------------------------

    def attempt(self, record: R) -> int:
        """Which start of the runner the record is at, written to process.json beside the pid, so
        the pid of an earlier attempt's runner is never taken for the current one's."""
        return record.attempt  # type: ignore[attr-defined]

    def dead_runner_message(self, record: R, why: str) -> str:
        return f"the {self.runner_name} exited without recording an end: {why}"

    # -- records ----------------------------------------------------------------------------

    @classmethod
    def read(cls, directory: Path | str) -> R:
        path = os.path.join(directory, cls.record_file)
        try:
            return parsed_file(path, cls.model.model_validate_json)
        except ValueError as exc:
            raise PlinthError(f"{path} is corrupt ({' '.join(str(exc).split())[:120]})", f"remove that {cls.noun} directory") from None

    @classmethod
    def write(cls, directory: Path, record: R) -> None:
        write_json(directory / cls.record_file, record.model_dump(mode="json"))  # type: ignore[attr-defined]

    def directory(self, run_id: str) -> Path:
        """The directory of an existing run; an unknown id names the recent ones."""
        directory = self.root / run_id
        if "/" in run_id or run_id.startswith(".") or not (directory / self.record_file).is_file():
            recent = ", ".join(r.id for r in self.list()[-5:]) or "none"  # type: ignore[attr-defined]
            raise PlinthError(f"{self.noun} {run_id!r} not found on stack {self.stack_name!r}", f"recent {self.plural}: {recent}")
        return directory

    def list(self) -> list[R]:
        if not self.root.is_dir():
            return []
        records = []
        with os.scandir(self.root) as entries:  # string paths: pathlib cost more than the reads with many runs
            for entry in entries:
                if entry.name.startswith("."):  # a submission being staged, not a run yet
                    continue
                try:
                    record = self.read(entry.path)
                except (FileNotFoundError, NotADirectoryError):
                    continue  # not a run directory
                records.append(record if record.status.finished else self.reconciled(Path(entry.path)))  # type: ignore[attr-defined]
        return sorted(records, key=lambda r: r.submitted)  # type: ignore[attr-defined]

    # -- starting ---------------------------------------------------------------------------

    def submit(self, record: R, fill: Callable[[Path], Any], env: dict[str, str] | None = None) -> Path:
        """Create the run's directory with its record and what `fill` writes there, then start its
        runner. The directory is built aside and renamed into place, so other shells never see a
        run without its record, and a submission that fails leaves nothing behind."""
        run_id = record.id  # type: ignore[attr-defined]
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".{run_id}.submitting"
        staging.mkdir()
        try:
            fill(staging)
            self.write(staging, record)
            try:
                os.rename(staging, self.root / run_id)
            except OSError:
                raise PlinthError(f"{self.noun} {run_id!r} already exists", "submit it without a fixed id") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        directory = self.root / run_id
        try:
            self.start_runner(directory, self.attempt(record), env)
        except OSError as exc:
            shutil.rmtree(directory, ignore_errors=True)
            raise PlinthError(f"could not start the {self.runner_name}: {exc}") from None
        return directory

    def start_runner(self, directory: Path, attempt: int, env: dict[str, str] | None = None) -> None:
        def record(pid: int) -> None:
            # Recorded here, before the runner starts, not by the runner: a runner that dies
            # before its first line must still be seen as dead rather than leave the run
            # Pending forever.
            write_json(directory / "process.json", {"attempt": attempt, "runner_pid": pid, "runner_started": created_at(pid)})

        start_detached(self.runner, directory, {"PATH": tool_path(), **(env or {})}, directory / "runner.log", record)

    def wait(self, directory: Path, timeout: float) -> None:
        """Return as soon as the run's runner ends (its record is then final), or after `timeout`."""
        process = read_process(directory)
        if process.get("runner_pid"):
            wait_for_exit([(process["runner_pid"], process.get("runner_started"))], timeout)
        else:  # a restart between removing the old process.json and writing the new one
            time.sleep(min(timeout, 0.01))

    # -- finding out ------------------------------------------------------------------------

    def runner_alive(self, directory: Path) -> bool:
        process = read_process(directory)
        return running(process.get("runner_pid"), process.get("runner_started"))

    def reconciled(self, directory: Path) -> R:
        """The stored record, marked failed if its runner died without recording an end."""
        record = self.read(directory)
        if record.status.finished:  # type: ignore[attr-defined]
            return record
        process = read_process(directory)
        if process.get("attempt") != self.attempt(record) or running(process.get("runner_pid"), process.get("runner_started")):
            return record
        record = self.read(directory)  # the runner may have finished between the two reads
        if record.status.finished:  # type: ignore[attr-defined]
            return record
        why = last_error_line(directory / "runner.log") or "no error recorded (killed, or the machine restarted?)"
        return record.model_copy(update={"status": self.failed, "message": self.dead_runner_message(record, why)})  # type: ignore[attr-defined]


def last_error_line(path: Path) -> str | None:
    """The exception line of a Python traceback in `path` (its type names the problem), else
    the last line; multi-line exception messages make "the last line" a poor summary alone."""
    lines = [line.strip() for line in tail_lines(path, 40) if line.strip()]
    exception = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b")
    return next((line for line in reversed(lines) if exception.match(line)), lines[-1] if lines else None)
