"""An export's manifest: what a device (or the person integrating it) needs to know about the files.

    manifest = build_manifest(model="ctr", version=3, run_id=..., quantization="float16",
                              io=tflite.io_details(interpreter), contents={"model.tflite": b"...", ...},
                              savedmodel_bytes=5_611_160, probe_rows=64, max_abs_diff=2.1e-4)

Pure: the same inputs give the same manifest, so a re-export with the same options writes the
same bytes (no timestamps; when it was exported is the registry's record).
"""

from __future__ import annotations

import hashlib

from platform_cli.features import SPEC_FILE
from platform_cli.edge.golden import GOLDEN_FILE

MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.tflite"
FORMATS = ("tflite",)
# What each quantization stores, for the manifest's reader.
_WEIGHTS = {"none": "float32", "float16": "float16 (dequantized to float32 by the runtime)", "dynamic": "int8 with a float scale per tensor"}


def export_key(fmt: str, quantization: str) -> str:
    """The export's name among a version's exports (its directory, and its artifact path under
    exports/): one per format and quantization, so different quantizations coexist."""
    return f"{fmt}-{quantization}"


def build_manifest(
    *,
    model: str,
    version: int,
    run_id: str,
    quantization: str,
    io: dict[str, list[dict]],
    contents: dict[str, bytes],
    savedmodel_bytes: int,
    probe_rows: int,
    max_abs_diff: float,
) -> dict:
    """The manifest of an export whose files (other than the manifest) are `contents`."""
    tflite_bytes = len(contents[MODEL_FILE])
    return {
        "format": "tflite",
        "source": {"model": model, "version": version, "uri": f"models:/{model}/{version}", "run_id": run_id},
        "signature": "serving_default",
        "inputs": io["inputs"],
        "outputs": io["outputs"],
        "quantization": {"mode": quantization, "weights": _WEIGHTS[quantization], "activations": "float32"},
        "ops": "TFLite built-in operators only",
        "files": {name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()} for name, data in sorted(contents.items())},
        "sizes": {"tflite_bytes": tflite_bytes, "savedmodel_bytes": savedmodel_bytes,
                  "ratio": round(tflite_bytes / savedmodel_bytes, 4) if savedmodel_bytes else None},
        "agreement": {"probe_rows": probe_rows, "max_abs_diff": max_abs_diff,
                      "against": "the SavedModel's serving signature, on seeded random ids and numbers within the feature spec's ranges"},
        "features": {"spec": SPEC_FILE, "golden_vectors": GOLDEN_FILE,
                     "note": "the model takes ids: hash raw fields as the feature spec says, and check that hashing against the golden vectors"},
    }


def summary(manifest: dict) -> dict:
    """The few facts kept with the version in the model library (and shown by `plinth model show`)."""
    return {
        "format": manifest["format"],
        "quantization": manifest["quantization"]["mode"],
        "bytes": manifest["sizes"]["tflite_bytes"],
        "sha256": manifest["files"][MODEL_FILE]["sha256"],
        "max_abs_diff": manifest["agreement"]["max_abs_diff"],
    }
