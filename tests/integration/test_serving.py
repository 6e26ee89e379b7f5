"""A real model server process (KServe's v1 protocol), started and stopped through platform_cli.serving.local."""

import ipaddress
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from platform_cli.errors import PlinthError
from platform_cli.features import (
    SPEC_FILE,
    CategoricalFeature,
    FeatureSpec,
    NumericFeature,
    transform,
)
from platform_cli import processes
from platform_cli.serving import local
from platform_cli.spec.stack import LocalConfig, ServingConfig, Stack, StackConfig

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
    SPEC.save(path / SPEC_FILE)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _non_loopback_ipv4() -> str | None:
    """An IPv4 address of this machine outside 127.0.0.0/8, if it has one."""
    candidates = [socket.gethostbyname(socket.gethostname())]
    candidates += [
        a.address for addrs in psutil.net_if_addrs().values() for a in addrs if a.family == socket.AF_INET
    ]
    for address in candidates:
        if not ipaddress.ip_address(address).is_loopback:
            return address
    return None


def _connect(address: str, port: int) -> None:
    with socket.create_connection((address, port), timeout=2.0):
        pass


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ctr-model")
    _build_model(path)
    return path


@pytest.fixture(scope="module")
def state(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def stack(state) -> Stack:
    """A local stack whose home is `state`: its servers' records and logs are in state/serving."""
    config = StackConfig(local=LocalConfig(home=str(state)), serving=ServingConfig(host="127.0.0.1", port=_free_port()))
    return Stack(name="local", file=state / "Pulumi.local.yaml", project_root=state, config=config)


@pytest.fixture(scope="module")
def server(model_dir, state, stack):
    record = local.serve(stack, "ctr", 3, model_dir)
    assert record.port == stack.config.serving.port
    assert record.log_path == state / "serving" / "ctr.log" == local.log_path(stack, "ctr")
    yield record
    if any(r.name == "ctr" for r in local.list_servers(state / "serving")):
        local.stop("ctr", state / "serving")


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
    # ...served by the TFLite conversion of that SavedModel, not by the SavedModel itself
    assert httpx.get(f"{server.url}/plinth/metrics").json()["runtime"] == "tflite"


def test_tflite_predictions_equal_the_savedmodels(model_dir):
    from platform_cli.serving.server import SavedModelPredictor

    tflite, signature = SavedModelPredictor("ctr", model_dir, runtime="tflite"), SavedModelPredictor("ctr", model_dir, runtime="savedmodel")
    tflite.load(), signature.load()
    rows = [{"user_id": f"u{i}", "ad_id": i % 7, "price": i / 10} for i in range(500)]
    inputs = tflite.preprocess({"instances": rows})
    np.testing.assert_allclose(tflite.probabilities(inputs), signature.probabilities(inputs), rtol=0, atol=1e-7)


def test_one_model_call_answers_each_request_of_a_batch_with_its_own_rows(model_dir):
    from platform_cli.serving.inputs import InvalidInput
    from platform_cli.serving.server import SavedModelPredictor

    model = SavedModelPredictor("ctr", model_dir)
    model.load()
    alone = [model.probabilities(model.inputs([row])) for row in ROWS]
    bad = [{"user_id": "u1", "price": 1.0}]
    results = model.process([[ROWS[0]], bad, [ROWS[1], ROWS[2]]])
    assert isinstance(results[1], InvalidInput) and "row 0: missing required field 'ad_id'" in results[1].reason
    np.testing.assert_array_equal(results[0], alone[0])
    np.testing.assert_array_equal(results[2], np.concatenate(alone[1:]))


def test_a_model_error_fails_only_the_requests_of_its_call(model_dir):
    from platform_cli.serving.server import ModelError, SavedModelPredictor

    model = SavedModelPredictor("ctr", model_dir, tensor_inputs=True)
    model.load()
    good = [{"cat": [1, 2], "num": [0.5]}]
    out_of_range = [{"cat": [1, 10**9], "num": [0.5]}]  # an id the embedding does not have
    failed = model.process([good, out_of_range])
    assert all(isinstance(r, ModelError) for r in failed)
    [answer] = model.process([good])
    assert 0.0 < float(answer[0]) < 1.0


def test_concurrent_requests_with_a_bad_one_get_their_own_answers(server):
    import asyncio

    async def send_all():
        async with httpx.AsyncClient(timeout=30) as client:
            url = f"{server.url}/v1/models/ctr:predict"
            bodies = [{"instances": [ROWS[i % 3]]} for i in range(31)] + [{"instances": [{"user_id": "u1"}]}]
            return await asyncio.gather(*[client.post(url, json=body) for body in bodies])

    loop = asyncio.new_event_loop()  # not asyncio.run, which leaves the thread without a current loop
    try:
        answers = loop.run_until_complete(send_all())
    finally:
        loop.close()
    assert [a.status_code for a in answers] == [200] * 31 + [400]
    expected = {i: local.predict(server, {"instances": [ROWS[i]]})["predictions"] for i in range(3)}
    assert [a.json()["predictions"] for a in answers[:31]] == [expected[i % 3] for i in range(31)]


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


def test_a_loopback_server_is_not_reachable_from_the_network(server):
    address = _non_loopback_ipv4()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to probe from")
    # Control: the address is reachable from here when something does listen on all interfaces,
    # so the refusal below is the server's binding, not a firewall or a dead interface.
    with socket.create_server(("0.0.0.0", 0)) as control:
        _connect(address, control.getsockname()[1])

    process = psutil.Process(server.pid)
    connections = getattr(process, "net_connections", process.connections)("tcp")  # psutil < 6: connections
    assert [tuple(c.laddr) for c in connections if c.status == psutil.CONN_LISTEN] == [("127.0.0.1", server.port)]
    with pytest.raises(ConnectionRefusedError):
        _connect(address, server.port)
    _connect("127.0.0.1", server.port)


def test_workers_share_the_port_and_one_metrics_table(model_dir, tmp_path):
    import time

    record = local.start("ctr", 1, model_dir, "127.0.0.1", _free_port(), tmp_path / "servers", tmp_path / "ctr.log",
                         settings=ServingConfig(workers=2))
    try:
        [other] = psutil.Process(record.pid).children()
        deadline = time.monotonic() + local.READY_TIMEOUT_S
        while not _listens(other, record.port) and time.monotonic() < deadline:  # it loads its own model
            time.sleep(0.25)
        assert _listens(psutil.Process(record.pid), record.port) and _listens(other, record.port)
        for _ in range(40):  # a connection each: the kernel spreads them over the two listeners
            assert httpx.post(f"{record.url}/v1/models/ctr:predict", json={"instances": ROWS[:1]}).status_code == 200
        assert httpx.get(f"{record.url}/plinth/metrics").json()["requests"] == 40
    finally:
        local.stop("ctr", tmp_path / "servers")
    assert not psutil.pid_exists(other.pid) or other.status() == psutil.STATUS_ZOMBIE


def _listens(process: psutil.Process, port: int) -> bool:
    connections = getattr(process, "net_connections", process.connections)("tcp")
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in connections)


def test_the_server_answers_kserves_v1_and_v2_readiness_routes(server):
    assert httpx.get(f"{server.url}/v1/models/ctr").json() == {"name": "ctr", "ready": True}
    assert httpx.get(f"{server.url}/v2/models/ctr/ready").status_code == 200


def test_the_port_probe_checks_the_host_the_server_binds(server):
    # Busy on loopback: refused for loopback. The same port on another address would be free
    # for a server bound there, so the probe must not report it busy.
    with pytest.raises(PlinthError, match=f"port {server.port} is already in use"):
        local._refuse_if_port_busy("127.0.0.1", server.port)
    with pytest.raises(PlinthError, match=f"port {server.port} is already in use"):
        local._refuse_if_port_busy("0.0.0.0", server.port)
    if (address := _non_loopback_ipv4()) is not None:
        local._refuse_if_port_busy(address, server.port)
    with pytest.raises(PlinthError, match="cannot listen on 192.0.2.77"):
        local._refuse_if_port_busy("192.0.2.77", _free_port())  # TEST-NET-1: not this machine's


def test_second_server_on_the_same_port_is_refused(server, model_dir, state):
    with pytest.raises(PlinthError, match=f"port {server.port} is already in use") as error:
        local.start("other", 1, model_dir, "127.0.0.1", server.port, state / "serving",
                    state / "other.log")
    assert "plinth:serving.port" in error.value.fix
    assert [r.name for r in local.list_servers(state / "serving")] == ["ctr"]


def test_find_and_next_port_see_the_live_server(server, state):
    assert local.find(state / "serving", "ctr").status == "live"
    assert local.next_port(state / "serving", server.port) == server.port + 1
    assert local.next_port(state / "serving", server.port + 5) == server.port + 5


def test_same_model_twice_is_refused(server, model_dir, state):
    with pytest.raises(PlinthError, match="already served"):
        local.start("ctr", 4, model_dir, "127.0.0.1", _free_port(), state / "serving",
                    state / "ctr2.log")


def test_serve_replaces_a_live_server_only_when_asked(server, stack, model_dir, tmp_path):
    with pytest.raises(PlinthError, match="already served"):
        local.serve(stack, "ctr", 4, model_dir)
    # The new version is checked before the live server is stopped in its favour.
    with pytest.raises(PlinthError, match="not a trained model directory"):
        local.serve(stack, "ctr", 4, tmp_path, replace=True)
    assert local.find(local.state_dir(stack), "ctr").pid == server.pid


def test_a_directory_without_a_model_is_refused_at_once(tmp_path, state):
    with pytest.raises(PlinthError, match="no saved_model.pb, feature_spec.json"):
        local.start("ctr", 1, tmp_path, "127.0.0.1", _free_port(), tmp_path / "servers",
                    tmp_path / "ctr.log")


def test_a_server_that_cannot_load_reports_its_log(tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a graph")
    SPEC.save(broken / "feature_spec.json")

    with pytest.raises(PlinthError, match="exited with code 1: cannot load model broken from") as error:
        local.start("broken", 1, broken, "127.0.0.1", _free_port(), tmp_path / "servers",
                    tmp_path / "broken.log")
    assert "\n" not in str(error.value)
    assert "Traceback" in (tmp_path / "broken.log").read_text()
    assert error.value.fix == f"full log: {tmp_path / 'broken.log'}"
    assert local.list_servers(tmp_path / "servers") == []


def test_stop_kills_the_server(server, state):
    [listed] = local.list_servers(state / "serving")
    assert (listed.pid, listed.status) == (server.pid, "live")

    assert local.stop("ctr", state / "serving").status == "dead"
    assert not psutil.pid_exists(server.pid)
    assert local.list_servers(state / "serving") == []
    with pytest.raises(PlinthError, match="not answering"):
        local.predict(server, {"instances": ROWS})
    with pytest.raises(PlinthError, match="no local model server for 'ctr'"):
        local.find(state / "serving", "ctr")


def test_a_process_that_survives_sigkill_keeps_its_record(tmp_path, monkeypatch):
    # A stand-in server in its own session; signals "sent" by _terminate go nowhere, as if the
    # process were stuck in uninterruptible I/O.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        record = local.ServerRecord(
            name="stuck", version=1, pid=sleeper.pid, pid_created=psutil.Process(sleeper.pid).create_time(),
            port=_free_port(), url="http://127.0.0.1:1", started="2024-01-01T00:00:00Z",
            log_path=tmp_path / "stuck.log",
        )
        local._write_record(record, tmp_path / "servers")
        monkeypatch.setattr(processes.os, "killpg", lambda pid, sig: None)
        monkeypatch.setattr(processes.psutil.Process, "kill", lambda self: None)
        monkeypatch.setattr(processes.psutil.Process, "terminate", lambda self: None)
        monkeypatch.setattr(local, "STOP_TIMEOUT_S", 0.2)

        with pytest.raises(PlinthError, match="still running after SIGKILL") as error:
            local.stop("stuck", tmp_path / "servers")
        assert f"kill -9 {sleeper.pid}" in error.value.fix
        assert local.find(tmp_path / "servers", "stuck").status == "live"
    finally:
        sleeper.kill()  # os.kill: os.killpg is the patched no-op here
        sleeper.wait()
    assert local.stop("stuck", tmp_path / "servers").status == "dead"
    assert local.list_servers(tmp_path / "servers") == []


def test_the_failure_line_is_the_last_error_of_the_log(tmp_path):
    log = tmp_path / "x.log"
    log.write_text(
        "2025-01-02 10:11:12.123 4567 uvicorn.error INFO:     Started server process [4567]\n"
        "Traceback (most recent call last):\n"
        "google.protobuf.message.DecodeError: Error parsing message\n"
        "2025-01-02 10:11:12.200 4567 kserve ERROR [server.py:main():170] cannot load model x: bad\n"
        "2025-01-02 10:11:12.300 4567 uvicorn.error INFO:     Finished server process [4567]\n\n"
    )
    assert local._telling_line(log) == "cannot load model x: bad"
    log.write_text("2025-01-02 10:11:12.123 4567 uvicorn.error INFO:     Waiting for startup\n\n")
    assert local._telling_line(log) == "Waiting for startup"
    log.write_text("")
    assert local._telling_line(log) == ""
