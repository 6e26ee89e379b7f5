"""The Open Inference Protocol (v2) and Prometheus metrics of a served model, through its split.

Two tiny versions of a click model serve a 50/50 split on a throw-away local stack, each with
two worker processes. KServe's `InferenceRESTClient` and Triton's `tritonclient.http`, as
their users run them (binary tensors by default, and JSON), send the raw rows as named input
tensors through the router; their predictions must equal what the v1 protocol answers for the
same rows from the version that answered. Version-specific paths must reach that version; bad
requests get a 4xx with a message and serving goes on; /metrics on the router and the version
servers counts what was sent, over both workers, and `plinth model compare` shows those counts.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import httpx
import numpy as np
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from platform_cli.main import app
from tests.conftest import local_project
from tests.integration.test_gray_release import plinth, register_two_versions
from tests.integration.test_serving import ROWS, _free_port

pytestmark = pytest.mark.integration

COLUMNS = {
    "user_id": [r["user_id"] for r in ROWS],
    "ad_id": [str(r["ad_id"]) for r in ROWS],  # 42 as "42": the same token as the integer
    "price": [float(r["price"]) for r in ROWS],
}


def v2_body(columns: dict = COLUMNS, price_type: str = "FP64") -> dict:
    return {"inputs": [
        {"name": "user_id", "datatype": "BYTES", "shape": [len(columns["user_id"])], "data": columns["user_id"]},
        {"name": "ad_id", "datatype": "BYTES", "shape": [len(columns["ad_id"])], "data": columns["ad_id"]},
        {"name": "price", "datatype": price_type, "shape": [len(columns["price"])], "data": columns["price"]},
    ]}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """ctr versions 1 and 2 at 50% each, two workers per version; (router URL, {version:
    server URL}, {version: v1 predictions for ROWS})."""
    root = local_project(tmp_path_factory.mktemp("open-inference") / "project",
                         {"host": "127.0.0.1", "port": _free_port(), "workers": 2,
                          "grayRelease": {"requireApproval": False, "canaryMax": 50}})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PLINTH_PROJECT_DIR", str(root))
        patch.delenv("PLINTH_STACK", raising=False)
        from platform_cli.registry import ModelRegistry
        from platform_cli.serving import local
        from platform_cli.spec.stack import load_stack

        stack = load_stack("local")
        register_two_versions(root, ModelRegistry(stack.tracking_uri, stack.artifact_root), lambda v: {"job_id": f"ctr-train-{v}"})
        try:
            plinth("model", "promote", "ctr", "1")
            plinth("model", "promote", "ctr", "2", "--canary", "50")
            servers = {v: local.find(local.state_dir(stack), f"ctr-v{v}").url for v in (1, 2)}
            v1_answers = {v: httpx.post(f"{url}/v1/models/ctr:predict", json={"instances": ROWS}).json()["predictions"]
                          for v, url in servers.items()}
            yield f"http://127.0.0.1:{stack.config.serving.port}", servers, v1_answers
        finally:
            CliRunner().invoke(app, ["model", "stop", "ctr"])


def test_kserves_client_gets_the_v1_predictions_through_the_split(served):
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    router, _, v1_answers = served

    async def run():
        client = InferenceRESTClient(RESTConfig(protocol="v2"))
        try:
            assert await client.is_server_live(router) and await client.is_server_ready(router)
            assert await client.is_model_ready(router, "ctr")
            answers = []
            for binary in (True, False):  # the client's default is binary tensors
                inputs = [InferInput("user_id", [3], "BYTES"), InferInput("ad_id", [3], "BYTES"), InferInput("price", [3], "FP64")]
                inputs[0].set_data_from_numpy(np.array(COLUMNS["user_id"], dtype=np.object_), binary_data=binary)
                inputs[1].set_data_from_numpy(np.array(COLUMNS["ad_id"], dtype=np.object_), binary_data=binary)
                inputs[2].set_data_from_numpy(np.array(COLUMNS["price"], dtype=np.float64), binary_data=binary)
                for _ in range(6):
                    headers: dict = {}  # KServe's InferResponse drops model_version: the version's header says it
                    answer = await client.infer(router, InferRequest("ctr", inputs, request_id="r1"), model_name="ctr",
                                                response_headers=headers)
                    answers.append((int(headers["x-plinth-version"]), answer))
            return answers
        finally:
            await client.close()

    loop = asyncio.new_event_loop()  # not asyncio.run, which leaves the thread without a current loop
    try:
        answers = loop.run_until_complete(run())
    finally:
        loop.close()
    assert set(Counter(version for version, _ in answers)) <= {1, 2} and len(answers) == 12
    for version, answer in answers:
        [output] = answer.outputs
        assert (answer.model_name, answer.id) == ("ctr", "r1")
        assert (output.name, output.datatype, output.shape) == ("probability", "FP32", [3])
        assert output.as_numpy().tolist() == v1_answers[version]


def test_tritons_client_gets_the_v1_predictions_through_the_split_and_from_one_version(served):
    import tritonclient.http as triton

    router, _, v1_answers = served
    client = triton.InferenceServerClient(router.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("ctr")
        metadata = client.get_model_metadata("ctr")
        assert metadata["versions"] == ["1", "2"]
        assert [(i["name"], i["datatype"], i["shape"]) for i in metadata["inputs"]] == [
            ("user_id", "BYTES", [-1]), ("ad_id", "BYTES", [-1]), ("price", "FP32", [-1])]
        for binary in (True, False):
            inputs = [triton.InferInput("user_id", [3], "BYTES"), triton.InferInput("ad_id", [3], "BYTES"), triton.InferInput("price", [3], "FP64")]
            inputs[0].set_data_from_numpy(np.array(COLUMNS["user_id"], dtype=np.object_), binary_data=binary)
            inputs[1].set_data_from_numpy(np.array(COLUMNS["ad_id"], dtype=np.object_), binary_data=binary)
            inputs[2].set_data_from_numpy(np.array(COLUMNS["price"], dtype=np.float64), binary_data=binary)
            outputs = [triton.InferRequestedOutput("probability", binary_data=binary)]
            for _ in range(6):
                result = client.infer("ctr", inputs, outputs=outputs)
                version = int(result.get_response()["model_version"])
                assert result.as_numpy("probability").tolist() == v1_answers[version]
            for version in (1, 2):  # one version, by name: always that one
                result = client.infer("ctr", inputs, model_version=str(version), outputs=outputs)
                assert result.get_response()["model_version"] == str(version)
                assert result.as_numpy("probability").tolist() == v1_answers[version]
        # FP32, as the metadata declares: the same predictions to float32's precision (the
        # client rounds 1.5 and 9.0 exactly; a value like 20.11 would differ in its last bits).
        inputs[2] = triton.InferInput("price", [3], "FP32")
        inputs[2].set_data_from_numpy(np.array(COLUMNS["price"], dtype=np.float32))
        result = client.infer("ctr", inputs, model_version="1")
        assert result.as_numpy("probability").tolist() == v1_answers[1]
    finally:
        client.close()


def test_a_version_specific_path_reaches_that_version_or_says_it_is_not_served(served):
    router, servers, v1_answers = served
    with httpx.Client(base_url=router) as client:
        for version in (1, 2):
            answers = [client.post(f"/v2/models/ctr/versions/{version}/infer", json=v2_body()) for _ in range(10)]
            assert {(a.status_code, a.headers["x-plinth-version"]) for a in answers} == {(200, str(version))}
            assert answers[0].json()["outputs"][0]["data"] == v1_answers[version]
            metadata = client.get(f"/v2/models/ctr/versions/{version}")
            assert metadata.json()["versions"] == [str(version)] and metadata.headers["x-plinth-version"] == str(version)
            assert client.get(f"/v2/models/ctr/versions/{version}/ready").status_code == 200
        missing = client.post("/v2/models/ctr/versions/7/infer", json=v2_body())
        assert missing.status_code == 404
        assert missing.json() == {"error": "model ctr has no version 7 taking traffic (versions: 1, 2)"}


BAD_REQUESTS = [
    ("wrong datatype", "/v2/models/ctr/infer", json.dumps(v2_body(price_type="BYTES")),
     "input 'price' is a numeric field: datatype FP32 or FP64 or INT64 or INT32, not BYTES"),
    ("shape mismatch", "/v2/models/ctr/infer",
     json.dumps({"inputs": [{**v2_body()["inputs"][0], "shape": [2]}, *v2_body()["inputs"][1:]]}),
     "input 'user_id': shape [2] says 2 elements, the data has 3"),
    ("rows that differ", "/v2/models/ctr/infer",
     json.dumps({"inputs": [*v2_body()["inputs"][:2], {"name": "price", "datatype": "FP64", "shape": [1], "data": [1.0]}]}),
     "input 'price' has 1 rows, the inputs before it 3; every input needs one element per row"),
    ("missing input", "/v2/models/ctr/infer", json.dumps({"inputs": v2_body()["inputs"][:2]}),
     "missing input 'price' (one element per row); GET the model's metadata for its inputs"),
    ("unknown input", "/v2/models/ctr/infer",
     json.dumps({"inputs": [*v2_body()["inputs"], {"name": "prise", "datatype": "FP32", "shape": [3], "data": [1, 2, 3]}]}),
     "unknown input 'prise'; the model's inputs are user_id, ad_id, price"),
    ("bad value", "/v2/models/ctr/infer",
     json.dumps({"inputs": [*v2_body()["inputs"][:2], {"name": "price", "datatype": "FP32", "shape": [3], "data": [1, "x", 3]}]}),
     "field 'price': expected a number, got 'x'"),  # the transform's check, as for v1
    ("bad JSON", "/v2/models/ctr/infer", "{not json", "the request body is not JSON: unexpected character, expected a string key: line 1 column 2 (char 1)"),
    ("no inputs", "/v2/models/ctr/infer", json.dumps({"instances": ROWS}),
     'expected a JSON object {"inputs": [{"name", "datatype", "shape", "data"}, ...]}'),
    ("unknown model", "/v2/models/cvr/infer", json.dumps(v2_body()), "model 'cvr' is not served here; this endpoint serves ctr"),
    ("unknown version", "/v2/models/ctr/versions/9/infer", json.dumps(v2_body()),
     "model ctr has no version 9 taking traffic (versions: 1, 2)"),
]


@pytest.mark.parametrize("case, path, body, message", BAD_REQUESTS, ids=[case[0] for case in BAD_REQUESTS])
def test_a_bad_v2_request_is_the_clients_4xx_and_serving_goes_on(served, case, path, body, message):
    router, _, v1_answers = served
    with httpx.Client(base_url=router) as client:
        answer = client.post(path, content=body)
        assert 400 <= answer.status_code < 500, answer.text
        assert answer.json() == {"error": message}
        good = client.post("/v2/models/ctr/infer", json=v2_body())
        assert good.status_code == 200
        assert good.json()["outputs"][0]["data"] == v1_answers[int(good.headers["x-plinth-version"])]


def test_an_oversized_body_is_refused_with_413_and_serving_goes_on(served):
    router, servers, v1_answers = served
    rows = 600_000
    body = json.dumps(v2_body({"user_id": ["u1"] * rows, "ad_id": ["a7"] * rows, "price": [1.5] * rows}))
    assert len(body) > 8 * 1024 * 1024  # beyond the 8 MiB a version server takes
    unanswered = {k: v for k, v in _samples(httpx.get(f"{router}/metrics").text).items() if k[0] == "plinth_router_unanswered_requests_total"}
    for url in (router, servers[1]):  # the split refuses it itself; a version server too
        with httpx.Client(base_url=url) as client:
            answer = client.post("/v2/models/ctr/infer", content=body)
            assert answer.status_code == 413
            assert answer.json()["error"].endswith("bytes; at most 8388608 are taken: send fewer rows per request")
            good = client.post("/v2/models/ctr/infer", json=v2_body())
            assert good.status_code == 200
    # No version is blamed for it.
    assert {k: v for k, v in _samples(httpx.get(f"{router}/metrics").text).items() if k[0] == "plinth_router_unanswered_requests_total"} == unanswered


def _samples(text: str) -> dict[tuple[str, str], float]:
    """{(sample name, version): value} of the plinth_ samples of a Prometheus text page (no le)."""
    return {(s.name, s.labels.get("version")): s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name.startswith("plinth_") and "le" not in s.labels}


def test_metrics_count_every_worker_and_are_what_compare_shows(served):
    router, servers, _ = served
    url = f"{servers[2]}/v2/models/ctr/infer"
    before = _samples(httpx.get(f"{servers[2]}/metrics").text)
    # A new connection per request: the kernel spreads them over the version's two workers.
    for _ in range(40):
        with httpx.Client() as client:
            assert client.post(url, json=v2_body()).status_code == 200
            assert client.post(url, content=b"{").status_code == 400
    after = _samples(httpx.get(f"{servers[2]}/metrics").text)
    assert after[("plinth_requests_total", "2")] - before[("plinth_requests_total", "2")] == 80
    assert after[("plinth_request_rejections_total", "2")] - before[("plinth_request_rejections_total", "2")] == 40
    assert after[("plinth_request_duration_seconds_count", "2")] - before[("plinth_request_duration_seconds_count", "2")] == 80
    assert after[("plinth_prediction_count", "2")] - before[("plinth_prediction_count", "2")] == 120
    assert after[("plinth_batch_size_rows_sum", "2")] - before[("plinth_batch_size_rows_sum", "2")] == 120
    assert after[("plinth_in_flight_requests", "2")] == 0
    # Two workers listen on the port (each counts in its own row of the shared table).
    port = int(servers[2].rsplit(":", 1)[1])
    assert len({c.pid for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN}) == 2

    # The router's page: each version's families, and the split's own.
    page = httpx.get(f"{router}/metrics")
    assert page.headers["content-type"].startswith("text/plain")
    routed = _samples(page.text)
    assert routed[("plinth_router_weight_percent", "1")] == routed[("plinth_router_weight_percent", "2")] == 50
    assert routed[("plinth_router_unanswered_requests_total", "2")] == 0
    families = {family.name for family in text_string_to_metric_families(page.text)}
    assert {"plinth_requests", "plinth_request_duration_seconds", "plinth_batch_size_rows", "plinth_in_flight_requests"} <= families

    compared = {row["version"]: row for row in json.loads(plinth("model", "compare", "ctr", "-o", "json"))["versions"]}
    counted = _samples(httpx.get(f"{router}/metrics").text)
    for version in (1, 2):
        # What the version answered, and what HAProxy sent it that it never answered.
        assert compared[version]["requests"] == counted[("plinth_requests_total", str(version))] + \
            counted[("plinth_router_unanswered_requests_total", str(version))]
        assert compared[version]["rejected"] == counted[("plinth_request_rejections_total", str(version))]
        assert compared[version]["mean_prediction"] == pytest.approx(
            counted[("plinth_prediction_sum", str(version))] / counted[("plinth_prediction_count", str(version))])
