"""Targets: the only code with side effects on jobs. One module per target, resolved lazily.

A target receives a rendered job and runs it; it never decides what to run (render does).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from platform_cli.errors import PlinthError

if TYPE_CHECKING:
    from platform_cli.spec.stack import Stack
    from platform_cli.targets.base import Target

# Adding a target = one module + one line here.
TARGETS = {
    "local": "platform_cli.targets.local:LocalTarget",
    "kubernetes": "platform_cli.targets.kubernetes:KubernetesTarget",
    "yarn": "platform_cli.targets.yarn:YarnTarget",
}


def get_target(stack: Stack) -> Target:
    name = stack.config.target
    if name not in TARGETS:
        raise PlinthError(f"target {name!r} of stack {stack.name!r} is not available", f"known targets: {', '.join(TARGETS)}")
    module_name, class_name = TARGETS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)(stack)
