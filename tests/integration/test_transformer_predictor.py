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


def _v2_predictions(url: str, model: str, binary: bool) -> list[float]:
    """ROWS as v2 input tensors sent with KServe's InferenceRESTClient (JSON, or its binary form)."""
    import asyncio

    from kserve import InferInput, InferRequest, InferenceRESTClient, RESTConfig

    inputs = []
    for feature in (*SPEC.categorical, *SPEC.numeric):
        values = [row.get(feature.name) for row in ROWS]
        categorical = feature in SPEC.categorical
        tensor = InferInput(feature.name, [len(ROWS)], "BYTES" if categorical else "FP32")
        array = np.array([str(v) for v in values], dtype=object) if categorical else np.array(values, dtype=np.float32)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)

    async def infer():
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        try:
            # KServe's client posts a JSON body without a content type, and KServe's server then
            # takes it for a binary one (a 400 asking for inference-header-content-length): say it.
            headers = None if binary else {"content-type": "application/json"}
            answer = await client.infer(url, InferRequest(model, inputs, request_id="r1"), model_name=model, headers=headers)
        finally:
            await client.close()
        return answer.outputs[0].as_numpy().tolist()

    loop = asyncio.new_event_loop()  # its own loop: asyncio.run would leave the thread without one
    try:
        return loop.run_until_complete(infer())
    finally:
        loop.close()


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
            # The Open Inference Protocol through KServe's own v2 routes, with its own client:
            # the same predictions, the raw fields listed as the model's inputs.
            assert _v2_predictions(transformer.url, "ctr-v1", binary=False) == pytest.approx(expected.tolist(), rel=1e-6)
            assert _v2_predictions(transformer.url, "ctr-v1", binary=True) == pytest.approx(expected.tolist(), rel=1e-6)
            metadata = httpx.get(f"{transformer.url}/v2/models/ctr-v1", timeout=30).json()
            assert [i["name"] for i in metadata["inputs"]] == [f.name for f in (*SPEC.categorical, *SPEC.numeric)]
            bad_v2 = httpx.post(f"{transformer.url}/v2/models/ctr-v1/infer", timeout=30,
                                json={"inputs": [{"name": "user_id", "datatype": "FP32", "shape": [1], "data": [1.0]}]})
            assert bad_v2.status_code == 400 and "input 'user_id' is a categorical field" in bad_v2.json()["error"]
            # KServe 0.15 has no per-version routes (a cluster's versions are InferenceServices of their own).
            assert httpx.post(f"{transformer.url}/v2/models/ctr-v1/versions/1/infer", json={"inputs": []}, timeout=30).status_code == 501
            # The predictor takes model inputs, not raw rows.
            raw = httpx.post(f"{predictor.url}/v1/models/ctr-v1:predict", json={"instances": ROWS}, timeout=30)
            assert raw.status_code == 400 and 'every instance needs "cat"' in raw.json()["error"]
        finally:
            local.stop("ctr-v1", tmp_path / "transformer")
    finally:
        local.stop("ctr-v1", tmp_path / "predictor")
