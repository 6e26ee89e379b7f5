"""Shell completion as a shell drives it: the printed script sourced in a real bash, and the
completion protocol of zsh and fish, against real job records, flow runs and a registered model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from platform_cli.main import app
from tests.cli.test_startup import HEAVY
from tests.conftest import write_job

BIN = Path(sys.executable).parent


def plinth(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def protocol(shell: str, line: str) -> str:
    """What `plinth` answers the completion script of `shell` for the command line `line`."""
    extra = {"zsh": {"_TYPER_COMPLETE_ARGS": line}, "fish": {"_TYPER_COMPLETE_ARGS": line, "_TYPER_COMPLETE_FISH_ACTION": "get-args"}}[shell]
    result = subprocess.run([str(BIN / "plinth")], env={**env(), "_PLINTH_COMPLETE": f"complete_{shell}", **extra}, capture_output=True, text=True, check=True)
    return result.stdout


def submitted_job(project: Path) -> str:
    job = write_job(project / "jobs", "noop", "kind: python\nname: noop\nscript: noop.py\n", script="")
    return plinth("job", "submit", "-f", str(job), "--wait").split()[0].removeprefix("job/")


def test_bash_completes_commands_stacks_and_job_ids(project: Path) -> None:
    job_id = submitted_job(project)
    script = plinth("completion", "bash")

    def complete(*words: str) -> list[str]:
        words_array = " ".join(f"'{w}'" for w in words)
        program = f'{script}\nCOMP_WORDS=({words_array}); COMP_CWORD={len(words) - 1}; _plinth_completion plinth; printf "%s\\n" "${{COMPREPLY[@]}}"'
        return subprocess.run(["bash", "-c", program], env=env(), capture_output=True, text=True, check=True).stdout.split()

    assert complete("plinth", "fl") == ["flow"]
    assert complete("plinth", "job", "status", "") == [job_id]
    assert complete("plinth", "job", "logs", job_id[:3]) == [job_id]
    assert complete("plinth", "job", "status", "nothing-like-it") == []
    assert complete("plinth", "job", "ls", "--stack", "team-") == ["team-antispam", "team-feed", "team-sim", "team-sim-feed", "team-sim-ranking"]
    assert complete("plinth", "stack", "show", "plat") == ["platform-prod", "platform-sim", "platform-sim-volcano"]
    assert complete("plinth", "model", "export", "ctr", "1", "--quantize", "") == ["dynamic", "float16", "none"]


def test_zsh_and_fish_complete_flow_run_ids_and_model_names(project: Path, tmp_path: Path) -> None:
    from platform_cli.registry import ModelRegistry
    from platform_cli.spec.stack import load_stack

    (project / "flows").mkdir()
    (project / "flows" / "noop.py").write_text("")
    (project / "flows" / "tiny.yaml").write_text("kind: flow\nname: tiny\nnodes:\n  n:\n    steps:\n      s:\n        job: {kind: python, name: s, script: noop.py}\n")
    run_id = plinth("flow", "run", "-f", str(project / "flows" / "tiny.yaml")).split()[0].removeprefix("flow/")
    stack = load_stack("local")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "saved_model.pb").write_bytes(b"")
    ModelRegistry(stack.tracking_uri, stack.artifact_root).register("ctr", tmp_path / "model", {}, {})

    assert run_id in protocol("zsh", "plinth flow status ")
    assert run_id in protocol("fish", "plinth flow logs ti")
    assert protocol("fish", "plinth model versions ").split() == ["ctr"]
    assert "ctr" in protocol("zsh", "plinth model stop c")
    assert protocol("fish", "plinth model versions x").split() == []


def test_completion_scripts_name_the_command_and_its_protocol() -> None:
    assert "complete -o default -F _plinth_completion plinth" in plinth("completion", "bash")
    assert "_PLINTH_COMPLETE=complete_zsh plinth" in plinth("completion", "zsh")
    assert "complete --command plinth" in plinth("completion", "fish")
    result = CliRunner().invoke(app, ["completion", "tcsh"])
    assert result.exit_code == 2 and "'tcsh' is not one of" in result.output


def test_completing_values_loads_no_heavy_framework(project: Path) -> None:
    """A Tab press must stay as cheap as `plinth --help`: model names come from the registry's
    database, not from MLflow."""
    probe = f"import sys, runpy\ntry:\n    runpy.run_module('platform_cli', run_name='__main__')\nexcept SystemExit:\n    pass\nprint(' '.join(sorted(m for m in {HEAVY!r} if m in sys.modules)), file=sys.stderr)"
    for line in ("plinth model versions ", "plinth job status ", "plinth flow status --stack "):
        result = subprocess.run([sys.executable, "-c", probe], env={**env(), "_PLINTH_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": line}, capture_output=True, text=True, check=True)
        assert result.stderr.split() == [], line
