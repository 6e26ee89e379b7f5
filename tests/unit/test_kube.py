"""The one Kubernetes client: requests by group-version-kind and the one error mapping.

The API server is a stand-in at the client's HTTP boundary (tests/kube_stand_in.py): these
tests prove the requests Plinth builds and how it words the API server's answers, not that a
real API server gives those answers.
"""

from __future__ import annotations

import pytest
from urllib3.exceptions import MaxRetryError

from platform_cli.errors import PlinthError
from platform_cli.kinds import all_kinds
from platform_cli.kube import ErrorContext, KubeClient, Resource, plural
from tests.kube_stand_in import RecordingApiClient

CONTEXT = ErrorContext(stack="team-feed", namespace="feed", group="team-feed")
MPIJOB = {"apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob", "metadata": {"name": "train-abcde", "namespace": "feed"}, "spec": {}}


def status(code: int, message: str) -> tuple[int, dict]:
    return code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "message": message}


def refused(answer: tuple[int, dict]) -> str:
    client = KubeClient(RecordingApiClient(lambda call: answer), CONTEXT)
    with pytest.raises(PlinthError) as error:
        client.apply(MPIJOB)
    return str(error.value)


@pytest.mark.parametrize(("kind", "resource"), [
    ("ConfigMap", "configmaps"), ("Pod", "pods"), ("Job", "jobs"), ("SparkApplication", "sparkapplications"),
    ("MPIJob", "mpijobs"), ("TFJob", "tfjobs"), ("InferenceService", "inferenceservices"), ("InferenceGraph", "inferencegraphs"),
    ("Workflow", "workflows"), ("CronWorkflow", "cronworkflows"), ("NetworkPolicy", "networkpolicies"), ("Ingress", "ingresses"),
])
def test_resource_names_follow_the_api_machinery_rule(kind: str, resource: str) -> None:
    assert plural(kind) == resource


def test_paths_of_core_grouped_and_every_job_kind_workload() -> None:
    assert Resource("v1", "Pod").path("feed", "p", "log") == "/api/v1/namespaces/feed/pods/p/log"
    assert Resource("batch/v1", "Job").path("feed") == "/apis/batch/v1/namespaces/feed/jobs"
    assert Resource("v1", "Namespace").path(None, "feed") == "/api/v1/namespaces/feed"
    assert {kind.workload.path("feed") for kind in all_kinds()} == {
        "/apis/sparkoperator.k8s.io/v1beta2/namespaces/feed/sparkapplications",
        "/apis/kubeflow.org/v2beta1/namespaces/feed/mpijobs",
        "/apis/kubeflow.org/v1/namespaces/feed/tfjobs",
        "/apis/batch/v1/namespaces/feed/jobs",
    }


def test_apply_is_server_side_with_plinths_field_manager() -> None:
    client = RecordingApiClient(lambda call: (200, call.body))
    assert KubeClient(client, CONTEXT).apply(MPIJOB) == MPIJOB
    [call] = client.calls
    assert (call.method, call.path, call.query, call.content_type) == (
        "PATCH", "/apis/kubeflow.org/v2beta1/namespaces/feed/mpijobs/train-abcde", {"fieldManager": "plinth", "force": "true"}, "application/apply-patch+yaml")


def test_get_and_delete_of_a_missing_object_are_not_errors() -> None:
    client = KubeClient(RecordingApiClient(lambda call: status(404, 'mpijobs.kubeflow.org "gone" not found')), CONTEXT)
    assert client.get(Resource("kubeflow.org/v2beta1", "MPIJob"), "feed", "gone") is None
    assert client.delete(Resource("kubeflow.org/v2beta1", "MPIJob"), "feed", "gone") is False


def test_list_fills_in_kind_and_api_version_of_each_item() -> None:
    client = KubeClient(RecordingApiClient(lambda call: (200, {"kind": "PodList", "items": [{"metadata": {"name": "a"}}]})), CONTEXT)
    assert client.list(Resource("v1", "Pod"), "feed", "app=x") == [{"metadata": {"name": "a"}, "apiVersion": "v1", "kind": "Pod"}]


def test_a_quota_refusal_keeps_the_api_servers_words_and_says_what_to_lower() -> None:
    message = 'mpijobs "train-abcde" is forbidden: exceeded quota: team-quota, requested: requests.nvidia.com/gpu=32, used: requests.nvidia.com/gpu=0, limited: requests.nvidia.com/gpu=16'
    assert refused(status(403, message)) == (
        f"applying MPIJob feed/train-abcde: {message}; lower the job's workers or resources, or raise the team's quota in its stack")


def test_rbac_refusal_names_the_teams_group() -> None:
    assert refused(status(403, 'mpijobs.kubeflow.org is forbidden: User "ann" cannot patch resource "mpijobs"')).endswith(
        "check that your identity is in the team's group (team-feed) and the stack's kubernetes:context")


def test_a_missing_api_names_the_engine_to_install() -> None:
    assert refused(status(404, "the server could not find the requested resource")) == (
        "applying MPIJob feed/train-abcde: the server could not find the requested resource; "
        "the cluster lacks this API: install the MPI operator or the Kubeflow training operator (the platform stack installs it)")


def test_a_missing_namespace_points_at_the_team_stack() -> None:
    assert refused(status(404, 'namespaces "feed" not found')).endswith("does namespace 'feed' exist? pulumi up -s team-feed creates it")


def test_a_field_ownership_conflict_says_whose_fields() -> None:
    assert refused(status(409, 'Apply failed with 1 conflict: conflict with "kubectl" using kubeflow.org/v2beta1: .spec.slotsPerWorker')).endswith(
        "another field manager owns these fields; change them there, or delete the object first")


def test_an_unreachable_api_server_is_one_line() -> None:
    def unreachable(call):
        raise MaxRetryError(None, call.path, "connection refused")

    client = KubeClient(RecordingApiClient(unreachable), CONTEXT)
    with pytest.raises(PlinthError, match=r"^applying MPIJob feed/train-abcde: cannot reach the Kubernetes API \(MaxRetryError\); check the cluster is up"):
        client.apply(MPIJOB)


def test_only_cluster_internal_service_names_are_reached_through_the_cluster() -> None:
    from platform_cli.kube import service_address

    assert service_address("mlflow.plinth-system.svc") == ("mlflow", "plinth-system")
    assert service_address("mlflow.plinth-system.svc.cluster.local") == ("mlflow", "plinth-system")
    assert service_address("mlflow.example.org") is None
    assert service_address("127.0.0.1") is None
    assert service_address("svc") is None
