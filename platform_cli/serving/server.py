"""The model server process: one trained model version answering KServe's v1 protocol and the Open Inference Protocol (v2).

    python -m platform_cli.serving.server --model-name ctr-v1 --model-dir DIR --host 127.0.0.1 --http-port 8080 \
        [--version 1] [--max-batch 64] [--max-wait-ms 2] [--workers 2] [--tensor-inputs] [--parameters STORE_URL]

A request carries raw rows, {"instances": [{<raw field>: value, ...}, ...]}; the server applies
the model's own feature spec (the one it was trained with; serving/inputs.py, the code the
cluster's KServe transformer runs) and answers {"predictions": [<click probability>, ...]}.
Requests it cannot use get a 400 with the reason, {"error": "..."}, as KServe answers.

Where the time goes, and what the server does about it:
- Concurrent requests are coalesced into one transform and one model call (serving/batching.py,
  at most --max-batch rows, waiting at most --max-wait-ms for requests already arriving). Each
  request gets its own rows back; a request the transform refuses gets its 400 alone, and a
  model error fails only the requests of that call (500).
- The model runs as TensorFlow Lite (the SavedModel's serving signature converted with built-in
  ops only by platform_cli/tflite.py, the conversion `plinth model export` ships to devices)
  when the conversion succeeds and gives the SavedModel's predictions on a probe batch to 1e-6;
  otherwise as the SavedModel's signature. A TFLite call costs a few microseconds
  where the signature costs a few hundred.
- With --parameters STORE_URL, --model-dir is the version's dense part (`plinth model params
  export`): the process holds no embedding table, and each micro-batch fetches its rows from the
  parameter store in one lookup (platform_cli/paramservice/), so rows updated in the store are
  served without a reload.
- HTTP is uvicorn (httptools, uvloop) with a plain ASGI app: KServe's FastAPI stack cost more per
  request than the transform and the model together. The routes are KServe's v1 predict and
  readiness, the Open Inference Protocol (v2: health, metadata, readiness, infer, with the raw
  fields as named input tensors; serving/open_inference.py) answered through the same batcher,
  GET /metrics (Prometheus' text format) and GET /plinth/metrics (the JSON `plinth model compare`
  reads), both views of one metrics table. A body beyond MAX_BODY_BYTES gets a 413.
- --workers N runs N processes sharing the port (SO_REUSEPORT: the kernel spreads connections
  over them) and one metrics table (serving/metrics.py). Every socket has TCP_NODELAY.

The server listens on --host only. The model has no authentication, so the default is loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# Before TensorFlow is imported: its C++ start-up chatter (including spurious "E" lines about
# CUDA plugins on CPU-only machines) would bury the server's own log lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from platform_cli import tflite  # noqa: E402
from platform_cli.features import SPEC_FILE, Columns, FeatureSpec  # noqa: E402
from platform_cli.features.online import OnlineFeatures  # noqa: E402
from platform_cli.serving.batching import MicroBatcher  # noqa: E402
from platform_cli.serving.inputs import MAX_BODY_BYTES, InvalidInput, instances, request_inputs, tensor_inputs  # noqa: E402
from platform_cli.serving import open_inference  # noqa: E402
from platform_cli.serving.metrics import PrometheusCollector, SharedMetrics  # noqa: E402

logger = logging.getLogger("plinth.server")

RUNTIMES = ("auto", "tflite", "savedmodel")
# TFLite must give the SavedModel's predictions to this much on the probe batch to be used.
TFLITE_TOLERANCE = 1e-6
_PROBE_ROWS = 64
_JSON = (b"content-type", b"application/json")
_KEEP_ALIVE_S = 600
_HEADER_LENGTH = open_inference.HEADER_LENGTH.encode()


class ModelError(Exception):
    """The model call failed: the server's fault (500), for the requests of that call only."""


class SavedModelPredictor:
    """A trained model directory (SavedModel + feature_spec.json) in KServe's model shape:
    load(), preprocess(payload) -> model inputs, predict(inputs) -> {"predictions": [...]}.

    The serving_default signature maps cat/num (and tokens, for a spec with text fields)
    tensors to a probability."""

    def __init__(self, name: str, model_dir: Path, tensor_inputs: bool = False, runtime: str = "auto", parameters: str | None = None,
                 online_stores: str | None = None):
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
        self.name = name
        self.model_dir = Path(model_dir)
        # True behind a KServe transformer, which has already turned raw rows into model inputs.
        self.takes_tensors = tensor_inputs
        self.runtime = runtime
        # A parameter store's URL: model_dir is then the version's dense part (paramservice/),
        # which fetches its embedding rows from the store on every call.
        self.parameters = parameters
        self.ready = False
        self._spec: FeatureSpec | None = None
        self._call: Any = None
        self._online_stores = online_stores
        self._online: OnlineFeatures | None = None

    def load(self) -> bool:
        self._spec = FeatureSpec.load(self.model_dir / SPEC_FILE)
        if not self.takes_tensors:  # behind a transformer, the transformer has merged them
            self._online = OnlineFeatures.open(self._spec, self._online_stores)
        if self.parameters is None:
            self._call, self.runtime = _load_model(self.model_dir, self._spec, self.runtime)
        else:
            from platform_cli.paramservice.predictor import ParameterServiceModel

            self._call, self.runtime = ParameterServiceModel.load(self.model_dir, self.parameters), "tflite"
        # One prediction before reporting ready: a model that does not fit its feature spec
        # fails here, at start-up with a traceback in the log, instead of on every request.
        self.predict(self.inputs([_warm_up_row(self._spec)] if not self.takes_tensors else _zero_tensor_rows(self._spec)))
        self.ready = True
        return self.ready

    @property
    def spec(self) -> FeatureSpec:
        return self._spec

    def inputs(self, rows: list[dict] | Columns) -> dict[str, np.ndarray]:
        """Model inputs for a request's rows (InvalidInput: the request's 400). A spec with
        online features gets their values for all the rows in one store call first."""
        if self.takes_tensors:
            return tensor_inputs(self._spec, rows.to_rows() if type(rows) is Columns else rows)
        if self._online is not None:
            rows = self._online.merge(rows.to_rows() if type(rows) is Columns else rows)
        return request_inputs(self._spec, rows)

    def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> dict[str, np.ndarray]:
        return self.inputs(instances(payload))

    def probabilities(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self._call(inputs)

    def predict(self, inputs: dict[str, np.ndarray], headers: dict[str, str] | None = None) -> dict:
        return {"predictions": self.probabilities(inputs).astype(float).tolist()}

    def process(self, requests: list[list[dict] | Columns]) -> list[np.ndarray | Exception]:
        """Probabilities for each request of a batch, or the exception that request gets: the
        rows of all go through one transform and one model call; a request the transform
        refuses is answered alone with its InvalidInput, the others go on without it."""
        results: list[Any] = [None] * len(requests)
        try:
            inputs = self.inputs(_together(requests))
            good = list(range(len(requests)))
        except InvalidInput:
            # Find the culprits: each request transformed on its own (and the 400 names its own row).
            parts = {}
            for i, rows in enumerate(requests):
                try:
                    parts[i] = self.inputs(rows)
                except InvalidInput as e:
                    results[i] = e
            good = sorted(parts)
            if not good:
                return results
            inputs = {key: np.concatenate([parts[i][key] for i in good]) for key in parts[good[0]]}
        try:
            probabilities = self.probabilities(inputs)
        except Exception as e:
            logger.exception("model call for %d requests failed", len(good))
            error = ModelError(f"model {self.name} failed: {' '.join(str(e).split())[:200] or type(e).__name__}")
            for i in good:
                results[i] = error
            return results
        start = 0
        for i in good:
            results[i] = probabilities[start:start + len(requests[i])]
            start += len(requests[i])
        return results


def _together(requests: list[list[dict] | Columns]) -> list[dict] | Columns:
    """A batch's rows in one form: v2 requests' columns joined, v1 requests' rows listed (a
    batch of both lists them all as rows)."""
    if len(requests) == 1:
        return requests[0]
    if all(type(rows) is Columns for rows in requests):
        return Columns.concat(requests)
    return [row for rows in requests for row in (rows.to_rows() if type(rows) is Columns else rows)]


def _load_model(model_dir: Path, spec: FeatureSpec, runtime: str):
    """(a function inputs -> float32 probabilities, the runtime used)."""
    import tensorflow as tf

    # Keep the loaded object alive: the signature function does not own the variables.
    saved_model = tf.saved_model.load(str(model_dir))
    signature = saved_model.signatures[tflite.SIGNATURE]

    def call_signature(inputs: dict[str, np.ndarray]) -> np.ndarray:
        return signature(**{key: tf.constant(value) for key, value in inputs.items()})[tflite.OUTPUT].numpy()

    call_signature.saved_model = saved_model  # noqa: attribute keeps it referenced
    if runtime == "savedmodel":
        return call_signature, "savedmodel"
    try:
        # One thread: the server's event loop is the other half of every request, and several
        # workers share the cores.
        call_tflite = tflite.signature_call(tf.lite.Interpreter(model_content=tflite.convert(model_dir), num_threads=1))
        probe = tflite.probe_inputs(spec, _PROBE_ROWS)
        difference = float(np.max(np.abs(call_tflite(probe) - call_signature(probe))))
    except Exception as e:  # not convertible with built-in ops, or the interpreter refuses it
        if runtime == "tflite":
            raise
        logger.warning("serving the SavedModel's signature: TFLite conversion failed (%s)", " ".join(str(e).split())[:300])
        return call_signature, "savedmodel"
    if difference > TFLITE_TOLERANCE:
        if runtime == "tflite":
            raise ValueError(f"TFLite predictions differ from the SavedModel's by {difference:.2e} (> {TFLITE_TOLERANCE})")
        logger.warning("serving the SavedModel's signature: TFLite differs by %.2e on the probe batch", difference)
        return call_signature, "savedmodel"
    logger.info("serving as TFLite (predictions within %.1e of the SavedModel's on %d probe rows)", difference, _PROBE_ROWS)
    return call_tflite, "tflite"


def _warm_up_row(spec: FeatureSpec) -> dict:
    return ({f.name: "warm-up" for f in spec.categorical} | {f.name: 0.0 for f in spec.numeric}
            | {f.name: "warm up" for f in spec.text})


def _zero_tensor_rows(spec: FeatureSpec) -> list[dict]:
    row = {"cat": [0] * len(spec.categorical), "num": [0.0] * len(spec.numeric)}
    if spec.text:
        row["tokens"] = [0] * sum(f.max_tokens for f in spec.text)
    return [row]


class BodyTooLarge(Exception):
    """A request body beyond MAX_BODY_BYTES (a 413)."""


class ModelApp:
    """The ASGI app: KServe's v1 routes and the Open Inference Protocol (v2) for one model, both
    answering predictions through the batcher; GET /metrics in Prometheus' text format."""

    def __init__(self, model: SavedModelPredictor, metrics: SharedMetrics, worker: int, version: int | None,
                 max_batch: int, max_wait_s: float):
        self.model = model
        self.version = version
        self.shared = metrics
        self.metrics = metrics.worker(worker)
        self.in_flight = 0
        self.batcher = MicroBatcher(self._process, max_batch, max_wait_s, in_flight=lambda: self.in_flight)
        # A version server of a traffic split (ctr-v3) also answers as its model (ctr): the
        # split's proxy forwards requests unchanged.
        self.base_name = model.name
        if version is not None and model.name.endswith(f"-v{version}"):
            self.base_name = model.name.removesuffix(f"-v{version}")
        self.names = {model.name, self.base_name}
        self.predict_paths = {f"/v1/models/{name}:predict" for name in self.names}
        self.predict_path = f"/v1/models/{model.name}:predict"
        self.infer_paths = {f"/v2/models/{name}/infer" for name in self.names}
        if version is not None:
            self.infer_paths |= {f"/v2/models/{name}/versions/{version}/infer" for name in self.names}
        self.ready_paths = {f"/v1/models/{model.name}"}
        self.signature = open_inference.Signature(model.spec)
        self.headers = [_JSON] + ([(b"x-plinth-version", str(version).encode())] if version is not None else [])
        from prometheus_client import CollectorRegistry

        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(PrometheusCollector(metrics, self.base_name, version, lambda: self.model.runtime))

    def _process(self, requests: list[list[dict] | Columns]) -> list:
        self.metrics.batch(sum(len(rows) for rows in requests))
        return self.model.process(requests)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path in self.predict_paths and method == "POST":
            await self.predict(scope, receive, send, None)
        elif path in self.infer_paths and method == "POST":
            await self.predict(scope, receive, send, path.split("/")[3])
        elif path.startswith("/v2") and (route := open_inference.parse_path(path)) is not None:
            await self.open_inference(scope, receive, send, route)
        elif path in self.ready_paths and method == "GET":
            await self.respond(send, 200, {"name": self.model.name, "ready": self.model.ready})
        elif path == "/metrics" and method == "GET":
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            await self.send_body(send, 200, generate_latest(self.registry), content_type=CONTENT_TYPE_LATEST.encode())
        elif path == "/plinth/metrics" and method == "GET":
            await self.respond(send, 200, {"runtime": self.model.runtime, **self.shared.snapshot()})
        else:
            await self.respond(send, 404, {"error": f"no route {method} {path}; predict with POST {self.predict_path} "
                                                    f"or POST /v2/models/{self.base_name}/infer"})

    async def open_inference(self, scope, receive, send, route: open_inference.Route) -> None:
        """The v2 routes other than a well-formed infer: health, metadata, and what is wrong."""
        method = scope["method"]
        if route.kind in ("live", "ready", "server"):
            if method != "GET":
                await self.respond(send, 405, {"error": f"{scope['path']} takes GET"})
            elif route.kind == "live":
                await self.respond(send, 200, {"live": True})
            elif route.kind == "ready":
                await self.respond(send, 200, {"ready": self.model.ready})
            else:
                await self.respond(send, 200, {"name": "plinth", "version": _plinth_version(), "extensions": ["binary_tensor_data"]})
            return
        refusal = self.unknown(route)
        if refusal is not None:
            await self.respond(send, 404, {"error": refusal})
        elif route.kind == "infer":
            if method == "POST":
                await self.predict(scope, receive, send, route.model)
            else:
                await self.respond(send, 405, {"error": f"{scope['path']} takes POST"})
        elif method != "GET":
            await self.respond(send, 405, {"error": f"{scope['path']} takes GET"})
        elif route.kind == "model-ready":
            await self.respond(send, 200 if self.model.ready else 503, {"name": route.model, "ready": self.model.ready})
        else:
            await self.respond(send, 200, self.metadata(route.model))

    def unknown(self, route: open_inference.Route) -> str | None:
        """Why this server has no such model or version (a 404), None when it has."""
        serves = f"{self.base_name} (version {self.version})" if self.version is not None else self.model.name
        if route.model not in self.names:
            return f"model {route.model!r} is not served here; this server serves {serves}"
        if route.version is not None and route.version != str(self.version):
            return f"model {route.model} has no version {route.version} here; this server serves {serves}"
        return None

    def metadata(self, name: str) -> dict:
        return self.signature.metadata(name, [self.version] if self.version is not None else [], f"tensorflow_{self.model.runtime}")

    async def predict(self, scope, receive, send, v2_model: str | None) -> None:
        """One prediction request, v1 ({"instances": [...]}) or v2 (v2_model: the name it asked for)."""
        started = time.perf_counter()
        self.in_flight += 1
        self.metrics.started()
        status, predictions, headers = 500, None, ()
        try:
            try:
                body = await _body(receive, scope)
                if v2_model is None:
                    rows = instances(orjson.loads(body))
                else:
                    request, rows = self.signature.read(body, _header_length(scope))
                predictions = await self.batcher.submit(rows)
            except BodyTooLarge as e:
                status, answer, headers = 413, {"error": str(e)}, ((b"connection", b"close"),)
            except orjson.JSONDecodeError as e:
                status, answer = 400, {"error": f"the request body is not JSON: {e}"}
            except InvalidInput as e:
                status, answer = 400, {"error": e.reason}
            except ModelError as e:
                status, answer = 500, {"error": str(e)}
            else:
                status = 200
                if v2_model is not None:
                    data, header_length = open_inference.infer_response(v2_model, self.version, request, predictions)
                    if header_length is not None:
                        headers = ((open_inference.HEADER_LENGTH.encode(), str(header_length).encode()),)
                    await self.send_body(send, 200, data, headers, b"application/octet-stream" if header_length is not None else None)
                    return
                answer = {"predictions": predictions.astype(float).tolist()}
            await self.respond(send, status, answer, headers)
        finally:
            self.in_flight -= 1
            self.metrics.finished(time.perf_counter() - started, status, predictions)

    async def respond(self, send, status: int, data: dict, headers=()) -> None:
        await self.send_body(send, status, orjson.dumps(data), headers)

    async def send_body(self, send, status: int, body: bytes, headers=(), content_type: bytes | None = None) -> None:
        # With its length known the answer is two writes; without, uvicorn would chunk it (three).
        start = self.headers if content_type is None else [(b"content-type", content_type), *self.headers[1:]]
        await send({"type": "http.response.start", "status": status,
                    "headers": [*start, *headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _plinth_version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("plinth")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree (a cluster image)
        return "unknown"


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def _header_length(scope) -> int | None:
    value = _header(scope, _HEADER_LENGTH)
    if value is None:
        return None
    if not value.strip().isdigit():
        raise InvalidInput(f"{open_inference.HEADER_LENGTH} must be a number of bytes, not {value.decode(errors='replace')!r:.40}")
    return int(value)


async def _body(receive, scope) -> bytes:
    """The request body, refused (BodyTooLarge) beyond MAX_BODY_BYTES before it is all read."""
    declared = _header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BodyTooLarge(f"the request body has {int(declared)} bytes; at most {MAX_BODY_BYTES} are taken: send fewer rows per request")
    message = await receive()
    body = message.get("body", b"")
    while message.get("more_body"):
        message = await receive()
        body += message.get("body", b"")
        if len(body) > MAX_BODY_BYTES:
            raise BodyTooLarge(f"the request body has more than {MAX_BODY_BYTES} bytes: send fewer rows per request")
    return body


def listening_socket(host: str, port: int, shared: bool) -> socket.socket:
    """A TCP socket listening on host:port, TCP_NODELAY (accepted connections inherit it);
    shared: SO_REUSEPORT, for a version's workers to listen on one port."""
    family, _, _, _, address = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(address)
    sock.listen(1024)
    sock.set_inheritable(False)
    return sock


def _pin_threads() -> None:
    import tensorflow as tf

    # Requests are batched on one event loop per worker: more TensorFlow threads only contend
    # with the loop (and the other workers) without making a call faster.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m platform_cli.serving.server")
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--model-dir", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--http-port", required=True, type=int)
    parser.add_argument("--version", type=int, help="registry version: the log, and the x-plinth-version answer header")
    parser.add_argument("--tensor-inputs", action="store_true",
                        help="take model inputs {\"instances\": [{\"cat\": [...], \"num\": [...]}]} from a transformer instead of raw rows")
    parser.add_argument("--max-batch", type=int, default=64, help="most rows in one model call")
    parser.add_argument("--max-wait-ms", type=float, default=2.0, help="longest a batch waits for requests already arriving")
    parser.add_argument("--workers", type=int, default=1, help="server processes sharing the port")
    parser.add_argument("--online-stores", help="where the model's online features are (sqlite:///DIR or redis://HOST:PORT; default $PLINTH_ONLINE_STORE)")
    parser.add_argument("--runtime", choices=RUNTIMES, default="auto", help="auto: TFLite when it converts and agrees, else the SavedModel")
    parser.add_argument("--parameters", help="parameter store URL: --model-dir is the version's dense part, its embedding rows come from the store")
    # Set by the first worker for the others: their index, and the shared metrics table.
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--metrics-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.max_batch < 1 or args.max_wait_ms < 0 or args.workers < 1:
        parser.error("--max-batch and --workers must be at least 1, --max-wait-ms at least 0")
    return args


def _configure_logging() -> None:
    # "<date> <time>.<ms> <pid> <logger> <LEVEL> <message>": what serving/local.py strips when it
    # reports a failed start's last error line.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s.%(msecs)03d %(process)d %(name)s %(levelname)s %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S")


def _start_other_workers(args: argparse.Namespace, argv: list[str], metrics: SharedMetrics) -> list[subprocess.Popen]:
    """Workers 1..N-1: this command again with --worker i. They share the process group (so
    stopping the server stops them), end with the first worker, and map its metrics table."""
    others = []
    for index in range(1, args.workers):
        command = [sys.executable, "-m", "platform_cli.serving.server", *argv, "--worker", str(index), "--metrics-fd", str(metrics.fd)]
        others.append(subprocess.Popen(command, stdin=subprocess.DEVNULL, pass_fds=(metrics.fd,)))
    return others


def _end_with_parent() -> None:
    """Linux: SIGTERM this process when the process that started it exits (a worker must not
    outlive the first worker, whatever ends it)."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = _parse_args(argv)
    _configure_logging()
    first = args.worker == 0
    if not first:
        _end_with_parent()
    # The first worker creates the table before it starts the others, which map it.
    metrics = SharedMetrics(args.workers, fd=args.metrics_fd)
    others = _start_other_workers(args, argv, metrics) if first else []
    _pin_threads()
    model = SavedModelPredictor(args.model_name, args.model_dir, tensor_inputs=args.tensor_inputs, runtime=args.runtime,
                                parameters=args.parameters, online_stores=args.online_stores)
    try:
        model.load()
    except Exception as e:
        # The traceback for debugging, then one line last for the CLI, which reports the log's
        # last error line: the exception's text squeezed onto that line.
        logger.exception("loading the model failed")
        reason = " ".join(str(e).split()) or type(e).__name__
        logger.error("cannot load model %s from %s: %s", args.model_name, args.model_dir, reason)
        for worker in others:
            worker.kill()
        raise SystemExit(1) from e
    # Everything loaded so far (TensorFlow's millions of objects) is moved out of the garbage
    # collector's reach: otherwise a full collection, which the requests' allocations trigger
    # now and then, walks them all and stalls every request in flight for ~0.2 s.
    gc.freeze()
    sock = listening_socket(args.host, args.http_port, shared=args.workers > 1)
    logger.info(
        "serving model %s version %s from %s on %s port %d (%s%s, batches of up to %d rows, wait up to %g ms, worker %d of %d)",
        args.model_name, args.version, args.model_dir, args.host, args.http_port, model.runtime,
        f", embedding rows from {args.parameters}" if args.parameters else "",
        args.max_batch, args.max_wait_ms, args.worker + 1, args.workers,
    )
    import uvicorn

    app = ModelApp(model, metrics, args.worker, args.version, args.max_batch, args.max_wait_ms / 1000)
    # Idle keep-alive connections are left for the client to close (the split's proxy pools
    # them and closes its own idle ones first): a server closing one as the proxy reuses it
    # would make a healthy version look like a failing one.
    config = uvicorn.Config(app, loop="uvloop", http="httptools", lifespan="on", access_log=False, log_level="warning",
                            proxy_headers=False, server_header=False, date_header=False, timeout_keep_alive=_KEEP_ALIVE_S)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        for worker in others:
            worker.terminate()


if __name__ == "__main__":
    main()
