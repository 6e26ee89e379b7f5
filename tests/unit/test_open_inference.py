"""Open Inference Protocol (v2) requests, answers and metadata, as pure functions."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest

from platform_cli.features import CategoricalFeature, FeatureSpec, NumericFeature, TextFeature
from platform_cli.serving.inputs import InvalidInput
from platform_cli.serving.open_inference import (
    InferRequest,
    Route,
    infer_response,
    Signature,
    parse_path,
    parse_request,
)

SPEC = FeatureSpec(
    categorical=[CategoricalFeature(name="user_id", buckets=16), CategoricalFeature(name="region", buckets=8, required=False)],
    numeric=[NumericFeature(name="price")],
    text=[TextFeature(name="comment", buckets=32, max_tokens=4)],
    label="clicked",
)


def test_paths_name_their_route() -> None:
    assert parse_path("/v2") == Route("server")
    assert parse_path("/v2/health/live") == Route("live")
    assert parse_path("/v2/health/ready") == Route("ready")
    assert parse_path("/v2/models/ctr") == Route("metadata", "ctr")
    assert parse_path("/v2/models/ctr/ready") == Route("model-ready", "ctr")
    assert parse_path("/v2/models/ctr/infer") == Route("infer", "ctr")
    assert parse_path("/v2/models/ctr/versions/2") == Route("metadata", "ctr", "2")
    assert parse_path("/v2/models/ctr/versions/2/infer") == Route("infer", "ctr", "2")
    for path in ("/v1/models/ctr", "/v2/models", "/v2/models/ctr/predict", "/v2/models/ctr/versions", "/v2/health"):
        assert parse_path(path) is None, path


def test_metadata_lists_every_raw_field_as_an_input() -> None:
    metadata = Signature(SPEC).metadata("ctr", [1, 2], "tensorflow_tflite")
    assert metadata["versions"] == ["1", "2"]
    assert [(i["name"], i["datatype"], i["shape"], i["parameters"]["required"]) for i in metadata["inputs"]] == [
        ("user_id", "BYTES", [-1], True), ("region", "BYTES", [-1], False), ("price", "FP32", [-1], True), ("comment", "BYTES", [-1], True)]
    assert metadata["outputs"] == [{"name": "probability", "datatype": "FP32", "shape": [-1]}]


def _json_body(**columns) -> bytes:
    inputs = [{"name": name, "datatype": datatype, "shape": [len(data)], "data": data} for name, (datatype, data) in columns.items()]
    return orjson.dumps({"id": "a", "inputs": inputs})


def test_json_tensors_become_the_rows_a_v1_request_carries() -> None:
    body = _json_body(user_id=("BYTES", ["u1", "u2"]), price=("INT64", [3, 4]), comment=("BYTES", ["hi", "yo"]))
    request, rows = Signature(SPEC).read(body)
    assert request.id == "a" and not request.binary_output
    assert rows.to_rows() == [{"user_id": "u1", "price": 3, "comment": "hi"}, {"user_id": "u2", "price": 4, "comment": "yo"}]
    # The typed decoder's columns are the general path's.
    assert rows == Signature(SPEC).rows(parse_request(body))
    # An [N, 1] tensor (nested data) is N rows too; a categorical field takes integers.
    _, rows = Signature(SPEC).read(orjson.dumps({"inputs": [
        {"name": "user_id", "datatype": "INT64", "shape": [2, 1], "data": [[7], [8]]},
        {"name": "price", "datatype": "FP32", "shape": [2, 1], "data": [[1.5], [2.5]]},
        {"name": "comment", "datatype": "BYTES", "shape": [2, 1], "data": [["a"], ["b"]]}]}))
    assert rows.values["user_id"] == [7, 8] and rows.rows == 2


def test_an_answer_in_binary_is_asked_for_in_either_place() -> None:
    columns = {"user_id": ("BYTES", ["u"]), "price": ("FP32", [1.0]), "comment": ("BYTES", ["a"])}
    plain = orjson.loads(_json_body(**columns))
    for asked in ({"parameters": {"binary_data_output": True}},
                  {"outputs": [{"name": "probability", "parameters": {"binary_data": True}}]}):
        request, _ = Signature(SPEC).read(orjson.dumps(plain | asked))
        assert request.binary_output, asked
    assert not Signature(SPEC).read(orjson.dumps(plain | {"outputs": [{"name": "probability"}]}))[0].binary_output


def test_binary_tensors_are_read_as_both_clients_send_them() -> None:
    words = [b"u1", "caf\u00e9".encode()]
    strings = b"".join(struct.pack("<I", len(w)) + w for w in words)
    prices = np.array([1.5, -2.0], dtype="<f4").tobytes()
    comments = b"".join(struct.pack("<I", len(w)) + w for w in (b"a b", b""))
    header = orjson.dumps({"inputs": [
        {"name": "user_id", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": len(strings)}},
        {"name": "price", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": len(prices)}},
        {"name": "comment", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": len(comments)}}],
        "outputs": [{"name": "probability", "parameters": {"binary_data": True}}]})
    request, rows = Signature(SPEC).read(header + strings + prices + comments, len(header))
    assert request.binary_output
    assert rows.to_rows() == [{"user_id": "u1", "price": 1.5, "comment": "a b"}, {"user_id": "caf\u00e9", "price": -2.0, "comment": ""}]


def test_the_answer_is_one_fp32_output_in_json_or_binary() -> None:
    probabilities = np.array([0.25, 0.5], dtype=np.float32)
    body, length = infer_response("ctr", 2, InferRequest(id="a"), probabilities)
    assert length is None
    assert orjson.loads(body) == {"model_name": "ctr", "model_version": "2", "id": "a",
                                  "outputs": [{"name": "probability", "datatype": "FP32", "shape": [2], "data": [0.25, 0.5]}]}
    body, length = infer_response("ctr", 2, InferRequest(id=None, binary_output=True), probabilities)
    assert orjson.loads(body[:length])["outputs"][0]["parameters"] == {"binary_data_size": 8}
    assert np.frombuffer(body[length:], dtype="<f4").tolist() == [0.25, 0.5]


def _binary_header(size: int) -> bytes:
    return orjson.dumps({"inputs": [{"name": "price", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": size}}]})


@pytest.mark.parametrize("body, header_length, message", [
    (b"[1", None, "the request body is not JSON"),
    (b'{"inputs": []}', None, 'expected a JSON object {"inputs"'),
    (b'{"inputs": [{"name": "price", "datatype": "FP32", "shape": "3", "data": [1]}]}', None, "input 'price' needs a shape"),
    (b'{"inputs": [{"name": "price", "shape": [1], "data": [1]}]}', None, "input 'price' needs a datatype"),
    (b'{"inputs": [{"name": "price", "datatype": "FP32", "shape": [1]}]}', None, "input 'price' has neither data nor"),
    (_binary_header(8) + b"1234", len(_binary_header(8)), "input 'price': binary_data_size 8 runs past the body's binary part (4 bytes)"),
    (_binary_header(3) + b"123", len(_binary_header(3)), "input 'price': 3 bytes is not a whole number of FP32 elements"),
    (b"{}", 10, "inference-header-content-length is 10 but the body has 2 bytes"),
])
def test_a_malformed_request_names_what_is_wrong(body: bytes, header_length: int | None, message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        Signature(SPEC).read(body, header_length)
    assert message in refused.value.reason


@pytest.mark.parametrize("columns, message", [
    ({"user_id": ("FP32", [1.0]), "price": ("FP32", [1.0]), "comment": ("BYTES", ["a"])},
     "input 'user_id' is a categorical field: datatype BYTES or INT64 or INT32, not FP32"),
    ({"user_id": ("BYTES", ["u"]), "price": ("BYTES", ["1"]), "comment": ("BYTES", ["a"])},
     "input 'price' is a numeric field: datatype FP32 or FP64 or INT64 or INT32, not BYTES"),
    ({"user_id": ("BYTES", ["u"]), "price": ("FP32", [1.0]), "comment": ("INT64", [1])},
     "input 'comment' is a text field: datatype BYTES, not INT64"),
    ({"user_id": ("BYTES", ["u"]), "comment": ("BYTES", ["a"])}, "missing input 'price'"),
    ({"user_id": ("BYTES", ["u"]), "price": ("FP32", [1.0]), "comment": ("BYTES", ["a"]), "colour": ("BYTES", ["red"])},
     "unknown input 'colour'; the model's inputs are user_id, region, price, comment"),
    ({"user_id": ("BYTES", ["u", "v"]), "price": ("FP32", [1.0]), "comment": ("BYTES", ["a"])},
     "input 'price' has 1 rows, the inputs before it 2"),
    ({"user_id": ("BYTES", []), "price": ("FP32", []), "comment": ("BYTES", [])}, "the inputs hold no rows"),
])
def test_inputs_that_do_not_fit_the_model_are_refused_by_name(columns: dict, message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        Signature(SPEC).read(_json_body(**columns))
    assert message in refused.value.reason


def test_a_shape_that_is_not_one_element_per_row_is_refused() -> None:
    def tensors(user_shape, user_data) -> InferRequest:
        return InferRequest(id=None, tensors=[{"name": "user_id", "datatype": "BYTES", "shape": user_shape, "data": user_data},
                                              {"name": "price", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]},
                                              {"name": "comment", "datatype": "BYTES", "shape": [2], "data": ["x", "y"]}])

    with pytest.raises(InvalidInput, match=r"input 'user_id': shape \[2, 2\] is not \[N\] \(or \[N, 1\]\), one element per row"):
        Signature(SPEC).rows(tensors([2, 2], ["a", "b", "c", "d"]))
    with pytest.raises(InvalidInput, match=r"input 'user_id': shape \[3\] says 3 elements, the data has 2"):
        Signature(SPEC).rows(tensors([3], ["a", "b"]))
    with pytest.raises(InvalidInput, match="input 'user_id' is given twice"):
        Signature(SPEC).rows(InferRequest(id=None, tensors=tensors([2], ["a", "b"]).tensors * 2))
