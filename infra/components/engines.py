"""The workload engines Plinth's job and flow renderers target: the Kubeflow Spark operator
(SparkApplication) and Argo Workflows (Workflow, CronWorkflow), from their Helm charts.

MPIJob (mpi-operator v0.8.0) and TFJob (Kubeflow training operator v1.9.0) have no Helm charts
upstream, and the two operators both own the `mpijobs.kubeflow.org` CRD (v2beta1 and v1), so
the platform cannot simply install both release manifests: docs/cluster.md gives the commands
(the training operator with its MPIJob scheme disabled).
"""

from __future__ import annotations

import pulumi

from infra.components.charts import ARGO_WORKFLOWS, SPARK_OPERATOR, helm_release


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
        "crds": {"install": True},
        # Workflows run in team namespaces, as each team's plinth-workflow service account.
        "controller": {"workflowNamespaces": []},
        "singleNamespace": False,
    }


class WorkloadEngines(pulumi.ComponentResource):
    def __init__(self, scheduler: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__("plinth:platform:WorkloadEngines", "engines", None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.spark_operator = helm_release(SPARK_OPERATOR, spark_operator_values(scheduler), child)
        self.argo_workflows = helm_release(ARGO_WORKFLOWS, argo_workflows_values(), child)
        self.register_outputs({})
