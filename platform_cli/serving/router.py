"""The traffic-split router of one model: HAProxy on the request path, this process beside it.

    python -m platform_cli.serving.router --model ctr --state .plinth/local/serving/traffic/ctr.json \
        --host 127.0.0.1 --port 8500

Requests never pass through Python here. The model's port belongs to an HAProxy process (Debian
package `haproxy`, started and owned by this one) whose backend holds one server per version,
weighted by the split: for each POST /v1/models/<model>:predict (KServe's v1) and POST
/v2/models/<model>/infer (the Open Inference Protocol) it picks a version (smooth weighted round
robin), forwards over a pooled keep-alive connection (TCP_NODELAY), and retries a connection the
version refuses on another version (a canary whose server died is answered by production). A
request for one version, /v2/models/<model>/versions/<v>/..., goes to that version's own
backend (HAProxy looks the version up in a map this process keeps), so it reaches that version
or fails, never another. The version servers answer their model's name too and tag each answer
with their version (`x-plinth-version`). Everything else (readiness, v2 health and model
metadata, GET /metrics, /plinth/state, /plinth/reload, unknown paths) HAProxy hands to this
process's small control app on a loopback port.

Metrics are taken where they are cheapest: each version server counts its own requests, errors,
latencies and predictions (it has them at hand, serving/metrics.py); HAProxy's counters add the
requests a version never answered (refused connections, broken answers). GET /plinth/state
merges the two per version; that is what `plinth model compare` shows. GET /metrics gives the
same in Prometheus' text format: each version's families as its server exports them, and the
split's own (weights, requests HAProxy saw a version fail, versions held down). Scrape the
router or the version servers, not both: the router's page repeats the versions'.

The split comes from the state file (serving/state.py). The router re-reads it when told to
(POST /plinth/reload, which the CLI calls after every change; accepted from loopback only) and
when its mtime changes, and applies all weights in one request to HAProxy's runtime API (a
Unix socket in a private directory), with no reload of HAProxy: connections stay open, requests
in flight finish on the version they were sent to, and the next request sees the new weights.
It then reads the weights back and reports the generation it routes.

With auto-rollback limits in the state, the router checks the canary once a second and, when
it breaches them, rolls it back itself (recorded in the state's history as auto-rollback).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from platform_cli.serving import open_inference, traffic
from platform_cli.serving.inputs import MAX_BODY_BYTES
from platform_cli.serving import state as traffic_store

logger = logging.getLogger("plinth.router")

_POLL_S = 0.5
_CHECK_S = 1.0
_METRICS_TIMEOUT_S = 2.0
_READY_TIMEOUT_S = 10.0
_JSON = [(b"content-type", b"application/json")]
BACKEND = "versions"
# Server slots in the backend, declared in the configuration and pointed at versions at run time.
# A split has at most two live versions (production and a canary); the other slots let a version
# that left it drain. (Servers added at run time, HAProxy's dynamic servers, measured about
# 0.2 ms slower per request here than declared ones.)
SLOTS = 4
_PARKED = "127.0.0.1:9"  # where an unused slot points; at weight 0 it is never chosen


def version_backend(slot: str) -> str:
    """The backend that reaches only the version in `slot` (version-specific v2 requests)."""
    return f"version_{slot}"


def haproxy_config(model: str, host: str, port: int, control_port: int, admin_socket: Path, version_map: Path) -> str:
    """HAProxy's configuration for one model's split (pure). Versions are added at run time
    through the admin socket, so the file never changes while the router runs.

    Predictions, v1 (POST /v1/models/<model>:predict) and v2 (POST /v2/models/<model>/infer),
    take the weighted backend. A request for one version (/v2/models/<model>/versions/<v>/...)
    goes to that version's own backend: its slot's address again, alone, so it reaches that
    version or fails, never another one. `version_map` (version -> its backend) is kept by the
    runtime API; a version that is not in it is the control app's 404."""
    predict = f"/v1/models/{model}:predict /v2/models/{model}/infer"
    address = f"[{host}]" if ":" in host else host
    # No HAProxy health checks: the router watches the versions (Router.watch) and puts one
    # whose port refuses connections into maintenance, which also works for the slots it
    # re-points at run time. Until then a refused connection is retried on another version.
    slots = "\n".join(f"    server s{i} {_PARKED} weight 0" for i in range(1, SLOTS + 1))
    version_backends = "\n".join(f"backend {version_backend(f's{i}')}\n    server v {_PARKED}\n" for i in range(1, SLOTS + 1))
    return f"""\
global
    maxconn 4096
    nbthread 1
    stats socket {admin_socket} mode 600 level admin
    log stderr format short local0 notice

defaults
    mode http
    log global
    option dontlognull
    timeout connect 2s
    timeout client 75s
    timeout server 60s
    timeout http-keep-alive 75s
    http-reuse always
    # The version servers are on this machine: a refused connection, or a pooled one that a
    # dead server left behind, means the version is gone, so the request goes to another
    # version at once (redispatch), counted against the first. Predictions are idempotent.
    retries 2
    retry-on conn-failure empty-response junk-response
    option redispatch 1
    http-error status 503 content-type application/json string "{{\\"error\\": \\"model {model} has no version taking traffic\\"}}"
    http-error status 502 content-type application/json string "{{\\"error\\": \\"model {model}: no version answered\\"}}"
    http-error status 504 content-type application/json string "{{\\"error\\": \\"model {model}: no version answered in time\\"}}"

frontend model
    bind {address}:{port}
    http-request return status 403 content-type application/json string "{{\\"error\\": \\"reload is accepted from loopback only\\"}}" if {{ path /plinth/reload }} !{{ src 127.0.0.0/8 ::1 }}
    # A body the versions would refuse is refused here, so no version is blamed for it.
    http-request return status 413 content-type application/json lf-string "{{\\"error\\": \\"the request body has %[req.hdr_val(content-length)] bytes; at most {MAX_BODY_BYTES} are taken: send fewer rows per request\\"}}" if {{ req.hdr_val(content-length) gt {MAX_BODY_BYTES} }}
    acl one_version path_beg /v2/models/{model}/versions/
    http-request set-var(txn.version_backend) path,field(6,/),map({version_map}) if one_version
    use_backend %[var(txn.version_backend)] if one_version {{ var(txn.version_backend) -m found }}
    use_backend {BACKEND} if {{ path {predict} }} {{ method POST }}
    default_backend control

backend {BACKEND}
    balance roundrobin
{slots}

{version_backends}
backend control
    server control 127.0.0.1:{control_port}
"""


def runtime_commands(weights: dict[int, int], upstreams: dict[int, tuple[str, int]], slots: dict[int, str], version_map: Path,
                     previous: dict[int, tuple[str, int]] | None = None) -> tuple[list[str], dict[int, str]]:
    """HAProxy runtime-API commands that make the backend route by `weights` and every version
    with a server reachable on its own, and the slots the versions then hold (pure).

    slots: the version each slot points to now. A version keeps its slot; a new one takes a
    slot never used, else the one of the version that left the split longest ago (`slots` is
    kept in the order they were assigned). A version that left stays at weight 0.
    previous: the upstreams of the last split applied (the versions `version_map` holds now)."""
    previous = previous or {}
    assigned = dict(slots)
    free = [f"s{i}" for i in range(1, SLOTS + 1) if f"s{i}" not in assigned.values()]
    free += [slot for version, slot in assigned.items() if version not in upstreams]
    commands = []
    for version in sorted(upstreams):
        if version not in assigned:
            if not free:
                raise RuntimeError(f"no free server slot for version {version}: {SLOTS} slots hold {sorted(assigned)}")
            slot = free.pop(0)
            assigned = {v: s for v, s in assigned.items() if s != slot}
            assigned[version] = slot
        host, port = upstreams[version]
        slot = assigned[version]
        # A version that joins the split, or comes back on a new server (`plinth model start`),
        # answered its readiness check before it did: it takes traffic now, even if its slot was
        # held out in maintenance for the address it had. A version whose server stays is left
        # alone: its connections, and its state as the router's watch set it.
        if slots.get(version) != slot or previous.get(version) != (host, port):
            for server in (f"{BACKEND}/{slot}", f"{version_backend(slot)}/v"):
                commands += [f"set server {server} addr {host} port {port}", f"set server {server} state ready"]
    for version, slot in assigned.items():
        commands.append(f"set server {BACKEND}/{slot} weight {weights.get(version, 0) if version in upstreams else 0}")
    # The map last: a version is reachable on its own once its backend points to it.
    for version in sorted(set(previous) - set(upstreams)):
        commands.append(f"del map {version_map} {version}")
    for version in sorted(set(upstreams) - set(previous)):
        commands.append(f"add map {version_map} {version} {version_backend(assigned[version])}")
    return commands, assigned


class HAProxy:
    """The HAProxy child process and its runtime API."""

    def __init__(self, config: str, directory: Path):
        self.directory = directory
        self.socket = directory / "admin.sock"
        self.version_map = directory / "versions.map"
        self.version_map.touch()  # HAProxy loads it at start; the runtime API fills it
        (directory / "haproxy.cfg").write_text(config)
        self.process = subprocess.Popen(
            [shutil.which("haproxy") or "haproxy", "-db", "-f", str(directory / "haproxy.cfg")],
            stdin=subprocess.DEVNULL, preexec_fn=_end_with_parent,
        )

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"haproxy exited with code {self.process.returncode} (its messages are above)")
            with contextlib.suppress(OSError):
                self.command("show info")
                return
            time.sleep(0.05)
        raise SystemExit(f"haproxy did not open its admin socket within {timeout:.0f} s")

    def command(self, line: str) -> str:
        """Run one line on the runtime API (commands separated by ';'); its whole answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(5.0)
            connection.connect(str(self.socket))
            connection.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := connection.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self) -> dict[str, dict[str, str]]:
        """The backend's counters per slot (HAProxy's `show stat` CSV fields), with what the
        slot's own backend (version-specific requests) counted added to the counters that
        `unanswered` and the in-transit figures read."""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","))) for line in lines[1:]]
        slots = {row["svname"]: row for row in rows if row.get("pxname") == BACKEND and row.get("svname", "").startswith("s")}
        for row in rows:
            slot = row.get("pxname", "").removeprefix("version_")
            if row.get("svname") == "v" and slot in slots:
                for field in _FOLDED:
                    slots[slot][field] = str(_counter(slots[slot], field) + _counter(row, field))
        return slots

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()


# HAProxy counters of a version's own backend that count towards the version's figures.
_FOLDED = ("wredis", "econ", "eresp", "scur", "qcur")


def _end_with_parent() -> None:
    # Linux: HAProxy gets SIGTERM when the router exits, however it exits.
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _counter(row: dict[str, str], field: str) -> int:
    value = row.get(field) or "0"
    return int(value) if value.isdigit() else 0


def unanswered(row: dict[str, str]) -> int:
    """Requests HAProxy sent to a version that the version never answered: refused or failed
    connections (redispatched elsewhere or not) and broken answers."""
    return _counter(row, "wredis") + _counter(row, "econ") + _counter(row, "eresp")


def is_down(row: dict[str, str]) -> bool:
    """Whether HAProxy holds the version's server out of the split (down, or in maintenance
    because the router found its port refusing connections)."""
    return row.get("status", "").startswith(("DOWN", "MAINT"))


def merged(server: dict | None, failures: int, in_transit: int, down: bool = False) -> dict:
    """One version's metrics: what its server counted, plus what HAProxy saw it fail (pure)."""
    snapshot = dict(server or {"requests": 0, "errors": 0, "rejected": 0, "in_flight": 0, "p50_ms": None, "p99_ms": None, "mean_prediction": None})
    snapshot["requests"] += failures
    snapshot["errors"] += failures
    snapshot["in_flight"] = max(snapshot["in_flight"], in_transit)
    snapshot["error_rate"] = snapshot["errors"] / snapshot["requests"] if snapshot["requests"] else 0.0
    snapshot["down"] = down
    snapshot.pop("runtime", None)
    return snapshot


class Router:
    def __init__(self, model: str, state_path: Path, proxy: HAProxy):
        self.model = model
        self.state_path = Path(state_path)
        self.proxy = proxy
        self.ready_path = f"/v1/models/{model}"
        self.state = traffic.TrafficState(model=model)
        self.slots: dict[int, str] = {}  # version -> the backend server slot pointing to it
        # The addresses the split last applied routes to (the versions in HAProxy's version map).
        self.upstreams: dict[int, tuple[str, int]] = {}
        # Per version: HAProxy's failure count when it (re)joined the split, and the last
        # metrics its server reported (kept for a server that stopped answering).
        self.baseline: dict[int, int] = {}
        self.last_seen: dict[int, dict] = {}
        self.refusing: set[int] = set()  # versions whose server refused the last probe: in maintenance
        self._mtime = None
        # reload() runs in worker threads (the control app's reload and the file watch): one at a time.
        self._applying = threading.Lock()

    # -- state -------------------------------------------------------------------------------

    def reload(self) -> int:
        """Apply the state file; returns the generation now routed."""
        with self._applying:
            return self._apply()

    def _apply(self) -> int:
        try:
            mtime = self.state_path.stat().st_mtime_ns
        except FileNotFoundError:
            return self.state.generation
        loaded = traffic_store.load(self.state_path, self.model)
        self._mtime = mtime
        if loaded == self.state and self.slots:
            return loaded.generation
        upstreams = {v: _host_port(url) for v, url in loaded.upstreams.items()}
        live = {v: w for v, w in loaded.weights.items() if w > 0 and v in upstreams}
        commands, slots = runtime_commands(live, upstreams, self.slots, self.proxy.version_map, self.upstreams)
        answer = self.proxy.command("; ".join(commands)) if commands else ""
        # What HAProxy routes now, read back: the generation is reported only once it is true.
        applied = {v: self.proxy.command(f"get weight {BACKEND}/{slot}").split()[0] for v, slot in slots.items()}
        if {v: int(w) for v, w in applied.items() if w.isdigit() and int(w)} != live:
            raise RuntimeError(f"haproxy routes {applied}, not the split {live}: {' '.join(answer.split())}")
        rejoined = {v for v, slot in slots.items() if self.slots.get(v) != slot}
        # A version that joined or moved was made ready by the commands above.
        self.refusing -= {v for v in upstreams if v in rejoined or self.upstreams.get(v) != upstreams[v]}
        self.slots = slots
        self.upstreams = upstreams
        # A version that (re)joins the split starts with fresh metrics; one that stays keeps its
        # own. HAProxy's counters belong to the slot, so a version counts from when it took it.
        stats = self.proxy.servers()
        for version in (set(loaded.weights) - set(self.state.weights)) | rejoined:
            self.baseline[version] = unanswered(stats.get(self.slots.get(version, ""), {}))
            self.last_seen.pop(version, None)
        self.state = loaded
        logger.info("generation %d: weights %s", loaded.generation, live)
        return loaded.generation

    def metrics(self) -> dict[int, dict]:
        """Every version of the split (and any still draining), merged from its server and HAProxy."""
        slots = self.proxy.servers()
        stats = {version: slots.get(slot, {}) for version, slot in self.slots.items()}
        versions = set(self.state.weights) | {v for v, row in stats.items() if _counter(row, "scur") + _counter(row, "qcur")}
        result = {}
        for version in sorted(versions):
            url = self.state.upstreams.get(version)
            if url is not None:
                seen = _server_metrics(url)
                if seen is not None:
                    self.last_seen[version] = seen
                self._hold_out_if_refusing(version, refusing=seen is None and _refuses(url))
            row = stats.get(version, {})
            failures = unanswered(row) - self.baseline.get(version, 0)
            result[version] = merged(self.last_seen.get(version), max(failures, 0), _counter(row, "scur") + _counter(row, "qcur"),
                                     down=is_down(row))
        return result

    def _hold_out_if_refusing(self, version: int, refusing: bool) -> None:
        """Put a version whose port refuses connections (its server is gone) into maintenance,
        and back when it answers again: requests then go only to versions that answer, and a
        model whose only version died answers 503 at once. Only a refusal counts, never a slow
        answer, so a busy server is never taken out."""
        slot = self.slots.get(version)
        if slot is None or refusing == (version in self.refusing):
            return
        state = "maint" if refusing else "ready"
        self.proxy.command("; ".join(f"set server {server} state {state}" for server in (f"{BACKEND}/{slot}", f"{version_backend(slot)}/v")))
        (self.refusing.add if refusing else self.refusing.discard)(version)
        logger.warning("version %d %s", version, "refuses connections: out of the split" if refusing else "answers again: back in the split")

    def snapshot(self) -> dict:
        return {
            "model": self.model,
            "generation": self.state.generation,
            "production": self.state.production,
            "canary": self.state.canary,
            "weights": {str(v): w for v, w in self.state.weights.items()},
            "metrics": {str(v): m for v, m in self.metrics().items()},
        }

    async def watch(self) -> None:
        """Reload on a changed state file; each second, take out versions whose server is gone
        and roll back a canary that breaches the limits."""
        checked = time.monotonic()
        while True:
            await asyncio.sleep(_POLL_S)
            try:
                if self.state_path.stat().st_mtime_ns != self._mtime:
                    await asyncio.to_thread(self.reload)
                if time.monotonic() - checked >= _CHECK_S:
                    checked = time.monotonic()
                    await self._check_canary(await asyncio.to_thread(self.metrics))
            except FileNotFoundError:
                pass
            except Exception:  # keep routing whatever happens here; the log says what
                logger.exception("state watch failed")

    async def _check_canary(self, metrics: dict[int, dict]) -> None:
        limits, canary = self.state.auto_rollback, self.state.canary
        if limits is None or canary is None:
            return
        if canary not in metrics:
            return
        reason = traffic.breach(limits, metrics[canary], metrics.get(self.state.production))
        if reason is None:
            return
        generation = self.state.generation

        def roll_back(current: traffic.TrafficState) -> traffic.TrafficState:
            # Only the split that was judged: a newer one (another promote) is left alone.
            if current.generation != generation or current.canary != canary:
                return current
            return traffic.rollback(current, reason=reason)

        _, after = await asyncio.to_thread(traffic_store.update, self.state_path, self.model, roll_back)
        if after.generation != generation:
            logger.warning("auto-rollback of version %d: %s", canary, reason)
            await asyncio.to_thread(self.reload)

    # -- the control app (everything but predictions) -----------------------------------------

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == self.ready_path and method == "GET":
            await _respond(send, 200, {"name": self.model, "ready": self.ready()})
        elif path.startswith("/v2") and (route := open_inference.parse_path(path)) is not None:
            status, answer = await asyncio.to_thread(self.open_inference, route, method)
            await _respond(send, status, answer)
        elif path == "/metrics" and method == "GET":
            from prometheus_client import CONTENT_TYPE_LATEST

            body = await asyncio.to_thread(self.exposition)
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode())]})
            await send({"type": "http.response.body", "body": body})
        elif path == "/plinth/state" and method == "GET":
            await _respond(send, 200, await asyncio.to_thread(self.snapshot))
        elif path == "/plinth/reload" and method == "POST":
            await _respond(send, 200, {"generation": await asyncio.to_thread(self.reload)})
        else:
            await _respond(send, 404, {"error": f"no route {method} {path}; predict with POST /v1/models/{self.model}:predict "
                                                f"or POST /v2/models/{self.model}/infer"})

    def ready(self) -> bool:
        return any(w > 0 for w in self.state.weights.values())

    def open_inference(self, route: open_inference.Route, method: str) -> tuple[int, dict]:
        """The model's v2 answers that are the split's, not one version's: health, the model's
        metadata and readiness, and the 404 of a model or version it does not serve. (Infer,
        and everything for one version that takes part, HAProxy sends to the versions.)"""
        versions = sorted(v for v, w in self.state.weights.items() if w > 0)
        if route.kind in ("live", "ready", "server") and method != "GET":
            return 405, {"error": "health and server metadata take GET"}
        if route.kind == "live":
            return 200, {"live": True}
        if route.kind == "ready":
            return (200 if versions else 503), {"ready": bool(versions)}
        if route.kind == "server":
            return 200, {"name": "plinth", "extensions": ["binary_tensor_data"]}
        if route.model != self.model:
            return 404, {"error": f"model {route.model!r} is not served here; this endpoint serves {self.model}"}
        if route.version is not None:  # a version HAProxy did not route: not one with a server
            serving = ", ".join(str(v) for v in versions) or "none"
            return 404, {"error": f"model {self.model} has no version {route.version} taking traffic (versions: {serving})"}
        if route.kind == "infer":  # a POST is HAProxy's to route
            return 405, {"error": "infer takes POST"}
        if method != "GET":
            return 405, {"error": "model metadata and readiness take GET"}
        if route.kind == "model-ready":
            return (200 if versions else 503), {"name": self.model, "ready": bool(versions)}
        # The inputs are the production version's (a canary with other inputs would answer its
        # own metadata at /v2/models/<model>/versions/<v>); the versions are the split's.
        url = self.state.upstreams.get(self.state.production) if self.state.production is not None else None
        metadata = _get_json(f"{url}/v2/models/{self.model}") if url else None
        if metadata is None:
            return 503, {"error": f"model {self.model} has no version answering (versions: {', '.join(map(str, versions)) or 'none'})"}
        return 200, {**metadata, "versions": [str(v) for v in versions]}

    def exposition(self) -> bytes:
        """GET /metrics: every version's own families (scraped from its server: requests,
        errors, latency, batch sizes, in flight) and the split's (weights, what HAProxy saw
        each version fail), in Prometheus' text format."""
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        from prometheus_client.parser import text_string_to_metric_families

        families: dict[str, Any] = {}
        for version, url in sorted(self.state.upstreams.items()):
            text = _get_text(f"{url}/metrics")
            for family in text_string_to_metric_families(text or ""):
                if family.name in families:
                    families[family.name].samples.extend(family.samples)
                else:
                    families[family.name] = family
        labels = ["model", "version"]
        weight = GaugeMetricFamily("plinth_router_weight_percent", "Each version's share of the split's predictions", labels=labels)
        failed = CounterMetricFamily("plinth_router_unanswered_requests",
                                     "Requests HAProxy sent to a version that it never answered (refused, broken)", labels=labels)
        down = GaugeMetricFamily("plinth_router_version_down", "1 while HAProxy holds the version's server down", labels=labels)
        slots = self.proxy.servers()
        for version, slot in sorted(self.slots.items()):
            if version not in self.state.weights:
                continue
            row, names = slots.get(slot, {}), [self.model, str(version)]
            weight.add_metric(names, self.state.weights[version])
            failed.add_metric(names, max(unanswered(row) - self.baseline.get(version, 0), 0))
            down.add_metric(names, 1 if is_down(row) else 0)
        generation = GaugeMetricFamily("plinth_router_generation", "The generation of the split the router routes", labels=["model"])
        generation.add_metric([self.model], self.state.generation)

        class Collected:
            def collect(self):
                yield from families.values()
                yield from (weight, failed, down, generation)

        registry = CollectorRegistry(auto_describe=False)
        registry.register(Collected())
        return generate_latest(registry)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.reload()
                self._watcher = asyncio.create_task(self.watch())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self._watcher.cancel()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _get_text(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=_METRICS_TIMEOUT_S) as response:
            return response.read().decode()
    except (OSError, ValueError):
        return None


def _get_json(url: str) -> dict | None:
    text = _get_text(url)
    try:
        return None if text is None else orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _server_metrics(url: str) -> dict | None:
    """A version server's own metrics, or None if it does not answer."""
    return _get_json(f"{url}/plinth/metrics")


def _refuses(url: str) -> bool:
    """Whether nothing listens on the version server's port (a refused connection)."""
    try:
        with socket.create_connection(_host_port(url), timeout=_METRICS_TIMEOUT_S):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:  # a timeout or another failure says nothing sure: leave the version be
        return False


async def _respond(send, status: int, data: dict) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _JSON})
    await send({"type": "http.response.body", "body": orjson.dumps(data)})


def _host_port(url: str) -> tuple[str, int]:
    parsed = urlsplit(url)
    return parsed.hostname, parsed.port or 80


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m platform_cli.serving.router")
    parser.add_argument("--model", required=True)
    parser.add_argument("--state", required=True, type=Path, help="the model's traffic state file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", required=True, type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s.%(msecs)03d %(process)d %(name)s %(levelname)s %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S")
    if shutil.which("haproxy") is None:
        raise SystemExit("error: haproxy not found: the traffic split runs on it (apt-get install haproxy; scripts/bootstrap installs it)")

    import uvicorn

    # A private directory (mode 700) for HAProxy's admin socket: whoever can reach it can
    # change the split. Short, under the temp directory, as a socket path must be.
    directory = Path(tempfile.mkdtemp(prefix=f"plinth-router-{args.model}-"))
    control_port = _free_loopback_port()
    proxy = HAProxy(haproxy_config(args.model, args.host, args.port, control_port, directory / "admin.sock", directory / "versions.map"),
                    directory)
    try:
        proxy.wait_ready(_READY_TIMEOUT_S)
        logger.info("routing model %s on %s port %d through haproxy (pid %d), control on port %d (state %s, pid %d)",
                    args.model, args.host, args.port, proxy.process.pid, control_port, args.state, os.getpid())
        uvicorn.run(Router(args.model, args.state, proxy), host="127.0.0.1", port=control_port, loop="uvloop", http="httptools",
                    lifespan="on", access_log=False, log_level="warning")
    finally:
        proxy.stop()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
