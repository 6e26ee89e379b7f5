"""A real KServe model server process, started and stopped through platform_cli.serving.local."""

import socket
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from platform_cli.errors import PlinthError
from platform_cli.features import CategoricalFeature, FeatureSpec, NumericFeature, transform
from platform_cli.serving import local

pytestmark = pytest.mark.integration

SPEC = FeatureSpec(
    categorical=[
        CategoricalFeature(name="user_id", buckets=16),
        CategoricalFeature(name="ad_id", buckets=16),
    ],
    numeric=[NumericFeature(name="price", mean=3.0, std=2.0)],
    label="clicked",
)
ROWS = [
    {"user_id": "u1", "ad_id": "a7", "price": 1.5},
    {"user_id": "u2", "ad_id": "a3", "price": 9.0},
    {"user_id": "u3", "ad_id": 42, "price": 0.0, "clicked": 1},
]


def _build_model(path: Path) -> None:
    """A tiny click model with the trained-model contract: cat/num in, probability out."""
    import tensorflow as tf

    class TinyCtr(tf.Module):
        def __init__(self):
            super().__init__()
            self.embedding = tf.Variable(tf.random.stateless_normal([16], seed=[1, 2]))
            self.weights = tf.Variable([[0.8]])
            self.bias = tf.Variable(-0.3)

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 2], tf.int64, name="cat"),
                tf.TensorSpec([None, 1], tf.float32, name="num"),
            ]
        )
        def serve(self, cat, num):
            logit = tf.reduce_sum(tf.gather(self.embedding, cat), axis=1)
            logit += tf.squeeze(num @ self.weights, axis=1) + self.bias
            return {"probability": tf.sigmoid(logit)}

    module = TinyCtr()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    SPEC.save(path / "feature_spec.json")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ctr-model")
    _build_model(path)
    return path


@pytest.fixture(scope="module")
def state(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serving")


@pytest.fixture(scope="module")
def server(model_dir, state):
    record = local.start(
        "ctr", 3, model_dir, "127.0.0.1", _free_port(), state / "servers", state / "ctr.log"
    )
    yield record
    if any(r.name == "ctr" for r in local.list_servers(state / "servers")):
        local.stop("ctr", state / "servers")


def test_predictions_match_the_model_in_process(server, model_dir):
    import tensorflow as tf

    served = local.predict(server, {"instances": ROWS})["predictions"]

    loaded = tf.saved_model.load(str(model_dir))
    inputs = transform(SPEC, ROWS)
    expected = loaded.signatures["serving_default"](
        cat=tf.constant(inputs["cat"]), num=tf.constant(inputs["num"])
    )
    assert len(served) == len(ROWS)
    assert all(0.0 < p < 1.0 for p in served)
    np.testing.assert_allclose(served, expected["probability"].numpy(), rtol=1e-6)


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"rows": ROWS}, '"instances"'),
        ({"instances": []}, "non-empty"),
        ({"instances": [[1, 2, 3]]}, "instance 0"),
        ({"instances": [{"user_id": "u1", "price": 1.0}]}, "'ad_id'"),
        ({"instances": [{"user_id": "u1", "ad_id": "a1", "price": "cheap"}]}, "'price'"),
    ],
)
def test_malformed_request_is_a_400_and_the_server_keeps_serving(server, payload, message):
    url = f"{server.url}/v1/models/ctr:predict"
    response = httpx.post(url, json=payload)
    assert response.status_code == 400
    assert message in response.json()["error"]
    with pytest.raises(PlinthError, match="rejected the request"):
        local.predict(server, payload)

    assert len(local.predict(server, {"instances": ROWS[:1]})["predictions"]) == 1


def test_second_server_on_the_same_port_is_refused(server, model_dir, state):
    with pytest.raises(PlinthError, match=f"port {server.port} is already in use") as error:
        local.start("other", 1, model_dir, "127.0.0.1", server.port, state / "servers",
                    state / "other.log")
    assert "plinth:serving.port" in error.value.fix
    assert [r.name for r in local.list_servers(state / "servers")] == ["ctr"]


def test_find_and_next_port_see_the_live_server(server, state):
    assert local.find(state / "servers", "ctr").status == "live"
    assert local.next_port(state / "servers", server.port) == server.port + 1
    assert local.next_port(state / "servers", server.port + 5) == server.port + 5


def test_same_model_twice_is_refused(server, model_dir, state):
    with pytest.raises(PlinthError, match="already served"):
        local.start("ctr", 4, model_dir, "127.0.0.1", _free_port(), state / "servers",
                    state / "ctr2.log")


def test_a_directory_without_a_model_is_refused_at_once(tmp_path, state):
    with pytest.raises(PlinthError, match="no saved_model.pb, feature_spec.json"):
        local.start("ctr", 1, tmp_path, "127.0.0.1", _free_port(), tmp_path / "servers",
                    tmp_path / "ctr.log")


def test_a_server_that_cannot_load_reports_its_log(tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a graph")
    SPEC.save(broken / "feature_spec.json")

    with pytest.raises(PlinthError, match="exited with code 1; last log lines") as error:
        local.start("broken", 1, broken, "127.0.0.1", _free_port(), tmp_path / "servers",
                    tmp_path / "broken.log")
    assert "cannot load model broken from" in error.value.message
    assert "Traceback" in (tmp_path / "broken.log").read_text()
    assert error.value.fix == f"full log: {tmp_path / 'broken.log'}"
    assert local.list_servers(tmp_path / "servers") == []


def test_stop_kills_the_server(server, state):
    [listed] = local.list_servers(state / "servers")
    assert (listed.pid, listed.status) == (server.pid, "live")

    assert local.stop("ctr", state / "servers").status == "dead"
    assert not psutil.pid_exists(server.pid)
    assert local.list_servers(state / "servers") == []
    with pytest.raises(PlinthError, match="not answering"):
        local.predict(server, {"instances": ROWS})
    with pytest.raises(PlinthError, match="no local model server for 'ctr'"):
        local.find(state / "servers", "ctr")
