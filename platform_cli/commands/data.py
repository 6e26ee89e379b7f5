"""plinth data: the sample library's tables and their versions (platform_cli.samples)."""

from __future__ import annotations

import typer

from platform_cli.errors import PlinthError
from platform_cli.output import OutputFormat, OutputOption, StackOption, age, emit

app = typer.Typer(help="The sample library: versioned tables of training samples.", no_args_is_help=True, rich_markup_mode=None)


def _storage_root(stack_name: str | None) -> str:
    from platform_cli.spec.stack import load_stack

    return load_stack(stack_name).storage_root


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12] or "-"


@app.command("ls")
def list_tables(stack: str = StackOption, output: OutputFormat = OutputOption):
    """List sample tables with their newest version."""
    from platform_cli.samples import table_location
    from platform_cli.samples.table import describe, list_tables

    root = _storage_root(stack)
    newest = [describe(table_location(root, name)) for name in list_tables(root)]
    emit(
        [v.model_dump(mode="json") for v in newest],
        output,
        lambda: (["name", "version", "rows", "files", "digest", "job", "age"],
                 [(v.table, v.version, v.rows, v.files, _short(v.digest), v.job.get("id", "-"), age(v.created)) for v in newest]),
    )


@app.command()
def versions(name: str, stack: str = StackOption, output: OutputFormat = OutputOption):
    """List a table's versions, oldest first."""
    from platform_cli.samples import table_location
    from platform_cli.samples.table import versions as table_versions

    found = table_versions(table_location(_storage_root(stack), name))
    emit(
        [v.model_dump(mode="json") for v in found],
        output,
        lambda: (["version", "mode", "rows", "files", "digest", "job", "age"],
                 [(v.version, v.mode, v.rows, v.files, _short(v.digest), v.job.get("id", "-"), age(v.created)) for v in found]),
    )


@app.command()
def show(ref: str = typer.Argument(..., help="NAME@VERSION, NAME@latest or NAME"), stack: str = StackOption,
         output: OutputFormat = typer.Option(OutputFormat.yaml, "--output", "-o", help="yaml or json")):
    """Show one version: schema, row count, per-column statistics, digest, the job that wrote it."""
    from platform_cli.samples import parse_ref, table_location
    from platform_cli.samples.table import describe

    parsed = parse_ref(ref if "@" in ref else f"{ref}@latest", "NAME@VERSION")
    found = describe(table_location(_storage_root(stack), parsed.table), parsed.version)
    emit(found.model_dump(mode="json"), OutputFormat.json if output is OutputFormat.json else OutputFormat.yaml, lambda: ([], []))


@app.command()
def register(
    name: str = typer.Argument(..., help="the table's name (created by its first version)"),
    path: str = typer.Option(..., "--path", "-p", help="a directory (or URI) of Parquet files, with any attachments beside them"),
    mode: str = typer.Option("append", "--mode", help="append: add to the previous version's rows; overwrite: replace them"),
    partition_by: str = typer.Option(None, "--partition-by", help="a column whose value is each file's directory name (train/, eval/)"),
    stack: str = StackOption,
):
    """Commit existing Parquet files as the table's next version (copied into the table when
    they are outside it)."""
    import re

    from platform_cli.samples import TABLE_NAME_PATTERN, table_location
    from platform_cli.samples.table import commit_version

    if not re.fullmatch(TABLE_NAME_PATTERN, name):
        raise PlinthError(f"NAME: {name!r} is not a sample table name", "use lowercase letters, digits, '-' and '_', starting with a letter")
    if mode not in ("append", "overwrite"):
        raise PlinthError(f"--mode: {mode!r} is not a mode", "use append or overwrite")
    version = commit_version(table_location(_storage_root(stack), name), path, mode=mode, partition_by=partition_by)
    typer.echo(f"samples/{name} version {version.version} registered: {version.rows} rows, {version.files} files, {version.digest}")
