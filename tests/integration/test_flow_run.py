"""Flow runs on the local platform with cheap Python steps: real runner and job processes.

Driven through `plinth flow ...` as a user would from two shells: one starts the run, the
others ask for its status, logs, cancel it or resume it.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from platform_cli.main import app

pytestmark = pytest.mark.integration

# Appends its name to a marker file each time it runs, so a test can count runs.
STEP = """\
import json, os, sys, time
name, seconds = sys.argv[1], float(sys.argv[2])
with open(os.environ["MARKS"], "a") as marks:
    marks.write(name + "\\n")
print("running", name, flush=True)
time.sleep(seconds)
if "--fail" in sys.argv:
    print("Traceback: step", name, "broke", flush=True)
    sys.exit(3)
os.makedirs(os.environ["PLINTH_OUTPUT_DIR"], exist_ok=True)
with open(os.path.join(os.environ["PLINTH_OUTPUT_DIR"], "metrics.json"), "w") as out:
    json.dump({"score": float(len(name))}, out)
"""


def plinth(*args: str, ok: bool = True):
    result = CliRunner().invoke(app, list(args))
    if ok:
        assert result.exit_code == 0, f"plinth {' '.join(args)} failed:\n{result.output}"
    return result


def step(name: str, seconds: float, *extra: str, **fields) -> dict:
    return {"job": {"kind": "python", "name": name, "script": "step.py", "args": [name, str(seconds), *extra], "env": {"MARKS": "${storage}/marks"}}, **fields}


def write_flow(project: Path, nodes: dict, name: str = "demo") -> Path:
    directory = project / "flows"
    directory.mkdir(exist_ok=True)
    (directory / "step.py").write_text(STEP)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"kind": "flow", "name": name, "nodes": nodes}, sort_keys=False))
    return path


def marks(project: Path) -> list[str]:
    path = project / ".plinth" / "local" / "storage" / "marks"
    return path.read_text().split() if path.exists() else []


def run_id(output: str) -> str:
    return output.split()[0].removeprefix("flow/")


def state(project: Path, run: str) -> dict:
    return json.loads(plinth("flow", "status", run, "-o", "json").output)


def wait_for(predicate, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_independent_steps_run_in_parallel_and_outputs_flow_on(project: Path) -> None:
    nodes = {
        "left": {"steps": {"a": step("a", 1.0, outputs=["score"]), "b": {**step("b", 0.1, "${steps.a.outputs.score}"), "after": ["a"]}}},
        "right": {"steps": {"c": step("c", 1.0)}},
        "last": {"after": ["left", "right"], "steps": {"d": step("d", 0.1, "${nodes.left.steps.a.outputs.job_id}"), "e": {**step("e", 0.1), "when": "${nodes.left.steps.a.outputs.score} > 5"}}},
    }
    result = plinth("flow", "run", "-f", str(write_flow(project, nodes)))
    assert "flow/demo-" in result.output and "succeeded" in result.output
    record = state(project, run_id(result.output))
    steps = record["steps"]
    assert record["status"] == "Succeeded"
    # a and c (one slot each, 2 slots) overlapped
    assert steps["left/a"]["started"] < steps["right/c"]["finished"] and steps["right/c"]["started"] < steps["left/a"]["finished"]
    assert steps["left/a"]["outputs"]["score"] == "1.0"
    assert steps["last/e"]["status"] == "Skipped" and "1.0 > 5 is false" in steps["last/e"]["message"]
    log = plinth("flow", "logs", record["id"], "d").output
    assert f"running d {steps['left/a']['job_id']}" in log.replace("\n", " ") or steps["left/a"]["job_id"] in log
    assert sorted(marks(project)) == ["a", "b", "c", "d"]


def test_a_failed_step_stops_its_dependents_lets_other_branches_finish_and_retries_are_honoured(project: Path) -> None:
    nodes = {
        "left": {"steps": {"bad": step("bad", 0.1, "--fail", retries=1), "after-bad": {**step("after-bad", 0.1), "after": ["bad"]}}},
        "right": {"steps": {"slow": step("slow", 2.0)}},
        "last": {"after": ["left"], "steps": {"never": step("never", 0.1)}},
    }
    result = plinth("flow", "run", "-f", str(write_flow(project, nodes)), ok=False)
    assert result.exit_code == 1
    assert "attempt 2/2" in result.output  # the retry is shown
    record = state(project, run_id(result.output))
    assert record["status"] == "Failed"
    assert {k: s["status"] for k, s in record["steps"].items()} == {"left/bad": "Failed", "left/after-bad": "Omitted", "right/slow": "Succeeded", "last/never": "Omitted"}
    assert record["steps"]["left/bad"]["attempt"] == 2
    assert "Traceback: step bad broke" in record["message"]  # the failing step's log tail
    status = plinth("flow", "status", record["id"]).output
    assert "Failed" in status and "Traceback: step bad broke" in status
    assert sorted(marks(project)) == ["bad", "bad", "slow"]


def test_a_failed_first_node_omits_every_step_after_it_and_leaves_none_pending(project: Path) -> None:
    nodes = {
        "data": {"steps": {"generate": step("generate", 0, "--fail")}},
        "features": {"after": ["data"], "steps": {"prep": step("prep", 0)}},
        "train": {"after": ["features"], "steps": {"fit": step("fit", 0), "check": {**step("check", 0), "after": ["fit"]}}},
    }
    result = plinth("flow", "run", "-f", str(write_flow(project, nodes)), ok=False)
    assert result.exit_code == 1
    record = state(project, run_id(result.output))
    assert record["status"] == "Failed"
    assert {k: s["status"] for k, s in record["steps"].items()} == {"data/generate": "Failed", "features/prep": "Omitted", "train/fit": "Omitted", "train/check": "Omitted"}
    assert record["steps"]["train/check"]["message"] == "not run: features/prep omitted"  # the first, in plan order
    assert marks(project) == ["generate"]


def test_a_step_over_its_timeout_fails(project: Path) -> None:
    result = plinth("flow", "run", "-f", str(write_flow(project, {"n": {"steps": {"s": step("s", 30, timeout="1s")}}})), ok=False)
    record = state(project, run_id(result.output))
    assert record["steps"]["n/s"]["status"] == "Failed" and "timed out after 1s" in record["steps"]["n/s"]["message"]
    job = json.loads(plinth("job", "status", record["steps"]["n/s"]["job_id"], "-o", "json").output)
    assert job["status"] == "Cancelled"


def test_a_run_killed_mid_flow_resumes_without_rerunning_what_succeeded(project: Path) -> None:
    nodes = {
        "one": {"steps": {"a": step("a", 0.1, outputs=["score"]), "b": step("b", 0.1)}},
        "two": {"after": ["one"], "steps": {"slow": step("slow", 3.0), "c": {**step("c", 0.1, "${nodes.one.steps.a.outputs.score}"), "after": ["slow"]}}},
    }
    started = plinth("flow", "run", "-f", str(write_flow(project, nodes)), "--detach")
    run = run_id(started.output.split("flow/")[1])
    run_dir = project / ".plinth" / "local" / "flows" / run
    wait_for(lambda: state(project, run)["steps"]["two/slow"]["status"] == "Running", what="slow to start")
    os.kill(json.loads((run_dir / "process.json").read_text())["runner_pid"], signal.SIGKILL)  # the runner dies mid-flow

    interrupted = state(project, run)
    assert interrupted["status"] == "Failed" and "plinth flow resume" in interrupted["message"]
    slow_job = interrupted["steps"]["two/slow"]["job_id"]

    resumed = plinth("flow", "resume", run)
    assert "resumed: 2 of 4 steps already done (one/a, one/b)" in resumed.output
    record = state(project, run)
    assert record["status"] == "Succeeded" and record["resumed"] == 1
    assert record["steps"]["two/slow"]["job_id"] == slow_job  # the running job was picked up, not started again
    assert sorted(marks(project)) == ["a", "b", "c", "slow"]  # nothing ran twice
    runs = plinth("flow", "ls").output
    assert run in runs and "4/4" in runs


def test_cancel_from_another_shell_then_resume_reruns_only_what_did_not_finish(project: Path) -> None:
    nodes = {"one": {"steps": {"a": step("a", 0.1), "long": {**step("long", 30), "after": ["a"]}, "z": {**step("z", 0.1), "after": ["long"]}}}}
    run = run_id(plinth("flow", "run", "-f", str(write_flow(project, nodes)), "-d").output.split("flow/")[1])
    wait_for(lambda: state(project, run)["steps"]["one/long"]["status"] == "Running", what="long to start")
    assert "cancelled" in plinth("flow", "cancel", run).output
    record = state(project, run)
    assert record["status"] == "Cancelled"
    assert [record["steps"][k]["status"] for k in ("one/a", "one/long", "one/z")] == ["Succeeded", "Cancelled", "Cancelled"]
    job = json.loads(plinth("job", "status", record["steps"]["one/long"]["job_id"], "-o", "json").output)
    assert job["status"] == "Cancelled"  # the job itself was stopped, not only the run record


def test_cancel_after_the_runner_died_stops_the_jobs_it_left(project: Path) -> None:
    run = run_id(plinth("flow", "run", "-f", str(write_flow(project, {"n": {"steps": {"long": step("long", 30)}}})), "-d").output.split("flow/")[1])
    wait_for(lambda: state(project, run)["steps"]["n/long"]["status"] == "Running", what="long to start")
    run_dir = project / ".plinth" / "local" / "flows" / run
    os.kill(json.loads((run_dir / "process.json").read_text())["runner_pid"], signal.SIGKILL)
    job_id = state(project, run)["steps"]["n/long"]["job_id"]
    # orphaned, and still going
    wait_for(lambda: json.loads(plinth("job", "status", job_id, "-o", "json").output)["status"] == "Running", what="the job to run")

    assert "cancelled" in plinth("flow", "cancel", run).output
    assert state(project, run)["status"] == "Cancelled"
    assert json.loads(plinth("job", "status", job_id, "-o", "json").output)["status"] == "Cancelled"
