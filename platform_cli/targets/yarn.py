"""The YARN target: a team stack whose Spark jobs go to a Hadoop cluster.

Spark jobs run `spark-submit --master yarn` (rendered by render/yarn.py) on this machine under
the local runner, so their records, logs and cancel work exactly as on the local platform; the
records live apart from the local stack's, under `<local.home>/yarn/<stack>/jobs`. Every other
kind (horovod, tf-ps, python) needs Kubernetes and goes to the team's namespace through the
Kubernetes target, as StackConfig documents for `target: yarn`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from platform_cli.atomic import write_text
from platform_cli.render.yarn import hadoop_site_files, yarn_config
from platform_cli.runs import new_id
from platform_cli.targets import TargetInfo
from platform_cli.targets.base import JobRecord
from platform_cli.targets.kubernetes import TARGET as KUBERNETES
from platform_cli.targets.kubernetes import KubernetesTarget
from platform_cli.targets.local import LocalTarget

if TYPE_CHECKING:
    from pathlib import Path

    from platform_cli.render.context import RenderedJob
    from platform_cli.spec.job import LoadedJob
    from platform_cli.spec.stack import Stack

TARGET = TargetInfo(
    name="yarn",
    runner="platform_cli.targets.yarn:YarnTarget",
    renderers={"spark": "platform_cli.render.yarn:render_yarn_job", **KUBERNETES.renderers},
    preview_id_suffix=KUBERNETES.preview_id_suffix,
    serving=KUBERNETES.serving,
    workflow_submitter=KUBERNETES.workflow_submitter,
    # Spark jobs restart under the local runner; the rest is the team's Kubernetes namespace.
    unsupported={verb: why for verb, why in KUBERNETES.unsupported.items() if verb != "job restart"},
)


class YarnTarget:
    def __init__(self, stack: Stack, api_client=None):
        self.stack = stack
        self.spark = LocalTarget(stack)
        self.spark.jobs_dir = stack.home / "yarn" / stack.name / "jobs"
        self.kubernetes = KubernetesTarget(stack, api_client=api_client)

    def new_job_id(self, name: str) -> str:
        return new_id(name)

    def pods(self) -> list[dict]:
        """The team namespace's pods (Spark on YARN runs no pods: YARN accounts for it)."""
        return self.kubernetes.pods()

    def submit(self, job: LoadedJob, rendered: RenderedJob) -> JobRecord:
        if rendered.documents[0]["kind"] != "LocalLaunch":  # rendered for the team's namespace
            return self.kubernetes.submit(job, rendered)
        self._write_hadoop_conf(rendered.documents[0]["spec"]["env"]["HADOOP_CONF_DIR"])
        return self.spark.submit(job, rendered)

    def restart(self, job_id: str) -> JobRecord:
        return self._owner(job_id).restart(job_id)

    def status(self, job_id: str) -> JobRecord:
        return self._owner(job_id).status(job_id)

    def list(self) -> list[JobRecord]:
        return sorted(self.spark.list() + self.kubernetes.list(), key=lambda r: r.submitted)

    def logs(self, job_id: str, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        return self._owner(job_id).logs(job_id, follow=follow, tail=tail)

    def cancel(self, job_id: str) -> JobRecord:
        return self._owner(job_id).cancel(job_id)

    def wait(self, job_id: str) -> JobRecord:
        return self._owner(job_id).wait(job_id)

    def _owner(self, job_id: str):
        local = self.spark.jobs_dir / job_id
        return self.spark if "/" not in job_id and (local / "record.json").is_file() else self.kubernetes

    def _write_hadoop_conf(self, directory: str) -> None:
        """Write core-site.xml and yarn-site.xml from the platform's yarn: section, unless the
        stack names a HADOOP_CONF_DIR of its own (then it is the admins' to maintain)."""
        yarn = yarn_config(self.stack)
        if yarn.hadoop_conf_dir:
            return
        conf: Path = self.stack.home / "hadoop-conf" / self.stack.config.team.platform
        assert str(conf) == directory, (conf, directory)  # render and target agree on the place
        conf.mkdir(parents=True, exist_ok=True)
        for name, text in hadoop_site_files(yarn).items():
            write_text(conf / name, text)
