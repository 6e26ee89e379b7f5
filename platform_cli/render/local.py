"""Render a job for the local platform: one LocalLaunch (spec/launch.py), the local target's
manifest, from templates/<kind>/local.yaml.j2."""

from __future__ import annotations

from typing import TYPE_CHECKING

import yaml
from pydantic import ValidationError

from platform_cli.errors import PlinthError
from platform_cli.kinds import job_kind
from platform_cli.render.context import (RenderedJob, data_inputs, in_job_file, job_variables, plinth_env, sample_inputs, sample_output,
                                         substituted_args, substituted_env)
from platform_cli.render.engine import render_template
from platform_cli.spec.launch import LocalLaunch
from platform_cli.spec.stack import describe_validation_error

if TYPE_CHECKING:
    from platform_cli.samples import SampleInput, SampleRef
    from platform_cli.spec.job import LoadedJob
    from platform_cli.spec.stack import Stack


def render_local_job(job: LoadedJob, stack: Stack, job_id: str, pinned: dict[SampleRef, SampleInput] | None = None) -> RenderedJob:
    kind = job_kind(job.spec.kind)
    template = f"{kind.template_dir}/local.yaml.j2"
    variables = job_variables(job, stack, job_id)
    try:
        samples = sample_inputs(job, stack, pinned)
        args = substituted_args(job, variables, samples)
        env = {
            **plinth_env(job, stack, job_id, variables),
            # Local workers share this machine's cores: size every thread pool to the request.
            **kind.thread_env(job.spec.resources.cpu),
            # TensorFlow 2.15 on a machine without CUDA logs false cuDNN/cuFFT "errors" at
            # start-up; Python exceptions still surface. A spec sets TF_CPP_MIN_LOG_LEVEL: 0 to see them all.
            "TF_CPP_MIN_LOG_LEVEL": "3",
            **kind.local_env(),
            **kind.spec_env(job.spec),
            **kind.job_env(job, stack, variables),
            **substituted_env(job, variables, samples),
        }
        context = {
            "job": job.spec,
            "job_id": job_id,
            "stack": stack.name,
            "workdir": str(job.base_dir),
            "script": str(job.script_path),
            "args": args,
            "env": env,
            "labels": dict(sorted(job.spec.labels.items())),
            **variables,
            **kind.local_context(job, stack),
        }
    except PlinthError as exc:
        raise in_job_file(job, exc) from None
    text = render_template(template, context)
    documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    validate_local(documents, template)
    return RenderedJob(job_id=job_id, template=template, text=text, documents=documents, args=args, data_inputs=data_inputs(job.spec.args, args),
                       samples=list(samples.values()), sample_output=sample_output(job, stack, job_id))


def validate_local(documents: list[dict], template: str) -> None:
    if len(documents) != 1:
        raise PlinthError(f"template {template} rendered {len(documents)} documents, expected one LocalLaunch")
    try:
        LocalLaunch.model_validate(documents[0])
    except ValidationError as exc:
        raise PlinthError(f"template {template} rendered an invalid LocalLaunch: {describe_validation_error(exc)}") from None
