"""The Pulumi program under Pulumi's mocks (the Pulumi engine cannot run here).

What this proves: `infra/__main__.py` reads a stack's `plinth:` config through Pulumi's own
config API and validates it with the same model as the CLI, so `pulumi up -s local` and
`plinth --stack local` agree on the stack. What it cannot prove: anything the engine does
(state, previews, providers); the local target creates no resources to check.
"""

from __future__ import annotations

import json
import runpy

import pulumi
import pytest
import yaml

from platform_cli.spec.stack import load_stack
from tests.conftest import REPO


class NoResources(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        raise AssertionError(f"the local stack must create no resources, got {args.typ}")

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


def run_program(stack_file_config: dict) -> dict:
    """Run infra/__main__.py as `pulumi up` would; returns the program's globals."""
    # Pulumi hands structured stack-file values to the program as JSON strings.
    pulumi.runtime.set_all_config({k: v if isinstance(v, str) else json.dumps(v) for k, v in stack_file_config.items()})
    pulumi.runtime.set_mocks(NoResources(), project="plinth", stack="local", preview=False)
    return runpy.run_path(str(REPO / "infra" / "__main__.py"), run_name="__main__")


def test_the_program_reads_the_stack_file_as_the_cli_does(project) -> None:
    stack_file = yaml.safe_load((REPO / "stacks" / "Pulumi.local.yaml").read_text())["config"]
    program = run_program(stack_file)
    assert program["read_stack_config"]() == load_stack("local").config


def test_invalid_config_fails_the_program_with_the_key_path() -> None:
    with pytest.raises(pulumi.RunError, match=r"plinth:local.sparkCores: Input should be greater than or equal to 1"):
        run_program({"plinth:target": "local", "plinth:local": {"sparkCores": 0}})
