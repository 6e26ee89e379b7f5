"""Helpers for the tests of the Pulumi program (tests/unit/test_infra_*.py).

Renderings run the real program (infra/__main__.py) under Pulumi's mocks through
platform_cli.render.infra, the same code `plinth stack render` uses.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from platform_cli.render.infra import Rendering, render_stack
from tests.conftest import REPO

EXAMPLE_STACKS = ["local", "platform-prod", "team-feed", "team-antispam"]


@functools.cache
def render_example(name: str) -> Rendering:
    """An example stack rendered from the repository's own stacks/, once per test session
    (tests only read renderings)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PLINTH_PROJECT_DIR", str(REPO))
        return render_stack(name)


def render_examples() -> dict[str, Rendering]:
    return {name: render_example(name) for name in EXAMPLE_STACKS}


def variant_project(root: Path, changes: dict[str, dict[str, Any]]) -> Path:
    """A copy of the repository's project with some stack files changed: `changes` maps a stack
    name to {config key: new value} (None deletes the key). Sets PLINTH_PROJECT_DIR by itself
    only through the caller's monkeypatch."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copytree(REPO / "stacks", root / "stacks", dirs_exist_ok=True)
    for stack, edits in changes.items():
        path = root / "stacks" / f"Pulumi.{stack}.yaml"
        document = yaml.safe_load(path.read_text()) if path.exists() else {"config": {}}
        for key, value in edits.items():
            if value is None:
                document["config"].pop(key, None)
            else:
                document["config"][key] = value
        path.write_text(yaml.safe_dump(document, sort_keys=False))
    return root


def stack_config(stack: str, key: str) -> Any:
    return yaml.safe_load((REPO / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"][key]


def by_kind(rendering: Rendering, kind: str) -> dict[str, dict[str, Any]]:
    """Objects of one kind by name (namespace/name for namespaced ones)."""
    found = {}
    for obj in rendering.of_kind(kind):
        meta = obj["metadata"]
        found[f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]] = obj
    return found
