"""The Pulumi program: `pulumi up -s <stack>` from the repository root (Pulumi.yaml: main: infra/).

It reads the stack's `plinth:` configuration through Pulumi's config, validates it with the
same typed model the `plinth` CLI uses (platform_cli/spec/stack.py), and exports what the
platform offers. The `local` target runs on the developer's machine and provisions no cloud or
cluster resources; cluster targets compose their components (namespace, quotas, queues, GPU
pools, storage, KServe) here.
"""

import json

import pulumi

from platform_cli.errors import PlinthError
from platform_cli.spec.stack import StackConfig, parse_stack_config

STACK_SECTIONS = [field.alias or name for name, field in StackConfig.model_fields.items()]


def read_stack_config() -> StackConfig:
    """The stack's `plinth:` keys from Pulumi's config (a stack file or `pulumi config set`)."""
    config = pulumi.Config("plinth")
    values = {}
    for key in STACK_SECTIONS:
        raw = config.get(key)
        if raw is None:
            continue
        # Pulumi hands every value over as a string, structured ones as JSON.
        try:
            values[f"plinth:{key}"] = json.loads(raw)
        except ValueError:
            values[f"plinth:{key}"] = raw
    return parse_stack_config({"config": values}, where=f"stack {pulumi.get_stack()}")


def main() -> None:
    try:
        stack = read_stack_config()
    except PlinthError as exc:
        raise pulumi.RunError(str(exc)) from None
    pulumi.export("target", stack.target)
    pulumi.export("config", stack.model_dump(mode="json", by_alias=True))


main()
