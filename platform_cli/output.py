"""Printing results the way kubectl does: a plain table by default, `-o yaml|json` for machines."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from enum import Enum

import typer


class OutputFormat(str, Enum):
    table = "table"
    yaml = "yaml"
    json = "json"


OutputOption = typer.Option(OutputFormat.table, "--output", "-o", help="table, yaml or json", case_sensitive=False)
StackOption = typer.Option(None, "--stack", "-s", envvar="PLINTH_STACK", help="stack name (stacks/Pulumi.<name>.yaml); default: local", show_default=False)


def emit(data: object, fmt: OutputFormat, table: Callable[[], tuple[Sequence[str], Sequence[Sequence[object]]]]) -> None:
    """Print `data` (pydantic-dumped dicts/lists) as yaml/json, or the table built by `table()`."""
    if fmt is OutputFormat.json:
        typer.echo(json.dumps(data, indent=2, default=str))
    elif fmt is OutputFormat.yaml:
        import yaml  # here, not at the top: `plinth --help` and completion need no YAML

        typer.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True), nl=False)
    else:
        headers, rows = table()
        print_table(headers, rows)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    from rich.console import Console
    from rich.table import Table

    grid = Table(box=None, pad_edge=False, show_edge=False, header_style="bold", padding=(0, 3, 0, 0))
    for header in headers:
        grid.add_column(header.upper(), no_wrap=True, overflow="ignore")
    for row in rows:
        grid.add_row(*("" if cell is None else str(cell) for cell in row))
    # Pipes get full rows (no wrapping at 80 columns), as kubectl does.
    Console(width=None if sys.stdout.isatty() else 100_000, highlight=False).print(grid)


def age(moment: datetime | None) -> str:
    """kubectl-style age: 45s, 12m, 3h, 2d."""
    if moment is None:
        return "-"
    seconds = int((datetime.now(timezone.utc) - moment).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "-"
    seconds = int(((end or datetime.now(timezone.utc)) - start).total_seconds())
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
