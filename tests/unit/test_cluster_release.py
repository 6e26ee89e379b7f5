"""Gray release on a cluster stack: the same transitions, applied as KServe objects.

The Kubernetes API is a stand-in at the API client's HTTP boundary (tests/kube_stand_in.py):
it records server-side applies and deletes and answers readiness as a scripted KServe would.
What this does not prove: that KServe's controller creates working pods and routes the split;
only a real cluster does. The MLflow registry is real (SQLite in the test project).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from platform_cli import kube
from platform_cli.errors import PlinthError
from platform_cli.features import SPEC_FILE, CategoricalFeature, FeatureSpec
from platform_cli.serving import cluster, release
from tests.kube_stand_in import Call, RecordingApiClient


def gated(stack):
    """The stack with requireApproval on (team-feed's file leaves the gate off)."""
    serving = stack.config.serving
    policy = serving.gray_release.model_copy(update={"require_approval": True})
    config = stack.config.model_copy(update={"serving": serving.model_copy(update={"gray_release": policy})})
    return stack.model_copy(update={"config": config})


class StandInKServe:
    """Answers the API requests of a gray release as a scripted KServe would: records server-side
    applies and deletes, and reports each InferenceService Ready (or not, for `not_ready`)."""

    def __init__(self, not_ready: set[str] = frozenset()):
        self.calls: list[tuple] = []
        self.objects: dict[str, dict] = {}
        self.not_ready = set(not_ready)

    def respond(self, call: Call):
        name = call.path.rsplit("/", 1)[1]
        if call.method == "PATCH":
            assert call.query == {"fieldManager": "plinth", "force": "true"}
            assert call.content_type == "application/apply-patch+yaml"
            self.calls.append(("apply", call.body["kind"], name))
            self.objects[name] = call.body
            return 200, call.body
        if call.method == "GET":
            ready = "False" if name in self.not_ready else "True"
            return 200, {**self.objects[name], "status": {"conditions": [{"type": "Ready", "status": ready, "message": "container failed to load the model"}]}}
        if call.method == "DELETE":
            if name not in self.objects:
                return 404, {"kind": "Status", "message": f'inferenceservices.serving.kserve.io "{name}" not found', "code": 404}
            self.calls.append(("delete", "InferenceService", name))
            del self.objects[name]
            return 200, {"kind": "Status", "status": "Success"}
        raise AssertionError(f"unexpected request {call}")


@pytest.fixture
def team(project: Path, monkeypatch):
    """team-feed with its registry in the project (SQLite), versions 1-3 of ctr registered."""
    stack_file = project / "stacks" / "Pulumi.team-feed.yaml"
    document = yaml.safe_load(stack_file.read_text())
    document["config"]["plinth:registry"] = {"trackingUri": "sqlite:///registry/mlflow.db", "artifactRoot": "registry/artifacts"}
    stack_file.write_text(yaml.safe_dump(document))
    from platform_cli.registry import ModelRegistry
    from platform_cli.spec.stack import load_stack

    stack = load_stack("team-feed")
    registry = ModelRegistry(stack.tracking_uri, stack.artifact_root)
    model_dir = project / "model"
    model_dir.mkdir()
    (model_dir / "saved_model.pb").write_bytes(b"stand-in: never loaded here")
    FeatureSpec(categorical=[CategoricalFeature(name="user_id", buckets=4)], numeric=[], label="clicked").save(model_dir / SPEC_FILE)
    for _ in range(3):
        registry.register("ctr", model_dir, {"auc": 0.7}, {})
    api = StandInKServe()
    monkeypatch.setattr(kube, "connect", lambda stack: RecordingApiClient(api.respond))
    return stack, registry, api


def test_promote_rollout_rollback_apply_services_then_the_split(team):
    stack, registry, api = team
    release.promote(stack, registry, "ctr", 1, None)
    assert api.calls == [("apply", "InferenceService", "ctr-v1"), ("apply", "InferenceGraph", "ctr")]
    assert registry.aliases("ctr") == {"production": 1}

    api.calls.clear()
    release.promote(stack, registry, "ctr", 2, 10)
    assert api.calls == [("apply", "InferenceService", "ctr-v1"), ("apply", "InferenceService", "ctr-v2"), ("apply", "InferenceGraph", "ctr")]
    steps = api.objects["ctr"]["spec"]["nodes"]["root"]["steps"]
    assert [(s["serviceName"], s["weight"]) for s in steps] == [("ctr-v1", 90), ("ctr-v2", 10)]
    assert api.objects["ctr-v2"]["spec"]["predictor"]["containers"][0]["env"][0]["value"] == registry.artifact_uri("ctr", 2)
    assert registry.aliases("ctr") == {"production": 1, "canary": 2}

    with pytest.raises(PlinthError, match="needs approval"):  # the same gate as on the local platform
        release.rollout(gated(stack), registry, "ctr", 50)
    assert api.calls[-1] == ("apply", "InferenceGraph", "ctr") and len(api.calls) == 3  # refused: nothing applied

    api.calls.clear()
    release.rollback(stack, registry, "ctr")
    assert api.calls[-2:] == [("apply", "InferenceGraph", "ctr"), ("delete", "InferenceService", "ctr-v2")]
    assert [(s["serviceName"], s["weight"]) for s in api.objects["ctr"]["spec"]["nodes"]["root"]["steps"]] == [("ctr-v1", 100)]
    assert registry.aliases("ctr") == {"production": 1}


def test_a_version_that_is_never_ready_takes_no_traffic(team, monkeypatch):
    stack, registry, api = team
    release.promote(stack, registry, "ctr", 1, None)
    saved = release.state_path(stack, "ctr").read_text()
    graph = api.objects["ctr"]
    api.not_ready.add("ctr-v3")
    monkeypatch.setattr(cluster, "READY_TIMEOUT_S", 0.0)
    monkeypatch.setattr(cluster.time, "sleep", lambda s: None)
    with pytest.raises(PlinthError, match=r"InferenceService feed/ctr-v3 was not Ready after 0 s: container failed to load the model \(traffic unchanged\)"):
        release.promote(stack, registry, "ctr", 3, 10)
    assert api.objects["ctr"] is graph  # the split was not re-applied
    assert "ctr-v3" not in api.objects  # and the service that failed is gone
    assert release.state_path(stack, "ctr").read_text() == saved
    assert registry.aliases("ctr") == {"production": 1}
