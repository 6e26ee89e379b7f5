"""plinth completion: the shell completion script, as kubectl and helm print theirs."""

from __future__ import annotations

from enum import Enum

import typer


class Shell(str, Enum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


def completion(shell: Shell = typer.Argument(..., help="bash, zsh or fish")):
    """Print the completion script for a shell. Load it with: source <(plinth completion bash)
    (zsh: the same; fish: plinth completion fish | source). Completes commands, options, stack
    names, job ids, flow run ids and model names."""
    from platform_cli.completion import script

    typer.echo(script(shell.value))
