"""plinth model: the model library (registry) and model servers on the local platform."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from platform_cli.errors import PlinthError
from platform_cli.output import OutputFormat, OutputOption, StackOption, age, emit

app = typer.Typer(help="Register, serve and query model versions.", no_args_is_help=True, rich_markup_mode=None)


def _registry(stack):
    from platform_cli.registry import ModelRegistry

    return ModelRegistry(stack.tracking_uri, stack.artifact_root)


def _stack(name: str | None):
    from platform_cli.spec.stack import load_stack

    return load_stack(name)


@app.command()
def register(
    name: str = typer.Argument(..., help="model name, e.g. ctr"),
    job: str = typer.Option(..., "--job", "-j", help="training job id, or job name for its newest successful run"),
    stack: str = StackOption,
    output: OutputFormat = OutputOption,
):
    """Register a training job's exported model as the next version, with its lineage and metrics."""
    from platform_cli.lineage import find_training_job, job_lineage, job_outputs
    from platform_cli.targets import get_target

    stack_config = _stack(stack)
    record = find_training_job(get_target(stack_config).list(), job)
    model_dir, metrics = job_outputs(record)
    version = _registry(stack_config).register(name, model_dir, metrics, job_lineage(record, stack_config.project_root))
    if output is OutputFormat.table:
        shown = " ".join(f"{k}={v:.4f}" for k, v in sorted(version.metrics.items()) if k in ("auc", "logloss"))
        typer.echo(f"model/{version.name} version {version.version} registered from job/{record.id} {shown}".rstrip())
    else:
        emit(version.model_dump(mode="json"), output, lambda: ([], []))


@app.command("ls")
def list_models(stack: str = StackOption, output: OutputFormat = OutputOption):
    """List registered models."""
    models = _registry(_stack(stack)).list_models()
    emit(
        [m.model_dump(mode="json") for m in models],
        output,
        lambda: (
            ["name", "latest", "aliases", "updated"],
            [(m.name, m.latest_version, ",".join(f"{a}={v}" for a, v in sorted(m.aliases.items())) or "-", age(m.updated)) for m in models],
        ),
    )


@app.command()
def versions(name: str, stack: str = StackOption, output: OutputFormat = OutputOption):
    """List a model's versions with their metrics and training job."""
    found = _registry(_stack(stack)).versions(name)
    emit(
        [v.model_dump(mode="json") for v in found],
        output,
        lambda: (
            ["version", "auc", "logloss", "job", "aliases", "age"],
            [
                (v.version, _metric(v.metrics, "auc"), _metric(v.metrics, "logloss"), v.lineage.get("job_id", "-"), ",".join(v.aliases) or "-", age(v.created))
                for v in found
            ],
        ),
    )


@app.command()
def show(name: str, version: int = typer.Argument(None, help="default: latest"), stack: str = StackOption, output: OutputFormat = typer.Option(OutputFormat.yaml, "--output", "-o", help="yaml or json")):
    """Show one version: metrics, lineage, aliases, source."""
    found = _registry(_stack(stack)).get(name, version)
    emit(found.model_dump(mode="json"), OutputFormat.json if output is OutputFormat.json else OutputFormat.yaml, lambda: ([], []))


@app.command()
def evaluate(
    name: str = typer.Argument(..., help="model name, e.g. ctr"),
    version: int = typer.Argument(None, help="default: latest"),
    data: str = typer.Option(..., "--data", "-d", help="labelled raw rows (Parquet file or directory)"),
    segment: list[str] = typer.Option(None, "--segment", help="a field to break the metrics down by; repeatable"),
    report_dir: Path = typer.Option(None, "--report-dir", help="default: <local.home>/reports/NAME/vVERSION"),
    stack: str = StackOption,
    output: OutputFormat = OutputOption,
):
    """Evaluate a version (AUC, log loss, calibration, per segment) against production; keep the
    metrics with the version and write an HTML report with ROC and calibration curves."""
    from rich.console import Console

    from platform_cli.evaluate import evaluate_version

    with Console(stderr=True).status(f"evaluating {name} v{version or 'latest'} ..."):
        result = evaluate_version(_stack(stack), name, version, data, segment or [], report_dir)
    if output is not OutputFormat.table:
        emit(result, output, lambda: ([], []))
        return
    production = f"v{result['production_version']}" if result["production_version"] is not None else "none"
    emit(
        result,
        output,
        lambda: (
            ["version", "rows", "auc", "logloss", "calibration", "production", "production auc", "better"],
            [(result["version"], result["rows"], _number(result["auc"]), _number(result["logloss"]), _number(result["calibration_ratio"], 3), production, _number(result["production_auc"]), str(result["better"]).lower())],
        ),
    )
    typer.echo(f"\n{result['reason']}\nreport: {result['report']}")


@app.command()
def serve(
    name: str,
    version: int = typer.Option(None, "--version", "-v", help="default: latest"),
    port: int = typer.Option(None, "--port", "-p", help="default: the stack's serving port, or the next one free of Plinth servers"),
    replace: bool = typer.Option(False, "--replace", help="stop this model's running server first"),
    stack: str = StackOption,
):
    """Start KServe's model server for a version on this machine and wait until it is ready."""
    from rich.console import Console

    from platform_cli.serving import local as serving

    stack_config = _stack(stack)
    registry = _registry(stack_config)
    found = registry.get(name, version)
    model_dir = registry.model_dir(name, found.version)
    with Console(stderr=True).status(f"starting model server for {name} v{found.version} ..."):
        record = serving.serve(stack_config, name, found.version, model_dir, port=port, replace=replace)
    typer.echo(f"model/{name} version {record.version} serving at {record.url}/v1/models/{name}:predict")


@app.command()
def predict(
    name: str,
    data: str = typer.Option(..., "--data", "-d", help="request JSON, or @file"),
    stack: str = StackOption,
):
    """Send a KServe v1 request ({"instances": [...]}) to a served model; print the response."""
    from platform_cli.serving import local as serving

    payload = _read_payload(data)
    record = serving.find(serving.state_dir(_stack(stack)), name)
    typer.echo(json.dumps(serving.predict(record, payload)))


@app.command()
def stop(name: str, stack: str = StackOption):
    """Stop a model server."""
    from platform_cli.serving import local as serving

    serving.stop(name, serving.state_dir(_stack(stack)))
    typer.echo(f"model/{name} server stopped")


@app.command()
def servers(stack: str = StackOption, output: OutputFormat = OutputOption):
    """List model servers on this machine."""
    from platform_cli.serving import local as serving

    records = serving.list_servers(serving.state_dir(_stack(stack)))
    emit(
        [r.model_dump(mode="json") for r in records],
        output,
        lambda: (["model", "version", "url", "status", "age"], [(r.name, r.version, r.url, r.status, age(r.started)) for r in records]),
    )


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _metric(metrics: dict[str, float], key: str) -> str:
    return f"{metrics[key]:.4f}" if key in metrics else "-"


def _read_payload(data: str) -> dict:
    text = data
    if data.startswith("@"):
        path = Path(data[1:])
        if not path.is_file():
            raise PlinthError(f"--data: file {str(path)!r} not found")
        text = path.read_text()
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlinthError(f"--data: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(payload, dict):
        raise PlinthError('--data: expected a JSON object like {"instances": [...]}')
    return payload
