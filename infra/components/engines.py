"""The workload engines Plinth's job and flow renderers target: the Kubeflow Spark operator
(SparkApplication) and Argo Workflows (Workflow, CronWorkflow), from their Helm charts; or,
with `engines: {install: crds-only}`, only the CRDs of every engine (EngineCrds).

MPIJob (mpi-operator v0.8.0) and TFJob (Kubeflow training operator v1.9.0) have no Helm charts
upstream, and the two operators both own the `mpijobs.kubeflow.org` CRD (v2beta1 and v1), so
the platform cannot simply install both release manifests: docs/cluster.md gives the commands
(the training operator with its MPIJob scheme disabled).
"""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s

from infra.components.charts import ARGO_WORKFLOWS, SPARK_OPERATOR, helm_release
from platform_cli.render.validate import CRD_DIR, CRD_FILES

# The API groups whose CRDs a crds-only platform installs, besides its batch scheduler's: the
# Spark operator, the MPI and training operators (MPIJob v2beta1 and TFJob v1, the versions the
# renderers target), KServe and Argo Workflows.
ENGINE_GROUPS = ("sparkoperator.k8s.io", "kubeflow.org", "serving.kserve.io", "argoproj.io")
SCHEDULER_GROUPS = {"volcano": ("scheduling.volcano.sh", "batch.volcano.sh"), "kueue": ("kueue.x-k8s.io",)}


def spark_operator_values(scheduler: str) -> dict:
    return {
        # Every namespace: team namespaces come and go with team stacks.
        "spark": {"jobNamespaces": [""]},
        # Spark pods are gang-scheduled by Volcano (SparkApplication batchScheduler: volcano);
        # on Kueue, Spark pods are admitted one by one through Kueue's pod integration.
        "controller": {"batchScheduler": {"enable": scheduler == "volcano", **({"default": "volcano"} if scheduler == "volcano" else {})}},
        # The webhook mounts a job's code ConfigMap and applies node selectors and tolerations.
        "webhook": {"enable": True},
    }


def argo_workflows_values() -> dict:
    return {
        "images": {"tag": ARGO_WORKFLOWS.app_version},
        # Since chart 1.0.0 the default (full: true) is a pre-install hook Job that downloads the
        # full CRDs from GitHub: hook-made objects are no part of the release, so `pulumi destroy`
        # would leave them, and the cluster would need GitHub egress. full: false installs the
        # chart's own minimal CRDs as release objects, and keep: false lets `helm uninstall`
        # delete them. Their schemas are open; Plinth validates flows against the full v4.1.2
        # schemas before it submits them.
        "crds": {"install": True, "full": False, "keep": False},
        # Workflows run in team namespaces, as each team's plinth-workflow service account.
        "controller": {"workflowNamespaces": []},
        "singleNamespace": False,
    }


def crd_file(path: str, opts: pulumi.ResourceOptions) -> k8s.yaml.v2.ConfigFile:
    """One vendored CRD file, applied by the provider itself (megabytes of schema never pass
    through the program)."""
    return k8s.yaml.v2.ConfigFile(f"crds-{Path(path).stem.replace('_', '-').replace('.', '-')}", file=path, opts=opts)


class WorkloadEngines(pulumi.ComponentResource):
    def __init__(self, scheduler: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__("plinth:platform:WorkloadEngines", "engines", None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # The Spark operator's chart keeps its CRDs in crds/, which Helm installs once and never
        # upgrades or deletes: the stack installs them (the vendored files of the same version)
        # so `pulumi destroy` removes them too.
        spark_crds = [crd_file(path, child) for path in group_crd_files(("sparkoperator.k8s.io",))]
        self.spark_operator = helm_release(
            SPARK_OPERATOR, spark_operator_values(scheduler), pulumi.ResourceOptions(parent=self, depends_on=spark_crds), skip_crds=True,
        )
        self.argo_workflows = helm_release(ARGO_WORKFLOWS, argo_workflows_values(), child)
        self.register_outputs({})


def group_crd_files(groups: tuple[str, ...]) -> list[str]:
    """The vendored CRD files of these API groups. Absolute: the provider reads them from its
    own working directory."""
    return sorted({str(CRD_DIR / path) for (group, _kind), path in CRD_FILES.items() if group in groups})


def engine_crd_files(scheduler: str) -> list[str]:
    """The vendored CRD files a crds-only platform installs."""
    return group_crd_files(SCHEDULER_GROUPS[scheduler] + ENGINE_GROUPS)


class EngineCrds(pulumi.ComponentResource):
    """Only the engines' CustomResourceDefinitions, from the files Plinth vendors and validates
    against: the API accepts and stores the engines' objects, and no controller acts on them
    until one is installed some other way. The provider reads each file itself (megabytes of
    schema never pass through the program)."""

    def __init__(self, scheduler: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__("plinth:platform:EngineCrds", "engine-crds", None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.files = [crd_file(path, child) for path in engine_crd_files(scheduler)]
        self.register_outputs({"files": engine_crd_files(scheduler)})
