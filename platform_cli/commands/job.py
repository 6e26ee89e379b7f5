"""plinth job: render, submit, follow and cancel jobs on a stack's target."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from platform_cli.errors import PlinthError
from platform_cli.output import OutputFormat, OutputOption, StackOption, age, duration, emit

app = typer.Typer(help="Render, submit and follow jobs (spark, horovod, tf-ps, python, streaming).", no_args_is_help=True, rich_markup_mode=None)

FileOption = typer.Option(..., "--file", "-f", help="job spec file (YAML)")


def _target(stack_name: str | None):
    from platform_cli.spec.stack import load_stack
    from platform_cli.targets import get_target

    stack = load_stack(stack_name)
    return stack, get_target(stack)


@app.command()
def render(file: Path = FileOption, stack: str = StackOption, output: OutputFormat = typer.Option(OutputFormat.yaml, "--output", "-o", help="yaml or json")):
    """Print what would run, validated, without running it."""
    from platform_cli.render.job import render_submission
    from platform_cli.spec.job import load_job
    from platform_cli.spec.stack import load_stack

    rendered = render_submission(load_job(file), load_stack(stack))
    if output is OutputFormat.json:
        typer.echo(json.dumps(rendered.documents[0] if len(rendered.documents) == 1 else rendered.documents, indent=2))
    else:
        typer.echo(rendered.text, nl=False)


@app.command()
def submit(
    file: Path = FileOption,
    stack: str = StackOption,
    wait: bool = typer.Option(False, "--wait", "-w", help="stream the log and wait for the job to end; exit 1 unless it succeeds"),
    watch: bool = typer.Option(False, "--watch", help="show status changes until the job ends; exit 1 unless it succeeds"),
):
    """Render, validate and start a job (preflight checks refuse it before anything is sent)."""
    from platform_cli.render.job import render_submission
    from platform_cli.spec.job import load_job

    job = load_job(file)
    stack_config, target = _target(stack)
    rendered = render_submission(job, stack_config, job_id=target.new_job_id(job.spec.name))
    record = target.submit(job, rendered)
    typer.echo(f"job/{record.id} submitted to stack {stack_config.name}")
    if wait:
        _follow_to_end(target, record.id)
    elif watch:
        _watch_to_end(target, record.id)


@app.command()
def restart(job_id: str, stack: str = StackOption, wait: bool = typer.Option(False, "--wait", "-w", help="stream the log and wait for the job to end")):
    """Run a finished job again with the same outputs and checkpoints (training resumes)."""
    _, target = _target(stack)
    record = target.restart(job_id)
    typer.echo(f"job/{record.id} restarted (attempt {record.attempt})")
    if wait:
        _follow_to_end(target, record.id, from_end=True)


@app.command("ls")
def list_jobs(stack: str = StackOption, output: OutputFormat = OutputOption):
    """List jobs, oldest first."""
    _, target = _target(stack)
    records = target.list()
    emit(
        [r.model_dump(mode="json") for r in records],
        output,
        lambda: (
            ["name", "kind", "status", "attempt", "age", "duration"],
            [(r.id, r.kind, r.status.value, r.attempt, age(r.submitted), duration(r.started, r.finished)) for r in records],
        ),
    )


@app.command()
def status(job_id: str, stack: str = StackOption, output: OutputFormat = OutputOption):
    """Show one job; a failed job shows the tail of its log."""
    _, target = _target(stack)
    record = target.status(job_id)
    columns = ["name", "kind", "status", "attempt", "exit code", "age", "duration"]
    row = [record.id, record.kind, record.status.value, record.attempt, record.exit_code, age(record.submitted), duration(record.started, record.finished)]
    if record.lag is not None:  # a streaming job: how far behind its source it is
        columns += ["processed", "lag"]
        row += [record.lag.processed, record.lag.shown()]
    emit(record.model_dump(mode="json"), output, lambda: (columns, [tuple(row)]))
    if output is OutputFormat.table and (lines := _sample_lines(record)):
        typer.echo("\n" + "\n".join(lines))
    if output is OutputFormat.table and record.message:
        typer.echo(f"\n{record.message}")


def _sample_lines(record) -> list[str]:
    """The sample table versions the job reads and writes, as far as they are known here."""
    from platform_cli.status import JobStatus

    unknown = "resolved by the job when it started; the version is not known here: this machine cannot read the stack's storage"
    lines = [f"reads:  samples {s.pinned} ({s.digest})" if s.digest else
             f"reads:  samples {s.ref} ({unknown if record.status.finished else 'resolved when the job starts'})" for s in record.samples]
    if (out := record.sample_output) is not None:
        if out.version is not None:
            lines.append(f"writes: samples {out.table}@{out.version} ({out.digest})")
        elif record.status is JobStatus.SUCCEEDED:
            lines.append(f"writes: samples {out.table} (committed by the job; the version is not known here: plinth data versions {out.table} where the storage is readable)")
        elif record.status.finished:
            lines.append(f"writes: samples {out.table} (nothing committed: the job did not succeed)")
        else:
            lines.append(f"writes: samples {out.table} (its next version, committed when the job succeeds)")
    return lines


@app.command()
def logs(
    job_id: str,
    stack: str = StackOption,
    follow: bool = typer.Option(False, "--follow", "-f", help="keep streaming until the job ends"),
    tail: int = typer.Option(None, "--tail", min=0, help="only the last N lines"),
):
    """Print a job's log (stdout and stderr of every attempt)."""
    _, target = _target(stack)
    for chunk in target.logs(job_id, follow=follow, tail=tail):
        typer.echo(chunk, nl=False)


@app.command()
def cancel(job_id: str, stack: str = StackOption):
    """Stop a job and every process it started."""
    _, target = _target(stack)
    record = target.cancel(job_id)
    typer.echo(f"job/{record.id} {record.status.value.lower()}")


def _watch_to_end(target, job_id: str) -> None:
    """One line per change of status or progress until the job ends (Ctrl-C stops watching)."""
    from datetime import datetime

    from platform_cli.status import JobStatus
    from platform_cli.targets.base import watch

    try:
        for record in watch(target, job_id):
            typer.echo(f"{datetime.now():%H:%M:%S}  {record.status.value:<9}  {record.message}".rstrip())
    except KeyboardInterrupt:
        typer.echo(f"\nstopped watching; the job goes on (plinth job status {job_id})", err=True)
        raise typer.Exit(130) from None
    if record.status is not JobStatus.SUCCEEDED:
        raise PlinthError(f"job {job_id} {record.status.value}", f"see plinth job logs {job_id}")
    typer.echo(f"job/{record.id} succeeded in {duration(record.started, record.finished)}")


def _follow_to_end(target, job_id: str, from_end: bool = False) -> None:
    """Stream the log until the job ends (Ctrl-C stops following, not the job)."""
    from platform_cli.status import JobStatus

    try:
        for chunk in target.logs(job_id, follow=True, tail=0 if from_end else None):
            typer.echo(chunk, nl=False)
    except KeyboardInterrupt:
        typer.echo(f"\nstopped following; the job goes on (plinth job logs -f {job_id})", err=True)
        raise typer.Exit(130) from None
    record = target.wait(job_id)
    if record.status is not JobStatus.SUCCEEDED:
        raise PlinthError(f"job {job_id} {record.status.value}" + (f" (exit code {record.exit_code})" if record.exit_code is not None else ""), f"see plinth job logs {job_id}")
    typer.echo(f"job/{record.id} succeeded in {duration(record.started, record.finished)}")
