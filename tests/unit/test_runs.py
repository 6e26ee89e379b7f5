"""The store of detached runs (jobs and flow runs share it), with a small record of its own and
real runner processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import psutil
import pytest
from pydantic import BaseModel

from platform_cli.errors import PlinthError
from platform_cli.runs import RunStore, new_id, now
from platform_cli.status import JobStatus
from tests.conftest import REPO


class Note(BaseModel):
    id: str
    submitted: datetime
    status: JobStatus = JobStatus.PENDING
    attempt: int = 1
    message: str = ""


def sleeping_runner(directory: Path) -> int:
    time.sleep(60)
    return 0


def crashing_runner(directory: Path) -> int:
    raise RuntimeError("the disk is full")


def quick_runner(directory: Path) -> int:
    return 0


class NoteStore(RunStore[Note]):
    noun, plural = "note", "notes"
    model, record_file, failed = Note, "note.json", JobStatus.FAILED
    runner_name = "note runner"

    def __init__(self, root: Path, runner: str = "sleeping_runner"):
        super().__init__(root, "demo")
        self.runner = f"{__name__}:{runner}"


def note(name: str = "n") -> Note:
    return Note(id=new_id(name), submitted=now())


def wait_until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def kill_runner(store: NoteStore, directory: Path) -> None:
    os.kill(json.loads((directory / "process.json").read_text())["runner_pid"], signal.SIGKILL)
    wait_until(lambda: not store.runner_alive(directory))


def test_a_submission_that_fails_leaves_nothing_behind(tmp_path: Path) -> None:
    store = NoteStore(tmp_path / "notes")

    def fill(staging: Path) -> None:
        (staging / "half-written").write_text("x")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        store.submit(note(), fill)
    assert list(store.root.iterdir()) == []

    with pytest.raises(PlinthError, match="could not start the note runner: .*Is a directory"):
        store.submit(note(), lambda staging: (staging / "runner.log").mkdir())  # where its log should go
    assert list(store.root.iterdir()) == []


def test_a_run_is_found_by_id_and_a_second_one_with_the_same_id_is_refused(tmp_path: Path) -> None:
    store = NoteStore(tmp_path / "notes")
    record = note()
    directory = store.submit(record, lambda staging: (staging / "extra").write_text("kept"))
    try:
        assert store.directory(record.id) == directory and (directory / "extra").read_text() == "kept"
        assert store.reconciled(directory).status is JobStatus.PENDING  # its runner is alive
        with pytest.raises(PlinthError, match=f"note '{record.id}' already exists"):
            store.submit(record, lambda staging: None)
    finally:
        kill_runner(store, directory)


def test_a_dead_runner_is_reconciled_to_failed_with_its_error(tmp_path: Path) -> None:
    store = NoteStore(tmp_path / "notes", runner="crashing_runner")
    record = note()
    directory = store.submit(record, lambda staging: None)
    wait_until(lambda: not store.runner_alive(directory))
    reconciled = store.reconciled(directory)
    assert reconciled.status is JobStatus.FAILED
    assert reconciled.message == "the note runner exited without recording an end: RuntimeError: the disk is full"
    assert store.read(directory).status is JobStatus.PENDING  # reading never rewrites the record
    assert [r.status for r in store.list()] == [JobStatus.FAILED]


def test_a_runner_of_an_earlier_attempt_does_not_decide_the_current_one(tmp_path: Path) -> None:
    store = NoteStore(tmp_path / "notes")
    record = note()
    directory = store.submit(record, lambda staging: None)
    kill_runner(store, directory)
    assert store.reconciled(directory).status is JobStatus.FAILED
    # attempt 2 is recorded, its runner not started yet: not failed, only not started
    store.write(directory, record.model_copy(update={"attempt": 2}))
    assert store.reconciled(directory).status is JobStatus.PENDING


def test_a_corrupt_record_is_one_line_naming_the_file(tmp_path: Path) -> None:
    store = NoteStore(tmp_path / "notes")
    directory = store.root / "n-bbbbb"
    directory.mkdir(parents=True)
    (directory / "note.json").write_text('{"id": "n-bbbbb", "submitted": "yesterday"')
    with pytest.raises(PlinthError) as caught:
        store.reconciled(store.directory("n-bbbbb"))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{directory / 'note.json'} is corrupt (") and message.endswith("; remove that note directory")


def test_an_unknown_id_names_the_five_most_recent_runs(tmp_path: Path) -> None:
    store = NoteStore(tmp_path / "notes", runner="quick_runner")
    with pytest.raises(PlinthError, match="note 'nope' not found on stack 'demo'; recent notes: none"):
        store.directory("nope")
    ids = [store.submit(note(f"n{i}"), lambda staging: None).name for i in range(6)]
    for bad in ("nope", "../notes", f".{ids[0]}.submitting"):
        with pytest.raises(PlinthError) as caught:
            store.directory(bad)
        assert str(caught.value) == f"note {bad!r} not found on stack 'demo'; recent notes: {', '.join(ids[1:])}"


# Run in a fresh interpreter: whether this test process has threads depends on the tests before.
FORK_OR_SPAWN = """
import json, sys, threading
from pathlib import Path
from tests.unit.test_runs import NoteStore, note
store = NoteStore(Path(sys.argv[1]))
forked = store.submit(note("forked"), lambda staging: None)
stop = threading.Event()
thread = threading.Thread(target=stop.wait)
thread.start()
spawned = store.submit(note("spawned"), lambda staging: None)
stop.set()
thread.join()
print(json.dumps([str(forked), str(spawned)]))
"""


def test_a_runner_is_forked_warm_and_a_threaded_parent_starts_a_new_interpreter(tmp_path: Path) -> None:
    store = NoteStore(tmp_path / "notes")
    probe = subprocess.run([sys.executable, "-c", FORK_OR_SPAWN, str(store.root)], cwd=REPO, capture_output=True, text=True, check=True)
    forked, spawned = (Path(d) for d in json.loads(probe.stdout))
    try:
        runners = {d: psutil.Process(json.loads((d / "process.json").read_text())["runner_pid"]) for d in (forked, spawned)}
        assert runners[forked].cmdline()[1:3] == ["-c", FORK_OR_SPAWN]  # a copy of the submitting process
        assert runners[spawned].cmdline()[1:4] == ["-m", "platform_cli.processes", f"{__name__}:sleeping_runner"]
        assert all(os.getsid(runner.pid) == runner.pid for runner in runners.values())  # each leads a session of its own
        assert all(store.reconciled(d).status is JobStatus.PENDING for d in (forked, spawned))  # alive after the submitter exited
    finally:
        kill_runner(store, forked)
        kill_runner(store, spawned)
