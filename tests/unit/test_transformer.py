"""The transformer's output is exactly what the predictor behind it turns back into model inputs."""

from __future__ import annotations

import numpy as np
import pytest
from kserve.errors import InvalidInput as KServeInvalidInput

from platform_cli.features import transform
from platform_cli.serving.inputs import InvalidInput, tensor_inputs
from platform_cli.serving.transformer import FeatureTransformer
from tests.integration.test_serving import ROWS, SPEC


@pytest.fixture
def transformer(tmp_path):
    SPEC.save(tmp_path / "feature_spec.json")
    model = FeatureTransformer("ctr-v1", tmp_path / "feature_spec.json", predictor_host="ctr-v1-predictor.feed")
    model.load()
    return model


def test_transformer_then_predictor_inputs_equal_the_shared_transform(transformer):
    sent = transformer.preprocess({"instances": ROWS})
    received = tensor_inputs(SPEC, sent["instances"])
    expected = transform(SPEC, ROWS)
    for key in ("cat", "num"):
        assert received[key].dtype == expected[key].dtype
        np.testing.assert_array_equal(received[key], expected[key])
    assert transformer.predictor_host == "ctr-v1-predictor.feed"  # KServe's predict() forwards there


@pytest.mark.parametrize(("payload", "message"), [
    ({"rows": ROWS}, '"instances"'),
    ({"instances": [{"user_id": "u1", "price": 1.0}]}, "'ad_id'"),
])
def test_bad_raw_requests_are_kserves_invalid_input(transformer, payload, message):
    with pytest.raises(KServeInvalidInput, match=message):
        transformer.preprocess(payload)


@pytest.mark.parametrize("payload", [
    {"instances": [{"cat": [1], "num": [0.5]}]},  # one categorical id short
    {"instances": [{"cat": [1, 2]}]},
    {"instances": [{"cat": ["a", "b"], "num": [0.5]}]},
])
def test_bad_tensor_requests_are_invalid_input(payload):
    with pytest.raises(InvalidInput, match="every instance needs"):
        tensor_inputs(SPEC, payload["instances"])
