"""Online serving: cert-manager (KServe's webhooks need certificates) and KServe, RawDeployment
by default (plain Deployments, Services and Ingresses; no Knative or Istio needed)."""

from __future__ import annotations

import pulumi

from infra.components.charts import CERT_MANAGER, KSERVE, KSERVE_CRD, helm_release
from platform_cli.spec.stack import KServeConfig


def kserve_values(config: KServeConfig) -> dict:
    return {
        "kserve": {
            "controller": {
                "deploymentMode": config.deployment_mode,
                "gateway": {"ingressGateway": {"className": config.ingress_class}},
            }
        }
    }


class Serving(pulumi.ComponentResource):
    def __init__(self, config: KServeConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("plinth:platform:Serving", "kserve", None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.cert_manager = helm_release(CERT_MANAGER, {"crds": {"enabled": True}}, child, version=config.cert_manager_version)
        self.crds = helm_release(KSERVE_CRD, {}, child, version=config.version)
        self.kserve = helm_release(
            KSERVE,
            kserve_values(config),
            pulumi.ResourceOptions(parent=self, depends_on=[self.cert_manager, self.crds]),
            version=config.version,
        )
        self.register_outputs({"deploymentMode": config.deployment_mode})
