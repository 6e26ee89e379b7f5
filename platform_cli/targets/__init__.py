"""Targets: the places a stack runs its jobs, flows and models. One module per target, each
declaring what it renders with and what it does not support; `target_of(stack)` is the one
place a stack's `plinth:target` is read.

A target's runner class (the lifecycle verbs of targets/base.py: submit, status, logs, cancel,
...) is the only code with side effects on jobs; its renderers are pure (platform_cli/render).
Adding a target is one module defining TARGET and one line in TARGETS.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from platform_cli.errors import PlinthError

if TYPE_CHECKING:
    from platform_cli.render.context import RenderedJob
    from platform_cli.spec.job import LoadedJob
    from platform_cli.spec.stack import Stack
    from platform_cli.targets.base import Target

TARGETS = {
    "local": "platform_cli.targets.local",
    "kubernetes": "platform_cli.targets.kubernetes",
    "yarn": "platform_cli.targets.yarn",
}


@dataclass(frozen=True)
class Unsupported:
    """Why a target cannot do something, and what to do instead."""

    why: str
    fix: str  # may name {stack}


@dataclass(frozen=True)
class TargetInfo:
    name: str
    runner: str  # "module:Class" implementing targets.base.Target
    # Job kind -> the pure renderer ("module:function") of its manifest; "*" covers the rest.
    renderers: dict[str, str]
    preview_id_suffix: str  # the job id's suffix in a render without a submission
    serving: str  # "local" (model servers and router on this machine) or "kserve"
    # "module:function" creating rendered Argo objects on the cluster; None: flows run locally.
    workflow_submitter: str | None = None
    unsupported: dict[str, Unsupported] = field(default_factory=dict)  # verb -> why not

    def job_renderer(self, kind: str) -> Callable[[LoadedJob, Stack, str], RenderedJob]:
        return _resolve(self.renderers.get(kind) or self.renderers["*"])


def submit_workflow(stack: Stack, objects: list[dict]) -> list[str]:
    """Create a rendered flow (Argo objects) where the stack's target runs flows; one line each."""
    require(stack, "flow submit")
    return _resolve(target_of(stack).workflow_submitter)(stack, objects)


def target_name(stack: Stack) -> str:
    """The stack's `plinth:target`: read here and nowhere else."""
    return stack.config.target


def target_of(stack: Stack) -> TargetInfo:
    """What the stack's target declares."""
    name = target_name(stack)
    if name not in TARGETS:
        raise PlinthError(f"target {name!r} of stack {stack.name!r} is not available", f"known targets: {', '.join(TARGETS)}")
    return importlib.import_module(TARGETS[name]).TARGET


def get_target(stack: Stack) -> Target:
    """The runner of the stack's target, connected to the stack."""
    return _resolve(target_of(stack).runner)(stack)


def supports(stack: Stack, verb: str) -> bool:
    return verb not in target_of(stack).unsupported


def require(stack: Stack, verb: str) -> None:
    """Refuse `verb` on a stack whose target does not support it, in the same words wherever
    the refusal comes from (a command, a flow step, the console)."""
    target = target_of(stack)
    unsupported = target.unsupported.get(verb)
    if unsupported is not None:
        raise PlinthError(f"{verb} is not available on stack {stack.name!r} (target {target.name}): {unsupported.why}", unsupported.fix.format(stack=stack.name))


def _resolve(path: str):
    module_name, attribute = path.split(":")
    return getattr(importlib.import_module(module_name), attribute)
