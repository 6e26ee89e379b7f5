"""plinth stack: the environments Plinth knows (stacks/Pulumi.<name>.yaml), what they create,
and deploying them with Pulumi."""

from __future__ import annotations

import json

import typer

from platform_cli.output import OutputFormat, OutputOption, age, emit, print_table

app = typer.Typer(help="List, inspect, render and deploy stacks (stacks/Pulumi.<stack>.yaml).", no_args_is_help=True, rich_markup_mode=None)

NameArgument = typer.Argument(..., help="stack name (stacks/Pulumi.<name>.yaml)", show_default=False)


def _deployments(root: str):
    """What the Pulumi backend records, or a one-line note saying why it is not shown."""
    from platform_cli.errors import PlinthError
    from platform_cli.targets.pulumi_engine import PulumiEngine

    try:
        return PulumiEngine().deployments(root), None
    except PlinthError as exc:
        return None, f"deployment state not shown: {exc}"


@app.command("ls")
def list_stacks(output: OutputFormat = OutputOption):
    """List stack files: role, target, storage, and (with the pulumi CLI) their deployments."""
    from platform_cli.spec.stack import load_stack, project_root, stack_names
    from platform_cli.targets import target_name

    stacks = [load_stack(name) for name in stack_names()]
    deployed, note = _deployments(str(project_root()))
    headers = ["name", "role", "target", "storage", "file"] + (["deployed", "resources"] if deployed is not None else [])

    def row(s):
        storage = s.config.platform.storage.uri if s.role == "platform" else s.shown(s.storage_root)
        cells = [s.name, s.role, target_name(s), storage, s.shown(s.file)]
        if deployed is not None:
            d = deployed.get(s.name)
            cells += [age(d.last_update) if d and d.last_update else "-", d.resource_count if d and d.resource_count is not None else "-"]
        return cells

    emit(
        [dict(zip(headers, map(str, row(s)), strict=True)) for s in stacks],
        output,
        lambda: (headers, [row(s) for s in stacks]),
    )
    if note:
        typer.echo(f"note: {note}", err=True)


@app.command()
def show(name: str = typer.Argument("local", help="stack name"), output: OutputFormat = typer.Option(OutputFormat.yaml, "--output", "-o", help="yaml or json")):
    """Show a stack's validated configuration, defaults filled in and paths resolved, and (with
    the pulumi CLI) its deployed outputs."""
    from platform_cli.errors import PlinthError
    from platform_cli.spec.stack import load_stack
    from platform_cli.targets.pulumi_engine import PulumiEngine

    stack = load_stack(name)
    data = {
        "name": stack.name,
        "role": stack.role,
        "file": str(stack.file),
        "config": stack.config.model_dump(mode="json", by_alias=True),
        "resolved": {
            "home": str(stack.home),
            "storage": stack.config.platform.storage.uri if stack.role == "platform" else stack.storage_root,
            "trackingUri": stack.tracking_uri,
            "artifactRoot": stack.artifact_root,
        },
    }
    note = None
    if stack.role != "local":
        try:
            deployed = PulumiEngine().deployment(name)
            data["deployed"] = None if deployed is None else {"lastUpdate": str(deployed.last_update), "resources": deployed.resource_count, "outputs": deployed.outputs}
        except PlinthError as exc:
            note = f"deployment state not shown: {exc}"
    emit(data, OutputFormat.json if output is OutputFormat.json else OutputFormat.yaml, lambda: ([], []))
    if note:
        typer.echo(f"note: {note}", err=True)


@app.command()
def render(name: str = NameArgument, output: OutputFormat = typer.Option(OutputFormat.yaml, "--output", "-o", help="yaml or json")):
    """Print the Kubernetes objects `pulumi up` would create, validated, without a cluster.

    The Pulumi program runs in-process under Pulumi's mocks. Helm releases are listed with their
    chart, version and values (what the chart expands to needs Helm and a cluster)."""
    from platform_cli.render.infra import render_stack, rendering_json, rendering_yaml, validate_rendering

    rendering = render_stack(name)
    unvalidated = validate_rendering(rendering)
    typer.echo(rendering_json(rendering) if output is OutputFormat.json else rendering_yaml(rendering), nl=output is OutputFormat.json)
    for what, reason in unvalidated:
        typer.echo(f"note: {what} not schema-validated: {reason}", err=True)
    stack = rendering.stack_config
    for key in sorted(set(stack.needed_secret_keys) - set(stack.secret_keys)):
        typer.echo(f"note: secret plinth:{key} is not set (rendered as (secret)); `up` needs it: pulumi config set --secret plinth:{key} VALUE -s {name}", err=True)


@app.command()
def check(name: str = NameArgument, output: OutputFormat = OutputOption):
    """Read the values a platform stack gives each Helm chart against what that chart version's
    templates read (offline, from records in platform_cli/charts/data/); exit 1 if an engine
    would ignore a key."""
    from platform_cli.charts import check_releases, release_sources
    from platform_cli.errors import PlinthError
    from platform_cli.render.infra import render_stack
    from platform_cli.spec.stack import load_stack

    stack = load_stack(name)
    if stack.role != "platform":
        hint = f"its engines are platform stack {stack.config.team.platform}'s: plinth stack check {stack.config.team.platform}" if stack.role == "team" else "pass a platform stack, e.g. platform-prod"
        raise PlinthError(f"stack {name} is a {stack.role} stack; only a platform stack installs engines", hint)
    releases = render_stack(stack).releases()
    checks, sources = check_releases(releases), release_sources(releases)
    ignored = [c for c in checks if c.status == "ignored"]
    unverified = [c for c in checks if c.status == "unverified"]
    data = {"stack": name, "ignored": len(ignored), "unverified": len(unverified), "releases": sources, "keys": [c.as_dict() for c in checks]}

    def table():
        return ["release", "chart", "version", "key", "status", "note"], [[c.release, c.chart, c.version, c.key, c.status, c.note] for c in checks]

    emit(data, output, table)
    if output is OutputFormat.table:
        typer.echo("")
        print_table(["release", "chart", "version", "released", "values", "recorded from"],
                    [[r["release"], r["chart"], r["version"], (r["released"] or "-")[:10], r["values"], r["source"] or "-"] for r in sources])
        typer.echo(f"\nstack/{name}: {len(checks) - len(ignored) - len(unverified)} keys read, {len(ignored)} ignored, "
                   f"{len(unverified)} releases unverified (no record of their chart version)")
    if ignored:
        raise typer.Exit(1)


def _summary(changes: dict[str, int]) -> str:
    done = [f"{count} {op}" for op, count in sorted(changes.items()) if count]
    return ", ".join(done) or "no changes"


@app.command()
def preview(name: str = NameArgument):
    """What `up` would change (pulumi preview through the Automation API)."""
    from platform_cli.targets.pulumi_engine import PulumiEngine

    changes = PulumiEngine(on_output=typer.echo).preview(name)
    typer.echo(f"stack/{name} preview: {_summary(changes)}")


@app.command()
def up(name: str = NameArgument):
    """Create or update the stack's resources (pulumi up through the Automation API)."""
    from platform_cli.targets.pulumi_engine import PulumiEngine

    changes, outputs = PulumiEngine(on_output=typer.echo).up(name)
    typer.echo(f"stack/{name} up: {_summary(changes)}")
    for key, value in sorted(outputs.items()):
        if key != "config":
            typer.echo(f"  {key}: {json.dumps(value)}")


@app.command()
def destroy(name: str = NameArgument, yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation")):
    """Delete every resource of the stack (pulumi destroy through the Automation API)."""
    from platform_cli.errors import PlinthError
    from platform_cli.targets.pulumi_engine import PulumiEngine, checked_stack, require_pulumi_cli

    checked_stack(name)
    require_pulumi_cli()
    if not yes and not typer.confirm(f"destroy every resource of stack {name}?"):
        raise PlinthError(f"stack/{name} not destroyed", "pass --yes to skip the question")
    changes = PulumiEngine(on_output=typer.echo).destroy(name)
    typer.echo(f"stack/{name} destroyed: {_summary(changes)}")
