"""The local target's process handling, with real processes."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from platform_cli.errors import PlinthError
from platform_cli.main import app
from platform_cli.render.job import render_job
from platform_cli.spec.job import load_job
from platform_cli.spec.stack import load_stack
from platform_cli.targets.local import LocalTarget
from tests.conftest import write_job

pytestmark = pytest.mark.integration

# A launcher like horovodrun: its workers run in sessions of their own, out of the job's
# process group, so cancelling must follow the process tree as well as the group.
LAUNCHER = """\
import os, subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
open(os.path.join(os.environ["PLINTH_OUTPUT_DIR"], "pids"), "w").write(f"{os.getpid()} {worker.pid}")
print("workers up", flush=True)
time.sleep(600)
"""

RESUMABLE = """\
import os, pathlib
marker = pathlib.Path(os.environ["PLINTH_CHECKPOINT_DIR"]) / "step"
step = int(marker.read_text()) if marker.exists() else 0
print(f"starting at step {step}", flush=True)
marker.write_text(str(step + 1))
"""


def submit(project: Path, name: str, script: str) -> tuple[LocalTarget, str]:
    job = load_job(write_job(project / "jobs", name, f"kind: python\nname: {name}\nscript: {name}.py\n", script=script))
    stack = load_stack("local")
    target = LocalTarget(stack)
    record = target.submit(job, render_job(job, stack, job_id=target.new_job_id(name)))
    return target, record.id


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_cancel_ends_the_whole_process_tree(project: Path) -> None:
    target, job_id = submit(project, "launcher", LAUNCHER)
    pids_file = Path(target.status(job_id).output_dir) / "pids"
    wait_for(pids_file.exists)
    wait_for(lambda: len(pids_file.read_text().split()) == 2)
    launcher, worker = (int(p) for p in pids_file.read_text().split())
    assert psutil.pid_exists(worker) and os.getsid(worker) != os.getsid(launcher)

    record = target.cancel(job_id)

    assert record.status.value == "Cancelled"
    for pid in (launcher, worker):
        wait_for(lambda pid=pid: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, timeout=15)


def test_restart_keeps_the_checkpoint_directory(project: Path) -> None:
    target, job_id = submit(project, "resumable", RESUMABLE)
    first = target.wait(job_id)
    second = target.wait(target.restart(job_id).id)
    assert (first.status.value, second.status.value, second.attempt) == ("Succeeded", "Succeeded", 2)
    assert second.checkpoint_dir == first.checkpoint_dir
    log = "".join(target.logs(job_id))
    assert "starting at step 0" in log and "starting at step 1" in log
    assert "attempt 2:" in log


def test_a_dead_runner_means_failed_and_cancel_still_ends_its_job(project: Path) -> None:
    """If the runner is killed (OOM killer, kill -9), the job it started runs on as an orphan:
    status must not stay Running forever, and cancel must still end the orphan."""
    target, job_id = submit(project, "launcher", LAUNCHER)
    job_dir = target.jobs_dir / job_id
    wait_for(lambda: "job_pid" in json.loads((job_dir / "process.json").read_text()))
    process = json.loads((job_dir / "process.json").read_text())
    os.kill(process["runner_pid"], 9)
    wait_for(lambda: target.status(job_id).status.value == "Failed")
    assert "runner exited without recording an end" in target.status(job_id).message
    assert psutil.pid_exists(process["job_pid"])

    with pytest.raises(PlinthError, match="still running; cancel it first"):
        target.restart(job_id)
    target.cancel(job_id)
    wait_for(lambda: not psutil.pid_exists(process["job_pid"]) or psutil.Process(process["job_pid"]).status() == psutil.STATUS_ZOMBIE, timeout=15)


def test_a_runner_that_cannot_start_its_job_is_not_pending_forever(project: Path) -> None:
    target, job_id = submit(project, "resumable", RESUMABLE)
    target.wait(job_id)
    (target.jobs_dir / job_id / "launch.yaml").write_text("not: [a launch")  # the runner will crash reading it
    target.restart(job_id)
    wait_for(lambda: target.status(job_id).status.value == "Failed")
    assert "runner exited without recording an end" in target.status(job_id).message
    assert "yaml" in target.status(job_id).message.lower()


def test_only_one_of_two_restarts_wins_and_cancelled_jobs_restart(project: Path) -> None:
    target, job_id = submit(project, "launcher", LAUNCHER)
    wait_for(lambda: target.status(job_id).status.value == "Running")
    assert target.cancel(job_id).status.value == "Cancelled"
    # Two shells racing to restart: simulate the loser by taking attempt 2 first.
    (target.jobs_dir / job_id / "attempt-2").touch()
    with pytest.raises(PlinthError, match="already being restarted"):
        target.restart(job_id)
    (target.jobs_dir / job_id / "attempt-2").unlink()
    record = target.restart(job_id)
    assert record.attempt == 2
    wait_for(lambda: target.status(job_id).status.value == "Running")
    assert target.cancel(job_id).status.value == "Cancelled"


def test_restart_of_a_running_job_is_refused(project: Path) -> None:
    target, job_id = submit(project, "launcher", LAUNCHER)
    try:
        with pytest.raises(PlinthError, match=f"job {job_id} is (Pending|Running); cancel it first"):
            target.restart(job_id)
    finally:
        target.cancel(job_id)


def test_spark_without_java_is_refused_before_anything_is_written(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = write_job(project / "jobs", "prep", "kind: spark\nname: prep\nscript: prep.py\n", script="")
    monkeypatch.setenv("PATH", "/nonexistent")  # the target still finds its own bin directory
    monkeypatch.delenv("JAVA_HOME", raising=False)
    result = CliRunner().invoke(app, ["job", "submit", "-f", str(job)])
    assert result.exit_code == 1
    assert result.output.startswith("error: Java not found: Spark jobs need Java 17; install it")
    assert not (project / ".plinth" / "local" / "jobs").exists() or not any((project / ".plinth" / "local" / "jobs").iterdir())


def test_records_survive_the_submitting_process(project: Path) -> None:
    """Another process (a second shell) sees the same job through the files alone."""
    import subprocess
    import sys

    target, job_id = submit(project, "resumable", RESUMABLE)
    target.wait(job_id)
    listed = subprocess.run([sys.executable, "-m", "platform_cli", "job", "ls", "-o", "json"], capture_output=True, text=True, env=os.environ, check=False)
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == [job_id]
