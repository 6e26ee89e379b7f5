"""What every job renderer shares: the rendered result, a job's `${...}` variables, where its
outputs go, and the PLINTH_* environment every job process gets on every target."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from platform_cli import samples as sample_refs
from platform_cli.errors import PlinthError
from platform_cli.samples import REFERENCE, SampleInput, SampleOutput, SampleRef
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
    samples: list[SampleInput] = field(default_factory=list)  # the sample versions it reads
    sample_output: SampleOutput | None = None  # the sample table version it writes


def job_paths(storage_root: str, job_id: str) -> dict[str, str]:
    """Where a submission's outputs and checkpoints live. Keyed by job id so a restart of the
    same submission finds its checkpoints, and a new submission starts clean."""
    base = f"{storage_root.rstrip('/')}/jobs/{job_id}"
    return {"output_dir": f"{base}/outputs", "checkpoint_dir": f"{base}/checkpoints"}


def job_variables(job: LoadedJob, stack: Stack, job_id: str) -> dict[str, str | None]:
    values = {"storage": stack.storage_root, "job_name": job.spec.name, "job_id": job_id}
    values.update(job_paths(stack.storage_root, job_id))
    values["sample_dir"] = sample_output(job, stack, job_id).dir if job.spec.output else None
    assert values.keys() == JOB_VARIABLES.keys()
    return values


def sample_output(job: LoadedJob, stack: Stack, job_id: str) -> SampleOutput | None:
    """The table version the job writes, and where its files go (samples.job_sample_dir)."""
    output = job.spec.output
    if output is None:
        return None
    table = sample_refs.table_location(stack.storage_root, output.samples)
    return SampleOutput(table=output.samples, location=table, dir=sample_refs.job_sample_dir(table, job_id), mode=output.mode, partition_by=output.partition_by)


def sample_inputs(job: LoadedJob, stack: Stack, pinned: dict[SampleRef, SampleInput] | None = None) -> dict[SampleRef, SampleInput]:
    """Every `${samples.NAME@V}` in the job's args and env: as pinned at submission where it
    was, else the version location it names (`@latest` resolved by the job when it starts)."""
    found = {}
    for field_, value in spec_fields(job):
        for ref in sample_refs.references(value, field_):
            if ref in (pinned or {}):
                found[ref] = pinned[ref]
            else:
                table = sample_refs.table_location(stack.storage_root, ref.table)
                found[ref] = SampleInput(ref=str(ref), table=ref.table, version=ref.version, location=sample_refs.version_location(table, ref.version))
    return found


def spec_fields(job: LoadedJob) -> list[tuple[str, str]]:
    """(field, value) of every arg and env value, named as errors name them."""
    return [(f"args[{i}]", arg) for i, arg in enumerate(job.spec.args)] + [(f"env.{k}", v) for k, v in sorted(job.spec.env.items())]


def substitute(value: str, variables: dict[str, str | None], field: str, samples: dict[SampleRef, SampleInput] | None = None) -> str:
    """Fill ${name} variables and `${samples.NAME@V}` references; an unknown one is an error
    naming the field, not an empty string."""
    parts, start = [], 0
    for match in REFERENCE.finditer(value):  # references first: string.Template cannot parse them
        ref = sample_refs.parse_ref(match["body"], field)
        parts += [_substitute_variables(value[start:match.start()], variables, field), (samples or {})[ref].location]
        start = match.end()
    return "".join(parts + [_substitute_variables(value[start:], variables, field)])


def _substitute_variables(value: str, variables: dict[str, str | None], field: str) -> str:
    unset = [name for name, v in variables.items() if v is None]
    for name in unset:
        if re.search(rf"(?<!\$)\$(\{{{name}\}}|{name}\b)", value):
            raise PlinthError(f"{field}: ${{{name}}} is set only for a job that declares output.samples", "add output: {samples: NAME} to the job")
    try:
        return string.Template(value).substitute({k: v for k, v in variables.items() if v is not None})
    except KeyError as exc:
        known = ", ".join(f"${{{k}}}" for k in variables) + ", ${samples.NAME@VERSION}"
        raise PlinthError(f"{field}: unknown variable ${{{exc.args[0]}}}", f"use one of {known} (write $$ for a literal $)") from None
    except ValueError:
        raise PlinthError(f"{field}: malformed ${{...}} in {value!r}", "write $$ for a literal $") from None


def substituted_args(job: LoadedJob, variables: dict[str, str | None], samples: dict[SampleRef, SampleInput] | None = None) -> list[str]:
    return [substitute(arg, variables, f"args[{i}]", samples) for i, arg in enumerate(job.spec.args)]


def substituted_env(job: LoadedJob, variables: dict[str, str | None], samples: dict[SampleRef, SampleInput] | None = None) -> dict[str, str]:
    return {key: substitute(value, variables, f"env.{key}", samples) for key, value in sorted(job.spec.env.items())}


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
