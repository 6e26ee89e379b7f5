"""Render a Spark job for a team's YARN stack: the exact spark-submit argv, built as a list.

    spark-submit --master yarn --deploy-mode client --queue <team> ... script args

The result is a LocalLaunch (the local target's manifest): spark-submit runs on the submitting
machine under the local runner, so `plinth job ls/status/logs/cancel` work as they do locally.
Client mode is deliberate: the driver lives in that process, so `plinth job cancel` (SIGTERM)
stops the SparkContext and with it the YARN application, and the job log is the driver's log.
In cluster mode killing spark-submit would leave the application running on YARN, and Plinth
would need the Hadoop CLI to kill it. The price: the submitting machine must stay up while
the job runs, and `retries` re-attempt YARN's application master, not the driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import yaml

from platform_cli.errors import PlinthError
from platform_cli.kinds.spark import spark_cores, spark_memory
from platform_cli.render.context import (RenderedJob, data_inputs, in_job_file, job_variables, plinth_env, sample_inputs, sample_output,
                                         substituted_args, substituted_env)
from platform_cli.render.engine import render_template
from platform_cli.render.local import validate_local

if TYPE_CHECKING:
    from platform_cli.samples import SampleInput, SampleRef
    from platform_cli.spec.job import LoadedJob
    from platform_cli.spec.stack import Stack, YarnConfig


def hadoop_conf_dir(stack: Stack) -> str:
    """HADOOP_CONF_DIR for spark-submit: the stack's, else one Plinth writes from the platform's
    yarn: section (see write_hadoop_conf) under the local home."""
    yarn = yarn_config(stack)
    if yarn.hadoop_conf_dir:
        return str(stack.resolve(yarn.hadoop_conf_dir))
    return str(stack.home / "hadoop-conf" / stack.config.team.platform)


def yarn_config(stack: Stack) -> YarnConfig:
    platform_stack = stack.platform_stack()
    yarn = platform_stack.config.platform.yarn
    if yarn is None:
        raise PlinthError(f"stack {stack.name!r} has target yarn but platform stack {platform_stack.name!r} has no yarn: section", f"add plinth:platform.yarn (resourceManager, defaultFs) to stacks/{platform_stack.file.name}")
    return yarn


def hadoop_site_files(yarn: YarnConfig) -> dict[str, str]:
    """core-site.xml and yarn-site.xml for a generated HADOOP_CONF_DIR."""
    from xml.sax.saxutils import escape

    def site(properties: dict[str, str]) -> str:
        body = "".join(f"  <property><name>{escape(k)}</name><value>{escape(v)}</value></property>\n" for k, v in properties.items())
        return f'<?xml version="1.0"?>\n<!-- written by plinth from the platform stack\'s yarn: section -->\n<configuration>\n{body}</configuration>\n'

    return {
        "core-site.xml": site({"fs.defaultFS": yarn.default_fs}),
        "yarn-site.xml": site({"yarn.resourcemanager.address": yarn.resource_manager}),
    }


def spark_submit_argv(job: LoadedJob, stack: Stack, job_id: str, args: list[str], env: dict[str, str]) -> list[str]:
    """The spark-submit command line; a list, so no value is ever shell syntax."""
    spec = job.spec  # a Spark job: the YARN target renders only Spark jobs with this module
    team = stack.config.team
    memory = spark_memory(spec.resources.memory)
    argv = [
        "spark-submit",
        "--master", "yarn",
        "--deploy-mode", "client",
        "--name", job_id,
        "--queue", team.name,  # the YARN queue the Hadoop admins give the team, named after it
        "--num-executors", str(spec.workers),
        "--executor-cores", str(spark_cores(spec.resources.cpu)),
        "--executor-memory", memory,
        "--driver-memory", memory,
    ]
    if spec.files:
        argv += ["--py-files", ",".join(str(job.base_dir / name) for name in spec.files)]
    conf = {
        # Tags let YARN's UI and CLI find the application by Plinth's ids.
        "spark.yarn.tags": f"plinth-job-id={job_id},plinth-job={spec.name},plinth-team={team.name}",
        "spark.yarn.maxAppAttempts": str(spec.retries + 1),
        "spark.log.level": "WARN",
        **{f"spark.executorEnv.{key}": value for key, value in env.items()},
        **dict(sorted(spec.conf.items())),
    }
    for key, value in conf.items():
        argv += ["--conf", f"{key}={value}"]
    return [*argv, str(job.script_path), *args]


def render_yarn_job(job: LoadedJob, stack: Stack, job_id: str, pinned: dict[SampleRef, SampleInput] | None = None) -> RenderedJob:
    spec = job.spec
    try:
        if spec.resources.gpu or spec.pool:
            raise PlinthError("resources.gpu / pool: GPU pools are Kubernetes node pools; a YARN stack runs CPU Spark jobs", "drop them, or run the job on a kubernetes team stack")
        variables = job_variables(job, stack, job_id)
        samples = sample_inputs(job, stack, pinned)
        args = substituted_args(job, variables, samples)
        env = {**plinth_env(job, stack, job_id, variables), **substituted_env(job, variables, samples)}
        command = spark_submit_argv(job, stack, job_id, args, env)
    except PlinthError as exc:
        raise in_job_file(job, exc) from None
    # The driver (client mode) runs here, with the Hadoop configuration and Plinth's python;
    # executors use the Hadoop nodes' own Python.
    launch_env = {"HADOOP_CONF_DIR": hadoop_conf_dir(stack), "PYSPARK_DRIVER_PYTHON": "python", **env}
    template = "spark/yarn.yaml.j2"
    text = render_template(
        template,
        {"job": spec, "job_id": job_id, "stack": stack.name, "workdir": str(job.base_dir), "command": command, "env": launch_env,
         "labels": dict(sorted(spec.labels.items())), **variables},
    )
    documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    validate_local(documents, template)
    return RenderedJob(job_id=job_id, template=template, text=text, documents=documents, args=args, data_inputs=data_inputs(spec.args, args),
                       samples=list(samples.values()), sample_output=sample_output(job, stack, job_id))
