"""plinth flow: two-layer workflows (nodes of steps) from one file, run locally or on Argo."""

from __future__ import annotations

import sys
import time
from enum import Enum
from pathlib import Path

import typer

from platform_cli.errors import PlinthError
from platform_cli.output import OutputFormat, OutputOption, StackOption, age, duration, emit

app = typer.Typer(help="Declare, draw, run and follow flows: DAGs of nodes, each a DAG of steps.", no_args_is_help=True, rich_markup_mode=None)

FileOption = typer.Option(..., "--file", "-f", help="flow file (YAML, or XML)")
ParamOption = typer.Option(None, "--param", "-p", help="NAME=VALUE, repeatable: sets a flow parameter")


class GraphFormat(str, Enum):
    text = "text"
    dot = "dot"
    mermaid = "mermaid"


def _params(values: list[str] | None) -> dict[str, str]:
    params = {}
    for item in values or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise PlinthError(f"-p {item!r}: expected NAME=VALUE")
        params[name] = value
    return params


def _plan(file: Path, params: list[str] | None):
    from platform_cli.flow.plan import plan_flow
    from platform_cli.spec.flow import load_flow

    return plan_flow(load_flow(file), _params(params))


def _stack(name: str | None):
    from platform_cli.spec.stack import load_stack

    return load_stack(name)


@app.command()
def graph(file: Path = FileOption, param: list[str] = ParamOption, output: GraphFormat = typer.Option(GraphFormat.text, "--output", "-o", help="text, dot or mermaid")):
    """Show the flow's two-layer graph (checked: cycles, references, parameters)."""
    from platform_cli.flow import graph as draw

    plan = _plan(file, param)
    typer.echo({"text": draw.text_graph, "dot": draw.dot_graph, "mermaid": draw.mermaid_graph}[output.value](plan), nl=False)


@app.command()
def run(
    file: Path = FileOption,
    param: list[str] = ParamOption,
    stack: str = StackOption,
    detach: bool = typer.Option(False, "--detach", "-d", help="start the run and return; follow it with plinth flow status"),
):
    """Run a flow on the local platform, showing each step's progress; exit 1 unless it succeeds."""
    from platform_cli.flow.run import submit_run

    plan = _plan(file, param)
    stack_config = _stack(stack)
    record = submit_run(plan, stack_config)
    typer.echo(f"flow/{record.id} started on stack {stack_config.name} ({len(plan.order)} steps, {stack_config.config.local.flow_slots} slots)")
    if plan.spec.schedule:
        typer.echo(f"(schedule {plan.spec.schedule!r} applies on a cluster, plinth flow submit; this runs the flow once, now)")
    if not detach:
        _follow(stack_config, record.id)


@app.command()
def resume(run_id: str, stack: str = StackOption, detach: bool = typer.Option(False, "--detach", "-d", help="return once the run has restarted")):
    """Continue a failed, cancelled or interrupted run; steps that succeeded are not run again."""
    from platform_cli.flow.run import resume_run

    stack_config = _stack(stack)
    record = resume_run(stack_config, run_id)
    kept = [key for key, step in record.steps.items() if step.status.done]
    typer.echo(f"flow/{record.id} resumed: {len(kept)} of {len(record.steps)} steps already done" + (f" ({', '.join(kept)})" if kept else ""))
    if not detach:
        _follow(stack_config, record.id)


@app.command("ls")
def list_runs(stack: str = StackOption, output: OutputFormat = OutputOption):
    """List flow runs, oldest first."""
    from platform_cli.flow.run import list_runs as runs

    records = runs(_stack(stack))
    emit(
        [r.model_dump(mode="json") for r in records],
        output,
        lambda: (
            ["name", "flow", "status", "steps", "age", "duration"],
            [(r.id, r.flow, r.status, _done(r), age(r.submitted), duration(r.started, r.finished)) for r in records],
        ),
    )


@app.command()
def status(run_id: str, stack: str = StackOption, output: OutputFormat = OutputOption):
    """Show a run and every step; a failed run shows the failing step's log tail."""
    from platform_cli.flow.run import reconciled, run_dir

    record = reconciled(run_dir(_stack(stack), run_id))
    emit(record.model_dump(mode="json"), output, lambda: _step_table(record))
    if output is OutputFormat.table:
        typer.echo(f"\nflow/{record.id} {record.status}" + (f" in {duration(record.started, record.finished)}" if record.finished else ""))
        if record.message:
            typer.echo(record.message)


@app.command()
def logs(
    run_id: str,
    step: str = typer.Argument(None, help="STEP or NODE/STEP; default: every step that started"),
    stack: str = StackOption,
    follow: bool = typer.Option(False, "--follow", "-f", help="keep streaming one step's log until it ends"),
    tail: int = typer.Option(None, "--tail", min=0, help="only the last N lines of each log"),
):
    """Print the logs of a run's steps (job steps: their job's log)."""
    from platform_cli.flow.logs import step_log
    from platform_cli.flow.run import reconciled, run_dir
    from platform_cli.targets import get_target

    stack_config = _stack(stack)
    directory = run_dir(stack_config, run_id)
    record = reconciled(directory)
    keys = [key for key, s in record.steps.items() if s.attempt > 0]
    if step is not None:
        matches = [key for key in record.steps if key == step or key.split("/")[1] == step]
        if len(matches) != 1:
            raise PlinthError(f"run {run_id} has {'no' if not matches else 'more than one'} step {step!r}", f"steps: {', '.join(record.steps)}")
        keys = matches
    elif follow:
        raise PlinthError("--follow needs a step", "name one: plinth flow logs RUN STEP -f")
    target = get_target(stack_config)
    for key in keys:
        if step is None:
            typer.echo(f"==> {key} <==")
        job_id = record.steps[key].job_id
        if job_id:
            for chunk in target.logs(job_id, follow=follow, tail=tail):
                typer.echo(chunk, nl=False)
            continue
        while True:
            lines = step_log(target, directory, key, record.steps[key], tail)
            if not follow or reconciled(directory).steps[key].status.finished:
                typer.echo("\n".join(lines))
                break
            time.sleep(0.5)


@app.command()
def cancel(run_id: str, stack: str = StackOption):
    """Stop a run: its running steps are cancelled, the rest never start."""
    from platform_cli.flow.run import cancel_run

    record = cancel_run(_stack(stack), run_id)
    typer.echo(f"flow/{record.id} {record.status.lower()}")


@app.command()
def render(
    file: Path = FileOption,
    param: list[str] = ParamOption,
    stack: str = StackOption,
    output: OutputFormat = typer.Option(OutputFormat.yaml, "--output", "-o", help="yaml or json"),
):
    """Print the Argo Workflow (CronWorkflow when scheduled) for a cluster stack, validated."""
    from platform_cli.render.argo import render_flow

    objects = render_flow(_plan(file, param), _stack(stack))
    _print_objects(objects, output)


@app.command()
def submit(
    file: Path = FileOption,
    param: list[str] = ParamOption,
    stack: str = StackOption,
    dry_run: bool = typer.Option(False, "--dry-run", help="validate and print what would be applied"),
):
    """Render the flow for a cluster stack and create it on the cluster (Argo Workflows)."""
    from platform_cli.render.argo import render_flow
    from platform_cli.targets import submit_workflow

    stack_config = _stack(stack)
    objects = render_flow(_plan(file, param), stack_config)
    if dry_run:
        _print_objects(objects, OutputFormat.yaml)
        return
    for line in submit_workflow(stack_config, objects):
        typer.echo(line)


def _print_objects(objects: list[dict], output: OutputFormat) -> None:
    import json

    import yaml

    if output is OutputFormat.json:
        typer.echo(json.dumps(objects[0] if len(objects) == 1 else objects, indent=2))
    else:
        typer.echo(yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False, allow_unicode=True), nl=False)


# -- progress ---------------------------------------------------------------------------------


def _done(record) -> str:
    done = sum(1 for s in record.steps.values() if s.status.done)
    return f"{done}/{len(record.steps)}"


def _step_table(record):
    rows = []
    for key, step in record.steps.items():
        node, name = key.split("/")
        what = f"job/{step.job_id}" if step.job_id else " ".join(f"{k}={_short(v)}" for k, v in step.outputs.items() if k in ("version", "auc", "better")) or "-"
        rows.append((node, name, step.status, step.attempt or "-", duration(step.started, step.finished) if step.started else "-", what))
    return ["node", "step", "status", "attempt", "duration", "job / outputs"], rows


def _follow(stack, run_id: str) -> None:
    """Show the run until it ends: a live table on a terminal, one line per change otherwise.
    Ctrl-C stops following, not the run."""
    from platform_cli.flow.run import reconciled, run_dir, wait_runner
    from platform_cli.status import FlowRunStatus, StepStatus

    directory = run_dir(stack, run_id)
    try:
        if sys.stdout.isatty():
            from rich.console import Console
            from rich.live import Live

            with Live(_rich_table(reconciled(directory)), console=Console(), refresh_per_second=4) as live:
                while not (record := reconciled(directory)).status.finished:
                    live.update(_rich_table(record))
                    wait_runner(directory, 0.25)
                live.update(_rich_table(record))
        else:
            # What steps were when following started (a resumed run's done steps) is not news;
            # a step already running is: say which job it runs.
            seen = {key: (step.status, step.attempt) for key, step in reconciled(directory).steps.items() if step.status is not StepStatus.RUNNING}
            while True:
                record = reconciled(directory)
                for key, step in record.steps.items():
                    state = (step.status, step.attempt)
                    last = seen.get(key, (StepStatus.PENDING, 0))
                    if last != state:
                        if step.attempt > last[1] and step.started and step.status is not StepStatus.RUNNING:
                            # A short attempt can start and end between two looks: say it ran.
                            typer.echo(_event_line(key, step.model_copy(update={"status": StepStatus.RUNNING})))
                        typer.echo(_event_line(key, step))
                    seen[key] = state
                if record.status.finished:
                    break
                wait_runner(directory, 0.2)
    except KeyboardInterrupt:
        typer.echo(f"\nstopped following; the run goes on (plinth flow status {run_id})", err=True)
        raise typer.Exit(130) from None
    typer.echo(f"flow/{record.id} {record.status.lower()} in {duration(record.started, record.finished)}")
    if record.status is not FlowRunStatus.SUCCEEDED:
        typer.echo(record.message, err=True)
        raise typer.Exit(1)


def _event_line(key: str, step) -> str:
    from datetime import datetime

    from platform_cli.status import StepStatus

    stamp = datetime.now().strftime("%H:%M:%S")
    detail = ""
    if step.status is StepStatus.RUNNING:
        detail = f"attempt {step.attempt}" + (f"/{step.retries + 1}" if step.retries else "") + (f"  job/{step.job_id}" if step.job_id else "")
    elif step.status is StepStatus.SUCCEEDED:
        shown = {k: v for k, v in step.outputs.items() if k in ("version", "auc", "logloss", "better")}
        detail = f"{duration(step.started, step.finished)}" + ("  " + " ".join(f"{k}={_short(v)}" for k, v in shown.items()) if shown else "")
    elif step.message:
        detail = step.message.splitlines()[0]
    shown_status = "Retrying" if step.status is StepStatus.PENDING and step.message.startswith("attempt ") else step.status
    return f"{stamp}  {key:<28} {shown_status:<10} {detail}".rstrip()


def _short(value: str) -> str:
    """Metrics to four decimals for people; the record keeps every digit."""
    try:
        number = float(value)
    except ValueError:
        return value
    return value if number.is_integer() else f"{number:.4f}"


def _rich_table(record):
    from rich.table import Table

    from platform_cli.status import StepStatus

    headers, rows = _step_table(record)
    table = Table(title=f"flow/{record.id}  {record.status}  {_done(record)} steps  {duration(record.started, record.finished)}", title_justify="left", box=None, header_style="bold", padding=(0, 3, 0, 0))
    for header in headers:
        table.add_column(header.upper(), no_wrap=True)
    colours = {StepStatus.SUCCEEDED: "green", StepStatus.FAILED: "red", StepStatus.RUNNING: "cyan", StepStatus.SKIPPED: "dim", StepStatus.OMITTED: "yellow", StepStatus.CANCELLED: "yellow"}
    for row in rows:
        status = row[2]
        table.add_row(*(str(c) for c in row[:2]), f"[{colours.get(status, '')}]{status}[/]" if colours.get(status) else status, *(str(c) for c in row[3:]))
    return table
