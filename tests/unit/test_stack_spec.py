"""Stack files: the typed model validates them and errors name the key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from platform_cli.errors import PlinthError
from platform_cli.spec.stack import load_stack, stack_names


def write_stack(project: Path, name: str, text: str) -> None:
    (project / "stacks" / f"Pulumi.{name}.yaml").write_text(text)


def test_local_stack_resolves_paths_against_the_project(project: Path) -> None:
    stack = load_stack("local")
    assert stack.config.target == "local"
    assert stack.home == project / ".plinth" / "local"
    assert stack.storage_root == str(project / ".plinth" / "local" / "storage")
    assert stack.tracking_uri == f"sqlite:///{project}/.plinth/local/registry/mlflow.db"
    assert stack.config.local.horovod_slots == 2


def test_default_stack_is_local_and_env_selects_another(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_stack(project, "dev", "config:\n  plinth:local: {sparkCores: 1}\n")
    assert load_stack().name == "local"
    monkeypatch.setenv("PLINTH_STACK", "dev")
    assert load_stack().config.local.spark_cores == 1
    assert "dev" in stack_names()


def test_unknown_stack_lists_the_known_ones(project: Path) -> None:
    with pytest.raises(PlinthError) as error:
        load_stack("team-nope")
    assert "unknown stack 'team-nope'" in str(error.value)
    assert "known stacks: local" in str(error.value)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("  plinth:local: {sparkCores: 0}\n", "plinth:local.sparkCores: Input should be greater than or equal to 1"),
        ("  plinth:local: {sparkCorez: 2}\n", "plinth:local.sparkCorez: unknown key (check its spelling)"),
        ("  plinth:target: mainframe\n", "plinth:target: must be one of 'local', 'kubernetes' or 'yarn'"),
        ("  plinth:serving: {port: 80}\n", "plinth:serving.port: Input should be greater than or equal to 1024"),
        ("  plinth:serving: {batching: {maxBatch: 0}}\n", "plinth:serving.batching.maxBatch: Input should be greater than or equal to 1"),
        ("  plinth:serving: {batching: {maxWait: 2}}\n", "plinth:serving.batching.maxWait: unknown key (check its spelling)"),
    ],
)
def test_bad_values_name_the_key_path_and_file(project: Path, config: str, expected: str) -> None:
    write_stack(project, "bad", "config:\n" + config)
    with pytest.raises(PlinthError) as error:
        load_stack("bad")
    assert str(error.value) == f"stacks/Pulumi.bad.yaml: {expected}"


def test_keys_of_other_namespaces_belong_to_providers(project: Path) -> None:
    write_stack(project, "k", "config:\n  kubernetes:context: prod\n  plinth:local: {horovodSlots: 4}\n")
    assert load_stack("k").config.local.horovod_slots == 4


def test_invalid_yaml_is_one_line(project: Path) -> None:
    write_stack(project, "broken", "config:\n  plinth:local: {sparkCores: 2\n")
    with pytest.raises(PlinthError) as error:
        load_stack("broken")
    assert str(error.value).startswith("stacks/Pulumi.broken.yaml: not valid YAML")
    assert "\n" not in str(error.value)
