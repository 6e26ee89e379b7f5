"""plinth sim: a simulated cluster on this machine (a real control plane, fake GPU nodes) to run
the platform's stacks and jobs against without a cloud."""

from __future__ import annotations

import typer

from platform_cli.output import OutputFormat, OutputOption, age, emit

app = typer.Typer(help="Start, inspect and stop a simulated cluster (real control plane, KWOK nodes).", no_args_is_help=True, rich_markup_mode=None)


@app.command()
def up(
    platform: str = typer.Option("platform-sim", "--platform", "-p", help="platform stack whose GPU pools become fake nodes"),
    nodes: int = typer.Option(None, "--nodes", "-n", help="nodes per GPU pool (default: each pool's maxNodes)", show_default=False),
    cpu_nodes: int = typer.Option(2, "--cpu-nodes", help="untainted CPU nodes"),
    job_seconds: int = typer.Option(None, "--job-seconds", help="how long a Job's pod runs before it succeeds (default 45-60 s)", show_default=False),
):
    """Start etcd, the API server, the controllers, the scheduler and KWOK on loopback, create the
    platform's nodes, and write the kubeconfig context plinth-sim."""
    from platform_cli.sim import cluster

    state = cluster.up(platform, nodes, cpu_nodes, on_progress=lambda line: typer.echo(f"  {line}", err=True), job_seconds=job_seconds)
    typer.echo(f"sim/{state.context} up: {state.nodes} nodes ({state.gpus} nvidia.com/gpu) from stack {state.platform}, API server {state.server}")
    typer.echo(f"kubeconfig context {state.context} in {_home(state.kubeconfig)}")


@app.command()
def status(output: OutputFormat = OutputOption):
    """The sim's processes and nodes; exit 1 if it is not running or not healthy."""
    from datetime import datetime, timezone

    from platform_cli.sim import cluster

    current = cluster.status()
    if current is None:
        typer.echo("no simulated cluster (plinth sim up starts one)", err=True)
        raise typer.Exit(1)
    state = current.state
    data = {
        "context": state.context,
        "server": state.server,
        "platform": state.platform,
        "version": current.version,
        "nodes": state.nodes,
        "readyNodes": current.ready_nodes,
        "gpus": state.gpus,
        "processes": [{"name": p.name, "pid": p.pid, "running": p.running, "log": p.log} for p in current.processes],
    }
    started = age(datetime.fromtimestamp(state.started, timezone.utc))

    def table():
        rows = [[p.name, p.pid, "Running" if p.running else "Exited", started, _home(p.log)] for p in current.processes]
        return ["component", "pid", "status", "age", "log"], rows

    emit(data, output, table)
    if output is OutputFormat.table:
        nodes = "API server not answering" if current.ready_nodes is None else f"{current.ready_nodes}/{state.nodes} nodes Ready"
        typer.echo(f"\nsim/{state.context} ({current.version or 'unknown version'}) at {state.server}: {nodes}, {state.gpus} nvidia.com/gpu, platform {state.platform}")
    if not current.healthy:
        raise typer.Exit(1)


@app.command()
def down():
    """Stop every process of the sim and remove its data and kubeconfig context."""
    from platform_cli.sim import cluster

    state = cluster.down()
    if state is None:
        typer.echo("no simulated cluster to stop")
        return
    typer.echo(f"sim/{state.context} down: {len(state.processes)} processes stopped, context removed from {_home(state.kubeconfig)}")


def _home(path: str) -> str:
    """A path under the home folder as ~/..., as a shell user writes it."""
    from pathlib import Path

    home = Path.home()
    return f"~/{Path(path).relative_to(home)}" if Path(path).is_relative_to(home) else path
