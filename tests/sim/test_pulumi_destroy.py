"""`pulumi destroy` of team-sim then platform-sim leaves nothing of theirs in the API server
(a cluster of its own: destroying is the end of a deployment)."""

from __future__ import annotations

import pytest

from platform_cli.kube import Resource
from tests.sim.conftest import SIM_TIMEOUT, STACKS, Sim, wait_for

# The first test of a session may build the cluster tools (scripts/cluster-tools) first.
pytestmark = pytest.mark.timeout(SIM_TIMEOUT)

MANAGED = "app.kubernetes.io/managed-by=plinth"
CLUSTER_SCOPED = [Resource("v1", "Namespace"), Resource("scheduling.k8s.io/v1", "PriorityClass")]
NAMESPACED = [Resource("v1", kind) for kind in ("ConfigMap", "Secret", "ServiceAccount", "ResourceQuota", "LimitRange")] + [
    Resource("rbac.authorization.k8s.io/v1", kind) for kind in ("Role", "RoleBinding")
] + [Resource("networking.k8s.io/v1", "NetworkPolicy")]
CRD = Resource("apiextensions.k8s.io/v1", "CustomResourceDefinition")


def test_destroy_leaves_no_object_behind(own_sim: Sim) -> None:
    sim = own_sim
    kube = sim.kube()
    builtin_crds = {crd["metadata"]["name"] for crd in kube.list(CRD, None)}
    # The sim's Kueue installed its CRDs before any stack, three of them from the very files the
    # platform declares: `up` adopts those (server-side apply) and `destroy` removes them.
    declared_by_both = {f"{name}.kueue.x-k8s.io" for name in ("clusterqueues", "localqueues", "resourceflavors")}
    assert declared_by_both <= builtin_crds
    sim.up(*STACKS)
    assert kube.get(Resource("v1", "Namespace"), None, "ranking") is not None
    assert len({crd["metadata"]["name"] for crd in kube.list(CRD, None)} - builtin_crds) == 14 - len(declared_by_both)

    sim.destroy(*reversed(STACKS))

    for resource in CLUSTER_SCOPED:
        # A namespace goes through Terminating while the namespace controller empties it.
        wait_for(f"no {resource.kind} labelled {MANAGED}", lambda r=resource: not kube.list(r, None, MANAGED), timeout=120)
    for resource in NAMESPACED:
        assert kube.list(resource, None, MANAGED) == [], resource.kind
    assert {crd["metadata"]["name"] for crd in kube.list(CRD, None)} == builtin_crds - declared_by_both
    for stack in STACKS:
        assert sim.state(stack)["checkpoint"]["latest"].get("resources") in (None, [])
