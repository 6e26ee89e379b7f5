"""plinth usage: CPU-, memory- and GPU-hours and their cost, per team and per job."""

from __future__ import annotations

import csv
import json
import sys
from datetime import datetime, timezone
from enum import Enum

import typer

from platform_cli.errors import PlinthError
from platform_cli.output import print_table

JOB_COLUMNS = ("job", "team", "stack", "kind", "status", "pool", "hours", "cpu", "memory_gib", "gpu", "cpu_hours", "memory_gib_hours", "gpu_hours", "cost", "currency")


class UsageFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


def usage(
    team: str = typer.Option(None, "--team", "-t", help="only this team's jobs"),
    since: str = typer.Option("7d", "--since", help="period ending now: 30m, 12h, 7d, 2w"),
    stack: list[str] = typer.Option(None, "--stack", "-s", envvar="PLINTH_STACK", help="stack to read, repeatable (team stacks of one cluster together); default: local", show_default=False),
    output: UsageFormat = typer.Option(UsageFormat.table, "--output", "-o", help="table, json, or csv (one row per job)", case_sensitive=False),
):
    """Resource-hours (requests × run time) and their cost at the stacks' prices, per team and per job.

    Local jobs count from their records and specs; cluster jobs from their pods' requests."""
    from platform_cli.spec.stack import load_stack
    from platform_cli.usage import hours_text as _hours
    from platform_cli.usage import money_text as _money
    from platform_cli.usage import parse_since, usage_report

    period = parse_since(since)
    stacks = [load_stack(name) for name in stack] if stack else [load_stack(None)]
    report = usage_report(stacks, datetime.now(timezone.utc) - period, team=team)
    if len(report.unavailable) == len(stacks):
        raise PlinthError(next(iter(report.unavailable.values())))
    for name, why in report.unavailable.items():
        typer.echo(f"warning: stack {name} left out: {why}", err=True)
    if output is UsageFormat.json:
        typer.echo(json.dumps(report.model_dump(mode="json"), indent=2))
    elif output is UsageFormat.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(JOB_COLUMNS)
        for job in report.jobs:
            writer.writerow([_csv_value(getattr(job, c)) for c in JOB_COLUMNS])
    else:
        print_table(
            ["team", "stack", "jobs", "cpu-hours", "memory GiB-hours", "GPU-hours", "GPU quota", "GPU use", "cost"],
            [(t.team, t.stack, t.jobs, _hours(t.cpu_hours), _hours(t.memory_gib_hours), _hours(t.gpu_hours), t.gpu_quota if t.gpu_quota is not None else "-",
              f"{t.gpu_utilisation:.1%}" if t.gpu_utilisation is not None else "-", _money(t.cost, t.currency)) for t in report.teams],
        )
        if report.jobs:
            typer.echo()
            print_table(
                ["job", "team", "kind", "status", "hours", "cpu", "memory", "gpu", "cpu-hours", "GiB-hours", "GPU-hours", "cost"],
                [(j.job, j.team, j.kind, j.status, _hours(j.hours), f"{j.cpu:g}", f"{j.memory_gib:g}Gi", j.gpu, _hours(j.cpu_hours), _hours(j.memory_gib_hours), _hours(j.gpu_hours), _money(j.cost, j.currency)) for j in report.jobs],
            )


def _csv_value(value) -> str:
    if value is None:
        return ""
    return f"{value:.6f}" if isinstance(value, float) else str(value)
