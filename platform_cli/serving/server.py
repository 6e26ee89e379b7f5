"""The model server process: one trained model behind KServe's Python model server (v1 protocol).

    python -m platform_cli.serving.server --model-name ctr --model-dir DIR --host 127.0.0.1 --http-port 8080

A request carries raw rows, {"instances": [{<raw field>: value, ...}, ...]}; the server applies
the model's own feature spec (the one it was trained with) with the transformer's code
(serving/transformer.py: on a cluster the same step runs as the KServe transformer) and answers
{"predictions": [<click probability>, ...]}. Requests it cannot use get a 400 with the reason.

The server listens on --host only. The model has no authentication, so the default is loopback;
kserve's own ModelServer would listen on every interface whatever it is told (see _RESTServer).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import warnings
from pathlib import Path
from typing import Any

# Before TensorFlow is imported: its C++ start-up chatter (including spurious "E" lines about
# CUDA plugins on CPU-only machines) would bury the server's own log lines. Python-level
# failures still surface as tracebacks.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from kserve import Model, ModelServer  # noqa: E402
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING  # noqa: E402
from kserve.logging import configure_logging, logger, trace_logger  # noqa: E402
from kserve.model import BaseKServeModel  # noqa: E402
from kserve.protocol.rest.server import RESTServer  # noqa: E402

from platform_cli.features import SPEC_FILE, FeatureSpec  # noqa: E402
from platform_cli.serving.transformer import request_inputs, tensor_inputs  # noqa: E402

SIGNATURE = "serving_default"


class SavedModelPredictor(Model):
    """A SavedModel whose serving_default signature maps cat/num (and tokens, for a spec with
    text fields) tensors to a probability."""

    def __init__(self, name: str, model_dir: Path, tensor_inputs: bool = False):
        super().__init__(name)
        self.model_dir = Path(model_dir)
        # True behind a KServe transformer, which has already turned raw rows into model inputs.
        self.takes_tensors = tensor_inputs
        self._saved_model: Any = None
        self._signature: Any = None
        self._spec: FeatureSpec | None = None

    def load(self) -> bool:
        self._spec = FeatureSpec.load(self.model_dir / SPEC_FILE)
        # Keep the loaded object alive: the signature function does not own the variables.
        self._saved_model = tf.saved_model.load(str(self.model_dir))
        self._signature = self._saved_model.signatures[SIGNATURE]
        self._warm_up()
        self.ready = True
        return self.ready

    def _warm_up(self) -> None:
        # One prediction before reporting ready: the first call pays for tracing and lazy
        # imports (~40 ms), and a model that does not fit its feature spec fails here, at
        # start-up with a traceback in the log, instead of on every request.
        row = {f.name: "warm-up" for f in self._spec.categorical}
        row |= {f.name: 0.0 for f in self._spec.numeric}
        row |= {f.name: "warm up" for f in self._spec.text}
        inputs = request_inputs(self._spec, {"instances": [row]})
        self.predict(inputs)

    # preprocess/predict are deliberately synchronous: each request is a few milliseconds of
    # CPU, so hopping to a thread pool would only add latency in a single-worker server.
    def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> dict:
        if self.takes_tensors:
            return tensor_inputs(self._spec, payload)
        return request_inputs(self._spec, payload)

    def predict(self, inputs: dict[str, np.ndarray], headers: dict[str, str] | None = None) -> dict:
        outputs = self._signature(**{key: tf.constant(value) for key, value in inputs.items()})
        return {"predictions": outputs["probability"].numpy().astype(float).tolist()}


class _RESTServer(RESTServer):
    """KServe's REST server (its FastAPI app, v1/v2 routes, error handlers) listening on one host.

    kserve 0.15's RESTServer builds its uvicorn config with host="0.0.0.0" and takes no host.
    uvicorn reads config.host only when it starts listening, so setting it after kserve built
    the config is enough; everything else (single worker, asyncio loop, and with it
    TCP_NODELAY on every connection) stays kserve's.
    """

    def __init__(self, *args: Any, host: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.config.host = host


class _ModelServer(ModelServer):
    """ModelServer with its REST server on `host`: one worker, HTTP only.

    start() is ModelServer.start's single-worker path (kserve 0.15.2) with _RESTServer in place
    of RESTServer, which ModelServer.start constructs inline. Re-check it when upgrading kserve;
    tests/integration/test_serving.py fails if the server is reachable beyond its host.
    """

    def __init__(self, host: str, **kwargs: Any):
        # One worker: kserve's multi-worker socket lacks TCP_NODELAY (~44 ms per request
        # measured). No gRPC: local serving promises one port, the HTTP one.
        super().__init__(workers=1, enable_grpc=False, **kwargs)
        self.host = host

    def start(self, models: list[BaseKServeModel]) -> None:
        self._register_and_check_atleast_one_model_is_ready(models)
        self._rest_server = _RESTServer(
            FASTAPI_APP_IMPORT_STRING,
            self.dataplane,
            self.model_repository_extension,
            self.http_port,
            access_log_format=self.access_log_format,
            workers=1,
            grace_period=self.grace_period,
            host=self.host,
        )
        self.servers.append(self._rest_server.start())
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())


def _pin_threads() -> None:
    # One request at a time on a small model: more threads only contend with uvicorn's loop
    # (and with the training jobs sharing a laptop) without making a single call faster.
    tf.config.threading.set_intra_op_parallelism_threads(min(2, os.cpu_count() or 1))
    tf.config.threading.set_inter_op_parallelism_threads(1)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m platform_cli.serving.server")
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--model-dir", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--http-port", required=True, type=int)
    parser.add_argument("--version", type=int, help="registry version, for the log only")
    parser.add_argument("--tensor-inputs", action="store_true",
                        help="take model inputs {\"instances\": [{\"cat\": [...], \"num\": [...]}]} from a transformer instead of raw rows")
    return parser.parse_args(argv)


def _quiet_logs() -> None:
    # Per-request timing lines (two per request, next to uvicorn's access line) would make the
    # log mostly noise; kserve 0.15 with this FastAPI also warns about its own ORJSONResponse use.
    trace_logger.setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    configure_logging()
    _quiet_logs()
    _pin_threads()
    model = SavedModelPredictor(args.model_name, args.model_dir, tensor_inputs=args.tensor_inputs)
    try:
        model.load()
    except Exception as e:
        # The traceback for debugging, then one line last for the CLI, which reports the log's
        # last error line: the exception's text squeezed onto that line.
        logger.exception("loading the model failed")
        reason = " ".join(str(e).split()) or type(e).__name__
        logger.error("cannot load model %s from %s: %s", args.model_name, args.model_dir, reason)
        raise SystemExit(1) from e
    logger.info(
        "serving model %s version %s from %s on %s port %d",
        args.model_name, args.version, args.model_dir, args.host, args.http_port,
    )
    _ModelServer(args.host, http_port=args.http_port, enable_latency_logging=False).start([model])


if __name__ == "__main__":
    main()
