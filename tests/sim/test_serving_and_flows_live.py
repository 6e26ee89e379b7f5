"""`plinth model promote` and `plinth flow submit` on team-sim: KServe's and Argo's objects are
accepted by the live API server with their vendored CRDs installed (engines.install: crds-only).

No KServe controller runs in the sim. While a promotion waits for its InferenceServices to be
Ready, this test plays KServe's controller for that one thing: it sets each new
InferenceService's status Ready (through the status subresource, as KServe does). Everything
else (the applies, the wait, the split, deleting retired versions) is Plinth against the real
API server.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml

from platform_cli.kube import Resource
from tests.conftest import REPO
from tests.sim.conftest import SIM_TIMEOUT, Sim

# The first test of a session may build the cluster tools (scripts/cluster-tools) first.
pytestmark = pytest.mark.timeout(SIM_TIMEOUT)

INFERENCE_SERVICE = Resource("serving.kserve.io/v1beta1", "InferenceService")
INFERENCE_GRAPH = Resource("serving.kserve.io/v1alpha1", "InferenceGraph")


class ReadyAsKServe(threading.Thread):
    """Marks every InferenceService in the namespace Ready, as KServe's controller would once its
    predictor is up."""

    def __init__(self, sim: Sim, namespace: str):
        super().__init__(daemon=True)
        self.sim, self.namespace, self.stop = sim, namespace, threading.Event()

    def run(self) -> None:
        from kubernetes import client, config

        api = client.CustomObjectsApi(config.new_client_from_config(config_file=self.sim.env["KUBECONFIG"], context="plinth-sim"))
        kube = self.sim.kube()
        while not self.stop.wait(0.5):
            for service in kube.list(INFERENCE_SERVICE, self.namespace):
                conditions = (service.get("status") or {}).get("conditions") or []
                if not any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                    name = service["metadata"]["name"]
                    status = {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                              "url": f"http://{name}.{self.namespace}.example.com"}
                    api.patch_namespaced_custom_object_status("serving.kserve.io", "v1beta1", self.namespace, "inferenceservices", name, {"status": status})


def with_local_registry(sim: Sim) -> Path:
    """team-sim's model registry in the project (SQLite), with versions 1 and 2 of `ctr`."""
    sim.edit_stack("team-sim", lambda config: config.update({"plinth:registry": {"trackingUri": "sqlite:///registry/mlflow.db", "artifactRoot": "registry/artifacts"}}))
    model = sim.root / "model"
    model.mkdir(exist_ok=True)
    (model / "saved_model.pb").write_bytes(b"never loaded: no model server runs in the sim")
    script = (
        "from platform_cli.registry import ModelRegistry\n"
        "from platform_cli.spec.stack import load_stack\n"
        "from platform_cli.features import SPEC_FILE, CategoricalFeature, FeatureSpec\n"
        "import sys, pathlib\n"
        "model = pathlib.Path(sys.argv[1])\n"
        "FeatureSpec(categorical=[CategoricalFeature(name='user_id', buckets=4)], numeric=[], label='clicked').save(model / SPEC_FILE)\n"
        "stack = load_stack('team-sim')\n"
        "registry = ModelRegistry(stack.tracking_uri, stack.artifact_root)\n"
        "for _ in range(2):\n"
        "    registry.register('ctr', model, {'auc': 0.7}, {})\n"
    )
    sim.run(str(REPO / ".venv" / "bin" / "python"), "-c", script, str(model))
    return model


def test_model_promote_applies_kserve_objects_the_api_server_accepts(deployed: Sim) -> None:
    original = deployed.stack_file("team-sim").read_text()
    kserve = ReadyAsKServe(deployed, "ranking")
    kserve.start()
    try:
        with_local_registry(deployed)
        deployed.plinth("model", "promote", "ctr", "1", "-s", "team-sim")
        deployed.plinth("model", "promote", "ctr", "2", "--canary", "10", "-s", "team-sim")
    finally:
        kserve.stop.set()
        kserve.join()
        deployed.stack_file("team-sim").write_text(original)
    kube = deployed.kube()
    services = {s["metadata"]["name"]: s for s in kube.list(INFERENCE_SERVICE, "ranking")}
    assert len(services) == 2
    for service in services.values():
        assert any(m["manager"] == "plinth" and m["operation"] == "Apply" for m in service["metadata"]["managedFields"])
    graphs = kube.list(INFERENCE_GRAPH, "ranking")
    assert len(graphs) == 1
    steps = graphs[0]["spec"]["nodes"]["root"]["steps"]
    assert sorted(step["weight"] for step in steps) == [10, 90]
    assert {step["serviceName"] for step in steps} == set(services)


def test_flow_submit_creates_the_argo_objects_the_api_server_accepts(deployed: Sim) -> None:
    flow = REPO / "examples" / "ctr" / "flow.yaml"
    result = deployed.plinth("flow", "submit", "-f", str(flow), "-s", "team-sim")
    created = [line.split()[0] for line in result.stdout.splitlines()]
    assert created and all(line.endswith("created in namespace ranking") for line in result.stdout.splitlines())
    kind = "CronWorkflow" if yaml.safe_load(flow.read_text()).get("schedule") else "Workflow"
    live = deployed.kube().list(Resource("argoproj.io/v1alpha1", kind), "ranking")
    assert [f"{kind.lower()}/{obj['metadata']['name']}" for obj in live] == created
    assert live[0]["spec"]


def test_model_promote_with_parameters_applies_a_service_reading_redis_with_the_secret(deployed: Sim, tmp_path: Path) -> None:
    """A version exported to a parameter store is promoted on team-sim: its InferenceService,
    accepted by the API server, downloads the dense part and reads the store with the password
    from the namespace's Secret. The store is a real redis-server on this machine, which the
    promote checks for the version's rows before it applies anything."""
    import json

    from tests.conftest import redis_server

    original = deployed.stack_file("team-sim").read_text()
    password = "sim-parameters-Pw-1"
    kserve = ReadyAsKServe(deployed, "ranking")
    kube = deployed.kube()
    try:
        with redis_server(tmp_path, password) as port:
            store = f"redis://127.0.0.1:{port}/0"
            deployed.edit_stack("team-sim", lambda config: config.update({
                "plinth:registry": {"trackingUri": "sqlite:///registry/mlflow.db", "artifactRoot": "registry/artifacts"},
                "plinth:parameterStorePassword": {"secure": "v1:ciphertext-of-the-password"}}))
            # Version 1 of `ctrp` with a dense part kept as its `parameters` export and its rows
            # in the store (a table of four rows: no model server runs in the sim).
            script = (
                "import os, pathlib, sys, numpy as np\n"
                "from platform_cli.features import SPEC_FILE, CategoricalFeature, FeatureSpec\n"
                "from platform_cli.paramservice.store import open_store\n"
                "from platform_cli.registry import ModelRegistry\n"
                "from platform_cli.spec.stack import load_stack\n"
                "model, dense = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])\n"
                "for directory in (model, dense):\n"
                "    directory.mkdir(exist_ok=True)\n"
                "    FeatureSpec(categorical=[CategoricalFeature(name='user_id', buckets=4)], numeric=[], label='clicked').save(directory / SPEC_FILE)\n"
                "(model / 'saved_model.pb').write_bytes(b'never loaded')\n"
                "stack = load_stack('team-sim')\n"
                "registry = ModelRegistry(stack.tracking_uri, stack.artifact_root)\n"
                "registry.register('ctrp', model, {'auc': 0.7}, {})\n"
                "store = open_store(sys.argv[3])\n"
                "store.write('ctrp', 1, {'embedding/embeddings': np.ones((4, 8), np.float32)})\n"
                "registry.record_export('ctrp', 1, 'parameters', dense, {'store': sys.argv[3]})\n"
            )
            deployed.env["PLINTH_REDIS_PASSWORD"] = password
            try:
                deployed.run(str(REPO / ".venv" / "bin" / "python"), "-c", script, str(tmp_path / "model"), str(tmp_path / "dense"), store)
                # A store on this machine is refused before anything is asked or applied.
                refused = deployed.plinth("model", "promote", "ctrp", "1", "--parameters", "sqlite", "-s", "team-sim", check=False)
                assert refused.returncode != 0 and "a file on this machine, which pods cannot reach" in refused.stderr
                kserve.start()
                deployed.plinth("model", "promote", "ctrp", "1", "--parameters", store, "-s", "team-sim")
            finally:
                del deployed.env["PLINTH_REDIS_PASSWORD"]
        live = kube.get(INFERENCE_SERVICE, "ranking", "ctrp-v1")
        [server] = live["spec"]["predictor"]["containers"]
        assert server["command"][-2:] == ["--parameters", store]
        env = {variable["name"]: variable for variable in server["env"]}
        assert env["STORAGE_URI"]["value"].endswith("/exports/parameters")
        assert env["PLINTH_REDIS_PASSWORD"] == {"name": "PLINTH_REDIS_PASSWORD",
                                                "valueFrom": {"secretKeyRef": {"name": "plinth-parameter-store", "key": "password"}}}
        assert password not in json.dumps(live)
        [graph] = [g for g in kube.list(INFERENCE_GRAPH, "ranking") if g["metadata"]["name"] == "ctrp"]
        assert graph["spec"]["nodes"]["root"]["steps"][0]["serviceName"] == "ctrp-v1"
        # `plinth model render` shows the version as it is served, reading its store.
        [rendered, _] = yaml.safe_load_all(deployed.plinth("model", "render", "ctrp", "-s", "team-sim").stdout)
        [again] = rendered["spec"]["predictor"]["containers"]
        assert (again["command"], again["env"]) == (server["command"], server["env"])
    finally:
        kserve.stop.set()
        if kserve.is_alive():
            kserve.join()
        kube.delete(INFERENCE_GRAPH, "ranking", "ctrp")
        kube.delete(INFERENCE_SERVICE, "ranking", "ctrp-v1")
        deployed.stack_file("team-sim").write_text(original)
