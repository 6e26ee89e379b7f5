"""Where a flow step's log is: a job step logs in its job (the target keeps it), a built-in step
(register, evaluate, promote) in the run's steps/ directory, its output in a `.out` beside it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from platform_cli.flow.run import step_log_path
from platform_cli.processes import read_tail

if TYPE_CHECKING:
    from platform_cli.flow.run import StepRecord
    from platform_cli.targets.base import Target


def step_log(target: Target, directory: Path, key: str, step: StepRecord, tail: int | None = None) -> list[str]:
    """The last `tail` lines (all when None) of the step's log as it is now."""
    if step.job_id:
        return "".join(target.logs(step.job_id, tail=tail)).splitlines()
    path = step_log_path(directory, key)
    count = tail if tail is not None else 10**9
    return read_tail(path, count)[0] + read_tail(path.with_suffix(".out"), count)[0]
