"""Gray release on the local platform with real KServe model servers and the router.

Two tiny versions of a click model (trained-model contract: cat/num in, probability out, with a
feature spec) are registered in a throw-away project's MLflow registry, then driven through
`plinth model promote / rollout / approve / rollback / compare` while a client keeps sending
requests through the router. What this proves: the split lands where it is set, switches drop
no request, a version that cannot load leaves traffic as it was, a bad request is a 400 that
does not disturb serving, and a canary whose server dies is rolled back by the router.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil
import pytest
import yaml
from typer.testing import CliRunner

from platform_cli.features import SPEC_FILE
from platform_cli.main import app
from tests.conftest import REPO
from tests.integration.test_serving import ROWS, SPEC, _free_port

pytestmark = pytest.mark.integration

REQUEST = {"instances": ROWS[:2]}


def _build_model(path: Path, bias: float) -> None:
    """A tiny click model; `bias` tells versions apart in their mean prediction."""
    import tensorflow as tf

    class TinyCtr(tf.Module):
        def __init__(self):
            super().__init__()
            self.embedding = tf.Variable(tf.random.stateless_normal([16], seed=[1, 2]) * 0.1)
            self.bias = tf.Variable(bias)

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.int64, name="cat"), tf.TensorSpec([None, 1], tf.float32, name="num")])
        def serve(self, cat, num):
            logit = tf.reduce_sum(tf.gather(self.embedding, cat), axis=1) + 0.1 * tf.squeeze(num, axis=1) + self.bias
            return {"probability": tf.sigmoid(logit)}

    module = TinyCtr()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    SPEC.save(path / SPEC_FILE)


def register_two_versions(root: Path, registry, lineage) -> None:
    """Versions 1 and 2 of `ctr`: tiny click models whose biases (-2, +1) set them far apart in
    mean prediction; `lineage(version)` gives each version's lineage."""
    for version, bias in ((1, -2.0), (2, 1.0)):
        model_dir = root / f"model-{version}"
        model_dir.mkdir()
        _build_model(model_dir, bias)
        registry.register("ctr", model_dir, {"auc": 0.7}, lineage(version))


def plinth(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"plinth {' '.join(args)} failed:\n{result.output}"
    return result.output


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project whose local stack gates canaries at 10% and rolls one back after 20 requests
    if more than 20% of them fail; versions 1 and 2 of `ctr` registered, 3 broken."""
    root = tmp_path_factory.mktemp("gray") / "project"
    root.mkdir()
    (root / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    (root / "stacks").mkdir()
    port = _free_port()
    (root / "stacks" / "Pulumi.local.yaml").write_text(yaml.safe_dump({"config": {
        "plinth:target": "local",
        "plinth:local": {"home": ".plinth/local"},
        "plinth:serving": {"host": "127.0.0.1", "port": port, "grayRelease": {
            "requireApproval": True, "canaryMax": 10,
            "autoRollback": {"maxErrorRate": 0.2, "minRequests": 20}}},
    }}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PLINTH_PROJECT_DIR", str(root))
        patch.delenv("PLINTH_STACK", raising=False)
        from platform_cli.registry import ModelRegistry
        from platform_cli.spec.stack import load_stack

        stack = load_stack("local")
        registry = ModelRegistry(stack.tracking_uri, stack.artifact_root)
        register_two_versions(root, registry, lambda version: {"job_id": f"ctr-train-{version}"})
        broken = root / "model-broken"
        broken.mkdir()
        (broken / "saved_model.pb").write_bytes(b"not a graph")
        SPEC.save(broken / SPEC_FILE)
        registry.register("ctr", broken, {}, {"job_id": "ctr-train-broken"})
        registry.register("antispam", root / "model-1", {"auc": 0.9}, {"job_id": "antispam-train-1"})
        yield root, stack, registry
        for model in ("ctr", "antispam"):
            CliRunner().invoke(app, ["model", "stop", model])


class Client(threading.Thread):
    """Sends REQUEST through the router in a loop until stopped; keeps every status and version."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.results, self.halt = url, [], threading.Event()

    def run(self):
        with httpx.Client(timeout=30) as client:
            while not self.halt.is_set():
                try:
                    response = client.post(self.url, json=REQUEST)
                    self.results.append((response.status_code, response.headers.get("x-plinth-version")))
                except httpx.HTTPError as e:
                    self.results.append((0, repr(e)))

    def stop(self) -> list:
        self.halt.set()
        self.join(30)
        return self.results


def versions_served(url: str, count: int) -> Counter:
    with httpx.Client() as client:
        answers = [client.post(url, json=REQUEST) for _ in range(count)]
    assert {a.status_code for a in answers} == {200}
    return Counter(int(a.headers["x-plinth-version"]) for a in answers)


def test_gray_release_end_to_end(project):
    root, stack, registry = project
    out = plinth("model", "promote", "ctr", "1")
    assert "version 1 is production" in out
    url = f"http://127.0.0.1:{stack.config.serving.port}/v1/models/ctr:predict"
    assert versions_served(url, 20) == Counter({1: 20})
    assert registry.aliases("ctr") == {"production": 1}

    # A canary at 10%, with a client running through the switch.
    client = Client(url)
    client.start()
    out = plinth("model", "promote", "ctr", "2", "--canary", "10")
    during_promote = client.stop()
    assert "version 2 is the canary with 10%" in out and "v1 90%, v2 10%" in out
    assert registry.aliases("ctr") == {"production": 1, "canary": 2}

    served = versions_served(url, 400)
    assert set(served) == {1, 2}
    assert abs(served[2] / 400 - 0.10) <= 0.05, served

    # Beyond canaryMax only once approved.
    result = CliRunner().invoke(app, ["model", "rollout", "ctr", "--weight", "50"])
    assert result.exit_code == 1
    assert result.output == "error: version 2 of ctr needs approval before it takes more than 10% of traffic; run plinth model approve ctr 2\n"
    plinth("model", "approve", "ctr", "2")
    assert "v1 50%, v2 50%" in plinth("model", "rollout", "ctr", "--weight", "50")
    # HAProxy's weighted round robin re-positions a server whose weight changed, and the first
    # requests after a change can lean to it (once 332 of the next 400 went to version 2): the
    # share is judged after the first 200.
    versions_served(url, 200)
    assert 150 <= versions_served(url, 400)[2] <= 250

    compared = json.loads(plinth("model", "compare", "ctr", "-o", "json"))
    by_version = {row["version"]: row for row in compared["versions"]}
    assert by_version[1]["stage"] == "production" and by_version[2]["stage"] == "canary"
    assert by_version[2]["requests"] >= 150 and by_version[2]["errors"] == 0
    assert by_version[2]["p50_ms"] > 0 and by_version[2]["p99_ms"] >= by_version[2]["p50_ms"]
    # bias -2 vs +1: the versions' mean predictions are far apart, and compare shows it.
    assert by_version[1]["mean_prediction"] < 0.3 < 0.6 < by_version[2]["mean_prediction"]

    # Rollback under load: all traffic to version 1, the canary's server stopped, nothing failed.
    client = Client(url)
    client.start()
    out = plinth("model", "rollback", "ctr")
    during_rollback = client.stop()
    assert "version 2 rolled back, version 1 has 100%" in out
    assert versions_served(url, 50) == Counter({1: 50})
    assert registry.aliases("ctr") == {"production": 1}
    assert [r.name for r in _servers(root)] == ["ctr-v1"]
    for results in (during_promote, during_rollback):
        assert results and {status for status, _ in results} == {200}, Counter(results)

    # A malformed request is the client's 400, through the router, and serving goes on.
    response = httpx.post(url, json={"instances": [{"user_id": "u1"}]})
    assert response.status_code == 400 and "'ad_id'" in response.json()["error"]
    response = httpx.post(url, content=b"{not json")
    assert 400 <= response.status_code < 500
    assert versions_served(url, 5) == Counter({1: 5})

    # What a flow's promote step publishes: the version promoted, its stage, and the split.
    promoted = json.loads(plinth("model", "promote", "ctr", "1", "-o", "json"))
    assert (promoted["model"], promoted["version"], promoted["stage"], promoted["weights"]) == ("ctr", 1, "production", {"1": 100})


def test_a_version_that_cannot_load_leaves_traffic_where_it_was(project):
    root, stack, registry = project
    state_file = root / ".plinth" / "local" / "serving" / "traffic" / "ctr.json"
    before = state_file.read_text()
    # The contract another workflow relies on: argv, exit code, one line saying why.
    result = subprocess.run(
        [sys.executable, "-m", "platform_cli", "model", "promote", "ctr", "3", "--canary", "10"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO), "PLINTH_PROJECT_DIR": str(root)},
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: model server 'ctr-v3' version 3 exited with code 1: cannot load model"), result.stderr
    assert "(traffic unchanged)" in result.stderr and result.stderr.count("\n") == 1
    assert state_file.read_text() == before
    assert registry.aliases("ctr") == {"production": 1}
    assert [r.name for r in _servers(root)] == ["ctr-v1"]
    url = f"http://127.0.0.1:{stack.config.serving.port}/v1/models/ctr:predict"
    assert versions_served(url, 10) == Counter({1: 10})


def split_with_a_canary(root: Path, registry, model: str) -> None:
    """`model` registered as versions 1 and 2 (the tiny models built for `ctr`), version 1
    production and version 2 a 10% canary."""
    for version in (1, 2):
        registry.register(model, root / f"model-{version}", {"auc": 0.7}, {"job_id": f"{model}-train-{version}"})
    plinth("model", "promote", model, "1")
    plinth("model", "promote", model, "2", "--canary", "10")


def test_the_router_rolls_back_a_canary_whose_server_died(project):
    root, stack, registry = project
    # A model of its own, so that what other tests did to `ctr` does not matter here.
    split_with_a_canary(root, registry, "ranker")
    try:
        [canary] = [r for r in _servers(root) if r.name == "ranker-v2"]
        [router] = [r for r in _routers(root) if r.name == "ranker"]
        psutil.Process(canary.pid).kill()

        # Requests the split would send to the dead canary are answered by production instead
        # (HAProxy 2.6 closes the client's connection on the first request it sends to a server
        # that has just died, without an answer: at most that one is lost)...
        url = f"{router.url}/v1/models/ranker:predict"
        answered, lost = Counter(), 0
        client = httpx.Client()
        for _ in range(400):
            try:
                answer = client.post(url, json=REQUEST)
            except httpx.TransportError:
                lost += 1
                client.close()
                client = httpx.Client()
                continue
            assert answer.status_code == 200, answer.text
            answered[int(answer.headers["x-plinth-version"])] += 1
        client.close()
        assert set(answered) == {1} and lost <= 1
        # ...and the router, seeing the canary's server down, rolls it back (checked every second).
        deadline = time.monotonic() + 10
        while "auto-rollback" not in plinth("model", "history", "ranker") and time.monotonic() < deadline:
            time.sleep(0.5)
        history = json.loads(plinth("model", "history", "ranker", "-o", "json"))
        assert history[-1]["action"] == "auto-rollback"
        # Whichever the router saw first: the health check's verdict, or the refused requests
        # counted against the canary (every one of them failed).
        assert "its server is down" in history[-1]["detail"] or "error rate 1.000 > 0.2" in history[-1]["detail"]
        assert registry.aliases("ranker") == {"production": 1}  # `history` brought the canary alias in step
        assert "auto-rollback: version 2 rolled back" in plinth("model", "compare", "ranker")
    finally:
        plinth("model", "stop", "ranker")


def test_a_model_whose_only_version_died_answers_503_at_once(project):
    root, stack, registry = project
    registry.register("lonely", root / "model-1", {"auc": 0.7}, {"job_id": "lonely-train-1"})
    plinth("model", "promote", "lonely", "1")
    try:
        [server] = [r for r in _servers(root) if r.name == "lonely-v1"]
        [router] = [r for r in _routers(root) if r.name == "lonely"]
        psutil.Process(server.pid).kill()
        url = f"{router.url}/v1/models/lonely:predict"

        with httpx.Client(timeout=10) as client:
            # Within a second its health check marks the version down. Until then a request still
            # tries the dead server (HAProxy waits a second before each retry of a refused
            # connection) and may also end in 503, slowly: down means answered 503 at once...
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                answer = client.post(url, json=REQUEST)
                if answer.status_code == 503 and answer.elapsed.total_seconds() < 0.5:
                    break
            # ...and from then on every request is answered 503 at once, not retried against it.
            answers = [client.post(url, json=REQUEST) for _ in range(5)]
        assert {a.status_code for a in answers} == {503}
        assert "model lonely has no version taking traffic" in answers[-1].json()["error"]
        assert max(a.elapsed.total_seconds() for a in answers) < 0.5
    finally:
        plinth("model", "stop", "lonely")


def test_a_second_model_is_served_side_by_side(project):
    root, stack, registry = project
    out = plinth("model", "promote", "antispam", "1")
    assert "version 1 is production" in out
    routers = {r.name: r for r in _routers(root)}
    assert set(routers) == {"ctr", "antispam"}
    assert routers["ctr"].port == stack.config.serving.port  # the first model took the stack's port
    assert routers["antispam"].port != routers["ctr"].port
    assert versions_served(f"{routers['antispam'].url}/v1/models/antispam:predict", 10) == Counter({1: 10})
    assert versions_served(f"{routers['ctr'].url}/v1/models/ctr:predict", 10) == Counter({1: 10})
    assert {r.name for r in _servers(root)} >= {"ctr-v1", "antispam-v1"}


def _routers(root: Path):
    from platform_cli.serving import local

    return [r for r in local.list_servers(root / ".plinth" / "local" / "serving" / "routers") if r.status == "live"]


def _servers(root: Path):
    from platform_cli.serving import local

    return [r for r in local.list_servers(root / ".plinth" / "local" / "serving") if r.status == "live"]


def test_start_brings_back_a_stopped_models_split_as_it_was(project):
    root, stack, registry = project
    split_with_a_canary(root, registry, "feed")
    before = json.loads(plinth("model", "history", "feed", "-o", "json"))
    plinth("model", "stop", "feed")
    assert not {r.name for r in _servers(root) + _routers(root)} & {"feed", "feed-v1", "feed-v2"}

    out = plinth("model", "start", "feed")

    assert "traffic v1 90%, v2 10%" in out
    assert {"feed-v1", "feed-v2"} <= {r.name for r in _servers(root)}
    [router] = [r for r in _routers(root) if r.name == "feed"]
    assert set(versions_served(f"{router.url}/v1/models/feed:predict", 200)) == {1, 2}
    assert registry.aliases("feed") == {"production": 1, "canary": 2}
    assert json.loads(plinth("model", "history", "feed", "-o", "json")) == before  # nothing changed but what runs
    # Starting what already runs changes nothing either.
    assert "traffic v1 90%, v2 10%" in plinth("model", "start", "feed")
    assert [r.pid for r in _routers(root) if r.name == "feed"] == [router.pid]
    plinth("model", "stop", "feed")


def test_start_of_a_model_that_was_never_promoted_says_what_to_do(project):
    root, stack, registry = project
    registry.register("unserved", root / "model-1", {"auc": 0.7}, {"job_id": "unserved-train-1"})
    result = CliRunner().invoke(app, ["model", "start", "unserved"])
    assert result.exit_code == 1
    assert result.output == "error: model 'unserved' has no traffic split to bring back; promote a version first: plinth model promote unserved VERSION\n"
