"""The model library against a real embedded MLflow registry (sqlite + local artifacts)."""

from datetime import datetime, timezone
from pathlib import Path

import pytest

from platform_cli.errors import PlinthError
from platform_cli.registry import ModelRegistry

LINEAGE_V1 = {
    "job_id": "train-ctr-20240601-1",
    "job_name": "train-ctr",
    "data_inputs": "features/ctr/2024-06-01",
    "code_sha": "0123abcd",
    "git_revision": "main",
}
LINEAGE_V2 = {**LINEAGE_V1, "job_id": "train-ctr-20240602-1", "code_sha": "4567ef01"}


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> ModelRegistry:
    home = tmp_path_factory.mktemp("home")
    return ModelRegistry(f"sqlite:///{home / 'mlflow.db'}", str(home / "artifacts"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    # The registry stores a directory as-is; its contents need not be a loadable SavedModel here.
    path = tmp_path_factory.mktemp("model")
    (path / "saved_model.pb").write_bytes(b"not really a graph")
    (path / "variables").mkdir()
    (path / "variables" / "variables.index").write_bytes(b"\x00")
    (path / "feature_spec.json").write_text('{"label": "clicked"}')
    return path


@pytest.fixture(scope="module")
def two_versions(registry, model_dir):
    v1 = registry.register("ctr", model_dir, {"auc": 0.71, "logloss": 0.45}, LINEAGE_V1)
    v2 = registry.register("ctr", model_dir, {"auc": 0.73, "logloss": 0.44}, LINEAGE_V2)
    return v1, v2


def test_register_numbers_versions_and_round_trips_lineage_and_metrics(two_versions):
    v1, v2 = two_versions
    assert (v1.name, v1.version, v2.version) == ("ctr", 1, 2)
    assert v1.lineage == LINEAGE_V1 and v2.lineage == LINEAGE_V2
    assert v1.metrics == {"auc": 0.71, "logloss": 0.45}
    assert v2.metrics == {"auc": 0.73, "logloss": 0.44}
    assert v1.source == f"runs:/{v1.run_id}/model" and v1.run_id != v2.run_id
    assert v1.created.tzinfo is timezone.utc and v1.created <= datetime.now(timezone.utc)


def test_versions_get_and_latest(registry, two_versions):
    assert [v.version for v in registry.versions("ctr")] == [1, 2]
    assert registry.get("ctr").version == 2
    assert registry.get("ctr", 1) == two_versions[0]


def test_model_dir_holds_the_registered_files(registry, model_dir, two_versions):
    stored = registry.model_dir("ctr", 1)
    assert sorted(p.relative_to(stored) for p in stored.rglob("*")) == sorted(
        p.relative_to(model_dir) for p in model_dir.rglob("*")
    )
    assert (stored / "feature_spec.json").read_text() == '{"label": "clicked"}'


def test_list_models_summarises_each_model(registry, two_versions):
    summaries = {m.name: m for m in registry.list_models()}
    assert summaries["ctr"].latest_version == 2
    assert summaries["ctr"].aliases == {}


def test_missing_version_names_the_versions(registry, two_versions):
    with pytest.raises(PlinthError, match="no version 7") as error:
        registry.get("ctr", 7)
    assert error.value.fix == "versions: 1, 2"


def test_unknown_model_lists_known_models(registry, model_dir, two_versions):
    registry.register("ranker", model_dir, {}, {})
    with pytest.raises(PlinthError, match="no model named 'nope'") as error:
        registry.get("nope")
    assert error.value.fix == "known models: ctr, ranker"


def test_empty_registry_and_bad_input(tmp_path, model_dir):
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "artifacts"))
    assert registry.list_models() == []
    with pytest.raises(PlinthError, match="no model named 'ctr'") as error:
        registry.versions("ctr")
    assert error.value.fix == "the registry is empty"
    with pytest.raises(PlinthError, match="does not exist"):
        registry.register("ctr", tmp_path / "missing", {}, {})
    with pytest.raises(PlinthError, match="invalid model name"):
        registry.register("ctr/../x", model_dir, {}, {})


def test_a_reader_sees_what_another_writer_registered_and_aliased(tmp_path, model_dir):
    # Two clients on one embedded registry, as the console and a flow step in another process.
    uri, artifacts = f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "artifacts")
    reader, writer = ModelRegistry(uri, artifacts), ModelRegistry(uri, artifacts)
    writer.register("ctr", model_dir, {"auc": 0.7}, LINEAGE_V1)
    assert [v.version for v in reader.versions("ctr")] == [1]
    assert reader.versions("ctr") == reader.versions("ctr")  # read again, unchanged
    writer.register("ctr", model_dir, {"auc": 0.72}, LINEAGE_V2)
    assert [v.version for v in reader.versions("ctr")] == [1, 2]
    writer.set_aliases("ctr", {"production": 2})
    assert reader.versions("ctr")[1].aliases == ["production"]
    assert reader.list_models()[0].aliases == {"production": 2}
