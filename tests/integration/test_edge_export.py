"""`plinth model export --format tflite` on a tiny click model, and the export checked as a device
would run it: in a process where TensorFlow cannot be imported, with LiteRT and Plinth's numpy
hashing, against the SavedModel's predictions on eval rows.

The model has the trained-model contract (cat/num/tokens in, probability out, with a feature
spec) and embedding tables large enough (over 1024 weights each) for the converter to quantize
them, so float16 and dynamic-range exports really store smaller weights.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from platform_cli.features import SPEC_FILE
from platform_cli.main import app
from tests.conftest import REPO
from tests.integration.test_gray_release import plinth
from tests.unit.test_edge_export import SPEC

pytestmark = pytest.mark.integration

WORDS = ["sale", "新品", "限时", "free", "shipping", "über", "café", "热门", "video", "😀", "don't", "news"]
EVAL_ROWS = 2000

# Float16 stores weights with an 11-bit mantissa (relative error ≤ 2^-11); dynamic range stores
# them as int8 (a step of 1/127 of a tensor's largest weight) and its hybrid kernels quantize the
# activations to int8 on the fly as well, so a probability moves by up to a few hundredths.
# Bounds on that, and on what it may do to the ranking of the eval rows (AUC).
MAX_DIFF = {"none": 1e-6, "float16": 2e-3, "dynamic": 5e-2}
MAX_AUC_DROP = {"none": 0.0, "float16": 0.002, "dynamic": 0.002}


def _build_model(path: Path, needs_string_ops: bool = False) -> None:
    """A tiny click model over hashed ids, word ids and a number. needs_string_ops: one that
    hashes inside the graph (tf.strings), which TFLite's built-in ops cannot run."""
    import tensorflow as tf

    rows = sum(f.buckets for f in SPEC.categorical)

    class TinyCtr(tf.Module):
        def __init__(self):
            super().__init__()
            self.ids = tf.Variable(tf.random.stateless_normal([rows, 8], seed=[1, 2]) * 0.5)
            self.words = tf.Variable(tf.random.stateless_normal([SPEC.text[0].buckets, 8], seed=[3, 4]) * 0.5)
            self.dense = tf.Variable(tf.random.stateless_normal([17, 1], seed=[5, 6]))
            self.offsets = tf.constant([0, SPEC.categorical[0].buckets], dtype=tf.int64)

        @tf.function(input_signature=[
            tf.TensorSpec([None, 2], tf.int64, name="cat"),
            tf.TensorSpec([None, 1], tf.float32, name="num"),
            tf.TensorSpec([None, SPEC.text[0].max_tokens], tf.int64, name="tokens"),
        ])
        def serve(self, cat, num, tokens):
            if needs_string_ops:
                cat = tf.strings.to_hash_bucket_fast(tf.strings.as_string(cat), SPEC.categorical[1].buckets)
            ids = tf.reduce_sum(tf.gather(self.ids, cat + self.offsets), axis=1)
            mask = tf.cast(tokens > 0, tf.float32)[:, :, None]
            words = tf.reduce_sum(tf.gather(self.words, tokens) * mask, axis=1)
            logit = tf.matmul(tf.nn.relu(tf.concat([ids, words, num], axis=1)), self.dense)[:, 0] - 1.0
            return {"probability": tf.sigmoid(logit)}

    module = TinyCtr()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    SPEC.save(path / SPEC_FILE)


def eval_rows() -> list[dict]:
    """Raw rows as clients send them: string and integer ids, Unicode titles, missing values."""
    rng = np.random.default_rng(11)
    rows = []
    for i in range(EVAL_ROWS):
        title = " ".join(rng.choice(WORDS, size=rng.integers(0, 6)))
        rows.append({
            "user_id": f"u{rng.integers(5000):05d}",
            "device": int(rng.integers(10)) if i % 3 else f"device-{rng.integers(10)}",
            "price": None if i % 17 == 0 else float(rng.gamma(2.0, 3.0)),
            "title": None if i % 23 == 0 else title.title(),
        })
    return rows


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project whose registry holds `ctr` v1 (the tiny model), v2 (the same model, for the
    re-export test alone) and v3 (a model that hashes strings in its graph)."""
    root = tmp_path_factory.mktemp("edge") / "project"
    root.mkdir()
    (root / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    (root / "stacks").mkdir()
    (root / "stacks" / "Pulumi.local.yaml").write_text(yaml.safe_dump({"config": {
        "plinth:target": "local", "plinth:local": {"home": ".plinth/local"}}}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PLINTH_PROJECT_DIR", str(root))
        patch.delenv("PLINTH_STACK", raising=False)
        from platform_cli.registry import ModelRegistry
        from platform_cli.spec.stack import load_stack

        stack = load_stack("local")
        registry = ModelRegistry(stack.tracking_uri, stack.artifact_root)
        tiny, unconvertible = root / "model-tiny", root / "model-strings"
        _build_model(tiny)
        _build_model(unconvertible, needs_string_ops=True)
        for model_dir in (tiny, tiny, unconvertible):
            registry.register("ctr", model_dir, {"auc": 0.7}, {"job_id": "ctr-train"})
        yield root, registry, tiny


def export(*args: str) -> dict:
    return json.loads(plinth("model", "export", "ctr", *args, "-o", "json"))


def test_export_writes_model_spec_golden_vectors_and_manifest_and_keeps_them_with_the_version(project):
    root, registry, tiny = project
    result = export("1", "--format", "tflite", "--quantize", "none")
    directory = root / result["directory"]
    assert result["directory"] == ".plinth/local/exports/ctr/v1/tflite-none"
    assert sorted(p.name for p in directory.iterdir()) == ["feature_spec.json", "golden_vectors.json", "manifest.json", "model.tflite"]
    assert (directory / SPEC_FILE).read_bytes() == (tiny / SPEC_FILE).read_bytes()
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["inputs"] == [
        {"name": "cat", "dtype": "int64", "shape": [-1, 2]},
        {"name": "num", "dtype": "float32", "shape": [-1, 1]},
        {"name": "tokens", "dtype": "int64", "shape": [-1, 6]},
    ]
    assert manifest["outputs"] == [{"name": "probability", "dtype": "float32", "shape": [-1]}]
    assert manifest["source"]["uri"] == "models:/ctr/1" and manifest["quantization"]["mode"] == "none"
    model_sha = hashlib.sha256((directory / "model.tflite").read_bytes()).hexdigest()
    assert manifest["files"]["model.tflite"]["sha256"] == model_sha == result["sha256"]
    assert manifest["agreement"]["max_abs_diff"] <= 1e-6
    golden = json.loads((directory / "golden_vectors.json").read_text())
    assert set(golden["categorical"]) == {"user_id", "device"} and set(golden["text"]) == {"title"}

    # kept with the version: listed by `plinth model show`, and its files are artifacts of the version's run
    shown = json.loads(plinth("model", "show", "ctr", "1", "-o", "json"))
    assert shown["exports"]["tflite-none"] == {
        "artifacts": "exports/tflite-none", "bytes": manifest["sizes"]["tflite_bytes"], "format": "tflite",
        "max_abs_diff": manifest["agreement"]["max_abs_diff"], "quantization": "none", "sha256": model_sha}
    stored = Path(result["artifacts_uri"].removeprefix("file://"))
    assert sorted(p.name for p in stored.iterdir()) == sorted(p.name for p in directory.iterdir())
    assert (stored / "model.tflite").read_bytes() == (directory / "model.tflite").read_bytes()


def test_exporting_again_changes_nothing_and_quantizations_live_side_by_side(project):
    root, registry, _ = project
    first = export("2", "--quantize", "none")
    files = {p.name: p.read_bytes() for p in (root / first["directory"]).iterdir()}
    again = export("2", "--quantize", "none")
    assert first["change"] == "new" and again["change"] == "unchanged"
    assert {p.name: p.read_bytes() for p in (root / again["directory"]).iterdir()} == files
    half, dynamic = export("2", "--quantize", "float16"), export("2", "--quantize", "dynamic")
    assert set(registry.get("ctr", 2).exports) == {"tflite-none", "tflite-float16", "tflite-dynamic"}
    assert sorted(p.name for p in (root / ".plinth/local/exports/ctr/v2").iterdir()) == ["tflite-dynamic", "tflite-float16", "tflite-none"]
    # the quantized tables really are smaller (their weights dominate this model)
    assert dynamic["bytes"] < half["bytes"] < first["bytes"]
    assert half["bytes"] <= 0.55 * first["bytes"] and dynamic["bytes"] <= 0.35 * first["bytes"]


NO_TENSORFLOW_CHECK = textwrap.dedent("""
    import importlib.abc, json, sys

    class NoTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "keras", "tf_keras"):
                raise ImportError(f"{name}: this process checks an export without TensorFlow")

    sys.meta_path.insert(0, NoTensorFlow())
    try:
        import tensorflow
    except ImportError:
        blocked = True
    else:
        blocked = False

    from platform_cli.edge.device import EdgeModel

    export_dir, rows_file, out_file = sys.argv[1:]
    model = EdgeModel(export_dir)
    problems = model.check_hashing()
    predictions = model.predict_rows(json.load(open(rows_file)))
    json.dump({
        "blocked": blocked,
        "problems": problems,
        "predictions": predictions.astype(float).tolist(),
        "io": model.io_details(),
        "manifest_io": {"inputs": model.manifest["inputs"], "outputs": model.manifest["outputs"]},
        "tensorflow_modules": sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras")),
        "litert": "ai_edge_litert.interpreter" in sys.modules,
    }, open(out_file, "w"))
""")


@pytest.mark.parametrize("quantization", ["none", "float16", "dynamic"])
def test_litert_without_tensorflow_hashes_like_the_golden_vectors_and_predicts_like_the_savedmodel(project, tmp_path, quantization):
    from platform_cli.serving.server import SavedModelPredictor

    root, _, tiny = project
    result = export("1", "--quantize", quantization)
    rows = eval_rows()
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    check = subprocess.run(
        [sys.executable, "-c", NO_TENSORFLOW_CHECK, str(root / result["directory"]), str(tmp_path / "rows.json"), str(tmp_path / "out.json")],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert check.returncode == 0, check.stderr[-3000:]
    device = json.loads((tmp_path / "out.json").read_text())
    assert device["blocked"] and device["tensorflow_modules"] == [] and device["litert"]
    assert device["problems"] == []
    assert device["io"] == device["manifest_io"]

    saved_model = SavedModelPredictor("ctr", tiny, runtime="savedmodel")
    saved_model.load()
    expected = saved_model.probabilities(saved_model.inputs(rows)).astype(np.float64)
    predicted = np.array(device["predictions"])
    difference = float(np.max(np.abs(predicted - expected)))
    # labels drawn from the SavedModel's own probabilities: an AUC that means something
    labels = np.random.default_rng(5).random(len(rows)) < expected
    auc_saved_model, auc_export = roc_auc_score(labels, expected), roc_auc_score(labels, predicted)
    print(f"\n{quantization}: max |Δp| {difference:.3e} over {len(rows)} eval rows; AUC SavedModel {auc_saved_model:.5f}, TFLite {auc_export:.5f}")
    assert difference <= MAX_DIFF[quantization]
    assert auc_saved_model - auc_export <= MAX_AUC_DROP[quantization]
    if quantization == "none":
        assert difference <= 1e-6
    else:  # quantized weights do change predictions, a little
        assert difference > 0


def test_user_errors_are_one_line_and_leave_nothing_behind(project):
    root, registry, _ = project

    def refused(*args: str) -> str:
        result = CliRunner().invoke(app, ["model", "export", "ctr", *args])
        assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
        assert result.output.startswith("error: ")
        return result.output.strip()

    assert refused("9") == "error: model 'ctr' has no version 9; versions: 1, 2, 3"
    assert refused("1", "--quantize", "int8") == "error: quantize: 'int8' is not a quantization; use none, float16, dynamic"
    assert refused("1", "--format", "onnx") == "error: format: 'onnx' is not an export format; use tflite"
    assert refused("3") == (
        "error: model ctr version 3 does not convert to TFLite built-in ops: it uses tf.AsString, tf.StringToHashBucketFast; "
        "keep string handling and hashing out of the serving signature (the feature spec hashes fields before the model) and retrain")
    assert not (root / ".plinth/local/exports/ctr/v3").exists()
    assert not (root / ".plinth/local/exports/ctr/v9").exists()
    assert registry.get("ctr", 3).exports == {}
