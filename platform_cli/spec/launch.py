"""The local target's manifest: what the local platform runs for one job submission.

It is the local counterpart of a SparkApplication or MPIJob: rendered from a template, parsed
back and validated here before anything starts, and stored with the job record so `plinth job
restart` reruns exactly what was rendered.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

API_VERSION = "plinth.dev/v1alpha1"


class LaunchModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class LaunchMetadata(LaunchModel):
    name: str
    job_id: str = Field(alias="jobId")
    job_kind: str = Field(alias="jobKind")
    stack: str
    labels: dict[str, str] = {}


    @field_validator("job_kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        from platform_cli.kinds import KINDS

        if kind not in KINDS:
            raise ValueError(f"{kind!r} is not a job kind ({', '.join(KINDS)})")
        return kind


class LaunchSpec(LaunchModel):
    workdir: str
    command: list[str] = Field(min_length=1)
    env: dict[str, str] = {}
    output_dir: str = Field(alias="outputDir")
    checkpoint_dir: str = Field(alias="checkpointDir")


class LocalLaunch(LaunchModel):
    api_version: Literal["plinth.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["LocalLaunch"]
    metadata: LaunchMetadata
    spec: LaunchSpec
