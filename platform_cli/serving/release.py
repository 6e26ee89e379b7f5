"""Gray release on the local platform: version servers, one router per model, the split on disk.

Every version taking traffic runs in its own KServe model server process, recorded as
`<model>-v<version>` (so `plinth model servers` lists them); one router per model listens on
the stack's serving port for that model and splits requests by weight (serving/router.py).

A change (promote, rollout, approve, rollback) is one sequence, under the state file's lock:

1. the pure transition (serving/traffic.py) decides the new split, or refuses with the reason;
2. every version in the new split gets a live server (a version that fails to load stops the
   change here: the saved split, the router and the aliases are as they were);
3. the new split is written atomically and the router told to reload; it confirms the
   generation it now routes;
4. the MLflow aliases `production` and `canary` are set to match;
5. servers of versions that left the split are stopped once the router has no request in
   flight to them, so the switch drops nothing.
"""

from __future__ import annotations

import json
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from platform_cli.errors import PlinthError
from platform_cli.serving import local, traffic
from platform_cli.serving import state as store
from platform_cli.serving.traffic import TrafficState
from platform_cli.targets import target_of

if TYPE_CHECKING:
    from platform_cli.registry import ModelRegistry
    from platform_cli.spec.stack import Stack

ALIASES = ("production", "canary")
DRAIN_TIMEOUT_S = 30.0
_ADMIN_TIMEOUT_S = 5.0


def server_name(model: str, version: int) -> str:
    return f"{model}-v{version}"


def routers_dir(stack: Stack) -> Path:
    return local.state_dir(stack) / "routers"


def serves_locally(stack: Stack) -> bool:
    return target_of(stack).serving == "local"


def _splits_dir(stack: Stack) -> Path:
    if serves_locally(stack):
        return local.state_dir(stack)
    # A cluster stack's splits, as this machine last applied them (the cluster's objects carry them too).
    return local.state_dir(stack) / stack.name


def state_path(stack: Stack, model: str) -> Path:
    return store.traffic_path(_splits_dir(stack), model)


def released_models(stack: Stack) -> list[str]:
    """Models of the stack with a saved traffic split (promoted at least once from here)."""
    return store.saved_models(_splits_dir(stack))


def promote(stack: Stack, registry: ModelRegistry, model: str, version: int, percent: int | None,
            parameters: str | None = None) -> TrafficState:
    """parameters: a parameter store URL the version's server reads its embedding rows from
    (the version exported there by `plinth model params export`); None: the whole model."""
    registry.get(model, version)  # an unknown version is refused before anything starts
    policy = stack.config.serving.gray_release
    if parameters is None:
        return _change(stack, registry, model, lambda s: traffic.promote(s, version, percent, policy))
    from platform_cli.paramservice.export import served_store

    if not serves_locally(stack):  # before the store is asked anything
        from platform_cli.render.serving import check_cluster_store

        check_cluster_store(parameters, model, version)
    url = served_store(registry, stack, model, version, parameters)

    def change(state: TrafficState) -> TrafficState:
        after = traffic.promote(state, version, percent, policy)
        return after.model_copy(update={"parameters": after.parameters | {version: url}})

    return _change(stack, registry, model, change)


def rollout(stack: Stack, registry: ModelRegistry, model: str, percent: int | None) -> TrafficState:
    policy = stack.config.serving.gray_release
    return _change(stack, registry, model, lambda s: traffic.rollout(s, percent, policy))


def approve(stack: Stack, registry: ModelRegistry, model: str, version: int | None, by: str) -> TrafficState:
    after = _change(stack, registry, model, lambda s: traffic.approve(s, version))
    registry.tag_version(model, after.canary, "plinth.approved", f"{by} {datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    return after


def rollback(stack: Stack, registry: ModelRegistry, model: str) -> TrafficState:
    return _change(stack, registry, model, traffic.rollback)


def current(stack: Stack, registry: ModelRegistry, model: str) -> TrafficState:
    """The saved split, with the aliases brought in step (the router may have rolled back a
    canary on its own since the last command)."""
    saved = store.load(state_path(stack, model), model)
    if saved.production is not None:
        _sync_aliases(registry, saved)
    return saved


def router_state(stack: Stack, model: str) -> dict:
    """What the model's router routes now: generation, weights, per-version metrics."""
    if not serves_locally(stack):
        raise PlinthError(f"stack {stack.name!r} serves on KServe: it has no local router", f"plinth model compare {model} --stack {stack.name} reads its metrics from the cluster's Prometheus")
    record = _live_router(stack, model)
    if record is None:
        raise PlinthError(f"model '{model}' has no traffic-split router running", f"start one with plinth model promote {model} VERSION")
    return _admin(record, "GET", "/plinth/state")


def compare(stack: Stack, registry: ModelRegistry, model: str) -> dict:
    """The live versions side by side as the router counts them: stage, weight, requests,
    errors, error rate, p50/p99 latency, mean prediction; with the stack's auto-rollback limits.
    On a cluster stack the figures come from the cluster's Prometheus, which scrapes the same
    counters from every version's pods (serving/metrics.py)."""
    if not serves_locally(stack):
        return _compare_on_cluster(stack, registry, model)
    live = router_state(stack, model)
    saved = current(stack, registry, model)
    rows = [{"version": int(version), "stage": saved.stage(int(version)), "weight": live["weights"].get(version, 0), **metrics}
            for version, metrics in live["metrics"].items()]
    limits = stack.config.serving.gray_release.auto_rollback
    last = saved.history[-1] if saved.history else None
    return {"model": model, "generation": live["generation"], "versions": rows,
            "auto_rollback": limits.model_dump(mode="json") if limits else None,
            "rolled_back": last.detail if last is not None and last.action == "auto-rollback" else None}


def _compare_on_cluster(stack: Stack, registry: ModelRegistry, model: str) -> dict:
    from platform_cli.serving import cluster

    url = stack.config.serving.prometheus_url
    if url is None:
        raise PlinthError(f"stack {stack.name!r} has no Prometheus to read the versions' metrics from",
                          f"set plinth:serving.prometheusUrl in {stack.file.name} to the cluster's Prometheus, e.g. http://prometheus.monitoring:9090")
    saved = current(stack, registry, model)
    figures = cluster.version_figures(url, model)
    empty = {"requests": 0, "errors": 0, "rejected": 0, "in_flight": 0, "error_rate": 0.0, "p50_ms": None, "p99_ms": None, "mean_prediction": None}
    rows = [{"version": v, "stage": saved.stage(v), "weight": saved.weights.get(v, 0), **figures.get(v, empty)}
            for v in sorted(set(saved.weights) | set(figures))]
    return {"model": model, "generation": saved.generation, "versions": rows, "auto_rollback": None, "rolled_back": None}


def find_router(stack: Stack, model: str) -> local.ServerRecord | None:
    return _live_router(stack, model)


def stop(stack: Stack, model: str) -> list[str]:
    """Stop the model's router and version servers; the saved split stays for the next promote.
    Returns the names of what was stopped."""
    stopped = []
    if (routers_dir(stack) / f"{model}.json").exists():
        local.stop(model, routers_dir(stack))
        stopped.append(f"router {model}")
    for version, record in sorted(_version_servers(stack, model).items()):
        local.stop(record.name, local.state_dir(stack))
        stopped.append(record.name)
    return stopped


def start(stack: Stack, registry: ModelRegistry, model: str) -> TrafficState:
    """Serve the model's saved split again after `stop` (or a crash, or a reboot): production
    and canary with the weights they had, each version's server and the router started if they
    are not running. Serving what is already live changes nothing."""
    if not serves_locally(stack):
        raise PlinthError(f"model start is not available on stack {stack.name!r}: it brings back model servers on this machine, and this stack serves on KServe, which keeps them running")
    saved = _seeded(store.load(state_path(stack, model), model), registry)
    if not saved.weights:
        registry.get(model)  # an unknown model is named as such
        raise PlinthError(f"model '{model}' has no traffic split to bring back", f"promote a version first: plinth model promote {model} VERSION")
    return _change(stack, registry, model, lambda state: state)


def _version_servers(stack: Stack, model: str) -> dict[int, local.ServerRecord]:
    """The model's version servers on record (live or dead), by version."""
    prefix = f"{model}-v"
    return {
        record.version: record
        for record in local.list_servers(local.state_dir(stack))
        if record.name.startswith(prefix) and record.name.removeprefix(prefix).isdigit()
    }


def _change(stack: Stack, registry: ModelRegistry, model: str, change: Callable[[TrafficState], TrafficState]) -> TrafficState:
    if not serves_locally(stack):
        return _change_on_cluster(stack, registry, model, change)
    path = state_path(stack, model)
    with store.locked(path):
        before = _seeded(store.load(path, model), registry)
        after = change(before)
        if after is before and not before.weights:
            return after
        # Unchanged (e.g. promote of the production version): the split is re-served as it is,
        # which restarts servers that were stopped or crashed.
        after = after.model_copy(update={"auto_rollback": stack.config.serving.gray_release.auto_rollback,
                                         "parameters": {v: u for v, u in after.parameters.items() if v in after.weights}})
        started: list[str] = []
        try:
            upstreams = {v: _ensure_server(stack, registry, model, v, started, after.parameters.get(v)).url for v in after.weights}
            router = _ensure_router(stack, model, path)
        except BaseException as failure:
            for name in started:  # what this change started, nothing that was already serving
                local.stop(name, local.state_dir(stack))
            if isinstance(failure, PlinthError):
                raise PlinthError(f"{failure.message} (traffic unchanged)", failure.fix) from failure
            raise
        after = after.model_copy(update={"upstreams": upstreams})
        store.save(path, after)
        applied = _admin(router, "POST", "/plinth/reload")["generation"]
        if applied != after.generation:
            raise PlinthError(
                f"router of '{model}' routes generation {applied}, not the saved {after.generation}",
                f"see its log {router.log_path}",
            )
    _sync_aliases(registry, after)
    # Every version server outside the new split: the ones this change dropped, and a canary
    # the router rolled back on its own since the last change.
    _retire(stack, router, model, set(_version_servers(stack, model)) - set(after.weights))
    return after


def _change_on_cluster(stack: Stack, registry: ModelRegistry, model: str, change: Callable[[TrafficState], TrafficState]) -> TrafficState:
    """The same transition, rendered to KServe objects and applied to the team's namespace
    (serving/cluster.py waits for a new version to be Ready before it takes traffic)."""
    from platform_cli.render.serving import render_release
    from platform_cli.serving import cluster

    path = state_path(stack, model)
    with store.locked(path):
        before = _seeded(store.load(path, model), registry)
        after = change(before)
        if after is before:
            return after
        after = after.model_copy(update={"parameters": {v: u for v, u in after.parameters.items() if v in after.weights}})
        objects = render_release(stack, after, {v: storage_uri(registry, model, v, after) for v in after.weights})
        split_by_graph = any(o["kind"] == "InferenceGraph" for o in objects)
        if split_by_graph:  # RawDeployment: a service per version
            new = {server_name(model, v) for v in set(after.weights) - set(before.weights)}
            retired = [server_name(model, v) for v in sorted(set(before.weights) - set(after.weights))]
        else:  # Serverless: one service whose newest revision is the canary (or production)
            newest = lambda s: s.canary if s.canary is not None else s.production  # noqa: E731
            new, retired = ({model} if newest(after) != newest(before) else set()), []
        cluster.apply_release(objects, _kube(stack), new, retired)
        store.save(path, after)
    _sync_aliases(registry, after)
    return after


def storage_uri(registry: ModelRegistry, model: str, version: int, state: TrafficState) -> str:
    """What the version's pods download: its dense part when it reads a parameter store, else its model."""
    if version in state.parameters:
        from platform_cli.paramservice.export import EXPORT_KEY

        return registry.export_uri(model, version, EXPORT_KEY)
    return registry.artifact_uri(model, version)


def _kube(stack: Stack):
    from platform_cli.kube import KubeClient

    return KubeClient.for_stack(stack)


def _seeded(state: TrafficState, registry: ModelRegistry) -> TrafficState:
    """A model with no saved split starts from its `production` alias, if it has one: promoting
    a new version then makes it a canary next to the production version, as it should."""
    if state.production is not None:
        return state
    production = registry.aliases(state.model).get("production")
    if production is None:
        return state
    return state.model_copy(update={"production": production, "weights": {production: 100}})


def _sync_aliases(registry: ModelRegistry, state: TrafficState) -> None:
    registry.set_aliases(state.model, {"production": state.production, "canary": state.canary})


def _ensure_server(stack: Stack, registry: ModelRegistry, model: str, version: int, started: list[str],
                   parameters: str | None = None) -> local.ServerRecord:
    """The version's live model server, started if it is not running (parameters: the store URL
    it reads embedding rows from, with the version's dense part as its model)."""
    directory, name = local.state_dir(stack), server_name(model, version)
    try:
        record = local.find(directory, name)
    except PlinthError:
        record = None
    if record is not None and record.status == "live":
        return record
    if record is not None:  # crashed or killed: forget it and start afresh
        local.stop(name, directory)
    if parameters is None:
        model_dir = registry.model_dir(model, version)
    else:
        from platform_cli.paramservice.export import EXPORT_KEY

        model_dir = registry.export_dir(model, version, EXPORT_KEY)
    record = local.start(name, version, model_dir, stack.config.serving.host, _free_port(), directory, local.log_path(stack, name),
                         settings=stack.config.serving, parameters=parameters, online_stores=stack.online_stores)
    started.append(name)
    return record


def _ensure_router(stack: Stack, model: str, path: Path) -> local.ServerRecord:
    record = _live_router(stack, model)
    if record is not None:
        return record
    directory = routers_dir(stack)
    if (directory / f"{model}.json").exists():
        local.stop(model, directory)  # a dead router's record
    host = stack.config.serving.host
    port = _router_port(stack)
    argv = [sys.executable, "-m", "platform_cli.serving.router", "--model", model, "--state", str(path), "--host", host, "--port", str(port)]
    return local.launch(model, None, argv, host, port, directory, directory / f"{model}.log")


def _live_router(stack: Stack, model: str) -> local.ServerRecord | None:
    try:
        record = local.find(routers_dir(stack), model)
    except PlinthError:
        return None
    return record if record.status == "live" else None


def _router_port(stack: Stack) -> int:
    """The stack's serving port, or the first one above it that nothing listens on: routers are
    the models' stable endpoints, so they take the stack's ports; version servers take any."""
    taken = {r.port for d in (local.state_dir(stack), routers_dir(stack)) for r in local.list_servers(d) if r.status == "live"}
    port = stack.config.serving.port
    while port in taken or not _bindable(stack.config.serving.host, port):
        port += 1
    return port


def _bindable(host: str, port: int) -> bool:
    try:
        local._refuse_if_port_busy(host, port)
    except PlinthError:
        return False
    return True


def _free_port() -> int:
    # Version servers are reached only through the router, so any free port will do.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _retire(stack: Stack, router: local.ServerRecord, model: str, versions: set[int]) -> None:
    """Stop the servers of versions that left the split, once no request to them is in flight."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    pending = set(versions)
    while pending and time.monotonic() < deadline:
        metrics = _admin(router, "GET", "/plinth/state")["metrics"]
        for version in sorted(pending):
            if not metrics.get(str(version), {}).get("in_flight"):
                try:
                    local.stop(server_name(model, version), local.state_dir(stack))
                except PlinthError:
                    pass  # already gone
                pending.discard(version)
        if pending:
            time.sleep(0.1)
    for version in pending:  # still busy after the grace period: stop it anyway
        local.stop(server_name(model, version), local.state_dir(stack))


def _admin(record: local.ServerRecord, method: str, path: str) -> dict:
    request = urllib.request.Request(f"{record.url}{path}", method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=_ADMIN_TIMEOUT_S) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise PlinthError(f"router of '{record.name}' at {record.url} did not answer {path} ({getattr(e, 'reason', e)})",
                          f"see its log {record.log_path}") from None
