"""Cluster rendering of a gray release: KServe objects by deployment mode, schema-valid, golden-pinned.

What this does not prove: that KServe's controller accepts the objects' semantics (webhooks,
revision tracking for canaryTrafficPercent) — only a real cluster does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from platform_cli.errors import PlinthError
from platform_cli.render.serving import render_release
from platform_cli.render.validate import SchemaError, validate_object
from platform_cli.serving import traffic
from platform_cli.spec.stack import GrayReleaseConfig, load_stack
from tests.conftest import REPO, assert_matches_golden

GOLDEN = REPO / "tests" / "golden" / "kubernetes" / "serving"
URIS = {v: f"hdfs://hdfs-namenode.plinth-storage.svc:8020/teams/feed/models/ctr/run{v}/artifacts/model" for v in (2, 3)}


def canary_state() -> traffic.TrafficState:
    state = traffic.promote(traffic.TrafficState(model="ctr"), 2, None, GrayReleaseConfig())
    return traffic.promote(state, 3, 10, GrayReleaseConfig())


@pytest.fixture
def serverless(project: Path) -> str:
    """platform-prod with KServe in Serverless mode, and a team stack on it."""
    stacks = project / "stacks"
    platform = yaml.safe_load((stacks / "Pulumi.platform-prod.yaml").read_text())
    platform["config"]["plinth:platform"]["kserve"]["deploymentMode"] = "Serverless"
    (stacks / "Pulumi.platform-knative.yaml").write_text(yaml.safe_dump(platform))
    team = yaml.safe_load((stacks / "Pulumi.team-feed.yaml").read_text())
    team["config"]["plinth:team"]["platform"] = "platform-knative"
    (stacks / "Pulumi.team-feed-knative.yaml").write_text(yaml.safe_dump(team))
    return "team-feed-knative"


def check_golden(name: str, objects: list[dict]) -> None:
    text = yaml.safe_dump_all(objects, sort_keys=False)
    golden = GOLDEN / f"{name}.yaml"
    assert_matches_golden(golden, text)


def test_raw_deployment_is_an_isvc_per_version_and_a_splitter_graph(project: Path) -> None:
    objects = render_release(load_stack("team-feed"), canary_state(), URIS)
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("InferenceService", "ctr-v2"), ("InferenceService", "ctr-v3"), ("InferenceGraph", "ctr")]
    assert {o["metadata"]["namespace"] for o in objects} == {"feed"}
    root = objects[2]["spec"]["nodes"]["root"]
    assert root["routerType"] == "Splitter"
    assert [(s["serviceName"], s["weight"]) for s in root["steps"]] == [("ctr-v2", 90), ("ctr-v3", 10)]
    v3 = objects[1]["spec"]
    assert v3["predictor"]["containers"][0]["env"] == [{"name": "STORAGE_URI", "value": URIS[3]}]
    assert "--tensor-inputs" in v3["predictor"]["containers"][0]["command"]
    assert v3["transformer"]["containers"][0]["command"][:3] == ["python", "-m", "platform_cli.serving.transformer"]
    assert v3["predictor"]["priorityClassName"] == "plinth-online"
    check_golden("team-feed-canary", objects)


def test_serverless_is_one_isvc_with_canary_traffic_percent(project: Path, serverless: str) -> None:
    state = canary_state()
    [isvc] = render_release(load_stack(serverless), state, URIS)
    assert isvc["metadata"]["name"] == "ctr"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert isvc["spec"]["predictor"]["containers"][0]["env"][0]["value"] == URIS[3]
    check_golden("team-feed-serverless-canary", [isvc])

    # Rolled out in full: production's spec, no canary share.
    full = traffic.rollout(state, None, GrayReleaseConfig())
    [isvc] = render_release(load_stack(serverless), full, URIS)
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]
    assert isvc["metadata"]["annotations"]["plinth.dev/stage"] == "production"
    # Rolled back: production's (version 2's) spec again.
    [isvc] = render_release(load_stack(serverless), traffic.rollback(state), URIS)
    assert isvc["spec"]["predictor"]["containers"][0]["env"][0]["value"] == URIS[2]
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]


def test_rendering_refuses_what_it_cannot_serve(project: Path) -> None:
    with pytest.raises(PlinthError, match="cluster serving needs a team stack"):
        render_release(load_stack("local"), canary_state(), URIS)
    with pytest.raises(PlinthError, match="no storage location for version 3"):
        render_release(load_stack("team-feed"), canary_state(), {2: URIS[2]})
    with pytest.raises(PlinthError, match="has no version taking traffic"):
        render_release(load_stack("team-feed"), traffic.TrafficState(model="ctr"), URIS)


def test_the_schema_check_catches_a_misspelt_field(project: Path) -> None:
    [isvc, *_] = render_release(load_stack("team-feed"), canary_state(), URIS)
    isvc["spec"]["predictor"]["canaryTrafficPercnt"] = 10
    with pytest.raises(SchemaError, match="spec.predictor: unknown field"):
        validate_object(isvc)


def test_the_stacks_batching_settings_reach_the_predictor(project: Path) -> None:
    stacks = project / "stacks"
    team = yaml.safe_load((stacks / "Pulumi.team-feed.yaml").read_text())
    team["config"]["plinth:serving"] = {"batching": {"maxBatch": 128, "maxWaitMs": 0.5}, "workers": 2}
    (stacks / "Pulumi.team-feed-batched.yaml").write_text(yaml.safe_dump(team))

    objects = render_release(load_stack("team-feed-batched"), canary_state(), URIS)  # validated against KServe's CRDs
    for service in (o for o in objects if o["kind"] == "InferenceService"):
        command = service["spec"]["predictor"]["containers"][0]["command"]
        assert command[command.index("--max-batch"):] == ["--max-batch", "128", "--max-wait-ms", "0.5", "--workers", "2"]
        # The transformer sends one request per client request; the predictor batches them.
        assert "--max-batch" not in service["spec"]["transformer"]["containers"][0]["command"]


PARAMETERS = "redis://plinth-parameters.plinth-system.svc:6379/0"
DENSE_URI = "hdfs://hdfs-namenode.plinth-storage.svc:8020/teams/feed/models/ctr/run3/artifacts/exports/parameters"


@pytest.fixture
def with_parameter_store(project: Path) -> str:
    """team-feed with the parameter store's password set as a secret (ciphertext only in the file)."""
    stacks = project / "stacks"
    team = yaml.safe_load((stacks / "Pulumi.team-feed.yaml").read_text())
    team["config"]["plinth:parameterStorePassword"] = {"secure": "v1:ciphertext-of-the-password"}
    (stacks / "Pulumi.team-feed-params.yaml").write_text(yaml.safe_dump(team))
    return "team-feed-params"


def test_a_version_promoted_with_parameters_serves_its_dense_part_and_reads_rows_from_redis(project: Path, with_parameter_store: str) -> None:
    state = canary_state().model_copy(update={"parameters": {3: PARAMETERS}})
    objects = render_release(load_stack(with_parameter_store), state, {2: URIS[2], 3: DENSE_URI})  # validated against KServe's CRDs
    v2, v3 = (o["spec"] for o in objects[:2])
    [server] = v3["predictor"]["containers"]
    assert server["command"][-2:] == ["--parameters", PARAMETERS] and "--tensor-inputs" in server["command"]
    # The dense part is what the storage initializer fetches; the password comes from the
    # namespace's Secret, never written into the object.
    assert server["env"] == [
        {"name": "STORAGE_URI", "value": DENSE_URI},
        {"name": "PLINTH_REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "plinth-parameter-store", "key": "password"}}},
    ]
    # The transformer reads the feature spec the dense part ships: the same container as ever.
    assert v3["transformer"] == {**v2["transformer"], "containers": [{**v2["transformer"]["containers"][0], "env": [{"name": "STORAGE_URI", "value": DENSE_URI}]}]}
    # Production (the whole model) is untouched by its canary's parameter store.
    assert "--parameters" not in v2["predictor"]["containers"][0]["command"]
    assert v2["predictor"]["containers"][0]["env"] == [{"name": "STORAGE_URI", "value": URIS[2]}]
    text = yaml.safe_dump_all(objects, sort_keys=False)
    assert "ciphertext" not in text
    check_golden("team-feed-canary-parameters", objects)


def test_parameters_the_cluster_cannot_read_are_refused(project: Path, with_parameter_store: str) -> None:
    uris = {2: URIS[2], 3: DENSE_URI}
    sqlite = canary_state().model_copy(update={"parameters": {3: "sqlite:////home/me/params/parameters.sqlite"}})
    with pytest.raises(PlinthError, match=r"version 3 of ctr reads 'sqlite:////home/me/params/parameters.sqlite', a file on this machine, which pods cannot reach"):
        render_release(load_stack(with_parameter_store), sqlite, uris)
    redis = canary_state().model_copy(update={"parameters": {3: PARAMETERS}})
    with pytest.raises(PlinthError, match=r"stack team-feed has no plinth:parameterStorePassword") as refused:
        render_release(load_stack("team-feed"), redis, uris)
    assert "pulumi config set --secret plinth:parameterStorePassword VALUE -s team-feed" in refused.value.fix
