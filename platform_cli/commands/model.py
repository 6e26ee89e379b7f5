"""plinth model: the model library (registry) and model servers on the local platform."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import typer

from platform_cli.errors import PlinthError
from platform_cli.output import OutputFormat, OutputOption, StackOption, age, emit

app = typer.Typer(help="Register, serve and query model versions.", no_args_is_help=True, rich_markup_mode=None)
params_app = typer.Typer(help="The parameter service: a version's embedding tables in a key-value store.", no_args_is_help=True,
                         rich_markup_mode=None)
app.add_typer(params_app, name="params")

ParametersOption = typer.Option(
    None, "--parameters",
    help="serve the version's dense part, reading embedding rows from this parameter store: sqlite, sqlite:///PATH or "
         "redis://HOST:PORT/DB (see plinth model params export); default: the whole model")


def _registry(stack):
    from platform_cli.registry import open_registry

    return open_registry(stack)


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
    from platform_cli.registry.lineage import find_training_job, register_job_model
    from platform_cli.targets import get_target

    stack_config = _stack(stack)
    record = find_training_job(get_target(stack_config).list(), job)
    version = register_job_model(_registry(stack_config), name, record, stack_config.project_root)
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
    """List a model's versions with their metrics, training job and the sample table version it read."""
    found = _registry(_stack(stack)).versions(name)
    emit(
        [v.model_dump(mode="json") for v in found],
        output,
        lambda: (
            ["version", "auc", "logloss", "job", "samples", "aliases", "age"],
            [
                (v.version, _metric(v.metrics, "auc"), _metric(v.metrics, "logloss"), v.lineage.get("job_id", "-"), v.lineage.get("samples") or "-",
                 ",".join(v.aliases) or "-", age(v.created))
                for v in found
            ],
        ),
    )


@app.command()
def show(name: str, version: int = typer.Argument(None, help="default: latest"), stack: str = StackOption, output: OutputFormat = typer.Option(OutputFormat.yaml, "--output", "-o", help="yaml or json")):
    """Show one version: metrics, lineage, aliases, source, and how the stack serves it."""
    stack_config = _stack(stack)
    found = _registry(stack_config).get(name, version)
    serving = stack_config.config.serving
    shown = found.model_dump(mode="json") | {"serving": {"batching": serving.batching.model_dump(mode="json", by_alias=True), "workers": serving.workers}}
    emit(shown, OutputFormat.json if output is OutputFormat.json else OutputFormat.yaml, lambda: ([], []))


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

    stack_config = _stack(stack)
    with Console(stderr=True).status(f"evaluating {name} v{version or 'latest'} ..."):
        result = evaluate_version(stack_config, name, version, data, segment or [], report_dir)
    if output is not OutputFormat.table:
        emit(result, output, lambda: ([], []))
        return
    production = f"v{result['production_version']}" if result["production_version"] is not None else "none"
    emit(
        result,
        output,
        lambda: (
            ["version", "rows", "auc", "logloss", "calibration", "production", "production auc", "better"],
            [(result["version"], result["rows"], _number(result["auc"], 4), _number(result["logloss"], 4), _number(result["calibration_ratio"], 3), production, _number(result["production_auc"], 4), str(result["better"]).lower())],
        ),
    )
    typer.echo(f"\n{result['reason']}\nreport: {stack_config.shown(result['report'])}")


@app.command()
def export(
    name: str = typer.Argument(..., help="model name, e.g. ctr"),
    version: int = typer.Argument(..., help="registered version"),
    fmt: str = typer.Option("tflite", "--format", "-f", help="tflite (built-in ops only)"),
    quantize: str = typer.Option("none", "--quantize", "-q", help="none (float32), float16 or dynamic (int8 weights)"),
    export_dir: Path = typer.Option(None, "--export-dir", help="default: <local.home>/exports/NAME/vVERSION/FORMAT-QUANTIZE"),
    stack: str = StackOption,
    output: OutputFormat = OutputOption,
):
    """Export a version for devices: a TFLite model, its feature spec, golden hashing vectors and a
    manifest, kept with the version in the model library (plinth model show lists its exports)."""
    from rich.console import Console

    from platform_cli.edge.export import check_options, export_version

    check_options(fmt, quantize)  # before the stack and the model library are opened
    stack_config = _stack(stack)
    with Console(stderr=True).status(f"exporting {name} v{version} ...") as status:
        result = export_version(stack_config, name, version, fmt, quantize, export_dir, progress=lambda message: status.update(f"{message} ..."))
    emit(
        result,
        output,
        lambda: (
            ["model", "version", "export", "tflite", "savedmodel", "ratio", "max |Δp|", "golden cases", "change"],
            [(f"{result['model']}", result["version"], result["export"], _size(result["bytes"]), _size(result["savedmodel_bytes"]),
              f"{result['ratio']:.3f}", f"{result['max_abs_diff']:.2e}", result["golden_cases"], result["change"])],
        ),
    )
    if output is OutputFormat.table:
        typer.echo(f"\nfiles: {result['directory']}\nregistered with {name} v{result['version']} as artifacts {result['artifacts']} (plinth model show {name} {result['version']})")


@app.command()
def serve(
    name: str,
    version: int = typer.Option(None, "--version", "-v", help="default: latest"),
    port: int = typer.Option(None, "--port", "-p", help="default: the stack's serving port, or the next one free of Plinth servers"),
    replace: bool = typer.Option(False, "--replace", help="stop this model's running server first"),
    parameters: str = ParametersOption,
    stack: str = StackOption,
):
    """Start the model server (KServe's v1 protocol) for a version on this machine and wait until it is ready."""
    from rich.console import Console

    from platform_cli.serving import local as serving

    _check_parameters(parameters)
    stack_config = _stack(stack)
    registry = _registry(stack_config)
    found = registry.get(name, version)
    if parameters is None:
        model_dir, url = registry.model_dir(name, found.version), None
    else:
        from platform_cli.paramservice.export import serving_source

        model_dir, url = serving_source(registry, stack_config, name, found.version, parameters)
    with Console(stderr=True).status(f"starting model server for {name} v{found.version} ..."):
        record = serving.serve(stack_config, name, found.version, model_dir, port=port, replace=replace, parameters=url)
    rows = f" (embedding rows from {_shown_store(stack_config, url)})" if url else ""
    typer.echo(f"model/{name} version {record.version} serving at {record.url}/v1/models/{name}:predict{rows}")


@app.command()
def predict(
    name: str,
    data: str = typer.Option(..., "--data", "-d", help="request JSON, or @file"),
    stack: str = StackOption,
):
    """Send a KServe v1 request ({"instances": [...]}) to a served model; print the response.

    Goes through the model's traffic-split router when it has one."""
    from platform_cli.serving import local as serving
    from platform_cli.serving import release

    payload = _read_payload(data)
    stack_config = _stack(stack)
    record = release.find_router(stack_config, name) or serving.find(serving.state_dir(stack_config), name)
    typer.echo(json.dumps(serving.predict(record, payload)))


@app.command()
def stop(name: str, stack: str = StackOption):
    """Stop a model's server, or its router and every version server of its traffic split."""
    from platform_cli.serving import local as serving
    from platform_cli.serving import release

    stack_config = _stack(stack)
    stopped = release.stop(stack_config, name)
    if stopped:
        typer.echo(f"model/{name} stopped: {', '.join(stopped)}")
        return
    serving.stop(name, serving.state_dir(stack_config))
    typer.echo(f"model/{name} server stopped")


@app.command()
def start(name: str, stack: str = StackOption, output: OutputFormat = OutputOption):
    """Bring back a stopped model's last traffic split: production and canary as they were."""
    from rich.console import Console

    from platform_cli.serving import release

    started = datetime.now(timezone.utc)
    stack_config = _stack(stack)
    with Console(stderr=True).status(f"starting {name} ..."):
        after = release.start(stack_config, _registry(stack_config), name)
    _report_change(stack_config, after, output, started)


@app.command()
def servers(stack: str = StackOption, output: OutputFormat = OutputOption):
    """List model servers and traffic-split routers on this machine."""
    from platform_cli.serving import local as serving
    from platform_cli.serving import release

    stack_config = _stack(stack)
    records = serving.list_servers(serving.state_dir(stack_config)) + serving.list_servers(release.routers_dir(stack_config))
    emit(
        [r.model_dump(mode="json") for r in records],
        output,
        lambda: (
            ["model", "version", "url", "status", "age"],
            [(r.name, "router" if r.version is None else r.version, r.url, r.status, age(r.started)) for r in records],
        ),
    )


# -- gray release ---------------------------------------------------------------------------


@app.command()
def promote(
    name: str,
    version: int = typer.Argument(..., help="registered version to promote"),
    canary: int = typer.Option(None, "--canary", help="percent of traffic for the new version; default: the stack's canaryMax"),
    parameters: str = ParametersOption,
    stack: str = StackOption,
    output: OutputFormat = OutputOption,
):
    """Start serving a version as the canary next to production (the first version: production).

    Exit 0 once the canary takes its share; otherwise one line saying why, and traffic as it was.
    -o json|yaml: the version promoted, its stage, and the model's traffic split."""
    from rich.console import Console

    from platform_cli.serving import release

    _check_parameters(parameters)
    started = datetime.now(timezone.utc)
    stack_config = _stack(stack)
    with Console(stderr=True).status(f"promoting {name} v{version} ..."):
        after = release.promote(stack_config, _registry(stack_config), name, version, canary, parameters)
    _report_change(stack_config, after, output, started, version)


@app.command()
def rollout(
    name: str,
    weight: int = typer.Option(None, "--weight", "-w", help="percent of traffic for the canary"),
    full: bool = typer.Option(False, "--full", help="make the canary production with all traffic"),
    stack: str = StackOption,
    output: OutputFormat = OutputOption,
):
    """Move the canary's share of traffic, or (--full) make it production."""
    from platform_cli.serving import release

    if (weight is None) == (not full):
        raise PlinthError("pass either --weight PERCENT or --full")
    started = datetime.now(timezone.utc)
    stack_config = _stack(stack)
    after = release.rollout(stack_config, _registry(stack_config), name, None if full else weight)
    _report_change(stack_config, after, output, started)


@app.command()
def approve(
    name: str,
    version: int = typer.Argument(None, help="the canary's version (default: the current canary)"),
    stack: str = StackOption,
    output: OutputFormat = OutputOption,
):
    """Approve the canary to take more than the stack's canaryMax share (plinth:serving.grayRelease)."""
    import getpass

    from platform_cli.serving import release

    started = datetime.now(timezone.utc)
    stack_config = _stack(stack)
    after = release.approve(stack_config, _registry(stack_config), name, version, by=getpass.getuser())
    _report_change(stack_config, after, output, started)


@app.command()
def rollback(name: str, stack: str = StackOption, output: OutputFormat = OutputOption):
    """All traffic back to production (dropping the canary), or to the previous production version."""
    from platform_cli.serving import release

    started = datetime.now(timezone.utc)
    stack_config = _stack(stack)
    after = release.rollback(stack_config, _registry(stack_config), name)
    _report_change(stack_config, after, output, started)


@app.command()
def compare(name: str, stack: str = StackOption, output: OutputFormat = OutputOption):
    """Live versions side by side: weight, requests, error rate, latency p50/p99, mean prediction."""
    from platform_cli.serving import release

    stack_config = _stack(stack)
    data = release.compare(stack_config, _registry(stack_config), name)
    rows = data["versions"]
    emit(
        data,
        output,
        lambda: (
            ["version", "stage", "weight", "requests", "errors", "error rate", "p50 ms", "p99 ms", "mean prediction"],
            [
                (r["version"], r["stage"], f"{r['weight']}%", r["requests"], r["errors"], f"{r['error_rate']:.4f}",
                 _number(r["p50_ms"], 2), _number(r["p99_ms"], 2), _number(r["mean_prediction"], 4))
                for r in rows
            ],
        ),
    )
    if output is OutputFormat.table and data["rolled_back"]:
        typer.echo(f"auto-rollback: {data['rolled_back']}")


@app.command()
def history(name: str, stack: str = StackOption, output: OutputFormat = OutputOption):
    """Gray-release events of a model: promotions, rollouts, approvals, rollbacks."""
    from platform_cli.serving import release

    stack_config = _stack(stack)
    saved = release.current(stack_config, _registry(stack_config), name)
    emit(
        [e.model_dump(mode="json") for e in saved.history],
        output,
        lambda: (
            ["age", "action", "version", "weights", "detail"],
            [(age(e.at), e.action, e.version, _weights(e.weights), e.detail) for e in saved.history],
        ),
    )


@app.command()
def render(
    name: str,
    canary_weight: int = typer.Option(None, "--canary-weight", help="percent for the canary; default: the stack's canaryMax"),
    stack: str = StackOption,
    output: OutputFormat = typer.Option(OutputFormat.yaml, "--output", "-o", help="yaml or json"),
):
    """Print the KServe objects serving the model's production and canary versions (aliases) on a
    team stack: an InferenceService per version and the traffic split, validated, nothing applied."""
    import yaml

    from platform_cli.render.serving import render_release
    from platform_cli.serving import release, traffic
    from platform_cli.serving import state as saved_split

    stack_config = _stack(stack)
    registry = _registry(stack_config)
    state = traffic.from_aliases(name, registry.aliases(name), canary_weight, stack_config.config.serving.gray_release)
    # A version promoted from here with --parameters is rendered reading its store again.
    stores = saved_split.load(release.state_path(stack_config, name), name).parameters
    state = state.model_copy(update={"parameters": {v: url for v, url in stores.items() if v in state.weights}})
    objects = render_release(stack_config, state, {v: release.storage_uri(registry, name, v, state) for v in state.weights})
    if output is OutputFormat.json:
        typer.echo(json.dumps(objects, indent=2))
    else:
        typer.echo(yaml.safe_dump_all(objects, sort_keys=False), nl=False)


# -- parameter service ----------------------------------------------------------------------


@params_app.command("export")
def params_export(
    name: str = typer.Argument(..., help="model name, e.g. ctr"),
    version: int = typer.Argument(..., help="registered version"),
    store: str = typer.Option("sqlite", "--store", "-s", help="sqlite (the stack's file), sqlite:///PATH or redis://HOST:PORT/DB (password: PLINTH_REDIS_PASSWORD)"),
    export_dir: Path = typer.Option(None, "--export-dir", help="the dense part; default: <local.home>/params/NAME/VERSION"),
    stack: str = StackOption,
    output: OutputFormat = OutputOption,
):
    """Write a version's embedding tables to a parameter store, keyed by model and version, and
    keep its dense part (the model without the tables) with the version for --parameters serving."""
    from rich.console import Console

    from platform_cli.paramservice.export import export_parameters
    from platform_cli.paramservice.store import check_url

    check_url(store)  # before the stack and the model library are opened
    stack_config = _stack(stack)
    with Console(stderr=True).status(f"exporting {name} v{version} parameters ...") as status:
        result = export_parameters(stack_config, name, version, store, export_dir, progress=lambda message: status.update(f"{message} ..."))
    emit(
        result,
        output,
        lambda: (
            ["model", "version", "store", "table", "rows", "dim"],
            [(result["model"], result["version"], _shown_store(stack_config, result["store"]), table, shape["rows"], shape["dim"])
             for table, shape in result["tables"].items()],
        ),
    )
    if output is OutputFormat.table:
        serve = (f"plinth model serve {name} --version {result['version']} --parameters {store}" if stack_config.role != "team"
                 else f"plinth model promote {name} {result['version']} --parameters {store} -s {stack_config.name}")
        typer.echo(f"\n{result['parameters']} parameters; dense part {result['directory']}; max |Δp| {result['max_abs_diff']:.2e} "
                   f"on the probe rows\nserve it: {serve}")


@params_app.command("ls")
def params_list(
    name: str = typer.Argument(None, help="only this model"),
    store: str = typer.Option("sqlite", "--store", "-s", help="sqlite (the stack's file), sqlite:///PATH or redis://HOST:PORT/DB"),
    stack: str = StackOption,
    output: OutputFormat = OutputOption,
):
    """List the model versions and tables a parameter store holds."""
    from platform_cli.paramservice.store import check_url, open_store, reachable, resolve

    check_url(store)
    stack_config = _stack(stack)
    with reachable(resolve(store, stack_config.home), stack_config) as url:
        opened = open_store(url)
        try:
            found = opened.tables(name)
        finally:
            opened.close()
    emit(found, output, lambda: (["model", "version", "table", "rows", "dim"], [(t["model"], t["version"], t["table"], t["rows"], t["dim"]) for t in found]))


def _shown_store(stack_config, url: str) -> str:
    """A SQLite store's URL with its path relative to the project, as the README shows it."""
    if url.startswith("sqlite:///"):
        return f"sqlite:///{stack_config.shown(url.removeprefix('sqlite:///'))}"
    return url


def _check_parameters(url: str | None) -> None:
    """A --parameters URL refused before the stack and the model library are opened."""
    if url is not None:
        from platform_cli.paramservice.store import check_url

        check_url(url)


def _report_change(stack_config, after, output: OutputFormat, started, version: int | None = None) -> None:
    """The split after a change; `version`: the one the change was about (promote's)."""
    from platform_cli.serving import release

    if output is not OutputFormat.table:
        state = after.model_dump(mode="json", exclude={"history"})
        about = {} if version is None else {"version": version, "stage": after.stage(version)}
        emit({"model": state.pop("model"), **about, **state}, output, lambda: ([], []))
        return
    router = release.find_router(stack_config, after.model)
    where = f" at {router.url}/v1/models/{after.model}:predict" if router else ""
    # The event this command added; a command that changed nothing reports the split as it is.
    detail = f"{after.history[-1].detail}; " if after.history and after.history[-1].at >= started else ""
    typer.echo(f"model/{after.model}: {detail}traffic {_weights(after.weights)}{where}")


def _weights(weights: dict[int, int]) -> str:
    return ", ".join(f"v{v} {w}%" for v, w in sorted(weights.items())) or "-"


def _number(value, digits: int) -> str:
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


def _size(size: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"
