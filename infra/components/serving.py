"""Online serving: cert-manager (KServe's webhooks need certificates) and KServe, RawDeployment
by default (plain Deployments, Services and Ingresses; no Knative or Istio needed).

The kserve chart (v0.15.2) puts its ClusterServingRuntimes in the same release as the
ValidatingWebhookConfiguration that must admit them (failurePolicy: Fail, served by the
controller's pod). Installed as one release, the runtimes are sent before that pod serves and
the install fails; with atomic=True it is rolled back, so every `pulumi up` meets the same race.
So the chart is installed twice, split by post-renderers (infra/postrender/):

1. `kserve`: everything but the runtimes. Helm waits (atomic implies --wait) until the
   controller Deployment is Ready, and the controller's readiness check is its webhook
   server having started (cmd/manager/main.go: AddReadyzCheck -> StartedChecker), 30 s after
   start at the earliest; the pod cannot start before its serving certificate exists, which is
   also what cert-manager's cainjector copies into the webhook configurations.
2. `kserve-runtimes`: only the ClusterServingRuntimes, same chart, version and values,
   depending on the first release, so they reach a webhook that serves.
"""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s

from infra.components.charts import CERT_MANAGER, KSERVE, KSERVE_CRD, KSERVE_RUNTIMES, helm_release
from platform_cli.spec.stack import EnginesConfig, KServeConfig

POSTRENDER = Path(__file__).resolve().parents[1] / "postrender"
WITHOUT_RUNTIMES = POSTRENDER / "kserve-without-runtimes"
RUNTIMES_ONLY = POSTRENDER / "kserve-runtimes-only"
# What an existing cert-manager must have served for KServe's Certificate and Issuer.
CERT_MANAGER_CRD = "certificates.cert-manager.io"


def kserve_values(config: KServeConfig) -> dict:
    return {
        "kserve": {
            "controller": {
                "deploymentMode": config.deployment_mode,
                # Model hostnames are <name>-<namespace>.<domain>; the chart's default is example.com.
                "gateway": {"domain": config.domain, "ingressGateway": {"className": config.ingress_class}},
            }
        }
    }


class Serving(pulumi.ComponentResource):
    def __init__(self, config: KServeConfig, engines: EnginesConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("plinth:platform:Serving", "kserve", None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if engines.cert_manager.existing:
            # Read, not created: `up` fails early naming the CRD if the cluster has no
            # cert-manager, and `destroy` leaves the cluster's own installation alone.
            self.cert_manager = k8s.apiextensions.v1.CustomResourceDefinition.get("cert-manager", CERT_MANAGER_CRD, opts=child)
        else:
            # keep: false: without it the chart marks its CRDs helm.sh/resource-policy: keep and
            # `pulumi destroy` leaves them behind.
            self.cert_manager = helm_release(CERT_MANAGER, {"crds": {"enabled": True, "keep": False}}, child, version=config.cert_manager_version)
        self.crds = helm_release(KSERVE_CRD, {}, child, version=config.version)
        values = kserve_values(config)
        self.kserve = helm_release(
            KSERVE, values, pulumi.ResourceOptions(parent=self, depends_on=[self.cert_manager, self.crds]),
            version=config.version, postrender=str(WITHOUT_RUNTIMES),
        )
        self.runtimes = helm_release(
            KSERVE_RUNTIMES, values, pulumi.ResourceOptions(parent=self, depends_on=[self.kserve]),
            version=config.version, postrender=str(RUNTIMES_ONLY),
        )
        self.register_outputs({"deploymentMode": config.deployment_mode})
