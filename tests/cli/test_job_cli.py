"""`plinth` driven as a user would: typer's runner for the CLI, real local jobs underneath."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from platform_cli.main import app
from tests.conftest import write_job

runner = CliRunner()

SLEEPER = """\
import os, sys, time
print("started", os.environ["PLINTH_JOB_ID"], flush=True)
if "--fail" in sys.argv:
    print("Traceback: something broke", flush=True)
    sys.exit(3)
for i in range(int(sys.argv[1])):
    print("tick", i, flush=True)
    time.sleep(0.1)
"""


def plinth(*args: str):
    return runner.invoke(app, list(args))


def job_file(project: Path, text: str) -> str:
    return str(write_job(project / "jobs", "sleeper", text, script=SLEEPER))


def test_help_lists_the_command_groups() -> None:
    result = plinth("--help")
    assert result.exit_code == 0
    for group in ("stack", "job", "model"):
        assert group in result.output


def test_stack_ls_and_show(project: Path) -> None:
    result = plinth("stack", "ls")
    assert result.exit_code == 0
    assert result.output.split("\n")[0].split() == ["NAME", "ROLE", "TARGET", "STORAGE", "FILE"]
    assert "local" in result.output
    shown = json.loads(plinth("stack", "show", "local", "-o", "json").output)
    assert shown["config"]["local"]["horovodSlots"] == 2
    assert shown["resolved"]["storage"] == f"{project}/.plinth/local/storage"


def test_render_prints_the_manifest_without_running(project: Path) -> None:
    path = job_file(project, "kind: python\nname: sleeper\nscript: sleeper.py\nargs: ['1', '${storage}']\n")
    result = plinth("job", "render", "-f", path)
    assert result.exit_code == 0, result.output
    document = yaml.safe_load(result.output)
    assert document["kind"] == "LocalLaunch"
    assert document["spec"]["command"][-1] == f"{project}/.plinth/local/storage"
    assert json.loads(plinth("job", "render", "-f", path, "-o", "json").output) == document
    assert not (project / ".plinth" / "local" / "jobs").exists()


def test_submit_wait_ls_status_logs(project: Path) -> None:
    path = job_file(project, "kind: python\nname: sleeper\nscript: sleeper.py\nargs: ['3']\n")
    result = plinth("job", "submit", "-f", path, "--wait")
    assert result.exit_code == 0, result.output
    assert "tick 2" in result.output
    job_id = result.output.split()[0].removeprefix("job/")
    assert f"job/{job_id} succeeded" in result.output

    listed = json.loads(plinth("job", "ls", "-o", "json").output)
    assert [(r["id"], r["status"]) for r in listed] == [(job_id, "Succeeded")]
    status = yaml.safe_load(plinth("job", "status", job_id, "-o", "yaml").output)
    assert status["exit_code"] == 0
    assert plinth("job", "logs", job_id, "--tail", "2").output.splitlines()[0] == "tick 2"


def test_failed_job_exits_nonzero_and_status_shows_the_log_tail(project: Path) -> None:
    path = job_file(project, "kind: python\nname: sleeper\nscript: sleeper.py\nargs: ['--fail']\n")
    result = plinth("job", "submit", "-f", path, "--wait")
    assert result.exit_code == 1
    job_id = result.output.split()[0].removeprefix("job/")
    assert f"error: job {job_id} Failed (exit code 3)" in result.output
    status = plinth("job", "status", job_id)
    assert "Failed" in status.output
    assert "Traceback: something broke" in status.output


def test_cancel_from_another_command_ends_the_job(project: Path) -> None:
    path = job_file(project, "kind: python\nname: sleeper\nscript: sleeper.py\nargs: ['600']\n")
    job_id = plinth("job", "submit", "-f", path).output.split()[0].removeprefix("job/")
    deadline = time.monotonic() + 30
    while "tick 1" not in plinth("job", "logs", job_id).output:
        assert time.monotonic() < deadline, "job never started"
        time.sleep(0.2)
    result = plinth("job", "cancel", job_id)
    assert result.exit_code == 0
    assert result.output.strip() == f"job/{job_id} cancelled"
    assert json.loads(plinth("job", "status", job_id, "-o", "json").output)["status"] == "Cancelled"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["job", "render", "-f", "nowhere.yaml"], "error: job file 'nowhere.yaml' not found"),
        (["job", "status", "nope-12345"], "error: job 'nope-12345' not found on stack 'local'"),
        (["stack", "show", "team-x"], "error: unknown stack 'team-x'"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(project: Path, args: list[str], message: str) -> None:
    result = plinth(*args)
    assert result.exit_code == 1
    assert result.output.startswith(message)
    assert result.output.count("\n") == 1


def test_invalid_spec_names_the_field_and_writes_nothing(project: Path) -> None:
    path = job_file(project, "kind: horovod\nname: sleeper\nscript: sleeper.py\nworkers: many\n")
    result = plinth("job", "submit", "-f", path)
    assert result.exit_code == 1
    assert "workers: Input should be a valid integer" in result.output
    assert not (project / ".plinth" / "local" / "jobs").exists()
