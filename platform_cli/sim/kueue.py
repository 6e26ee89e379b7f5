"""Kueue in the simulated cluster: its controller manager (built from sigs.k8s.io/kueue by
`scripts/cluster-tools --with kueue`) runs next to the control plane when the platform stack's
scheduler is Kueue, so a team's ClusterQueue really admits or holds its jobs.

A crds-only platform installs no Helm chart, so the sim does what Kueue's chart would: it
installs Kueue's CRDs, runs the manager from a Configuration file (loopback ports, no leader
election, no internal certificate management: the sim generates the webhook server's
certificate) and registers Kueue's webhooks with the API server by URL, trusting that
certificate. The three CRDs a platform stack installs itself (ClusterQueue, LocalQueue,
ResourceFlavor) are installed from the same vendored files the stack applies, so the stack's
server-side apply finds them identical; the others come from the Kueue module. None of them
carries a conversion webhook (v1beta2 is stored and is the version Plinth and Kueue use), so the
API server converts between versions by itself.
"""

from __future__ import annotations

from pathlib import Path

from platform_cli.errors import PlinthError
from platform_cli.sim import tools

# The workload kinds Kueue manages in the sim: the batch Job (plinth's python jobs). No MPI or
# training operator runs in the sim to act on an admitted MPIJob or TFJob, and their CRDs come
# only later, with the platform stack.
FRAMEWORKS = ("batch/job",)
# Webhooks registered with the API server: Kueue's own objects and the frameworks above. The
# others would be called for kinds whose handlers the manager does not serve.
WEBHOOK_GROUPS = {"kueue.x-k8s.io", "batch"}


# With internalCertManagement off, Kueue 0.17's manager reads its metrics server's certificate
# from this fixed folder (cmd/kueue/main.go: metricsCertPath := "/etc/kueue/metrics/certs"); no
# flag or Configuration field moves it.
METRICS_CERTS = "kueue/metrics/certs"


def argv(binary_: Path, config: Path, kubeconfig: Path, etc: Path) -> list[str]:
    """The manager's command line. It runs in a mount namespace of its own (a user namespace, so
    no privilege is needed) where `etc` is mounted on /etc: there it finds the metrics
    certificate at the fixed path above, and nothing is written to the machine's /etc. The
    manager needs nothing else from /etc: it reaches the API server by IP with the CA of its
    kubeconfig."""
    manager = [str(binary_), "--config", str(config), "--kubeconfig", str(kubeconfig),
               # The on-demand visibility API (pending workloads' positions) is an aggregated API
               # server with a certificate of its own at /visibility; the API server would reach
               # it only through a Service, which loopback cannot back.
               "--feature-gates", "VisibilityOnDemand=false"]
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", 'mount --bind "$0" /etc && exec "$@"', str(etc), *manager]


def binary() -> Path:
    path = tools.find_binary("kueue")
    if path is None:
        raise PlinthError("kueue is not built, and the platform stack's scheduler is Kueue",
                          "run scripts/cluster-tools --with kueue (or pick a platform stack whose scheduler is volcano)")
    return path


def crd_files(kueue_binary: Path) -> list[Path]:
    """Kueue's CRD files: the vendored ones for the kinds a platform stack installs itself, the
    module's (next to the binary) for the rest."""
    from platform_cli.render.validate import CRD_DIR, CRD_FILES

    vendored = {kind.lower() + "s": CRD_DIR / path for (group, kind), path in CRD_FILES.items() if group == "kueue.x-k8s.io"}
    module = kueue_binary.resolve().parent / tools.KUEUE_CRDS
    return [vendored.get(name, module / f"{name}.yaml") for name in tools.KUEUE_CRD_NAMES]


def configuration(webhook_port: int, health_port: int, metrics_port: int, cert_dir: Path) -> dict:
    """The manager's Configuration (config.kueue.x-k8s.io/v1beta2)."""
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": "kube-system",
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": f"127.0.0.1:{metrics_port}"},
        "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "integrations": {"frameworks": list(FRAMEWORKS)},
    }


def webhook_configurations(manifests: list[dict], url: str, ca_bundle: str) -> list[dict]:
    """Kueue's webhook configurations (from its module) for the sim: only the webhooks of
    WEBHOOK_GROUPS, each calling the manager at `url` + its path instead of Kueue's Service."""
    configurations = []
    for manifest in manifests:
        webhooks = []
        for webhook in manifest["webhooks"]:
            groups = {group for rule in webhook["rules"] for group in rule["apiGroups"]}
            if not groups <= WEBHOOK_GROUPS:
                continue
            path = webhook["clientConfig"]["service"]["path"]
            webhooks.append({**webhook, "clientConfig": {"url": url + path, "caBundle": ca_bundle}})
        configurations.append({
            "apiVersion": manifest["apiVersion"], "kind": manifest["kind"],
            "metadata": {"name": f"kueue-{manifest['metadata']['name']}"}, "webhooks": webhooks,
        })
    return configurations


def register_webhooks(kueue_binary: Path, url: str, cert: Path, client) -> int:
    """Register Kueue's webhooks (once the manager serves them); returns how many."""
    import base64

    import yaml

    manifests = list(yaml.safe_load_all((kueue_binary.resolve().parent / "kueue-webhooks.yaml").read_text()))
    configurations = webhook_configurations(manifests, url, base64.b64encode(cert.read_bytes()).decode())
    for configuration_ in configurations:
        client.apply(configuration_)
    return sum(len(c["webhooks"]) for c in configurations)
