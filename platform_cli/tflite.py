"""TensorFlow Lite: the one conversion of a model's serving signature, and calling the result.

Two users, one converter: the version server runs the converted model when it predicts what the
SavedModel predicts (serving/server.py), and `plinth model export --format tflite` ships it to
devices (edge/export.py). Both convert with built-in ops only: feature hashing stays outside the
graph (platform_cli.features), so a model is plain arithmetic and lookups that every TFLite
runtime has, with no TensorFlow kernels (Select ops) to bundle.

    model = convert(model_dir, "float16")                  # bytes of a .tflite flatbuffer
    call = signature_call(tf.lite.Interpreter(model_content=model, num_threads=1))
    call({"cat": ..., "num": ...})                          # float32 [N] probabilities

`signature_call` and `io_details` take any interpreter with TFLite's Python API: TensorFlow's
own, or LiteRT's (`ai_edge_litert.interpreter.Interpreter`) in a process without TensorFlow.
TensorFlow is imported inside `convert` only.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from platform_cli.features import FeatureSpec

SIGNATURE = "serving_default"
OUTPUT = "probability"
# none: float32 weights, the SavedModel's arithmetic; float16: weights stored as float16 and
# widened on load (half the size); dynamic: weights stored as int8 with a scale per tensor (a
# quarter), activations stay float.
QUANTIZATIONS = ("none", "float16", "dynamic")


class NotConvertible(Exception):
    """The model needs operations TFLite's built-in set does not have (`ops`: their TensorFlow names)."""

    def __init__(self, ops: list[str], detail: str):
        super().__init__(detail)
        self.ops = ops


def convert(model_dir: str | os.PathLike[str], quantization: str = "none") -> bytes:
    """The SavedModel's serving signature as a TFLite flatbuffer with built-in ops only.

    Raises NotConvertible naming the ops that are not built-ins, ValueError for an unknown
    quantization. The same SavedModel and quantization give the same bytes."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, not {quantization!r}")
    # Before TensorFlow's first import in this process: its C++ start-up lines (CUDA plugins on
    # a CPU-only machine, oneDNN notices) say nothing about the model.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(model_dir), signature_keys=[SIGNATURE])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    try:
        # The converter prints its op statistics and MLIR diagnostics straight to the process's
        # stdout and stderr, past Python: kept out of the terminal, and out of a server's log.
        with _quiet_fds():
            return converter.convert()
    except Exception as e:  # tf.lite's ConverterError, which only TensorFlow can name
        ops = _unsupported_ops(e)
        if ops:
            raise NotConvertible(ops, " ".join(str(e).split())[:300]) from e
        raise


def _unsupported_ops(error: Exception) -> list[str]:
    """The TensorFlow ops a ConverterError says TFLite's built-ins lack, e.g. ["tf.AsString"]."""
    names = {item.operator.name for item in getattr(error, "errors", []) or [] if item.operator.name}
    if not names:  # older converters say it only in the text: "TF Select ops: AsString, ..."
        found = re.search(r"TF Select ops: ([^\n]+)", str(error))
        names = {f"tf.{op.strip()}" for op in found.group(1).split(",")} if found else set()
    return sorted(names)


@contextmanager
def _quiet_fds() -> Iterator[None]:
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def signature_call(interpreter: Any) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """A function model inputs -> float32 [N] probabilities, through the interpreter's serving
    signature (which resizes its inputs to each call's batch)."""
    runner = interpreter.get_signature_runner(SIGNATURE)

    def call(inputs: dict[str, np.ndarray]) -> np.ndarray:
        return runner(**inputs)[OUTPUT]

    call.interpreter = interpreter  # noqa: attribute keeps it referenced (the runner does not)
    return call


def io_details(interpreter: Any) -> dict[str, list[dict]]:
    """The serving signature's inputs and outputs: name, dtype and shape (-1 for the batch)."""
    runner = interpreter.get_signature_runner(SIGNATURE)

    def described(details: dict) -> list[dict]:
        return [{"name": name, "dtype": d["dtype"].__name__, "shape": [int(n) for n in d["shape_signature"]]}
                for name, d in sorted(details.items())]

    return {"inputs": described(runner.get_input_details()), "outputs": described(runner.get_output_details())}


def probe_inputs(spec: FeatureSpec, rows: int = 64) -> dict[str, np.ndarray]:
    """Random model inputs within the spec's ranges (seeded: the same rows every time), to
    compare two runtimes of one model."""
    import numpy as np

    rng = np.random.default_rng(0)
    buckets = np.array([f.buckets for f in spec.categorical], dtype=np.int64)
    inputs = {
        "cat": (rng.random((rows, len(buckets))) * buckets).astype(np.int64),
        "num": rng.normal(size=(rows, len(spec.numeric))).astype(np.float32),
    }
    if spec.text:
        inputs["tokens"] = np.concatenate(
            [(rng.random((rows, f.max_tokens)) * f.buckets).astype(np.int64) for f in spec.text], axis=1)
    return inputs

