"""The cluster layout run locally: the transformer process in front of a predictor process.

These are the two containers an InferenceService gets from platform_cli/render/serving.py,
started with the same commands (KServe's own flags for the transformer, --tensor-inputs for
the predictor): a raw request to the transformer must give the predictions of the model
called in-process on the shared transform. What this does not prove: KServe's controller,
storage initializer and networking on a real cluster.
"""

from __future__ import annotations

import sys

import httpx
import numpy as np
import pytest

from platform_cli.features import transform
from platform_cli.serving import local
from tests.integration.test_serving import ROWS, SPEC, _build_model, _free_port

pytestmark = pytest.mark.integration


def test_transformer_forwards_model_inputs_to_the_predictor(tmp_path):
    import tensorflow as tf

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    _build_model(model_dir)
    predictor_port, transformer_port = _free_port(), _free_port()
    predictor = local.launch(
        "ctr-v1", 1,
        [sys.executable, "-m", "platform_cli.serving.server", "--model-name", "ctr-v1", "--model-dir", str(model_dir),
         "--host", "127.0.0.1", "--http-port", str(predictor_port), "--tensor-inputs"],
        "127.0.0.1", predictor_port, tmp_path / "predictor", tmp_path / "predictor.log")
    try:
        transformer = local.launch(
            "ctr-v1", 1,
            [sys.executable, "-m", "platform_cli.serving.transformer", "--feature_spec", str(model_dir / "feature_spec.json"),
             "--model_name", "ctr-v1", "--predictor_host", f"127.0.0.1:{predictor_port}", "--http_port", str(transformer_port)],
            "127.0.0.1", transformer_port, tmp_path / "transformer", tmp_path / "transformer.log")
        try:
            answer = httpx.post(f"{transformer.url}/v1/models/ctr-v1:predict", json={"instances": ROWS}, timeout=30)
            assert answer.status_code == 200, answer.text
            inputs = transform(SPEC, ROWS)
            expected = tf.saved_model.load(str(model_dir)).signatures["serving_default"](
                cat=tf.constant(inputs["cat"]), num=tf.constant(inputs["num"]))["probability"].numpy()
            np.testing.assert_allclose(answer.json()["predictions"], expected, rtol=1e-6)

            # A bad raw request stops at the transformer with the reason; serving goes on.
            bad = httpx.post(f"{transformer.url}/v1/models/ctr-v1:predict", json={"instances": [{"user_id": "u1"}]}, timeout=30)
            assert bad.status_code == 400 and "'ad_id'" in bad.json()["error"]
            # The predictor takes model inputs, not raw rows.
            raw = httpx.post(f"{predictor.url}/v1/models/ctr-v1:predict", json={"instances": ROWS}, timeout=30)
            assert raw.status_code == 400 and 'every instance needs "cat"' in raw.json()["error"]
        finally:
            local.stop("ctr-v1", tmp_path / "transformer")
    finally:
        local.stop("ctr-v1", tmp_path / "predictor")
