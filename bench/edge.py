"""Edge export: the example CTR model as a SavedModel and as TFLite float32, float16 and dynamic
range, side by side in one run: size on disk, latency per call of 1 and 32 rows, and the
predictions on the example's eval rows (largest difference from the SavedModel, AUC).

    .venv/bin/python bench/edge.py                                  # trains the example model first (~2 minutes)
    .venv/bin/python bench/edge.py --model-dir DIR --eval-dir DIR   # a trained CTR model and its eval split

The exports are made by `plinth model export ctr 1 --quantize Q` in a throw-away project. Each
runtime is measured in its own fresh process, one thread each: the SavedModel through its
serving signature with TensorFlow (as the version server calls it), the TFLite models with
LiteRT (ai-edge-litert) in a process where TensorFlow is never imported, as on a device
(platform_cli/edge/device.py). Latency: median and p99 of 3 000 calls of 1 row and 1 000 calls
of 32 rows (the eval split's first rows), after 100 warm-up calls. Writes bench/results-edge.json
and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from run import make_project, plinth, write_results  # noqa: E402

QUANTIZATIONS = ("none", "float16", "dynamic")
CALLS = {1: 3000, 32: 1000}
WARM_UP = 100
PREDICT_BATCH = 4096


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def eval_split(eval_dir: Path):
    """(inputs {"cat", "num"}, labels) of the preprocessing job's eval split: the model's inputs."""
    import numpy as np
    import pandas as pd

    frame = pd.read_parquet(eval_dir)
    inputs = {"cat": np.stack(frame["cat"].to_numpy()).astype(np.int64), "num": np.stack(frame["num"].to_numpy()).astype(np.float32)}
    return inputs, frame["label"].to_numpy(dtype=np.float64)


def measure(runtime: str, location: Path, eval_dir: Path, out: Path) -> None:
    """In this (fresh) process: latency per call and predictions on every eval row of one runtime;
    the predictions go to out (.npy), the figures to stdout as JSON."""
    import statistics

    import numpy as np

    if runtime == "savedmodel":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        signature = tf.saved_model.load(str(location)).signatures["serving_default"]

        def call(inputs):
            return signature(**{key: tf.constant(value) for key, value in inputs.items()})["probability"].numpy()
    else:
        from platform_cli.edge.device import EdgeModel

        model = EdgeModel(location, threads=1)
        call = model.predict
    inputs, _ = eval_split(eval_dir)
    figures = {}
    for rows, calls in CALLS.items():
        batch = {key: value[:rows] for key, value in inputs.items()}
        for _ in range(WARM_UP):
            call(batch)
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            call(batch)
            times.append(time.perf_counter() - started)
        times.sort()
        figures[f"{rows} rows p50 us"] = round(statistics.median(times) * 1e6, 1)
        figures[f"{rows} rows p99 us"] = round(times[int(0.99 * len(times))] * 1e6, 1)
    n = len(inputs["cat"])
    predictions = np.concatenate([call({k: v[i:i + PREDICT_BATCH] for k, v in inputs.items()}) for i in range(0, n, PREDICT_BATCH)])
    np.save(out, predictions.astype(np.float64))
    figures["tensorflow imported"] = any(m.split(".")[0] == "tensorflow" for m in sys.modules)
    print(json.dumps(figures))


def run_measure(runtime: str, location: Path, eval_dir: Path, out: Path) -> dict:
    # Fresh interpreter per runtime, at the bench's own niceness; cwd outside the repository.
    result = subprocess.run([sys.executable, __file__, "--measure", runtime, str(location), str(eval_dir), str(out)],
                            capture_output=True, text=True, cwd=tempfile.gettempdir())
    if result.returncode != 0:
        raise SystemExit(f"measuring {runtime} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def trained_example(root: Path, env: dict[str, str]) -> tuple[Path, Path]:
    from serving import trained_model

    model_dir = trained_model(root, env)
    return model_dir, root / ".plinth" / "local" / "storage" / "ctr" / "features" / "eval"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="a trained CTR model directory (default: train the example)")
    parser.add_argument("--eval-dir", type=Path, help="its eval split (the preprocessing job's OUT/eval)")
    parser.add_argument("--measure", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        runtime, location, eval_dir, out = args.measure
        measure(runtime, Path(location), Path(eval_dir), Path(out))
        return 0
    if (args.model_dir is None) != (args.eval_dir is None):
        parser.error("--model-dir and --eval-dir go together")

    import numpy as np
    from sklearn.metrics import roc_auc_score

    root = Path(tempfile.mkdtemp(prefix="plinth-bench-edge-"))
    env = make_project(root)
    os.environ["PLINTH_PROJECT_DIR"] = str(root)
    results: dict = {"conditions": {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
        "load average before": [round(x, 2) for x in os.getloadavg()],
        "threads": 1, "calls": {f"{rows} rows": calls for rows, calls in CALLS.items()}, "warm-up calls": WARM_UP,
    }}
    try:
        model_dir, eval_dir = (args.model_dir, args.eval_dir) if args.model_dir else trained_example(root, env)
        from platform_cli.registry import ModelRegistry
        from platform_cli.spec.stack import load_stack

        stack = load_stack("local")
        ModelRegistry(stack.tracking_uri, stack.artifact_root).register("ctr", model_dir, {}, {"job_id": "bench"})
        results["conditions"]["model"] = "the example CTR model trained by this run" if args.model_dir is None else str(args.model_dir)
        exports = {}
        for quantization in QUANTIZATIONS:
            log(f"plinth model export ctr 1 --quantize {quantization}")
            started = time.perf_counter()
            exports[quantization] = json.loads(plinth(env, "model", "export", "ctr", "1", "--quantize", quantization, "-o", "json"))
            exports[quantization]["export_s"] = round(time.perf_counter() - started, 1)
        _, labels = eval_split(eval_dir)
        results["conditions"]["eval rows"] = len(labels)
        log("SavedModel: latency and eval predictions (TensorFlow)")
        rows = {"SavedModel": run_measure("savedmodel", model_dir, eval_dir, root / "savedmodel.npy")}
        rows["SavedModel"] |= {"bytes": exports["none"]["savedmodel_bytes"]}
        reference = np.load(root / "savedmodel.npy")
        rows["SavedModel"] |= {"max |dp|": 0.0, "auc": round(float(roc_auc_score(labels, reference)), 5)}
        for quantization, exported in exports.items():
            name = f"TFLite {'float32' if quantization == 'none' else quantization}"
            log(f"{name}: latency and eval predictions (LiteRT, no TensorFlow)")
            rows[name] = run_measure("tflite", root / exported["directory"], eval_dir, root / f"{quantization}.npy")
            predictions = np.load(root / f"{quantization}.npy")
            rows[name] |= {"bytes": exported["bytes"], "size vs float32": None, "export s": exported["export_s"],
                           "max |dp|": float(np.max(np.abs(predictions - reference))),
                           "mean |dp|": float(np.mean(np.abs(predictions - reference))),
                           "auc": round(float(roc_auc_score(labels, predictions)), 5),
                           "golden cases": exported["golden_cases"]}
        float32 = rows["TFLite float32"]["bytes"]
        for name, figures in rows.items():
            figures["size vs float32"] = round(figures["bytes"] / float32, 4)
        results["runtimes"] = rows
    finally:
        shutil.rmtree(root, ignore_errors=True)
    write_results(results, "results-edge.json")
    print(table(results))
    return 0


# The Markdown table's columns: title, and the cell from a runtime's name and figures.
COLUMNS = [
    ("runtime", lambda name, f: name),
    ("size on disk", lambda name, f: f"{f['bytes']:,} B"),
    ("vs TFLite float32", lambda name, f: f"{f['size vs float32']:.3f}"),
    *[(f"{rows} row{'s' if rows > 1 else ''} {q} µs", lambda name, f, key=f"{rows} rows {q} us": f[key])
      for rows in CALLS for q in ("p50", "p99")],
    ("max abs Δp", lambda name, f: f"{f['max |dp|']:.2e}"),
    ("AUC", lambda name, f: f"{f['auc']:.5f}"),
]


def table(results: dict) -> str:
    cells = [[title for title, _ in COLUMNS], ["---"] * len(COLUMNS)]
    cells += [[str(cell(name, figures)) for _, cell in COLUMNS] for name, figures in results["runtimes"].items()]
    return "\n".join("| " + " | ".join(row) + " |" for row in cells)


if __name__ == "__main__":
    sys.exit(main())
