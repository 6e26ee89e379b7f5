"""What a job leaves in its output directory (`${output_dir}`), and reading it back.

A training job writes, under its per-submission output_dir:

    model/         the SavedModel (saved_model.pb, variables/) with feature_spec.json beside it,
                   written whole (storage.staged_dir: a URI export carries a _SUCCESS marker)
    metrics.json   {"auc": 0.71, "logloss": 0.43, ...}: numbers describing the trained model
    samples.json   on a cluster, the sample table versions the job read, as it resolved them
                   when it started (platform_cli.samples.launch; locally the job's record has them)

The example job specs hand these locations to their scripts (`--export-dir "${output_dir}/model"`,
`--metrics-file "${output_dir}/metrics.json"`); `plinth model register` reads the model and
metrics back, a flow's job step publishes metrics keys and `model_dir` as outputs. On a cluster
stack output_dir is an hdfs:// or s3:// URI, so everything here goes through platform_cli.storage.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from platform_cli import storage
from platform_cli.errors import PlinthError
from platform_cli.samples import SampleInput

MODEL_DIR = "model"
METRICS_FILE = "metrics.json"
SAVED_MODEL_FILE = "saved_model.pb"
SAMPLES_FILE = "samples.json"


def model_dir(output_dir: str) -> str:
    return storage.join(output_dir, MODEL_DIR)


def metrics_file(output_dir: str) -> str:
    return storage.join(output_dir, METRICS_FILE)


def read_metrics(output_dir: str) -> dict | None:
    """The job's metrics.json as written, or None when the job wrote none."""
    location = metrics_file(output_dir)
    metrics = _read_json(location)
    if metrics is not None and not isinstance(metrics, dict):
        raise PlinthError(f"{location} is not a JSON object of metrics", 'write {"auc": 0.71, ...}')
    return metrics


def samples_file(output_dir: str) -> str:
    return storage.join(output_dir, SAMPLES_FILE)


def read_samples(output_dir: str) -> list[SampleInput]:
    """The sample versions the job recorded reading (samples.json), or [] when it recorded none."""
    location = samples_file(output_dir)
    try:
        return [SampleInput.model_validate(entry) for entry in _read_json(location) or []]
    except (TypeError, ValueError) as exc:
        raise PlinthError(f"{location} is not a list of sample versions ({' '.join(str(exc).split())})") from None


def _read_json(location: str):
    """The JSON file at `location`, or None when there is none."""
    if not storage.exists(location):
        return None
    try:
        return json.loads(storage.read_text(location))
    except (OSError, ValueError) as exc:
        raise PlinthError(f"{location} is not readable JSON ({' '.join(str(exc).split())})") from None


def numeric(metrics: dict) -> dict[str, float]:
    """The entries that are numbers (a model registry keeps metrics as floats)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


@contextmanager
def local_model_dir(output_dir: str) -> Iterator[Path]:
    """The job's exported model as a local directory: the directory itself for a local path, a
    temporary copy of a URI's files (what a model registry uploads from) until the block ends."""
    location = model_dir(output_dir)
    if not storage.exists(storage.join(location, SAVED_MODEL_FILE)):
        raise PlinthError(f"no SavedModel in {location}", f"the training script must export to ${{output_dir}}/{MODEL_DIR}")
    if not storage.is_uri(location):
        yield Path(location)
        return
    storage.require_complete(location)
    copy = Path(tempfile.mkdtemp(prefix="plinth-model-"))
    try:
        storage.download_dir(location, copy)
        (copy / storage.SUCCESS_MARKER).unlink(missing_ok=True)  # storage's marker, not part of the model
        yield copy
    finally:
        shutil.rmtree(copy, ignore_errors=True)
