"""The `plinth` command: wires the command groups, nothing else.

Command modules import only light libraries at the top; TensorFlow, Spark, MLflow, kserve and
Pulumi are imported inside the commands that use them, so `plinth --help` stays fast.
"""

from __future__ import annotations

import gc
import os

import typer
from typer.core import TyperGroup

from platform_cli.commands import console, data, flow, job, model, sim, stack, usage
from platform_cli.commands.completion import completion
from platform_cli.commands.version import show_version, version
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
app.add_typer(data.app, name="data")
app.add_typer(flow.app, name="flow")
app.add_typer(sim.app, name="sim")
app.command()(version)
app.command()(completion)
app.command("usage")(usage.usage)
app.command("console")(console.console)


@app.callback()
def root(_version: bool = typer.Option(False, "--version", is_eager=True, callback=show_version, help="show the version and exit")) -> None:
    pass


def main() -> None:
    if os.environ.get("_PLINTH_COMPLETE"):  # the completion script asking for values
        from platform_cli.completion import complete

        complete(app)
    try:
        app()
    finally:
        # Python's exit walks every object the command made looking for garbage cycles
        # (pydantic's and typer's models alone take ~0.2 s of it on this machine). Nothing is
        # needed any more: freezing them skips the walk; atexit handlers and threads still run.
        gc.freeze()
