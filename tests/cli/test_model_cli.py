"""`plinth model` user errors: one line starting with `error: `, exit code 1, nothing left behind.

No model server process is started here (and TensorFlow is never imported): every case is
refused before that.
"""

from __future__ import annotations

import socket
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from platform_cli.errors import PlinthError
from platform_cli.features import SPEC_FILE, CategoricalFeature, FeatureSpec
from platform_cli.main import app

runner = CliRunner()


def plinth(*args: str):
    return runner.invoke(app, list(args))


def assert_one_line_error(result, message: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"error: {message}"), result.output
    assert result.output.count("\n") == 1, result.output


@pytest.fixture
def in_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(project)  # so that @file paths are looked up in the throw-away project
    return project


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model", "predict", "ctr", "-d", "{nope"], "--data: not valid JSON (Expecting property name"),
        (["model", "predict", "ctr", "-d", "@missing.json"], "--data: file 'missing.json' not found"),
        (["model", "predict", "ctr", "-d", "[1, 2]"], '--data: expected a JSON object like {"instances": [...]}'),
        (["model", "predict", "ctr", "-d", '{"instances": []}'], "no local model server for 'ctr'; no local servers are running"),
        (["model", "stop", "ctr"], "no local model server for 'ctr'"),
        (["model", "register", "ctr", "--job", "no-such-job"], "no succeeded job with id or name 'no-such-job'; see plinth job ls"),
    ],
)
def test_user_errors_without_a_registry(in_project: Path, args: list[str], message: str) -> None:
    assert_one_line_error(plinth(*args), message)


@pytest.mark.parametrize("command", [["show", "nope"], ["versions", "nope"], ["serve", "nope"]])
def test_an_unknown_model_is_one_line(in_project: Path, command: list[str]) -> None:
    assert_one_line_error(plinth("model", *command), "no model named 'nope' in the registry")


def register_unloadable_model(project: Path, registry) -> None:
    """Version 1 of `ctr`: enough of a model for the registry and serve's checks; a server
    would fail to load it."""
    model_dir = project / "fake-model"
    model_dir.mkdir()
    (model_dir / "saved_model.pb").write_bytes(b"not a graph")
    FeatureSpec(categorical=[CategoricalFeature(name="user_id", buckets=4)], numeric=[], label="clicked").save(model_dir / SPEC_FILE)
    registry.register("ctr", model_dir, {"auc": 0.5}, {})


def cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:  # exited, or a zombie left by an earlier test's subprocess
        return []


def test_serve_on_a_busy_port_is_refused_before_any_server_starts(in_project: Path) -> None:
    from platform_cli.registry import ModelRegistry
    from platform_cli.serving import local
    from platform_cli.spec.stack import load_stack

    stack = load_stack("local")
    register_unloadable_model(in_project, ModelRegistry(stack.tracking_uri, stack.artifact_root))

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = plinth("model", "serve", "ctr", "--port", str(port))

    assert_one_line_error(result, f"port {port} is already in use")
    assert "--port" in result.output
    assert not any("platform_cli.serving.server" in " ".join(cmdline(p)) for p in psutil.Process().children(recursive=True))
    assert not local.log_path(stack, "ctr").exists()
    assert local.list_servers(local.state_dir(stack)) == []


def test_serve_rejects_a_port_that_is_no_port(in_project: Path) -> None:
    from platform_cli.serving import local
    from platform_cli.spec.stack import load_stack

    model_dir = in_project / "model"
    model_dir.mkdir()
    with pytest.raises(PlinthError, match="port 0 is not a TCP port"):
        local.serve(load_stack("local"), "ctr", 1, model_dir, port=0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model", "rollout", "ctr"], "pass either --weight PERCENT or --full"),
        (["model", "rollout", "ctr", "--weight", "20", "--full"], "pass either --weight PERCENT or --full"),
        (["model", "promote", "nope", "1"], "no model named 'nope' in the registry"),
        (["model", "rollback", "nope"], "no model named 'nope' in the registry"),
        (["model", "compare", "ctr"], "model 'ctr' has no traffic-split router running; start one with plinth model promote ctr VERSION"),
    ],
)
def test_gray_release_user_errors(in_project: Path, args: list[str], message: str) -> None:
    assert_one_line_error(plinth(*args), message)


def test_gray_release_refusals_start_nothing(in_project: Path) -> None:
    from platform_cli.registry import ModelRegistry
    from platform_cli.spec.stack import load_stack

    stack = load_stack("local")
    register_unloadable_model(in_project, ModelRegistry(stack.tracking_uri, stack.artifact_root))

    assert_one_line_error(plinth("model", "promote", "ctr", "7"), "model 'ctr' has no version 7; versions: 1")
    assert_one_line_error(plinth("model", "rollout", "ctr", "--weight", "50"), "ctr has no canary to roll out; promote a version first")
    assert_one_line_error(plinth("model", "approve", "ctr"), "ctr has no canary to approve")
    assert_one_line_error(plinth("model", "rollback", "ctr"), "ctr has no canary and no earlier production version to roll back to")
    serving = in_project / ".plinth" / "local" / "serving"
    assert not (serving / "traffic" / "ctr.json").exists() and not (serving / "routers").exists()


def test_show_says_how_the_stack_serves_a_version(in_project: Path) -> None:
    import json

    import yaml

    from platform_cli.registry import ModelRegistry
    from platform_cli.spec.stack import load_stack

    stack_file = in_project / "stacks" / "Pulumi.local.yaml"
    config = yaml.safe_load(stack_file.read_text())
    config["config"]["plinth:serving"] = {"batching": {"maxBatch": 32, "maxWaitMs": 1.5}, "workers": 2}
    stack_file.write_text(yaml.safe_dump(config))
    stack = load_stack("local")
    register_unloadable_model(in_project, ModelRegistry(stack.tracking_uri, stack.artifact_root))

    result = plinth("model", "show", "ctr", "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["serving"] == {"batching": {"maxBatch": 32, "maxWaitMs": 1.5}, "workers": 2}
    assert "batching:\n    maxBatch: 32\n    maxWaitMs: 1.5\n  workers: 2" in plinth("model", "show", "ctr").output
