"""Render a job spec for a stack's target: decisions in Python, layout in templates/<kind>/."""

from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass

import yaml
from pydantic import ValidationError

from platform_cli.errors import PlinthError
from platform_cli.render.engine import render_template
from platform_cli.spec.job import JOB_VARIABLES, HorovodJobSpec, LoadedJob, SparkJobSpec, TfPsJobSpec
from platform_cli.spec.launch import LocalLaunch
from platform_cli.spec.stack import Stack, describe_validation_error


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


def render_job(job: LoadedJob, stack: Stack, job_id: str | None = None) -> RenderedJob:
    """Render `job` for `stack`. Without a job id (a preview), the id reads `<name>-<id>`
    locally and `<name>-xxxxx` on a cluster (where it must be a valid object name)."""
    if stack.config.target == "yarn" and job.spec.kind == "spark":
        from platform_cli.render.yarn import render_yarn_job

        return render_yarn_job(job, stack, job_id or f"{job.spec.name}-xxxxx")
    if stack.config.target != "local":
        from platform_cli.render.cluster import render_cluster_text

        job_id = job_id or f"{job.spec.name}-xxxxx"
        text, objects, args = render_cluster_text(job, stack, job_id)
        template = f"{job.spec.kind}/kubernetes.yaml.j2"
        return RenderedJob(job_id=job_id, template=template, text=text, documents=objects, args=args, data_inputs=_data_inputs(job.spec.args, args))
    job_id = job_id or f"{job.spec.name}-<id>"
    template = f"{job.spec.kind}/{stack.config.target}.yaml.j2"
    variables = job_variables(job, stack, job_id)
    try:
        args = [substitute(arg, variables, f"args[{i}]") for i, arg in enumerate(job.spec.args)]
        context = _local_context(job, stack, job_id, variables, args)
    except PlinthError as exc:  # a problem with a field of the job file: say which file
        raise PlinthError(f"{job.shown_file}: {exc.message}", exc.fix) from None
    text = render_template(template, context)
    documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    validate_local(documents, template)
    return RenderedJob(job_id=job_id, template=template, text=text, documents=documents, args=args, data_inputs=_data_inputs(job.spec.args, args))


def _data_inputs(raw_args: list[str], args: list[str]) -> list[str]:
    """Args that read from the stack's storage (not the job's own output/checkpoint dirs)."""
    return [resolved for raw, resolved in zip(raw_args, args, strict=True) if "${storage}" in raw]


def validate_local(documents: list[dict], template: str) -> None:
    if len(documents) != 1:
        raise PlinthError(f"template {template} rendered {len(documents)} documents, expected one LocalLaunch")
    try:
        LocalLaunch.model_validate(documents[0])
    except ValidationError as exc:
        raise PlinthError(f"template {template} rendered an invalid LocalLaunch: {describe_validation_error(exc)}") from None


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


def _local_context(job: LoadedJob, stack: Stack, job_id: str, variables: dict[str, str], args: list[str]) -> dict:
    spec = job.spec
    threads = max(1, math.floor(spec.resources.cpu))
    env = {
        **plinth_env(job, stack, job_id, variables),
        # Local workers share this machine's cores: size every thread pool to the request.
        "OMP_NUM_THREADS": str(threads),
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": "1",
        # TensorFlow 2.15 on a machine without CUDA logs false cuDNN/cuFFT "errors" at start-up;
        # Python exceptions still surface. A spec sets TF_CPP_MIN_LOG_LEVEL: 0 to see them all.
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    if isinstance(spec, TfPsJobSpec):
        # Parameter servers and workers run blocking remote ops (receives, dataset reads) that
        # deadlock with a single inter-op thread; let TensorFlow size that pool.
        del env["TF_NUM_INTEROP_THREADS"]
    if isinstance(spec, SparkJobSpec):
        env["PYSPARK_PYTHON"] = "python"  # Spark's Python workers: the Plinth environment's python
    env.update({key: substitute(value, variables, f"env.{key}") for key, value in sorted(spec.env.items())})
    context = {
        "job": spec,
        "job_id": job_id,
        "stack": stack.name,
        "workdir": str(job.base_dir),
        "script": str(job.script_path),
        "args": args,
        "env": env,
        "labels": dict(sorted(spec.labels.items())),
        **variables,
    }
    if isinstance(spec, SparkJobSpec):
        cores = min(stack.config.local.spark_cores, spec.workers * math.ceil(spec.resources.cpu))
        context["master"] = f"local[{cores}]"
        # Driver and executors share one JVM locally, so the driver gets the whole request.
        # WARN keeps the job log readable (Spark logs every block manager event at INFO);
        # the spec's own conf wins over both defaults.
        defaults = {"spark.driver.memory": spark_memory(spec.resources.memory), "spark.log.level": "WARN"}
        context["conf"] = {**defaults, **dict(sorted(spec.conf.items()))}
    if isinstance(spec, HorovodJobSpec):
        slots = stack.config.local.horovod_slots
        if spec.workers > slots:
            raise PlinthError(
                f"workers: {spec.workers} exceeds the {slots} Horovod slots of stack {stack.name!r}",
                f"lower workers or raise plinth:local.horovodSlots in {stack.file.name}",
            )
        context["hosts"] = f"localhost:{spec.workers}"
    return context


_QUANTITY_FACTORS = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def spark_memory(quantity: str) -> str:
    """Kubernetes quantity (2Gi, 1.5G) -> JVM size in MiB (2048m, 1430m); the JVM takes no fractions."""
    number, suffix = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", quantity).groups()
    if suffix == "m":  # milli-bytes: legal in Kubernetes, meaningless for a heap
        raise PlinthError(f"resources.memory: {quantity!r} is in milli-bytes", "use Mi or Gi, e.g. 2Gi")
    mib = int(float(number) * _QUANTITY_FACTORS[suffix] / 2**20)
    if mib < 256:
        raise PlinthError(f"resources.memory: {quantity} is too little for a Spark driver", "request at least 256Mi")
    return f"{mib}m"
