"""plinth data: the sample library's tables and their versions (platform_cli.samples)."""

from __future__ import annotations

from collections.abc import Callable

import typer

from platform_cli.errors import PlinthError
from platform_cli.output import OutputFormat, OutputOption, StackOption, age, emit

app = typer.Typer(help="The sample library: versioned tables of training samples.", no_args_is_help=True, rich_markup_mode=None)


def _stack(stack_name: str | None):
    from platform_cli.spec.stack import load_stack

    return load_stack(stack_name)


def _storage_root(stack_name: str | None) -> str:
    return _stack(stack_name).storage_root


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12] or "-"


def _emit_versions(found: list, output: OutputFormat, lead: tuple[str, str], cells: Callable) -> None:
    """Versions as a table, `lead` the two columns that come before the common ones (`cells`
    gives their values), or as yaml/json."""
    emit(
        [v.model_dump(mode="json") for v in found],
        output,
        lambda: ([*lead, "rows", "files", "digest", "job", "age"],
                 [(*cells(v), v.rows, v.files, _short(v.digest), v.job.get("id", "-"), age(v.created)) for v in found]),
    )


@app.command("ls")
def list_tables(stack: str = StackOption, output: OutputFormat = OutputOption):
    """List sample tables with their newest version."""
    from platform_cli.samples import table_location
    from platform_cli.samples.table import describe, list_tables

    root = _storage_root(stack)
    _emit_versions([describe(table_location(root, name)) for name in list_tables(root)], output, ("name", "version"), lambda v: (v.table, v.version))


@app.command()
def versions(name: str, stack: str = StackOption, output: OutputFormat = OutputOption):
    """List a table's versions, oldest first."""
    from platform_cli.samples import table_location
    from platform_cli.samples.table import versions as table_versions

    _emit_versions(table_versions(table_location(_storage_root(stack), name)), output, ("version", "mode"), lambda v: (v.version, v.mode))


@app.command()
def show(ref: str = typer.Argument(..., help="NAME@VERSION, NAME@latest or NAME"), stack: str = StackOption,
         output: OutputFormat = typer.Option(OutputFormat.yaml, "--output", "-o", help="yaml or json")):
    """Show one version: schema, row count, per-column statistics, digest, the job that wrote it."""
    from platform_cli.errors import shown
    from platform_cli.samples import match_ref, table_location
    from platform_cli.samples.table import describe

    parsed = match_ref(ref if "@" in ref else f"{ref}@latest")
    if parsed is None:
        name = ref.split("@", 1)[0] or "NAME"
        raise PlinthError(f"{shown(ref)} is not NAME@VERSION", f"write {name}@latest or {name}@N with a version number N (plinth data versions {name})")
    found = describe(table_location(_storage_root(stack), parsed.table), parsed.version)
    emit(found.model_dump(mode="json"), OutputFormat.json if output is OutputFormat.json else OutputFormat.yaml, lambda: ([], []))


@app.command()
def register(
    name: str = typer.Argument(..., help="the table's name (created by its first version)"),
    path: str = typer.Option(None, "--path", "-p", help="a directory (or URI) of Parquet files, with any attachments beside them"),
    job: str = typer.Option(None, "--job", help="a succeeded job's ${sample_dir} instead (where no local runner committed it: cluster stacks)"),
    mode: str = typer.Option("append", "--mode", help="append: add to the previous version's rows; overwrite: replace them"),
    partition_by: str = typer.Option(None, "--partition-by", help="a column whose value is each file's directory name (train/, eval/)"),
    stack: str = StackOption,
):
    """Commit existing Parquet files as the table's next version (copied into the table when
    they are outside it), or the files a succeeded job wrote into its ${sample_dir}."""
    import re

    from platform_cli.samples import TABLE_NAME_PATTERN, job_sample_dir, table_location
    from platform_cli.samples.table import commit_version

    if not re.fullmatch(TABLE_NAME_PATTERN, name):
        raise PlinthError(f"NAME: {name!r} is not a sample table name", "use lowercase letters, digits, '-' and '_', starting with a letter")
    if mode not in ("append", "overwrite"):
        raise PlinthError(f"--mode: {mode!r} is not a mode", "use append or overwrite")
    if (path is None) == (job is None):
        raise PlinthError("pass one of --path and --job", "--path DIR for files you have, --job JOB_ID for what a job wrote")
    stack_config = _stack(stack)
    table = table_location(stack_config.storage_root, name)
    writer = {}
    if job is not None:
        from platform_cli.status import JobStatus
        from platform_cli.targets import get_target

        record = get_target(stack_config).status(job)
        if record.status is not JobStatus.SUCCEEDED:
            raise PlinthError(f"--job: job {job} is {record.status.value}; only a succeeded job's rows are committed", f"see plinth job status {job}")
        path, writer = job_sample_dir(table, job), {"id": record.id, "name": record.name, "stack": record.stack}
    version = commit_version(table, path, mode=mode, partition_by=partition_by, job=writer)
    typer.echo(f"samples/{name} version {version.version} registered: {version.rows} rows, {version.files} files, {version.digest}")
