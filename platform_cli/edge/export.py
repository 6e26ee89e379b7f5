"""`plinth model export`: a registered version as a TFLite model for devices, kept with the version.

    result = export_version(stack, "ctr", 3, "tflite", "float16", progress=print)

1. the version's SavedModel is converted with built-in ops only (platform_cli/tflite.py, the
   conversion the version server runs), quantized as asked;
2. the TFLite model and the SavedModel predict the same seeded probe rows, and the largest
   difference goes into the manifest;
3. the model, the feature spec (the file the model was trained with, byte for byte), golden
   hashing vectors and the manifest are written into a sibling directory and renamed into place
   (<local.home>/exports/NAME/vVERSION/tflite-QUANTIZATION unless told otherwise): whole, or not at all;
4. the directory becomes artifacts of the version's run (exports/<key>/) and a version tag
   summarises it, which `plinth model show` lists.

The same options give the same files, so exporting again changes nothing but the copy's age;
each quantization is its own export, side by side.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from platform_cli import tflite
from platform_cli.atomic import staged_dir
from platform_cli.edge.golden import GOLDEN_FILE, case_count, golden_vectors
from platform_cli.edge.manifest import FORMATS, MANIFEST_FILE, MODEL_FILE, build_manifest, export_key, summary
from platform_cli.errors import PlinthError
from platform_cli.features import SPEC_FILE

if TYPE_CHECKING:
    from platform_cli.spec.stack import Stack

PROBE_ROWS = 256


def check_options(fmt: str, quantization: str) -> None:
    """PlinthError naming the field when the format or quantization is not one Plinth exports."""
    if fmt not in FORMATS:
        raise PlinthError(f"format: {fmt!r} is not an export format", f"use {' or '.join(FORMATS)}")
    if quantization not in tflite.QUANTIZATIONS:
        raise PlinthError(f"quantize: {quantization!r} is not a quantization", f"use {', '.join(tflite.QUANTIZATIONS)}")


def default_export_dir(stack: Stack, name: str, version: int, key: str) -> Path:
    return stack.home / "exports" / name / f"v{version}" / key


def export_version(
    stack: Stack,
    name: str,
    version: int,
    fmt: str = "tflite",
    quantization: str = "none",
    export_dir: Path | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> dict:
    """Export one version; returns what the command prints: the summary kept with the version,
    plus where the files are, the sizes, and whether this replaced a different earlier export."""
    check_options(fmt, quantization)
    from platform_cli.registry import open_registry

    registry = open_registry(stack)
    found = registry.get(name, version)
    key = export_key(fmt, quantization)
    progress(f"fetching {name} v{found.version} from the model library")
    model_dir = registry.model_dir(name, found.version)
    spec_file = model_dir / SPEC_FILE
    if not spec_file.is_file():
        raise PlinthError(f"model {name} version {found.version} has no {SPEC_FILE}",
                          "export a model trained by Plinth's pipeline: the device needs the feature spec to hash its fields")
    from platform_cli.features import FeatureSpec

    spec = FeatureSpec.load(spec_file)
    progress(f"converting {name} v{found.version} to TFLite (built-in ops, quantization {quantization})")
    model = _convert(name, found.version, model_dir, quantization)
    progress(f"comparing TFLite with the SavedModel on {PROBE_ROWS} probe rows")
    io, max_abs_diff = _compare(name, model_dir, model, spec)
    golden = golden_vectors(spec)
    contents = {
        MODEL_FILE: model,
        SPEC_FILE: spec_file.read_bytes(),
        GOLDEN_FILE: (json.dumps(golden, ensure_ascii=False, indent=1) + "\n").encode(),
    }
    manifest = build_manifest(
        model=name, version=found.version, run_id=found.run_id, quantization=quantization, io=io, contents=contents,
        savedmodel_bytes=_disk_size(model_dir), probe_rows=PROBE_ROWS, max_abs_diff=max_abs_diff,
    )
    directory = Path(export_dir or default_export_dir(stack, name, found.version, key))
    progress(f"writing {stack.shown(directory)}")
    with staged_dir(directory) as staging:
        for file_name, data in contents.items():
            (staging / file_name).write_bytes(data)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    progress(f"registering the export with {name} v{found.version}")
    kept = summary(manifest)
    earlier = found.exports.get(key)
    artifacts = registry.record_export(name, found.version, key, directory, kept)
    # Read back: what the version now lists is what `plinth model show` will show.
    kept = registry.get(name, found.version).exports[key]
    return {
        "model": name,
        "version": found.version,
        "export": key,
        **kept,
        "savedmodel_bytes": manifest["sizes"]["savedmodel_bytes"],
        "ratio": manifest["sizes"]["ratio"],
        "golden_cases": case_count(golden),
        "directory": stack.shown(directory),
        "artifacts_uri": artifacts,
        "change": "new" if earlier is None else "unchanged" if earlier.get("sha256") == kept["sha256"] else "replaced",
    }


def _convert(name: str, version: int, model_dir: Path, quantization: str) -> bytes:
    try:
        return tflite.convert(model_dir, quantization)
    except tflite.NotConvertible as e:
        raise PlinthError(
            f"model {name} version {version} does not convert to TFLite built-in ops: it uses {', '.join(e.ops)}",
            "keep string handling and hashing out of the serving signature (the feature spec hashes fields before the model) and retrain",
        ) from e


def _compare(name: str, model_dir: Path, model: bytes, spec) -> tuple[dict, float]:
    """The TFLite model's inputs and outputs, and its largest difference from the SavedModel's
    prediction on the probe rows (the SavedModel called through the version server's own code)."""
    import numpy as np
    import tensorflow as tf

    from platform_cli.serving.server import SavedModelPredictor

    interpreter = tf.lite.Interpreter(model_content=model, num_threads=1)
    saved_model = SavedModelPredictor(name, model_dir, tensor_inputs=True, runtime="savedmodel")
    saved_model.load()
    probe = tflite.probe_inputs(spec, PROBE_ROWS)
    difference = np.abs(tflite.signature_call(interpreter)(probe).astype(np.float64) - saved_model.probabilities(probe))
    return tflite.io_details(interpreter), float(difference.max())


def _disk_size(directory: Path) -> int:
    """Bytes of every file under a directory: a SavedModel's size on disk."""
    return sum(os.path.getsize(p) for p in Path(directory).rglob("*") if p.is_file())
