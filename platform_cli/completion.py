"""Shell completion: the script `plinth completion SHELL` prints, and the values it completes.

The script calls `plinth` back with _PLINTH_COMPLETE set; only then does main() come here, so
completion costs nothing on any other start. Values are completed by what a parameter means,
whatever command it belongs to: every `--stack` and stack name completes stack files, every
JOB_ID the stack's jobs, every RUN_ID its flow runs, and a model command's NAME the registered
models. Each lookup reads directory names or one SQLite query, never a record or a framework;
on a stack whose jobs live on a cluster (kubernetes, yarn) only stack names complete.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

COMPLETE_VAR = "_PLINTH_COMPLETE"
SHELLS = ("bash", "zsh", "fish")


def script(shell: str) -> str:
    from typer.completion import get_completion_script

    return get_completion_script(prog_name="plinth", complete_var=COMPLETE_VAR, shell=shell)


def complete(app: Any) -> None:
    """Answer the shell's completion request (never returns: the completer exits)."""
    import typer.main
    from typer.completion import completion_init

    completion_init()  # Typer's per-shell protocols, which its scripts speak
    command = typer.main.get_command(app)
    _attach(command, group="")
    command.main(prog_name="plinth", complete_var=COMPLETE_VAR)


def _stack(ctx: Any):
    from platform_cli.spec.stack import load_stack

    return load_stack(ctx.params.get("stack") or os.environ.get("PLINTH_STACK"))


def stack_names(ctx: Any) -> list[str]:
    from platform_cli.spec.stack import stack_names as names

    return names()


def _local_runs(ctx: Any, kind: str, record_file: str) -> list[str]:
    from platform_cli.targets import target_name

    stack = _stack(ctx)
    if target_name(stack) != "local":  # a cluster's jobs are not asked for from a Tab key
        return []
    directory = stack.home / kind
    return [entry.name for entry in _entries(directory) if not entry.name.startswith(".") and (entry / record_file).is_file()]


def _entries(directory: Path) -> list[Path]:
    return list(directory.iterdir()) if directory.is_dir() else []


def job_ids(ctx: Any) -> list[str]:
    return _local_runs(ctx, "jobs", "record.json")


def flow_run_ids(ctx: Any) -> list[str]:
    return _local_runs(ctx, "flows", "state.json")


def model_names(ctx: Any) -> list[str]:
    """Registered models, from the registry's SQLite database when the stack's registry is one
    (MLflow's `registered_models` table); a remote registry is not asked from a Tab key."""
    import sqlite3

    uri = _stack(ctx).tracking_uri
    if not uri.startswith("sqlite:///") or not Path(uri.removeprefix("sqlite:///")).is_file():
        return []
    with sqlite3.connect(f"file:{uri.removeprefix('sqlite:///')}?mode=ro", uri=True) as db:
        return [name for (name,) in db.execute("SELECT name FROM registered_models ORDER BY name")]


def quantizations(ctx: Any) -> list[str]:
    from platform_cli.tflite import QUANTIZATIONS

    return list(QUANTIZATIONS)


# (command group, parameter name) -> its values; "*" is any group.
VALUES: dict[tuple[str, str], Callable[[Any], list[str]]] = {
    ("*", "stack"): stack_names,
    ("stack", "name"): stack_names,
    ("*", "job_id"): job_ids,
    ("*", "run_id"): flow_run_ids,
    ("model", "name"): model_names,
    ("model", "quantize"): quantizations,
}


def _attach(command: Any, group: str) -> None:
    for param in command.params:
        values = VALUES.get((group, param.name)) or VALUES.get(("*", param.name))
        if values is not None:
            # What click's Parameter(shell_complete=...) stores; Typer's parameters consult it
            # before their type's own completion.
            param._custom_shell_complete = _completer(values)
    for name, sub in getattr(command, "commands", {}).items():
        _attach(sub, group=name if not group else group)


def _completer(values: Callable[[Any], list[str]]) -> Callable[[Any, Any, str], list[str]]:
    def complete_values(ctx: Any, param: Any, incomplete: str) -> list[str]:
        try:
            found = values(ctx)
        except Exception:  # a completion must never print a traceback into the user's prompt
            return []
        return sorted(value for value in found if value.startswith(incomplete))

    return complete_values
