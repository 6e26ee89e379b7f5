"""The platform's MLflow tracking server on the simulated cluster, reached as a user reaches it.

platform-sim deploys MLflow as on any cluster (Deployment, Service, PostgreSQL StatefulSet,
Secret, network policies); KWOK plays the pods, and the sim answers for the MLflow pods' port
5000 with an `mlflow server` it runs on this machine (a KWOK port forward). `plinth model`
reaches http://mlflow.plinth-system.svc:5000 through a port forward over the API server, so
every request here crosses the real API server and KWOK's kubelet API.
"""

from __future__ import annotations

import base64
import json
import socket
import uuid

import pytest

from platform_cli.kube import Resource
from tests.sim.conftest import SIM_TIMEOUT, Sim

# The first test of a session may build the cluster tools (scripts/cluster-tools) first.
pytestmark = pytest.mark.timeout(SIM_TIMEOUT)


def register_two_versions(sim: Sim, model: str) -> list[str]:
    """Two versions of `model` with production and canary aliases, written straight into the
    sim's MLflow server (what training jobs would have registered); their run ids."""
    from mlflow.tracking import MlflowClient

    server = json.loads((sim.root / "sim" / "state.json").read_text())["mlflow"]
    client = MlflowClient(tracking_uri=server, registry_uri=server)
    client.create_registered_model(model)
    experiment = client.create_experiment(model, artifact_location=f"s3a://plinth-sim/teams/ranking/models/{model}")
    runs = []
    for _ in range(2):
        run = client.create_run(experiment)
        client.set_terminated(run.info.run_id)
        client.create_model_version(model, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
        runs.append(run.info.run_id)
    client.set_registered_model_alias(model, "production", "1")
    client.set_registered_model_alias(model, "canary", "2")
    return runs


def test_plinth_model_render_reads_the_platforms_mlflow_through_the_cluster(deployed: Sim) -> None:
    sim = deployed
    # The tracking URI is a cluster name this machine cannot resolve: only the cluster reaches it.
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("mlflow.plinth-system.svc", 5000)
    model = f"ctr-{uuid.uuid4().hex[:6]}"
    runs = register_two_versions(sim, model)
    # team-feed (platform-prod's team) pointed at the sim: its registry is the platform's server.
    sim.edit_stack("team-feed", lambda config: config.__setitem__("kubernetes:context", "plinth-sim"))
    try:
        result = sim.plinth("model", "render", model, "-s", "team-feed", "-o", "json", timeout=180)
    finally:
        sim.edit_stack("team-feed", lambda config: config.__setitem__("kubernetes:context", "prod"))
    objects = json.loads(result.stdout)
    services = {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == "InferenceService"}
    assert set(services) == {f"{model}-v1", f"{model}-v2"}
    assert services[f"{model}-v2"]["metadata"]["annotations"]["plinth.dev/stage"] == "canary"
    rendered = json.dumps(services)
    assert all(run in rendered for run in runs)   # each version's files, from its MLflow run
    listed = sim.plinth("model", "ls", "-s", "team-sim", "-o", "json", timeout=180)
    assert {m["name"]: m["aliases"] for m in json.loads(listed.stdout)}[model] == {"production": 1, "canary": 2}


def test_the_mlflow_database_password_reaches_the_cluster_only_as_a_secret(deployed: Sim) -> None:
    sim = deployed
    kube = sim.kube()
    secret = kube.get(Resource("v1", "Secret"), "plinth-system", "mlflow-database")
    password = base64.b64decode(secret["data"]["password"]).decode()
    assert len(password) >= 16
    assert password not in sim.stack_file("platform-sim").read_text()
    assert password not in json.dumps(sim.state("platform-sim"))   # encrypted in the checkpoint too
    deployment = kube.get(Resource("apps/v1", "Deployment"), "plinth-system", "mlflow")
    assert password not in json.dumps(deployment)
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "DATABASE_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "mlflow-database", "key": "password"}}}]
    # The database's claim bound a volume, so its pod was placed and (KWOK) runs.
    claim = kube.get(Resource("v1", "PersistentVolumeClaim"), "plinth-system", "data-mlflow-database-0")
    assert claim["status"]["phase"] == "Bound"
