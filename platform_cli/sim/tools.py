"""The cluster tools: which Go programs a simulated cluster needs, pinned, and where their
binaries live once built (scripts/cluster-tools builds them, `plinth sim` runs them).

Each component is a small Go module under tools/cluster/<component>/ (go.mod and go.sum
committed) that names what to build from the upstream modules. It is built into a cache folder
outside the checkout, keyed by the component's version and a hash of its module files, so a
second run finds it built and only prints the paths. Only the standard library is used here:
scripts/cluster-tools runs before any virtual environment exists.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = ROOT / "tools" / "cluster"
GO_MINIMUM = (1, 26)

KUBERNETES_VERSION = "v1.36.3"
PULUMI_VERSION = "v3.224.0"  # the lock's pulumi (Python SDK): the CLI and its language host match it
# The proxy serves the Kubernetes provider's module only as this pseudo-version (a commit of
# 2026-01-15, between provider releases 4.24.0 and 4.26.0); the plugin reports it as its version.
KUBERNETES_PROVIDER_VERSION = "v4.0.0-20260115033456-f47bc2d6f199"


KWOK_STAGES = "kwok-stages"
KWOK_STAGE_FILES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    *(f"pod/general/pod-{stage}.yaml" for stage in ("create", "init-container-running", "init-container-completed", "ready", "complete", "delete")),
)


KUEUE_CRDS = "kueue-crds"
KUEUE_CRD_NAMES = (
    "admissionchecks", "clusterqueues", "cohorts", "localqueues", "multikueueclusters", "multikueueconfigs",
    "provisioningrequestconfigs", "resourceflavors", "topologies", "workloadpriorityclasses", "workloads",
)


VOLCANO_CRDS = "volcano-crds"
# The Volcano CRDs its scheduler and controllers watch (config/crd/volcano/bases in the module;
# the sim installs Job, Queue and PodGroup from the vendored 1.15.1 files instead).
VOLCANO_CRD_FILES = (
    "batch.volcano.sh_jobs", "bus.volcano.sh_commands", "scheduling.volcano.sh_podgroups",
    "scheduling.volcano.sh_queues", "topology.volcano.sh_hypernodes", "nodeinfo.volcano.sh_numatopologies",
    "shard.volcano.sh_nodeshards", "batch.volcano.sh_cronjobs", "config.volcano.sh_colocationconfigurations",
)


@dataclass(frozen=True)
class Component:
    name: str
    version: str
    packages: tuple[str, ...]          # what `go build` builds, relative to the component's module
    binaries: tuple[str, ...]          # what lands in the bin folder
    ldflags: str = ""
    # Files produced before the build: (upstream module, file in it, file written next to the
    # wrapper's main package, JSON fields to set). The provider embeds its schema this way.
    generated: tuple[tuple[str, str, str, dict], ...] = ()
    # Files copied as they are from an upstream module into the bin folder (module, path, name).
    copied: tuple[tuple[str, str, str], ...] = ()
    # Built binaries renamed as they land (go build names a binary after its package folder).
    renamed: tuple[tuple[str, str], ...] = ()
    optional: bool = False             # built only when asked for (`--with NAME`)
    why: str = ""
    fix: dict[str, str] = field(default_factory=dict)

    @property
    def module(self) -> Path:
        return MODULES / self.name

    def key(self) -> str:
        """Changes whenever what would be built changes: the module files, flags and Go version."""
        digest = hashlib.sha256()
        for path in sorted(self.module.rglob("*")):
            if path.is_file():
                digest.update(path.relative_to(self.module).as_posix().encode())
                digest.update(path.read_bytes())
        # (renamed only when set: the keys, and so the built folders, of the others stay as they were)
        digest.update(json.dumps([self.packages, self.ldflags, self.generated, self.copied, *([self.renamed] if self.renamed else [])]).encode())
        return digest.hexdigest()[:12]

    def folder(self, cache: Path) -> Path:
        return cache / f"{self.name}-{self.version}-{self.key()}"


def _k8s_version_flags(version: str) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    return f"-X {pkg}.gitVersion={version} -X {pkg}.gitMajor={major} -X {pkg}.gitMinor={minor} -X {pkg}.gitTreeState=clean"


COMPONENTS: tuple[Component, ...] = (
    Component(
        "etcd", "v3.6.16", (".",), ("etcd",),
        why="the API server's store",
    ),
    Component(
        "kubernetes", KUBERNETES_VERSION,
        ("k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes/cmd/kube-controller-manager", "k8s.io/kubernetes/cmd/kube-scheduler"),
        ("kube-apiserver", "kube-controller-manager", "kube-scheduler"),
        ldflags=_k8s_version_flags(KUBERNETES_VERSION),
        why="the control plane: API server, controllers (Job, namespace, garbage collector), scheduler",
    ),
    Component(
        "kwok", "v0.8.0", ("sigs.k8s.io/kwok/cmd/kwok",), ("kwok",),
        # KWOK's own lifecycle stages: nodes become Ready and keep a lease; a pod is created,
        # becomes Running and Ready after a second or so, and a Job's pod then Succeeds.
        copied=tuple(
            ("sigs.k8s.io/kwok", f"kustomize/stage/{path}", f"{KWOK_STAGES}/{path.rsplit('/', 1)[1]}")
            for path in KWOK_STAGE_FILES
        ),
        why="fake nodes and the pod lifecycle (no kubelet, no containers)",
    ),
    Component(
        "pulumi", PULUMI_VERSION, ("github.com/pulumi/pulumi/pkg/v3/cmd/pulumi", "./pulumi-language-python"),
        ("pulumi", "pulumi-language-python", "pulumi-language-python-exec"),
        ldflags=f"-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version={PULUMI_VERSION} -X main.version={PULUMI_VERSION.lstrip('v')}",
        copied=(("github.com/pulumi/pulumi/sdk/v3", "python/cmd/pulumi-language-python-exec", "pulumi-language-python-exec"),),
        why="the Pulumi CLI and the language host that runs infra/",
    ),
    Component(
        "kubernetes-provider", KUBERNETES_PROVIDER_VERSION, ("./pulumi-resource-kubernetes",), ("pulumi-resource-kubernetes",),
        ldflags=f"-X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version={KUBERNETES_PROVIDER_VERSION.lstrip('v')}",
        generated=(
            ("github.com/pulumi/pulumi-kubernetes/provider/v4", "cmd/pulumi-resource-kubernetes/schema.json", "pulumi-resource-kubernetes/schema-embed.json",
             {"version": KUBERNETES_PROVIDER_VERSION.lstrip("v")}),
            ("github.com/pulumi/pulumi-kubernetes/provider/v4", "cmd/pulumi-resource-kubernetes/terraform-mapping.json", "pulumi-resource-kubernetes/terraform-mapping-embed.json", {}),
        ),
        why="Pulumi's Kubernetes resource provider plugin",
    ),
    Component(
        "kueue", "v0.17.0", ("sigs.k8s.io/kueue/cmd/kueue",), ("kueue",),
        # Its CRDs (the platform vendors only the three a team stack creates objects of) and
        # webhook definitions, from the same module.
        copied=(
            *((("sigs.k8s.io/kueue", f"config/components/crd/bases/kueue.x-k8s.io_{name}.yaml", f"{KUEUE_CRDS}/{name}.yaml")) for name in KUEUE_CRD_NAMES),
            ("sigs.k8s.io/kueue", "config/components/webhook/manifests.yaml", "kueue-webhooks.yaml"),
        ),
        optional=True,
        why="the Kueue queue manager (admits or holds jobs by ClusterQueue quota)",
    ),
    Component(
        # v1.14.1, not the chart's 1.15.1: the proxy refuses volcano.sh/apis v1.15.x, which
        # v1.15.1 needs (tools/cluster/volcano/go.mod says why).
        "volcano", "v1.14.1",
        ("volcano.sh/volcano/cmd/scheduler", "volcano.sh/volcano/cmd/controller-manager"),
        ("vc-scheduler", "vc-controller-manager"),
        renamed=(("scheduler", "vc-scheduler"), ("controller-manager", "vc-controller-manager")),
        copied=tuple(
            ("volcano.sh/volcano", f"config/crd/volcano/bases/{name}.yaml", f"{VOLCANO_CRDS}/{name}.yaml") for name in VOLCANO_CRD_FILES
        ),
        optional=True,
        why="the Volcano scheduler (queues, gang, reclaim, preemption) and its controllers (PodGroups, Queues, Jobs)",
    ),
)

BY_NAME = {component.name: component for component in COMPONENTS}


def cache_dir() -> Path:
    """Where built tools live: $PLINTH_TOOLS_CACHE, else ~/.cache/plinth/cluster-tools."""
    configured = os.environ.get("PLINTH_TOOLS_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "plinth" / "cluster-tools"


def selected(extra: tuple[str, ...] = ()) -> list[Component]:
    return [component for component in COMPONENTS if not component.optional or component.name in extra]


def bin_dir(cache: Path | None = None, extra: tuple[str, ...] = ()) -> Path:
    """The one folder holding every selected component's binaries (links into their folders)."""
    cache = cache or cache_dir()
    digest = hashlib.sha256(" ".join(c.folder(cache).name for c in selected(extra)).encode()).hexdigest()[:12]
    return cache / f"bin-{digest}"


def is_built(component: Component, cache: Path | None = None) -> bool:
    folder = component.folder(cache or cache_dir())
    return (folder / "build.json").is_file() and all((folder / "bin" / name).is_file() for name in component.binaries)


def find_binary(name: str, cache: Path | None = None) -> Path | None:
    """A built tool's path, or None when scripts/cluster-tools has not built it."""
    for component in COMPONENTS:
        if name in component.binaries and is_built(component, cache):
            return component.folder(cache or cache_dir()) / "bin" / name
    return None
