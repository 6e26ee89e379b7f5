"""The traffic-split router: one process per model in front of its version servers.

    python -m platform_cli.serving.router --model ctr --state .plinth/local/serving/traffic/ctr.json \
        --host 127.0.0.1 --port 8500

For each POST /v1/models/<model>:predict it picks a version by the split's weights, forwards
the request body unchanged to that version's model server over a pooled keep-alive connection,
and records the version's request count, errors, latency and mean prediction. The answer
carries the version in the `x-plinth-version` header.

The split comes from the state file (serving/state.py). The router re-reads it when told to
(POST /plinth/reload, which the CLI calls after every change) and when its mtime changes, and
swaps its routing table in one assignment: requests in flight finish on the version they were
sent to, so a weight change drops nothing. GET /plinth/state reports the applied generation,
the weights and every version's metrics (what `plinth model compare` shows).

With auto-rollback limits in the state, the router checks the canary once a second and, when
it breaches them, rolls it back itself (recorded in the state's history as auto-rollback).

A plain ASGI app on uvicorn (uvloop, httptools) rather than FastAPI or KServe's server: the
router is on every request's path, and routing one request is a dictionary lookup and a
forward. The upstream client is serving/upstream.py's keep-alive pool (TCP_NODELAY): aiohttp's
client cost about 0.3 ms of CPU per forwarded request here (measured, see docs/bench).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import random
import time
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from platform_cli.serving import state as traffic_store
from platform_cli.serving import traffic
from platform_cli.serving.metrics import VersionMetrics
from platform_cli.serving.upstream import Pool, UpstreamError

logger = logging.getLogger("plinth.router")

_POLL_S = 0.5
_CHECK_S = 1.0
_UPSTREAM_TIMEOUT_S = 30.0
_JSON = [(b"content-type", b"application/json")]


class Router:
    def __init__(self, model: str, state_path: Path):
        self.model = model
        self.state_path = Path(state_path)
        self.predict_path = f"/v1/models/{model}:predict"
        self.ready_path = f"/v1/models/{model}"
        self.state = traffic.TrafficState(model=model)
        self.weights: list[tuple[int, int]] = []
        self.upstreams: dict[int, tuple[str, int]] = {}
        self.metrics: dict[int, VersionMetrics] = {}
        self._mtime = None
        self._pool = Pool(_UPSTREAM_TIMEOUT_S)

    # -- state -------------------------------------------------------------------------------

    def reload(self) -> int:
        """Apply the state file; returns the generation now routed."""
        try:
            mtime = self.state_path.stat().st_mtime_ns
        except FileNotFoundError:
            return self.state.generation
        loaded = traffic_store.load(self.state_path, self.model)
        self._mtime = mtime
        if loaded == self.state and self.weights:
            return loaded.generation  # e.g. only the mtime changed; a re-served split may differ in upstreams only
        live = [(v, w) for v, w in sorted(loaded.weights.items()) if w > 0 and v in loaded.upstreams]
        # A version that (re)joins the split starts with fresh metrics; one that stays keeps its own.
        metrics = {v: self.metrics.get(v) or VersionMetrics() for v in loaded.weights}
        for version, old in self.metrics.items():
            if version not in metrics and old.in_flight:
                metrics[version] = old  # still draining: keep counting its last answers
        upstreams = {v: _host_port(url) for v, url in loaded.upstreams.items()}
        self.state, self.weights, self.upstreams, self.metrics = loaded, live, upstreams, metrics
        logger.info("generation %d: weights %s", loaded.generation, dict(live))
        return loaded.generation

    def snapshot(self) -> dict:
        return {
            "model": self.model,
            "generation": self.state.generation,
            "production": self.state.production,
            "canary": self.state.canary,
            "weights": {str(v): w for v, w in self.state.weights.items()},
            "metrics": {str(v): m.snapshot() for v, m in sorted(self.metrics.items())},
        }

    async def watch(self) -> None:
        """Reload on a changed state file; roll back a canary that breaches the limits."""
        while True:
            await asyncio.sleep(_POLL_S)
            try:
                if self.state_path.stat().st_mtime_ns != self._mtime:
                    self.reload()
                await self._check_canary()
            except FileNotFoundError:
                pass
            except Exception:  # keep routing whatever happens here; the log says what
                logger.exception("state watch failed")

    async def _check_canary(self) -> None:
        limits, canary = self.state.auto_rollback, self.state.canary
        if limits is None or canary is None or canary not in self.metrics:
            return
        production = self.metrics.get(self.state.production)
        reason = traffic.breach(limits, self.metrics[canary].snapshot(), production and production.snapshot())
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
            self.reload()

    # -- requests ----------------------------------------------------------------------------

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == self.predict_path and method == "POST":
            await self._predict(await _body(receive), send)
        elif path == self.ready_path and method == "GET":
            await _respond(send, 200, {"name": self.model, "ready": bool(self.weights)})
        elif path == "/plinth/state" and method == "GET":
            await _respond(send, 200, self.snapshot())
        elif path == "/plinth/reload" and method == "POST":
            if not _loopback(scope):
                await _respond(send, 403, {"error": "reload is accepted from loopback only"})
            else:
                await _respond(send, 200, {"generation": self.reload()})
        else:
            await _respond(send, 404, {"error": f"no route {method} {path}; predict with POST {self.predict_path}"})

    async def _predict(self, body: bytes, send) -> None:
        weights = self.weights  # one read: a reload mid-request cannot split this request's view
        if not weights:
            await _respond(send, 503, {"error": f"model {self.model} has no version taking traffic"})
            return
        version = traffic.pick(weights, random.random())
        status, payload = await self._forward(version, body)
        if status == 0 and version != self.state.production and self.state.production in self.upstreams:
            # The canary's server is gone (crashed, stopped): answer from production instead.
            version = self.state.production
            status, payload = await self._forward(version, body)
        if status == 0:
            await _respond(send, 502, {"error": f"model {self.model} version {version} is not answering"}, version)
            return
        await send({"type": "http.response.start", "status": status,
                    "headers": [*_JSON, (b"x-plinth-version", str(version).encode())]})
        await send({"type": "http.response.body", "body": payload})

    async def _forward(self, version: int, body: bytes) -> tuple[int, bytes]:
        """(status, body) from the version's server; status 0 when it did not answer."""
        metrics = self.metrics.setdefault(version, VersionMetrics())
        host, port = self.upstreams[version]
        metrics.in_flight += 1
        started = time.perf_counter()
        status, payload, predictions = 0, b"", None
        try:
            status, payload = await self._pool.post(host, port, f"/v1/models/{self.model}-v{version}:predict", body)
            if status == 200:
                predictions = orjson.loads(payload).get("predictions")
        except UpstreamError as e:
            logger.warning("version %d did not answer: %s", version, e)
        except (orjson.JSONDecodeError, AttributeError):
            pass  # an answer without a predictions list still counts; it just has no mean
        finally:
            metrics.in_flight -= 1
        metrics.record(time.perf_counter() - started, status, predictions)
        return status, payload

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.reload()
                self._watcher = asyncio.create_task(self.watch())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self._watcher.cancel()
                self._pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(send, status: int, data: dict, version: int | None = None) -> None:
    headers = list(_JSON)
    if version is not None:
        headers.append((b"x-plinth-version", str(version).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": orjson.dumps(data)})


def _host_port(url: str) -> tuple[str, int]:
    parsed = urlsplit(url)
    return parsed.hostname, parsed.port or 80


def _loopback(scope) -> bool:
    client = scope.get("client")
    try:
        return client is not None and ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m platform_cli.serving.router")
    parser.add_argument("--model", required=True)
    parser.add_argument("--state", required=True, type=Path, help="the model's traffic state file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", required=True, type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")

    import uvicorn

    logger.info("routing model %s on %s port %d (state %s, pid %d)", args.model, args.host, args.port, args.state, os.getpid())
    uvicorn.run(
        Router(args.model, args.state), host=args.host, port=args.port, loop="uvloop", http="httptools",
        lifespan="on", access_log=False, log_level="warning",
    )


if __name__ == "__main__":
    main()
