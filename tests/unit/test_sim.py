"""The simulated cluster's pure parts (fake nodes from a platform stack's pools, the processes'
command lines) and scripts/cluster-tools' answers when nothing is built or a build fails. The
live cluster itself is tested in tests/sim."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from platform_cli.sim import kueue, tools, volcano
from platform_cli.sim.cluster import Ports, commands, node_manifests
from platform_cli.spec.stack import load_stack
from tests.conftest import REPO


def test_nodes_carry_each_pools_labels_taints_and_gpus(project: Path) -> None:
    platform = load_stack("platform-sim").config.platform
    nodes = node_manifests(platform, None, cpu_nodes=2)
    by_pool: dict[str, list[dict]] = {}
    for node in nodes:
        by_pool.setdefault(node["metadata"]["labels"].get("plinth.dev/gpu-pool", "cpu"), []).append(node)
    assert {pool: len(members) for pool, members in by_pool.items()} == {"a100": 4, "t4": 4, "cpu": 2}   # maxNodes of each pool
    a100 = by_pool["a100"][0]
    assert a100["metadata"]["name"] == "sim-a100-0"
    assert a100["metadata"]["labels"]["plinth.dev/gpu-type"] == "nvidia-a100"
    assert a100["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert a100["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    assert a100["status"]["capacity"]["nvidia.com/gpu"] == "8" and by_pool["t4"][0]["status"]["allocatable"]["nvidia.com/gpu"] == "4"
    assert by_pool["cpu"][0]["spec"] == {} and "nvidia.com/gpu" not in by_pool["cpu"][0]["status"]["capacity"]
    assert len(node_manifests(platform, 50, cpu_nodes=0)) == 100   # --nodes: per pool


def test_every_process_listens_on_loopback_only(tmp_path: Path) -> None:
    binaries = {name: tmp_path / name for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")}
    argv = commands(tmp_path, binaries, Ports(2379, 2380, 6443, 10250))
    assert list(argv) == ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]
    words = [word for command in argv.values() for word in command]
    # (the service-account issuer is a name in tokens, not an address anything listens on)
    addresses = [word for word in words if ("://" in word or word.count(".") == 3 and ":" in word) and "kubernetes.default.svc" not in word] + [
        command[command.index(flag) + 1] for command in argv.values() for flag in ("--bind-address", "--advertise-address") if flag in command
    ]
    assert addresses and all("127.0.0.1" in address for address in addresses), addresses
    assert "0.0.0.0" not in " ".join(words)
    apiserver = argv["kube-apiserver"]
    assert apiserver[apiserver.index("--authorization-mode") + 1] == "Node,RBAC"
    assert "ResourceQuota" in apiserver[apiserver.index("--enable-admission-plugins") + 1].split(",")


def test_the_tools_cache_is_keyed_by_version_outside_the_checkout(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PLINTH_TOOLS_CACHE", str(tmp_path / "cache"))
    folder = tools.BY_NAME["kubernetes"].folder(tools.cache_dir())
    assert folder.parent == tmp_path / "cache" and folder.name.startswith(f"kubernetes-{tools.KUBERNETES_VERSION}-")
    assert tools.find_binary("kube-apiserver") is None
    assert not tools.bin_dir().is_relative_to(REPO)


def run_tools(tmp_path: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PLINTH_TOOLS_CACHE": str(tmp_path / "cache"), "PATH": path or os.environ["PATH"]}
    return subprocess.run([sys.executable, str(REPO / "scripts" / "cluster-tools"), *args], capture_output=True, text=True, env=env)


def test_bin_dir_without_a_build_says_what_to_run(tmp_path: Path) -> None:
    result = run_tools(tmp_path, "--bin-dir")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == "error: cluster-tools: not built: etcd, kubernetes, kwok, pulumi, kubernetes-provider; run scripts/cluster-tools\n"


def build_with_failing_go(tmp_path: Path, *output: str):
    """scripts/cluster-tools building etcd with a `go` that prints `output` and fails."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    lines = "".join(f"echo '{line}'\n" for line in output)
    (fake / "go").write_text(f'#!/bin/sh\nif [ "$1" = env ]; then echo go1.26.8; exit 0; fi\n{lines}exit 1\n')
    (fake / "go").chmod(0o755)
    return run_tools(tmp_path, "etcd", path=f"{fake}:{os.environ['PATH']}")


def test_a_module_the_proxy_refuses_fails_in_one_line_naming_the_component(tmp_path: Path) -> None:
    result = build_with_failing_go(
        tmp_path,
        "go: downloading go.etcd.io/etcd/server/v3 v3.6.16",
        "go: go.etcd.io/etcd/server/v3@v3.6.16: reading https://proxy.golang.org/go.etcd.io/etcd/server/v3/@v/v3.6.16.zip: 403 Forbidden",
    )
    assert result.returncode == 1
    last = result.stderr.splitlines()[-1]
    assert last.startswith(
        "error: cluster-tools: etcd v3.6.16: the Go module proxy refused go.etcd.io/etcd/server/v3@v3.6.16 (403 Forbidden); "
        "pin a version it serves (go list -m -versions MODULE) in tools/cluster/etcd/go.mod (log: "
    )


def test_without_go_the_fix_is_named(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_tools(tmp_path, path=str(empty))
    assert result.returncode == 1
    assert result.stderr.startswith("error: cluster-tools: go: not found on PATH; install Go 1.26 or newer")


def test_kueue_listens_on_loopback_with_the_sims_certificate(tmp_path: Path) -> None:
    config = kueue.configuration(9443, 8081, 8443, tmp_path / "certs")
    assert config["health"]["healthProbeBindAddress"] == "127.0.0.1:8081" and config["metrics"]["bindAddress"] == "127.0.0.1:8443"
    assert config["webhook"] == {"host": "127.0.0.1", "port": 9443, "certDir": str(tmp_path / "certs")}
    assert config["internalCertManagement"] == {"enable": False} and config["leaderElection"] == {"leaderElect": False}
    argv = kueue.argv(tmp_path / "kueue", tmp_path / "kueue.yaml", tmp_path / "admin.kubeconfig", tmp_path / "etc")
    # its own mount namespace, where the sim's folder is the /etc it reads the metrics certificate from
    assert argv[:4] == ["unshare", "--user", "--map-root-user", "--mount"] and argv[7] == str(tmp_path / "etc")
    assert argv[8:] == [str(tmp_path / "kueue"), "--config", str(tmp_path / "kueue.yaml"), "--kubeconfig", str(tmp_path / "admin.kubeconfig"),
                        "--feature-gates", "VisibilityOnDemand=false"]


def test_kueue_webhooks_call_the_manager_by_url_for_its_objects_and_jobs_only() -> None:
    manifests = [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration", "metadata": {"name": "mutating-webhook-configuration"},
         "webhooks": [
             {"name": "mjob.kb.io", "clientConfig": {"service": {"name": "webhook-service", "namespace": "system", "path": "/mutate-batch-v1-job"}},
              "rules": [{"apiGroups": ["batch"], "resources": ["jobs"]}], "failurePolicy": "Fail"},
             {"name": "mpod.kb.io", "clientConfig": {"service": {"name": "webhook-service", "namespace": "system", "path": "/mutate--v1-pod"}},
              "rules": [{"apiGroups": [""], "resources": ["pods"]}], "failurePolicy": "Fail"},
         ]},
    ]
    [configuration] = kueue.webhook_configurations(manifests, "https://127.0.0.1:9443", "Q0E=")
    assert configuration["metadata"]["name"] == "kueue-mutating-webhook-configuration"
    assert configuration["webhooks"] == [{"name": "mjob.kb.io", "clientConfig": {"url": "https://127.0.0.1:9443/mutate-batch-v1-job", "caBundle": "Q0E="},
                                          "rules": [{"apiGroups": ["batch"], "resources": ["jobs"]}], "failurePolicy": "Fail"}]


def test_kueue_crds_the_platform_applies_come_from_the_same_vendored_files(tmp_path: Path) -> None:
    files = {path.name: path for path in kueue.crd_files(tmp_path / "kueue")}
    assert len(files) == len(tools.KUEUE_CRD_NAMES) == 11
    assert files["kueue.x-k8s.io_clusterqueues.yaml"].parent.name == "v0.19.2"   # what engines: crds-only applies
    assert files["workloads.yaml"] == tmp_path / tools.KUEUE_CRDS / "workloads.yaml"   # the rest from Kueue's module


def test_volcano_listens_on_loopback_and_runs_the_platforms_configuration(tmp_path: Path) -> None:
    scheduler = volcano.scheduler_argv(tmp_path / "vc-scheduler", tmp_path / "admin.kubeconfig", tmp_path / "volcano-scheduler.conf", 11251, 8080)
    manager = volcano.controller_manager_argv(tmp_path / "vc-controller-manager", tmp_path / "admin.kubeconfig", 11252, 8081)
    for argv in (scheduler, manager):
        assert argv[argv.index("--healthz-address") + 1].startswith("127.0.0.1:") and argv[argv.index("--listen-address") + 1].startswith("127.0.0.1:")
        assert "--leader-elect=false" in argv
    assert scheduler[scheduler.index("--scheduler-conf") + 1] == str(tmp_path / "volcano-scheduler.conf")
    assert "--disable-default-scheduler-config" in scheduler
    # PodGroups for plain pods, Volcano Jobs, Queue states, clean-up; nothing watching kinds the sim lacks
    assert manager[manager.index("--controllers") + 1] == "job-controller,pg-controller,queue-controller,gc-controller"


def test_volcano_crds_the_platform_applies_come_from_the_same_vendored_files(tmp_path: Path) -> None:
    files = {path.name: path for path in volcano.crd_files(tmp_path / "vc-scheduler")}
    assert len(files) == len(tools.VOLCANO_CRD_FILES) == 9
    assert files["scheduling.volcano.sh_queues.yaml"].parent.name == "v1.15.1"   # what engines: crds-only applies
    assert files["topology.volcano.sh_hypernodes.yaml"] == tmp_path / tools.VOLCANO_CRDS / "topology.volcano.sh_hypernodes.yaml"


def test_a_compile_error_is_the_line_reported_not_a_package_name(tmp_path: Path) -> None:
    result = build_with_failing_go(
        tmp_path,
        "github.com/pkg/errors",
        "# volcano.sh/volcano/pkg/scheduler/api",
        "/m/volcano.sh/volcano@v1.15.1/pkg/scheduler/api/helpers.go:145:57: undefined: schedulingv1beta1.QueueAllocationGateKey",
        "k8s.io/apimachinery/pkg/api/errors",
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(
        "error: cluster-tools: etcd v3.6.16: /m/volcano.sh/volcano@v1.15.1/pkg/scheduler/api/helpers.go:145:57: "
        "undefined: schedulingv1beta1.QueueAllocationGateKey; fix the module in tools/cluster/etcd/"
    )


def test_job_seconds_sets_how_long_kwok_runs_a_jobs_pod(tmp_path: Path) -> None:
    import yaml

    from platform_cli.sim.cluster import _kwok_config

    stages = tmp_path / "bin" / tools.KWOK_STAGES
    stages.mkdir(parents=True)
    (stages / "pod-complete.yaml").write_text("metadata: {name: pod-complete}\nspec: {delay: {durationMilliseconds: 1000, jitterDurationMilliseconds: 5000}}\n")
    (tmp_path / "logs").mkdir()
    for seconds, expected in ((None, (45000, 60000)), (600, (600000, 600000))):
        _kwok_config(tmp_path, tmp_path / "bin" / "kwok", seconds)
        stage = next(yaml.safe_load_all((tmp_path / "kwok.yaml").read_text()))
        assert (stage["spec"]["delay"]["durationMilliseconds"], stage["spec"]["delay"]["jitterDurationMilliseconds"]) == expected
