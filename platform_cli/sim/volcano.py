"""Volcano in the simulated cluster: its scheduler and controller manager (built from
volcano.sh/volcano by `scripts/cluster-tools --with volcano`) run next to the control plane when
the platform stack's scheduler is Volcano, so a team's Queue really guarantees, lends and
reclaims its GPUs.

A crds-only platform installs no Helm chart, so the sim does what Volcano's chart would: it
installs Volcano's CRDs (the three a platform stack installs itself from the same vendored files
the stack applies, so its server-side apply finds them identical; the others from the Volcano
module) and runs vc-scheduler with the configuration the
platform stack gives the chart (platform_cli/spec/volcano.py), and vc-controller-manager with
the controllers a job needs: PodGroups for plain pods, Volcano Jobs, Queue states and garbage
collection. The admission webhook is not run: nothing in the sim depends on its defaults (Plinth
and the tests set queue, scheduler name and minAvailable themselves).
"""

from __future__ import annotations

from pathlib import Path

from platform_cli.errors import PlinthError
from platform_cli.sim import tools

# vc-controller-manager's controllers the sim runs: the rest watch kinds the sim does not serve
# (JobFlows, JobTemplates, CronJobs, HyperNode discovery, colocation, sharding).
CONTROLLERS = ("job-controller", "pg-controller", "queue-controller", "gc-controller")


def binaries() -> dict[str, Path]:
    found = {name: tools.find_binary(name) for name in ("vc-scheduler", "vc-controller-manager")}
    if None in found.values():
        raise PlinthError("Volcano is not built, and the platform stack's scheduler is Volcano",
                          "run scripts/cluster-tools --with volcano (or pick a platform stack whose scheduler is kueue)")
    return found


def crd_files(scheduler_binary: Path) -> list[Path]:
    """Volcano's CRD files: the vendored ones for the kinds a platform stack installs itself, the
    module's (next to the binary) for the rest."""
    from platform_cli.render.validate import CRD_DIR, CRD_FILES

    vendored = {Path(path).stem: CRD_DIR / path for (group, _kind), path in CRD_FILES.items() if group.endswith(".volcano.sh")}
    module = scheduler_binary.resolve().parent / tools.VOLCANO_CRDS
    return [vendored.get(name, module / f"{name}.yaml") for name in tools.VOLCANO_CRD_FILES]


def scheduler_argv(binary: Path, kubeconfig: Path, config: Path, healthz_port: int, metrics_port: int) -> list[str]:
    return [
        str(binary), "--kubeconfig", str(kubeconfig), "--scheduler-conf", str(config),
        "--leader-elect=false", "--enable-healthz", "--healthz-address", f"127.0.0.1:{healthz_port}",
        "--listen-address", f"127.0.0.1:{metrics_port}",
        # Its configuration is the platform's: never fall back to Volcano's default one.
        "--disable-default-scheduler-config",
    ]


def controller_manager_argv(binary: Path, kubeconfig: Path, healthz_port: int, metrics_port: int) -> list[str]:
    return [
        str(binary), "--kubeconfig", str(kubeconfig), "--leader-elect=false",
        "--controllers", ",".join(CONTROLLERS),
        "--enable-healthz", "--healthz-address", f"127.0.0.1:{healthz_port}",
        "--listen-address", f"127.0.0.1:{metrics_port}",
    ]

