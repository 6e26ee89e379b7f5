"""Spark jobs: `spark-submit` locally (`local[N]`) and on YARN, a SparkApplication (Kubeflow Spark
operator v2) on Kubernetes: one driver and `workers` executors."""

from __future__ import annotations

import math
import os
import re
import shutil
from typing import Literal

from pydantic import Field, field_validator

from platform_cli.errors import PlinthError, shown
from platform_cli.kinds import JobKind, PodGroup, WorkloadStatus, cpu_quantity, parse_time
from platform_cli.kube import Resource
from platform_cli.spec.job import JobSpecBase
from platform_cli.status import JobStatus

SPARK_PROPERTY_PATTERN = r"^spark\.[A-Za-z0-9_.-]{1,247}$"
# Spark the runtime image ships (the version Plinth's lock file pins).
SPARK_VERSION = "4.3.0"


class SparkJobSpec(JobSpecBase):
    kind: Literal["spark"]
    conf: dict[str, str] = Field({}, description="Spark properties (spark.*)")

    @field_validator("conf")
    @classmethod
    def _spark_keys(cls, conf: dict[str, str]) -> dict[str, str]:
        for key in conf:
            if not re.fullmatch(SPARK_PROPERTY_PATTERN, key):
                raise ValueError(f"{shown(key)} is not a Spark property (they start with 'spark.': letters, digits, '.', '_', '-', at most 253)")
        return conf


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


def spark_cores(cpu: float) -> int:
    """Spark wants whole cores; the Kubernetes request keeps the exact value."""
    return max(1, math.ceil(cpu))


_STATES = {
    "COMPLETED": JobStatus.SUCCEEDED,
    "FAILED": JobStatus.FAILED,
    "SUBMISSION_FAILED": JobStatus.FAILED,
    "RUNNING": JobStatus.RUNNING,
    "SUCCEEDING": JobStatus.RUNNING,
    "FAILING": JobStatus.RUNNING,
    "INVALIDATING": JobStatus.RUNNING,
}


class SparkKind(JobKind):
    name = "spark"
    spec = SparkJobSpec
    workload = Resource("sparkoperator.k8s.io/v1beta2", "SparkApplication")
    engine = "the Spark operator"
    main_role, main_container = "driver", "spark-kubernetes-driver"
    compute_roles = ("executor",)

    def pod_groups(self, spec: SparkJobSpec) -> list[PodGroup]:
        cpu = cpu_quantity(spec.resources.cpu)
        return [PodGroup("driver", 1, cpu, spec.resources.memory), PodGroup("executor", spec.workers, cpu, spec.resources.memory, spec.resources.gpu)]

    def local_context(self, job, stack) -> dict:
        spec = job.spec
        cores = min(stack.config.local.spark_cores, spec.workers * spark_cores(spec.resources.cpu))
        # Driver and executors share one JVM locally, so the driver gets the whole request.
        # WARN keeps the job log readable (Spark logs every block manager event at INFO);
        # the spec's own conf wins over both defaults.
        defaults = {"spark.driver.memory": spark_memory(spec.resources.memory), "spark.log.level": "WARN"}
        return {"master": f"local[{cores}]", "conf": {**defaults, **dict(sorted(spec.conf.items()))}}

    def local_env(self) -> dict[str, str]:
        return {"PYSPARK_PYTHON": "python"}  # Spark's Python workers: the Plinth environment's python

    def local_requirements(self, path: str) -> None:
        if not (os.environ.get("JAVA_HOME") or shutil.which("java", path=path)):
            raise PlinthError("Java not found: Spark jobs need Java 17", "install it (apt-get install openjdk-17-jre-headless) or set JAVA_HOME")

    def cluster_context(self, job, script, args, storage) -> dict:
        from platform_cli.spec.team_objects import HDFS_CONFIG_MAP

        spec = job.spec
        conf = {}
        if storage.kind == "s3":
            conf.update({"spark.hadoop.fs.s3a.endpoint": storage.s3.endpoint, "spark.hadoop.fs.s3a.path.style.access": "true"})
        conf.update(dict(sorted(spec.conf.items())))
        return {
            "spark_version": SPARK_VERSION,
            "spark_conf": conf,
            "hadoop_config_map": HDFS_CONFIG_MAP if storage.kind == "hdfs" else None,
            "spark_cores": spark_cores(spec.resources.cpu),
            "spark_memory": spark_memory(spec.resources.memory),
        }

    def launched(self, context: dict, launcher: str) -> dict:
        # spark-submit runs a Python main program from a file: the launcher's, the script its first argument.
        return {"script": launcher, "args": [context["script"], *context["args"]]}

    def read_status(self, workload: dict) -> WorkloadStatus:
        status = workload.get("status") or {}
        application = status.get("applicationState") or {}
        state = application.get("state") or ""
        result = _STATES.get(state, JobStatus.PENDING)
        running = sum(1 for s in (status.get("executorState") or {}).values() if s == "RUNNING")
        message = application.get("errorMessage") or (f"{state.lower() or 'new'}; {running} executor(s) running" if not result.finished else "")
        return WorkloadStatus(result, parse_time(status.get("lastSubmissionAttemptTime")), parse_time(status.get("terminationTime")) if result.finished else None,
                              message, max(1, int(status.get("submissionAttempts") or 1)))

    def argo_conditions(self, workload: dict) -> tuple[str, str]:
        return "status.applicationState.state == COMPLETED", "status.applicationState.state in (FAILED, SUBMISSION_FAILED)"

    def with_retries(self, workload: dict, retries: int) -> dict:
        policy = {"type": "OnFailure", "onFailureRetries": retries, "onFailureRetryInterval": 30, "onSubmissionFailureRetries": retries, "onSubmissionFailureRetryInterval": 30}
        return {**workload, "spec": {**workload["spec"], "restartPolicy": policy}}


KIND = SparkKind()
