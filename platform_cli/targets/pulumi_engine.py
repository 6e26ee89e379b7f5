"""The Pulumi engine, driven through Pulumi's Automation API: the only code that previews,
deploys or destroys a stack for real.

It runs the project's own program (infra/, Pulumi.yaml at the project root, stack files in
stacks/) exactly as `pulumi up -s NAME` from the checkout would: a LocalWorkspace on the
project directory. The Automation API drives the `pulumi` CLI, so without it every verb stops
at once with the fix. Every stack file is validated with the stack model (and a team stack
together with its platform stack) before Pulumi is started.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from platform_cli.errors import PlinthError
from platform_cli.spec.stack import Stack, check_team_on_platform, load_stack

PULUMI_MISSING = "pulumi CLI not found on PATH (Plinth deploys stacks through Pulumi's Automation API, which runs it)"
PULUMI_INSTALL = "install it: curl -fsSL https://get.pulumi.com | sh"


def require_pulumi_cli() -> str:
    path = shutil.which("pulumi")
    if path is None:
        raise PlinthError(PULUMI_MISSING, PULUMI_INSTALL)
    return path


def checked_stack(name: str) -> Stack:
    """Load and validate a stack file, and a team stack against its platform stack."""
    stack = load_stack(name)
    if stack.role == "team":
        check_team_on_platform(stack, stack.platform_stack())
    return stack


@dataclass
class Deployment:
    """What the Pulumi backend knows about a stack."""

    name: str
    last_update: datetime | None = None
    resource_count: int | None = None
    update_in_progress: bool | None = None
    outputs: dict[str, Any] = field(default_factory=dict)


def _automation():
    # Imported on use: pulumi.automation pulls in grpc and the Pulumi SDK.
    from pulumi import automation

    return automation


# The Automation API boundary (tests replace these two with stand-ins). The project directory
# is the work dir: Pulumi reads Pulumi.yaml there and runs its program (infra/) with the stack
# file from stacks/, exactly as `pulumi up -s NAME` from the checkout does.
def _select(stack: Stack):
    return _automation().create_or_select_stack(stack_name=stack.name, work_dir=str(stack.project_root))


def _workspace(root: str):
    return _automation().LocalWorkspace(work_dir=root)


class PulumiEngine:
    """preview / up / destroy a stack, and read what its backend records."""

    def __init__(self, on_output: Callable[[str], None] = print):
        self.on_output = on_output  # Pulumi's own progress lines, as they come

    def preview(self, name: str) -> dict[str, int]:
        """Resource operations `up` would do (create, update, delete, same), by count."""
        result = self._run(name, lambda s: s.preview(on_output=self.on_output))
        return dict(result.change_summary or {})

    def up(self, name: str) -> tuple[dict[str, int], dict[str, Any]]:
        """Deploy; returns the operations done and the stack's outputs (secrets masked)."""
        result = self._run(name, lambda s: s.up(on_output=self.on_output))
        return dict(result.summary.resource_changes or {}), _shown_outputs(result.outputs)

    def destroy(self, name: str) -> dict[str, int]:
        result = self._run(name, lambda s: s.destroy(on_output=self.on_output))
        return dict(result.summary.resource_changes or {})

    def deployments(self, root: str) -> dict[str, Deployment]:
        """Every stack the backend knows in this project."""
        require_pulumi_cli()
        summaries = self._call(lambda: _workspace(root).list_stacks())
        return {
            s.name.rsplit("/", 1)[-1]: Deployment(s.name, s.last_update, s.resource_count, s.update_in_progress)
            for s in summaries
        }

    def deployment(self, name: str) -> Deployment | None:
        """What the backend records for one stack (with its outputs); None if never deployed."""
        stack = load_stack(name)
        deployed = self.deployments(str(stack.project_root)).get(name)
        if deployed is not None:
            deployed.outputs = _shown_outputs(self._call(lambda: _workspace(str(stack.project_root)).stack_outputs(name)))
        return deployed

    def _run(self, name: str, operation: Callable[[Any], Any]) -> Any:
        stack = checked_stack(name)          # a bad stack file never reaches Pulumi
        require_pulumi_cli()
        selected = self._call(lambda: _select(stack))
        return self._call(lambda: operation(selected))

    @staticmethod
    def _call(operation: Callable[[], Any]) -> Any:
        automation = _automation()
        try:
            return operation()
        except FileNotFoundError:
            # The CLI vanished between the PATH check and the call, or PATH points nowhere.
            raise PlinthError(PULUMI_MISSING, PULUMI_INSTALL) from None
        except automation.errors.CommandError as exc:
            raise PlinthError(f"pulumi failed: {_last_error_line(exc)}", "see Pulumi's output above") from exc


def _shown_outputs(outputs: Any) -> dict[str, Any]:
    return {key: "[secret]" if value.secret else value.value for key, value in (outputs or {}).items()}


def _last_error_line(exc: Exception) -> str:
    # str(CommandError) is "code: N / stdout: ... / stderr: ..."; Pulumi's own message is the
    # last line that starts with "error".
    lines = [line.strip().removeprefix("stderr:").removeprefix("stdout:").strip() for line in str(exc).splitlines()]
    lines = [line for line in lines if line]
    errors = [line for line in lines if line.lower().startswith("error")]
    return (errors or lines or ["(no output)"])[-1][:300]
