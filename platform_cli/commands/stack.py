"""plinth stack: the environments Plinth knows (stacks/Pulumi.<name>.yaml)."""

from __future__ import annotations

import typer

from platform_cli.output import OutputFormat, OutputOption, emit

app = typer.Typer(help="List and inspect stacks (stacks/Pulumi.<stack>.yaml).", no_args_is_help=True, rich_markup_mode=None)


@app.command("ls")
def list_stacks(output: OutputFormat = OutputOption):
    """List stack files and their targets."""
    from platform_cli.spec.stack import load_stack, stack_names

    stacks = [load_stack(name) for name in stack_names()]
    emit(
        [{"name": s.name, "target": s.config.target, "file": str(s.file)} for s in stacks],
        output,
        lambda: (["name", "target", "storage", "file"], [(s.name, s.config.target, s.storage_root, s.file.relative_to(s.project_root)) for s in stacks]),
    )


@app.command()
def show(name: str = typer.Argument("local", help="stack name"), output: OutputFormat = typer.Option(OutputFormat.yaml, "--output", "-o", help="yaml or json")):
    """Show a stack's validated configuration, defaults filled in and paths resolved."""
    from platform_cli.spec.stack import load_stack

    stack = load_stack(name)
    data = {
        "name": stack.name,
        "file": str(stack.file),
        "config": stack.config.model_dump(mode="json", by_alias=True),
        "resolved": {"home": str(stack.home), "storage": stack.storage_root, "trackingUri": stack.tracking_uri, "artifactRoot": stack.artifact_root},
    }
    emit(data, OutputFormat.json if output is OutputFormat.json else OutputFormat.yaml, lambda: ([], []))
