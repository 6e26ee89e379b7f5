"""What every job renderer shares: the rendered result, a job's `${...}` variables, where its
outputs go, and the PLINTH_* environment every job process gets on every target."""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import TYPE_CHECKING

from platform_cli.errors import PlinthError
from platform_cli.spec.job import JOB_VARIABLES

if TYPE_CHECKING:
    from platform_cli.spec.job import LoadedJob
    from platform_cli.spec.stack import Stack


@dataclass(frozen=True)
class RenderedJob:
    job_id: str
    template: str
    text: str  # exactly what `plinth job render` prints and the target receives
    documents: list[dict]
    args: list[str]  # the job's args with variables filled in
    data_inputs: list[str]  # those args that name data under ${storage} (lineage)


def job_paths(storage_root: str, job_id: str) -> dict[str, str]:
    """Where a submission's outputs and checkpoints live. Keyed by job id so a restart of the
    same submission finds its checkpoints, and a new submission starts clean."""
    base = f"{storage_root.rstrip('/')}/jobs/{job_id}"
    return {"output_dir": f"{base}/outputs", "checkpoint_dir": f"{base}/checkpoints"}


def job_variables(job: LoadedJob, stack: Stack, job_id: str) -> dict[str, str]:
    values = {"storage": stack.storage_root, "job_name": job.spec.name, "job_id": job_id}
    values.update(job_paths(stack.storage_root, job_id))
    assert values.keys() == JOB_VARIABLES.keys()
    return values


def substitute(value: str, variables: dict[str, str], field: str) -> str:
    """Fill ${name} variables; an unknown one is an error naming the field, not an empty string."""
    try:
        return string.Template(value).substitute(variables)
    except KeyError as exc:
        known = ", ".join(f"${{{k}}}" for k in variables)
        raise PlinthError(f"{field}: unknown variable ${{{exc.args[0]}}}", f"use one of {known} (write $$ for a literal $)") from None
    except ValueError:
        raise PlinthError(f"{field}: malformed ${{...}} in {value!r}", "write $$ for a literal $") from None


def substituted_args(job: LoadedJob, variables: dict[str, str]) -> list[str]:
    return [substitute(arg, variables, f"args[{i}]") for i, arg in enumerate(job.spec.args)]


def substituted_env(job: LoadedJob, variables: dict[str, str]) -> dict[str, str]:
    return {key: substitute(value, variables, f"env.{key}") for key, value in sorted(job.spec.env.items())}


def data_inputs(raw_args: list[str], args: list[str]) -> list[str]:
    """Args that read from the stack's storage (not the job's own output/checkpoint dirs)."""
    return [resolved for raw, resolved in zip(raw_args, args, strict=True) if "${storage}" in raw]


def plinth_env(job: LoadedJob, stack: Stack, job_id: str, variables: dict[str, str]) -> dict[str, str]:
    """What every job process is told about itself, on every target."""
    return {
        "PLINTH_STACK": stack.name,
        "PLINTH_JOB_NAME": job.spec.name,
        "PLINTH_JOB_ID": job_id,
        "PLINTH_STORAGE": variables["storage"],
        "PLINTH_OUTPUT_DIR": variables["output_dir"],
        "PLINTH_CHECKPOINT_DIR": variables["checkpoint_dir"],
    }


def in_job_file(job: LoadedJob, error: PlinthError) -> PlinthError:
    """A problem with a field of the job file, saying which file."""
    return PlinthError(f"{job.shown_file}: {error.message}", error.fix)
