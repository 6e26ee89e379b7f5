"""An edge export as a device runs it: LiteRT's interpreter and Plinth's numpy hashing, no TensorFlow.

    model = EdgeModel(".plinth/local/exports/ctr/v3/tflite-float16")
    model.check_hashing()                   # [] when the golden vectors hold for this hashing code
    model.predict_rows([{"user_id": "u000042", ...}])   # raw fields -> probabilities
    model.predict({"cat": ..., "num": ...})              # model inputs -> probabilities

    python -m platform_cli.edge.device EXPORT_DIR [--rows request.json]   # the same, as a check

What a port to a phone does with the same files: read the manifest, hash fields as the feature
spec says, check that hashing against golden_vectors.json, run model.tflite. Importing this
module loads neither TensorFlow nor MLflow (a test runs it where TensorFlow cannot be imported).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from platform_cli import tflite
from platform_cli.edge.golden import GOLDEN_FILE, case_count, check_golden
from platform_cli.edge.manifest import MANIFEST_FILE, MODEL_FILE
from platform_cli.features import SPEC_FILE, FeatureSpec, transform

if TYPE_CHECKING:
    import numpy as np


class EdgeModel:
    def __init__(self, export_dir: str | Path, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.directory = Path(export_dir)
        self.manifest = json.loads((self.directory / MANIFEST_FILE).read_text())
        self.spec = FeatureSpec.load(self.directory / SPEC_FILE)
        self.golden = json.loads((self.directory / GOLDEN_FILE).read_text())
        self.interpreter = Interpreter(model_path=str(self.directory / MODEL_FILE), num_threads=threads)
        self._call = tflite.signature_call(self.interpreter)

    def check_hashing(self) -> list[str]:
        """Where Plinth's feature transform in this process disagrees with the export's golden
        vectors: [] when every value and token hashes to its listed id."""
        return check_golden(self.spec, self.golden)

    def io_details(self) -> dict[str, list[dict]]:
        """The model's inputs and outputs as this interpreter sees them (the manifest's, if intact)."""
        return tflite.io_details(self.interpreter)

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """float32 [N] probabilities for model inputs {"cat", "num"[, "tokens"]}."""
        return self._call(inputs)

    def predict_rows(self, rows: list[dict]) -> np.ndarray:
        """float32 [N] probabilities for raw rows, hashed with the export's feature spec."""
        return self._call(transform(self.spec, rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platform_cli.edge.device",
                                     description="Check an edge export as a device runs it: LiteRT and Plinth's numpy hashing, no TensorFlow.")
    parser.add_argument("export_dir", help="a directory written by plinth model export")
    parser.add_argument("--rows", help='a request file {"instances": [<raw fields>, ...]} to predict')
    args = parser.parse_args(argv)
    model = EdgeModel(args.export_dir)
    source, quantization = model.manifest["source"], model.manifest["quantization"]["mode"]
    cases = case_count(model.golden)
    problems = model.check_hashing()
    print(f"{source['uri']} tflite-{quantization}: {cases - len(problems)} of {cases} golden hashing cases agree")
    for problem in problems[:20]:
        print(f"  {problem}")
    if args.rows:
        rows = json.loads(Path(args.rows).read_text())["instances"]
        print(f"predictions: {json.dumps([round(float(p), 6) for p in model.predict_rows(rows)])}")
    print(f"tensorflow imported: {'yes' if 'tensorflow' in sys.modules else 'no'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
