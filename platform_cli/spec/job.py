"""Job specs: the declarative files users write (`examples/ctr/*.job.yaml`).

    kind: horovod            # a job kind: spark | horovod | tf-ps | python | streaming (platform_cli/kinds)
    name: ctr-train
    script: train.py         # relative to this file
    args: [--features, "${storage}/ctr/features", --export-dir, "${output_dir}/model"]
    workers: 2
    resources: {cpu: 1, memory: 2Gi}
    pool: a100               # cluster stacks: the GPU pool workers run on
    priorityClass: plinth-batch   # cluster stacks: instead of the team's default
    retries: 3               # cluster stacks: restarts after a failure before the job fails
    files: [model.py]        # cluster stacks: more files next to the script to ship with it
    output: {samples: ctr, mode: overwrite}   # the sample table version the job writes

Args may name a sample table version: `${samples.ctr@latest}`, `${samples.ctr@7}`
(platform_cli.samples).

`${...}` variables in args and env are filled in per submission from the stack and the job
(see JOB_VARIABLES); they are plain string substitution, never template syntax, so a value
can carry any characters without changing the rendered manifest.
"""

from __future__ import annotations

import re
from pathlib import Path
from functools import cache
from typing import Annotated, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, TypeAdapter, ValidationError, ValidationInfo, field_validator

from platform_cli.errors import PlinthError, one_line, shown
from platform_cli.samples import TABLE_NAME_PATTERN
from platform_cli.spec.stack import describe_validation_error, refuse_nul

# What a job may refer to in args/env; the render step fills them in.
JOB_VARIABLES = {
    "storage": "the stack's storage root",
    "job_name": "the job's name",
    "job_id": "this submission's id (name + suffix)",
    "output_dir": "a per-submission directory for outputs (models, metrics)",
    "checkpoint_dir": "a per-submission directory for checkpoints; kept across restarts",
    "sample_dir": "where a job that declares output.samples writes the Parquet files of the table's next version",
}

# A DNS-1123 label, short enough that "<name>-<suffix>" still fits Kubernetes' 63 characters.
NAME_PATTERN = r"^[a-z]([-a-z0-9]{0,50}[a-z0-9])?$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,252}$"
# Kubernetes label keys ([prefix/]name), which the cluster targets put on every object. Keys of
# a rendered manifest must stay short anyway: YAML refuses a mapping key over 1024 characters.
LABEL_KEY_PATTERN = r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"


class SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Resources(SpecModel):
    """Per worker. Locally they size thread pools; on a cluster they become pod requests."""

    cpu: float = Field(1, gt=0)
    memory: str = Field("2Gi", pattern=QUANTITY_PATTERN)
    gpu: int = Field(0, ge=0)


class JobOutput(SpecModel):
    """A sample table the job writes: the Parquet files it leaves in ${sample_dir} become the
    table's next version when it succeeds (platform_cli.samples)."""

    samples: str = Field(pattern=f"^{TABLE_NAME_PATTERN}$", description="the sample table's name")
    mode: Literal["append", "overwrite"] = Field("append", description="add the rows to the previous version's, or replace them")
    partition_by: str | None = Field(None, alias="partitionBy", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
                                     description="a column whose value is the name of the directory each file is in (train/, eval/)")


class JobSpecBase(SpecModel):
    """Fields every kind has; each kind's module (platform_cli/kinds) adds its own."""

    kind: str
    name: str
    script: str = Field(min_length=1)
    args: list[str] = []
    env: dict[str, str] = {}
    workers: int = Field(1, ge=1)
    resources: Resources = Resources()
    labels: dict[str, str] = {}
    # Cluster placement; the local target has one machine and ignores them.
    pool: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", description="GPU pool of the platform stack")
    priority_class: str | None = Field(None, alias="priorityClass", description="defaults to the team's queue.priorityClass")
    retries: int = Field(3, ge=0, le=20, description="restarts after a failure before the job is Failed")
    files: list[str] = Field([], description="files next to the script shipped with it (modules it imports)")
    output: JobOutput | None = Field(None, description="a sample table version the job writes")

    @field_validator("name")
    @classmethod
    def _dns_label(cls, name: str) -> str:
        # Job names become Kubernetes object names and label values on cluster targets.
        if not re.fullmatch(NAME_PATTERN, name):
            raise ValueError(f"{name!r} must be lowercase letters, digits and '-', start with a letter, at most 52 characters")
        return name

    @field_validator("env", "labels")
    @classmethod
    def _keys(cls, mapping: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        pattern, what = {
            "env": (ENV_NAME_PATTERN, "an environment variable name (letters, digits, _; at most 253)"),
            "labels": (LABEL_KEY_PATTERN, "a label key (letters, digits, '-', '_', '.', at most 63, after an optional DNS prefix/)"),
        }[info.field_name]
        for key in mapping:
            if not re.fullmatch(pattern, key):
                raise ValueError(f"{shown(key)} is not {what}")
        return mapping

    @field_validator("files")
    @classmethod
    def _sibling_files(cls, files: list[str]) -> list[str]:
        # Shipped as flat ConfigMap keys next to the script, so they must be plain file names.
        for name in files:
            if not re.fullmatch(r"^[A-Za-z0-9_][-A-Za-z0-9_.]*$", name):
                raise ValueError(f"{name!r} must be a file name next to the job file (no directories)")
        return files


@cache
def _job_adapter() -> TypeAdapter:
    """The union of every registered kind's spec, told apart by `kind` (built on first use:
    the kind modules import this one)."""
    from platform_cli.kinds import all_kinds

    models = tuple(kind.spec for kind in all_kinds())
    return TypeAdapter(Annotated[Union[models], Field(discriminator="kind")])


class LoadedJob(BaseModel):
    """A validated spec and the directory its relative paths are resolved against."""

    model_config = ConfigDict(frozen=True)

    spec: SerializeAsAny[JobSpecBase]  # an instance of the kind's own spec class
    file: Path

    @property
    def base_dir(self) -> Path:
        return self.file.parent

    @property
    def shown_file(self) -> str:
        """The job file as error messages name it: relative to the working directory if inside it."""
        try:
            return str(self.file.relative_to(Path.cwd()))
        except ValueError:
            return str(self.file)

    @property
    def script_path(self) -> Path:
        return (self.base_dir / self.spec.script).resolve()


def load_job(path: str | Path) -> LoadedJob:
    """Read and validate a job file; every problem is one PlinthError naming the field."""
    path = Path(path)
    if not is_file(path):
        raise PlinthError(f"job file {shown(str(path), 200)} not found", "pass an existing file with -f")
    where = one_line(str(path))
    try:
        document = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PlinthError(f"{where}: not valid YAML: {' '.join(str(exc).split())}") from None
    except OSError as exc:
        raise PlinthError(f"{where}: cannot read it ({exc.strerror})") from None
    job = LoadedJob(spec=parse_job_spec(document, where=where), file=path.resolve())
    if not is_file(job.base_dir / job.spec.script):
        raise PlinthError(f"{where}: script: {shown(job.spec.script)} not found next to the job file")
    for i, name in enumerate(job.spec.files):
        if not is_file(job.base_dir / name):
            raise PlinthError(f"{where}: files[{i}]: {shown(name)} not found next to the job file")
    return job


def is_file(path: Path) -> bool:
    """Path.is_file, for any name a spec may hold: one the filesystem cannot take (too long, a
    NUL) names no file, rather than raising."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def parse_job_spec(document: object, where: str) -> JobSpecBase:
    if not isinstance(document, dict):
        raise PlinthError(f"{where}: expected a mapping with kind, name and script")
    from platform_cli.kinds import KINDS

    if "kind" not in document:
        raise PlinthError(f"{where}: kind: missing", f"set kind to one of {', '.join(KINDS)}")
    refuse_nul(document, where)
    try:
        return _job_adapter().validate_python(document)
    except ValidationError as exc:
        raise PlinthError(f"{where}: {_strip_kind(describe_validation_error(exc))}") from None


def _strip_kind(message: str) -> str:
    # Pydantic prefixes discriminated-union errors with the tag ("horovod.workers: ..."); the
    # user wrote `workers`, so name that.
    from platform_cli.kinds import KINDS

    return re.sub(rf"^({'|'.join(map(re.escape, KINDS))})\.", "", message)


def dump_job_spec(spec: JobSpecBase) -> dict:
    return spec.model_dump(mode="json", by_alias=True)
