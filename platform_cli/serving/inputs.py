"""A v1 request's rows and the model inputs made from them; what is wrong with a request that has none.

Shared by the model server (serving/server.py), the cluster's KServe transformer
(serving/transformer.py) and `plinth model evaluate`, without importing KServe or TensorFlow:

    rows = instances(payload)                 # {"instances": [{...}, ...]} -> the rows, or InvalidInput
    inputs = request_inputs(spec, rows)       # raw fields -> {"cat", "num"[, "tokens"]}, or InvalidInput
    inputs = tensor_inputs(spec, rows)        # [{"cat": [...], "num": [...]}, ...] -> the same arrays
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from platform_cli.features import FeatureSpec, transform

if TYPE_CHECKING:
    import numpy as np

# The largest request body a model endpoint takes (a 413 beyond): some 30 000 rows of the CTR
# example, far more than a batch, and a bound on what one client can make a server hold.
MAX_BODY_BYTES = 8 * 1024 * 1024


class InvalidInput(ValueError):
    """The client's mistake (an HTTP 400); `reason` says what it is."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def instances(payload: Any) -> list[dict]:
    """The rows of a v1 request, {"instances": [{<field>: <value>, ...}, ...]}."""
    if not isinstance(payload, dict) or "instances" not in payload:
        raise InvalidInput('expected a JSON object {"instances": [{<field>: <value>, ...}, ...]}')
    rows = payload["instances"]
    if not isinstance(rows, list) or not rows:
        raise InvalidInput('"instances" must be a non-empty list of rows')
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidInput(f"instance {i} must be an object of raw fields, got {row!r:.80}")
    return rows


def request_inputs(spec: FeatureSpec, rows: list[dict]) -> dict[str, np.ndarray]:
    """{"cat": int64 [N, C], "num": float32 [N, K]} (and "tokens") for raw rows: the shared
    feature transform, its ValueError as InvalidInput."""
    try:
        return transform(spec, rows)
    except ValueError as e:
        raise InvalidInput(str(e)) from e


def tensor_inputs(spec: FeatureSpec, rows: list[dict]) -> dict[str, np.ndarray]:
    """Model inputs sent as rows, as a KServe transformer forwards them to its predictor:
    [{"cat": [...], "num": [...]}, ...] -> {"cat": int64 [N, C], "num": float32 [N, K]}
    (and "tokens" for a spec with text fields)."""
    import numpy as np

    shapes = {"cat": (np.int64, len(spec.categorical)), "num": (np.float32, len(spec.numeric))}
    if spec.text:
        shapes["tokens"] = (np.int64, sum(f.max_tokens for f in spec.text))
    inputs = {}
    for key, (dtype, width) in shapes.items():
        try:
            inputs[key] = np.asarray([row[key] for row in rows], dtype=dtype).reshape(len(rows), width)
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidInput(f'every instance needs "{key}": a list of {width} numbers ({e})') from e
    return inputs
