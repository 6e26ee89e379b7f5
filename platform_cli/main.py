"""The `plinth` command: wires the command groups, nothing else.

Command modules import only light libraries at the top; TensorFlow, Spark, MLflow, kserve and
Pulumi are imported inside the commands that use them, so `plinth --help` stays fast.
"""

from __future__ import annotations

import os
import sys

import typer
from typer.core import TyperGroup

from platform_cli.commands import flow, job, model, sim, stack
from platform_cli.errors import PlinthError


class PlinthGroup(TyperGroup):
    """Turns PlinthError into one line on stderr and exit code 1 (PLINTH_DEBUG=1: traceback)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PlinthError as exc:
            if os.environ.get("PLINTH_DEBUG"):
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    name="plinth",
    cls=PlinthGroup,
    help="Plinth: an ML platform as code. Render, submit and follow Spark, Horovod and Python jobs; register and serve models.",
    no_args_is_help=True,
    add_completion=False,
    # Plain click help, as kubectl prints it: rich's help renderer alone costs ~0.35 s of
    # import on every `--help`.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(stack.app, name="stack")
app.add_typer(job.app, name="job")
app.add_typer(model.app, name="model")
app.add_typer(flow.app, name="flow")
app.add_typer(sim.app, name="sim")


def main() -> None:
    sys.exit(app())
