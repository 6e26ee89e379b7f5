"""A streaming job's lag on a cluster stack, through the live API server of the simulated cluster:
the driver publishes it on its own pod with the identity the job's pods run as (the team's
`plinth-jobs` service account), and `plinth job status -s team-sim` reads it from there.

The sim runs no Spark operator and KWOK runs no containers, so the test plays their parts: it
creates the driver pod the operator would create for the submitted SparkApplication (its name,
labels and service account), marks the application running as the operator reports it, and
calls the driver's own publishing code (features/lag.py) from this process. What this does NOT
prove: that a real Spark driver in a pod finds its pod name and namespace in its Spark
properties and reaches the API server with its in-cluster credentials (`publisher`); the
local integration test proves the measurement itself against a real stream.
"""

from __future__ import annotations

import json
import re

import pytest

from platform_cli.features.lag import LAG_ANNOTATION, DriverPodLag, StreamLag
from platform_cli.kube import POD, ErrorContext, KubeClient, Resource
from tests.conftest import REPO
from tests.sim.conftest import SIM_TIMEOUT, Sim, wait_for

pytestmark = pytest.mark.timeout(SIM_TIMEOUT)

SPARK_APPLICATION = Resource("sparkoperator.k8s.io/v1beta2", "SparkApplication")
STREAM = REPO / "examples/ctr-realtime/activity.job.yaml"


def as_service_account(sim: Sim, name: str) -> KubeClient:
    """The sim's API server as the pods of `name` in the team's namespace reach it."""
    from kubernetes import config

    client = config.new_client_from_config(config_file=sim.env["KUBECONFIG"], context="plinth-sim")
    client.set_default_header("Impersonate-User", f"system:serviceaccount:ranking:{name}")
    return KubeClient(client, ErrorContext("in-cluster", "ranking"))


def start_driver(sim: Sim, job_id: str) -> str:
    """What the Spark operator does for a submitted application: create its driver pod (name
    <app>-driver, the driver's labels and service account) and report the application running."""
    admin = sim.kube()
    driver = admin.get(SPARK_APPLICATION, "ranking", job_id)["spec"]["driver"]
    pod = f"{job_id}-driver"
    admin.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "namespace": "ranking", "labels": {**driver["labels"], "spark-role": "driver"}},
                  "spec": {"serviceAccountName": driver["serviceAccount"], "restartPolicy": "Never",
                           "containers": [{"name": "spark-kubernetes-driver", "image": "ghcr.io/plinth-ml/plinth-runtime:0.1.0",
                                           "resources": {"requests": {"cpu": driver["coreRequest"], "memory": "1Gi"}, "limits": {"memory": "1Gi"}}}]}})
    admin.patch(SPARK_APPLICATION, "ranking", job_id, {"status": {"applicationState": {"state": "RUNNING"}, "driverInfo": {"podName": pod}}}, subresource="status")
    return pod


def test_a_cluster_stream_shows_the_lag_its_driver_publishes_on_its_pod(deployed: Sim) -> None:
    submitted = deployed.plinth("job", "submit", "-s", "team-sim", "-f", str(STREAM)).stdout
    job_id = re.search(r"^job/(\S+) submitted to stack team-sim$", submitted, re.MULTILINE).group(1)
    try:
        pod = start_driver(deployed, job_id)
        status = json.loads(deployed.plinth("job", "status", job_id, "-s", "team-sim", "-o", "json").stdout)
        assert status["status"] == "Running" and "lag" not in status   # nothing measured yet

        # The driver's first measurement goes to its pod at once; the next one within the
        # interval does not (one API write per interval, however fast the trigger).
        publisher = DriverPodLag(as_service_account(deployed, "plinth-jobs"), "ranking", pod, interval=60)
        measured = StreamLag(batch=7, processed=1200, behind_events=35, behind_seconds=2.5, event_time=1_790_000_000.0, updated=1_790_000_003.0)
        assert publisher.publish(measured) is True
        assert publisher.publish(measured.model_copy(update={"processed": 1235, "behind_events": 0})) is False
        annotations = deployed.kube().get(POD, "ranking", pod)["metadata"]["annotations"]
        assert json.loads(annotations[LAG_ANNOTATION])["processed"] == 1200

        status = json.loads(deployed.plinth("job", "status", job_id, "-s", "team-sim", "-o", "json").stdout)
        assert status["lag"] == measured.model_dump()
        table = deployed.plinth("job", "status", job_id, "-s", "team-sim").stdout.splitlines()
        assert table[0].split()[-2:] == ["PROCESSED", "LAG"]
        assert table[1].split()[:3] == [job_id, "streaming", "Running"]
        assert re.search(r"\s1200\s+35 events / 2\.5s$", table[1]), table

        # An identity the team's Role does not let patch pods is refused, and the stream goes
        # on: the refusal is reported, nothing is written.
        refused = DriverPodLag(as_service_account(deployed, "default"), "ranking", pod, interval=0)
        assert refused.publish(measured.model_copy(update={"processed": 9999})) is False
        assert json.loads(deployed.kube().get(POD, "ranking", pod)["metadata"]["annotations"][LAG_ANNOTATION])["processed"] == 1200
    finally:
        deployed.plinth("job", "cancel", job_id, "-s", "team-sim", check=False)
        deployed.kube().delete(POD, "ranking", f"{job_id}-driver")
        wait_for(f"driver pod of {job_id} deleted", lambda: deployed.kube().get(POD, "ranking", f"{job_id}-driver") is None, timeout=60)
