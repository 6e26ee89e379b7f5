"""A simulated cluster on this machine: a real Kubernetes control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler) and KWOK, which fakes the nodes a platform stack's GPU
pools would have and moves pods through their lifecycle without running any container.

Everything listens on loopback only. The processes are detached and recorded (pid and start
time) in the sim's folder, so `plinth sim status` and `plinth sim down` work from any shell.
The kubeconfig gets one context, `plinth-sim`, with an administrator token.

What is real: the API server (validation, server-side apply, admission with ResourceQuota and
LimitRanger, RBAC and impersonation), etcd, the controllers (Job, namespace deletion, garbage
collection, service accounts) and the scheduler (resources, node selectors, taints). What is
simulated: nodes (KWOK keeps them Ready with the pool's labels, taints and nvidia.com/gpu
capacity) and pods, which never run a container: KWOK marks a scheduled pod Running, and a
Job's pod Succeeded 45-60 seconds later; other pods stay Running until deleted. The platform
stack's scheduler runs too: Kueue's controller manager (platform_cli/sim/kueue.py), or Volcano's
scheduler and controller manager (platform_cli/sim/volcano.py).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from platform_cli.errors import PlinthError
from platform_cli.sim import kueue, tools, volcano
from platform_cli.spec.stack import PLATFORM_NAMESPACE, MlflowConfig

CONTEXT = "plinth-sim"
ADMIN = "plinth-sim-admin"
# Pods get cluster IPs from here; nothing is ever sent to these addresses (no kubelet, no proxy).
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
FAKE_NODE = {"kwok.x-k8s.io/node": "fake"}
CPU_NODE_CAPACITY = {"cpu": "32", "memory": "128Gi", "pods": "110"}
# A GPU node's CPU and memory: enough for its GPUs' workers, as on the cloud instances pools use.
GPU_NODE_CAPACITY = {"cpu": "96", "memory": "768Gi", "pods": "110"}
ADMISSION_PLUGINS = (
    "NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultTolerationSeconds,Priority,"
    "DefaultStorageClass,PersistentVolumeClaimResize,RuntimeClass,MutatingAdmissionWebhook,"
    "ValidatingAdmissionPolicy,ValidatingAdmissionWebhook,ResourceQuota"
)
STARTUP_TIMEOUT = 90.0
MLFLOW_STARTUP_TIMEOUT = 300.0
SIM_VOLUMES = 4
SIM_VOLUME_SIZE = "2Ti"
JOB_POD_RUNS_MS = {"durationMilliseconds": 45000, "jitterDurationMilliseconds": 60000}


def sim_dir() -> Path:
    """The sim's folder (state, logs, etcd data): $PLINTH_SIM_DIR, else ~/.plinth/sim."""
    configured = os.environ.get("PLINTH_SIM_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".plinth" / "sim"


def kubeconfig_path() -> Path:
    """The kubeconfig the context goes into: the first file of $KUBECONFIG, else ~/.kube/config."""
    configured = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    return Path(configured).expanduser() if configured else Path.home() / ".kube" / "config"


# -- what to start (pure) ----------------------------------------------------------------------


def node_manifests(platform, nodes_per_pool: int | None, cpu_nodes: int) -> list[dict]:
    """Fake Node objects: each GPU pool's nodes (maxNodes of them, or `nodes_per_pool`) with the
    pool's labels, taints and nvidia.com/gpu capacity, plus `cpu_nodes` untainted CPU nodes."""
    nodes = []
    for pool in platform.gpu_pools:
        capacity = {**GPU_NODE_CAPACITY, "nvidia.com/gpu": str(pool.gpus_per_node)}
        taints = [taint.model_dump() for taint in pool.taints]
        for index in range(nodes_per_pool if nodes_per_pool is not None else pool.max_nodes):
            nodes.append(_node(f"{platform.cluster}-{pool.name}-{index}", pool.node_labels, taints, capacity))
    for index in range(cpu_nodes):
        nodes.append(_node(f"{platform.cluster}-cpu-{index}", {"plinth.dev/node-role": "cpu"}, [], CPU_NODE_CAPACITY))
    return nodes


def volume_manifests(folder: Path, count: int = SIM_VOLUMES) -> list[dict]:
    """Static PersistentVolumes for the platform's claims (the MLflow database, HDFS): the sim
    has no provisioner, and a claim without a storage class binds to any free volume that is
    large enough. No pod ever mounts one (KWOK runs no container)."""
    return [
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"sim-volume-{index}"},
         "spec": {"capacity": {"storage": SIM_VOLUME_SIZE}, "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Delete",
                  "hostPath": {"path": str(folder / "volumes" / str(index))}}}
        for index in range(count)
    ]


def _node(name: str, labels: dict[str, str], taints: list[dict], capacity: dict[str, str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {**FAKE_NODE, "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {**labels, "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "type": "kwok"},
        },
        "spec": {"taints": taints} if taints else {},
        "status": {"capacity": capacity, "allocatable": capacity, "nodeInfo": {"kubeletVersion": f"fake-{tools.KUBERNETES_VERSION}"}},
    }


@dataclass
class Ports:
    etcd: int
    etcd_peer: int
    apiserver: int
    kwok: int  # KWOK's kubelet API (pod logs), the nodes' kubelet endpoint


def commands(folder: Path, binaries: dict[str, Path], ports: Ports) -> dict[str, list[str]]:
    """The command line of each process, in start order."""
    pki, kubeconfig = folder / "pki", str(folder / "admin.kubeconfig")
    etcd_url = f"http://127.0.0.1:{ports.etcd}"
    peer_url = f"http://127.0.0.1:{ports.etcd_peer}"
    return {
        "etcd": [
            str(binaries["etcd"]), "--name", "sim", "--data-dir", str(folder / "etcd"),
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"sim={peer_url}",
            # A throwaway store: losing it on a crash costs nothing, and fsync would dominate.
            "--unsafe-no-fsync", "--quota-backend-bytes", str(4 << 30),
        ],
        "kube-apiserver": [
            str(binaries["kube-apiserver"]),
            "--etcd-servers", etcd_url,
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", str(ports.apiserver),
            "--cert-dir", str(pki),
            "--token-auth-file", str(folder / "tokens.csv"),
            "--authorization-mode", "Node,RBAC",
            "--enable-admission-plugins", ADMISSION_PLUGINS,
            "--service-account-issuer", "https://kubernetes.default.svc",
            "--service-account-key-file", str(pki / "service-account.key"),
            "--service-account-signing-key-file", str(pki / "service-account.key"),
            "--service-cluster-ip-range", SERVICE_CIDR,
            "--allow-privileged",
            "--kubelet-preferred-address-types", "InternalIP",
            # Loopback cannot be an Endpoints address; nothing inside the sim calls the API
            # through the kubernetes Service anyway.
            "--endpoint-reconciler-type", "none",
            "--profiling=false",
        ],
        "kube-controller-manager": [
            str(binaries["kube-controller-manager"]),
            "--kubeconfig", kubeconfig, "--authentication-kubeconfig", kubeconfig, "--authorization-kubeconfig", kubeconfig,
            "--bind-address", "127.0.0.1", "--secure-port", "0", "--leader-elect=false",
            "--service-account-private-key-file", str(pki / "service-account.key"),
            "--root-ca-file", str(pki / "apiserver.crt"),
            "--service-cluster-ip-range", SERVICE_CIDR,
            "--profiling=false",
        ],
        "kube-scheduler": [
            str(binaries["kube-scheduler"]),
            "--kubeconfig", kubeconfig, "--authentication-kubeconfig", kubeconfig, "--authorization-kubeconfig", kubeconfig,
            "--bind-address", "127.0.0.1", "--secure-port", "0", "--leader-elect=false", "--profiling=false",
        ],
        "kwok": [
            str(binaries["kwok"]),
            "--kubeconfig", kubeconfig,
            "--config", str(folder / "kwok.yaml"),
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector", "kwok.x-k8s.io/node=fake",
            "--node-ip", "127.0.0.1", "--cidr", POD_CIDR,
            "--node-lease-duration-seconds", "40",
            # The API server asks the nodes' kubelet endpoint for pod logs: KWOK answers there.
            "--server-address", f"127.0.0.1:{ports.kwok}", "--node-port", str(ports.kwok),
            "--tls-cert-file", str(pki / "kwok.crt"), "--tls-private-key-file", str(pki / "kwok.key"),
        ],
    }


# -- state -------------------------------------------------------------------------------------


@dataclass
class Process:
    name: str
    pid: int
    created: float
    log: str


@dataclass
class SimState:
    platform: str
    server: str
    context: str
    kubeconfig: str
    nodes: int
    gpus: int
    processes: list[Process]
    started: float
    mlflow: str | None = None   # URL of the MLflow server the platform's MLflow pods stand for

    @classmethod
    def read(cls, folder: Path) -> SimState | None:
        path = folder / "state.json"
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            return cls(**{**data, "processes": [Process(**p) for p in data["processes"]]})
        except (ValueError, TypeError, KeyError) as exc:
            raise PlinthError(f"{path}: not a readable sim record ({exc})", f"remove {folder} after checking nothing of it runs (ps)") from None

    def write(self, folder: Path) -> None:
        tmp = folder / "state.json.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(folder / "state.json")


@dataclass
class ProcessStatus:
    name: str
    pid: int
    running: bool
    log: str


@dataclass
class SimStatus:
    state: SimState
    processes: list[ProcessStatus]
    ready_nodes: int | None       # None when the API server does not answer
    version: str | None

    @property
    def healthy(self) -> bool:
        return all(p.running for p in self.processes) and self.ready_nodes is not None


# -- side effects ------------------------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all held open until every one is picked)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _binaries() -> dict[str, Path]:
    found = {}
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"):
        path = tools.find_binary(name)
        if path is None:
            raise PlinthError(f"{name} is not built", "run scripts/cluster-tools (it builds the simulated cluster's tools once, into a cache)")
        found[name] = path
    return found


def _service_account_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    path.chmod(0o600)


def _serving_cert(cert: Path, key_path: Path, name: str = "plinth-sim-kwok") -> None:
    """A self-signed certificate for 127.0.0.1: KWOK's kubelet API (the API server does not
    verify it) and Kueue's webhook server (the API server trusts it as the webhooks' caBundle)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key_path.chmod(0o600)


SIMULATED_LOG = (
    "plinth sim: this pod ran no container. KWOK, which plays the nodes of the simulated cluster,\n"
    "marked it Running once the scheduler had placed it; a Job's pod Succeeds 45-60 seconds later.\n"
)


def _kwok_config(folder: Path, kwok_binary: Path, job_seconds: int | None = None, mlflow_port: int | None = None) -> None:
    """KWOK's lifecycle stages (from its module, via scripts/cluster-tools), for every pod's
    log a file that says no container ran, and (`mlflow_port`) a port forward that answers
    for the platform's MLflow pods with the MLflow server this machine runs. `job_seconds`:
    how long a Job's pod runs (default 45-60 s)."""
    import yaml

    stages = []
    for path in sorted((kwok_binary.resolve().parent / tools.KWOK_STAGES).glob("*.yaml")):
        stage = yaml.safe_load(path.read_text())
        if stage["metadata"]["name"] == "pod-complete":
            # A Job's pod stays Running 45-60 s before it Succeeds (KWOK's default is 1-6 s),
            # so its Running phase is there to see and a job can be cancelled while it runs.
            runs = JOB_POD_RUNS_MS if job_seconds is None else {"durationMilliseconds": job_seconds * 1000, "jitterDurationMilliseconds": job_seconds * 1000}
            stage["spec"]["delay"].update(runs)
        stages.append(yaml.safe_dump(stage, sort_keys=False).strip())
    log = folder / "logs" / "simulated-container.log"
    # KWOK serves it as a container runtime would: CRI log lines (time, stream, tag, text).
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())
    log.write_text("".join(f"{stamp} stdout F {line}\n" for line in SIMULATED_LOG.splitlines()))
    logs = {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterLogs", "metadata": {"name": "simulated"},
            "spec": {"logs": [{"logsFile": str(log), "follow": False}]}}
    documents = [*stages, yaml.safe_dump(logs, sort_keys=False).strip()]
    if mlflow_port is not None:
        forward = {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterPortForward", "metadata": {"name": "mlflow"},
                   "spec": {"selector": {"matchNamespaces": [PLATFORM_NAMESPACE]},
                            "forwards": [{"ports": [MlflowConfig.port], "target": {"address": "127.0.0.1", "port": mlflow_port}}]}}
        documents.append(yaml.safe_dump(forward, sort_keys=False).strip())
    (folder / "kwok.yaml").write_text("\n---\n".join(documents) + "\n")


def mlflow_argv(folder: Path, port: int) -> list[str]:
    """The platform's MLflow server, run on this machine: its store a SQLite file of the sim."""
    import sys

    store = folder / "mlflow"
    return [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}", "--default-artifact-root", str(store / "artifacts"),
            "--no-serve-artifacts", "--workers", "1"]


def _spawn(name: str, argv: list[str], folder: Path) -> Process:
    from platform_cli.processes import created_at

    log = folder / "logs" / f"{name}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=folder)
    return Process(name, proc.pid, created_at(proc.pid), str(log))


def _wait(what: str, check, process: Process, timeout: float = STARTUP_TIMEOUT) -> None:
    from platform_cli.processes import running, tail_lines

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running(process.pid, process.created):
            last = (tail_lines(Path(process.log), 1) or ["(empty log)"])[-1].strip()
            raise PlinthError(f"{process.name} exited while starting: {last[:300]}", f"see {process.log}")
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet: connection refused, 5xx, ...
            pass
        time.sleep(0.3)
    raise PlinthError(f"{what}: not ready after {timeout:.0f} s", f"see {process.log}")


def _http_ok(url: str, token: str | None = None, ca: Path | None = None) -> bool:
    import ssl
    import urllib.request

    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    with urllib.request.urlopen(request, timeout=5, context=context) as response:
        return response.status == 200


def _write_kubeconfig(path: Path, server: str, ca: Path, token: str, context: str = CONTEXT, user: str = ADMIN) -> None:
    """Add (or replace) the sim's cluster, user and context in a kubeconfig, keeping the rest."""
    import base64

    import yaml

    config = (yaml.safe_load(path.read_text()) if path.is_file() else None) or {}
    config.setdefault("apiVersion", "v1")
    config.setdefault("kind", "Config")
    entries = {
        "clusters": {"name": context, "cluster": {"server": server, "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode()}},
        "users": {"name": user, "user": {"token": token}},
        "contexts": {"name": context, "context": {"cluster": context, "user": user}},
    }
    for section, entry in entries.items():
        config[section] = [item for item in config.get(section) or [] if item.get("name") != entry["name"]] + [entry]
    config.setdefault("current-context", context)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".plinth-tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)


def _remove_from_kubeconfig(path: Path, context: str = CONTEXT, user: str = ADMIN) -> None:
    import yaml

    if not path.is_file():
        return
    config = yaml.safe_load(path.read_text()) or {}
    for section, name in (("clusters", context), ("users", user), ("contexts", context)):
        config[section] = [item for item in config.get(section) or [] if item.get("name") != name]
    if config.get("current-context") == context:
        config.pop("current-context")
    tmp = path.with_name(path.name + ".plinth-tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)


def api_client(state: SimState):
    """A kubernetes ApiClient for the sim's context."""
    from kubernetes import config

    return config.new_client_from_config(config_file=state.kubeconfig, context=state.context)


def _live(state: SimState | None) -> bool:
    from platform_cli.processes import running

    return state is not None and any(running(p.pid, p.created) for p in state.processes)


def up(platform_stack: str, nodes_per_pool: int | None = None, cpu_nodes: int = 2, on_progress=lambda line: None,
       job_seconds: int | None = None) -> SimState:
    """Start the control plane and KWOK, then create the platform's fake nodes and wait until
    they are Ready. Refuses if a sim is already running."""
    from platform_cli.kube import ErrorContext, KubeClient
    from platform_cli.spec.stack import load_stack

    stack = load_stack(platform_stack)
    if stack.config.platform is None:
        raise PlinthError(f"stack {platform_stack} is a {stack.role} stack, not a platform stack", "pass --platform with a platform stack, e.g. platform-sim")
    if job_seconds is not None and job_seconds < 1:
        raise PlinthError(f"--job-seconds {job_seconds}: a Job's pod runs at least a second", "pass --job-seconds 1 or more")
    if nodes_per_pool is not None and nodes_per_pool < 1:
        raise PlinthError(f"--nodes {nodes_per_pool}: a pool needs at least one node", "pass --nodes 1 or more")
    folder = sim_dir()
    if _live(SimState.read(folder)):
        raise PlinthError(f"a simulated cluster is already running ({folder})", "plinth sim status shows it; plinth sim down stops it")
    binaries = _binaries()
    scheduler = stack.config.platform.scheduler
    kueue_binary = kueue.binary() if scheduler.kind == "kueue" else None
    volcano_binaries = volcano.binaries() if scheduler.kind == "volcano" else None
    nodes = node_manifests(stack.config.platform, nodes_per_pool, cpu_nodes)

    # A fresh folder each time: a stale etcd would bring back objects of an earlier sim.
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    (folder / "pki").mkdir(parents=True)
    (folder / "logs").mkdir()
    _service_account_key(folder / "pki" / "service-account.key")
    token = secrets.token_urlsafe(32)
    (folder / "tokens.csv").write_text(f'{token},{ADMIN},{ADMIN},"system:masters"\n')
    (folder / "tokens.csv").chmod(0o600)
    _serving_cert(folder / "pki" / "kwok.crt", folder / "pki" / "kwok.key")
    # The platform's MLflow pods are KWOK's; their port 5000 is this machine's MLflow server.
    mlflow_port = _free_ports(1)[0] if stack.config.platform.mlflow.server == "in-cluster" else None
    _kwok_config(folder, binaries["kwok"], job_seconds, mlflow_port)
    ports = Ports(*_free_ports(4))
    argv = commands(folder, binaries, ports)
    server = f"https://127.0.0.1:{ports.apiserver}"
    state = SimState(platform_stack, server, CONTEXT, str(kubeconfig_path()), len(nodes),
                     sum(int(n["status"]["capacity"].get("nvidia.com/gpu", 0)) for n in nodes), [], time.time())
    try:
        mlflow = None
        if mlflow_port is not None:
            # Started first and waited for last: it takes longest to start (imports).
            on_progress("starting mlflow")
            (folder / "mlflow").mkdir()
            mlflow = _spawn("mlflow", mlflow_argv(folder, mlflow_port), folder)
            state.processes.append(mlflow)
            state.mlflow = f"http://127.0.0.1:{mlflow_port}"
            state.write(folder)
        for name in argv:
            if name == "kube-controller-manager":
                # The controllers, scheduler and KWOK connect as the administrator.
                _write_kubeconfig(folder / "admin.kubeconfig", server, folder / "pki" / "apiserver.crt", token)
            on_progress(f"starting {name}")
            process = _spawn(name, argv[name], folder)
            state.processes.append(process)
            state.write(folder)
            if name == "etcd":
                _wait("etcd", lambda: _http_ok(f"http://127.0.0.1:{ports.etcd}/health"), process)
            elif name == "kube-apiserver":
                ca = folder / "pki" / "apiserver.crt"
                _wait("kube-apiserver", lambda: ca.is_file() and _http_ok(f"{server}/readyz", token, ca), process)
        _write_kubeconfig(kubeconfig_path(), server, folder / "pki" / "apiserver.crt", token)
        client = KubeClient(api_client(state), ErrorContext("plinth-sim"))
        on_progress(f"creating {len(nodes)} nodes")
        for node in nodes:
            client.create(node)
        for volume in volume_manifests(folder):
            client.create(volume)
        kwok = next(p for p in state.processes if p.name == "kwok")
        _wait(f"{len(nodes)} nodes Ready", lambda: _ready_nodes(client) >= len(nodes), kwok)
        # Pods need their namespace's default service account, which a controller creates.
        from platform_cli.kube import Resource

        manager = next(p for p in state.processes if p.name == "kube-controller-manager")
        _wait("the default service account", lambda: client.get(Resource("v1", "ServiceAccount"), "default", "default") is not None, manager)
        if kueue_binary is not None:
            _start_kueue(folder, kueue_binary, client, state, on_progress)
        if volcano_binaries is not None:
            _start_volcano(folder, volcano_binaries, scheduler, client, state, on_progress)
        if mlflow is not None:
            _wait("mlflow", lambda: _http_ok(f"http://127.0.0.1:{mlflow_port}/health"), mlflow, timeout=MLFLOW_STARTUP_TIMEOUT)
    except BaseException:
        stop(state)
        raise
    return state


def _start_kueue(folder: Path, binary: Path, client, state: SimState, on_progress) -> None:
    """Kueue's CRDs, its manager (webhook server on a certificate made here) and its webhooks."""
    import yaml

    on_progress("installing Kueue's CRDs")
    _install_crds(folder, kueue.crd_files(binary), client, "Kueue's CRDs")
    webhook_port, health_port, metrics_port = _free_ports(3)
    certs = folder / "pki" / "kueue"
    certs.mkdir()
    # controller-runtime's webhook server reads tls.crt and tls.key from its certDir; the
    # metrics server reads the same pair from the folder the manager sees as /etc (see kueue.argv).
    _serving_cert(certs / "tls.crt", certs / "tls.key", "plinth-sim-kueue")
    etc = folder / "kueue-etc"
    (etc / kueue.METRICS_CERTS).parent.mkdir(parents=True)
    (etc / kueue.METRICS_CERTS).symlink_to(certs)
    config = folder / "kueue.yaml"
    config.write_text(yaml.safe_dump(kueue.configuration(webhook_port, health_port, metrics_port, certs), sort_keys=False))
    on_progress("starting kueue")
    process = _spawn("kueue", kueue.argv(binary, config, folder / "admin.kubeconfig", etc), folder)
    state.processes.append(process)
    state.write(folder)
    _wait("kueue", lambda: _http_ok(f"http://127.0.0.1:{health_port}/readyz"), process)
    count = kueue.register_webhooks(binary, f"https://127.0.0.1:{webhook_port}", certs / "tls.crt", client)
    on_progress(f"registered {count} Kueue webhooks")


def _start_volcano(folder: Path, binaries: dict[str, Path], scheduler, client, state: SimState, on_progress) -> None:
    """Volcano's CRDs, then its controller manager and its scheduler running the platform's
    configuration."""
    from platform_cli.spec import volcano as volcano_spec

    on_progress("installing Volcano's CRDs")
    _install_crds(folder, volcano.crd_files(binaries["vc-scheduler"]), client, "Volcano's CRDs")
    config = folder / "volcano-scheduler.conf"
    config.write_text(volcano_spec.scheduler_configuration_text(scheduler))
    kubeconfig = folder / "admin.kubeconfig"
    scheduler_health, scheduler_metrics, manager_health, manager_metrics = _free_ports(4)
    starts = {
        "vc-controller-manager": (volcano.controller_manager_argv(binaries["vc-controller-manager"], kubeconfig, manager_health, manager_metrics), manager_health),
        "vc-scheduler": (volcano.scheduler_argv(binaries["vc-scheduler"], kubeconfig, config, scheduler_health, scheduler_metrics), scheduler_health),
    }
    for name, (argv, health) in starts.items():
        on_progress(f"starting {name}")
        process = _spawn(name, argv, folder)
        state.processes.append(process)
        state.write(folder)
        _wait(name, lambda port=health: _http_ok(f"http://127.0.0.1:{port}/healthz"), process)


def _install_crds(folder: Path, files: list[Path], client, what: str) -> None:
    """Apply CRD files and wait until the API server serves every one of them."""
    import yaml

    from platform_cli.kube import Resource

    names = []
    for path in files:
        crd = yaml.safe_load(path.read_text())
        client.apply(crd)
        names.append(crd["metadata"]["name"])
    crds = Resource("apiextensions.k8s.io/v1", "CustomResourceDefinition")

    def established(name: str) -> bool:
        crd = client.get(crds, None, name) or {}
        return any(c.get("type") == "Established" and c.get("status") == "True" for c in crd.get("status", {}).get("conditions") or [])

    deadline = time.monotonic() + 60
    while not all(established(name) for name in names):
        if time.monotonic() > deadline:
            raise PlinthError(f"{what} not established after 60 s", f"see {folder / 'logs' / 'kube-apiserver.log'}")
        time.sleep(0.3)


def _ready_nodes(client) -> int:
    from platform_cli.kube import Resource

    ready = 0
    for node in client.list(Resource("v1", "Node"), None):
        conditions = node.get("status", {}).get("conditions") or []
        ready += any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return ready


def status() -> SimStatus | None:
    """The recorded sim, its processes, and what the API server says (None if no sim was started)."""
    from platform_cli.kube import ErrorContext, KubeClient, Resource
    from platform_cli.processes import running

    state = SimState.read(sim_dir())
    if state is None:
        return None
    processes = [ProcessStatus(p.name, p.pid, running(p.pid, p.created), p.log) for p in state.processes]
    ready, version = None, None
    if all(p.running for p in processes):
        try:
            client = KubeClient(api_client(state), ErrorContext("plinth-sim"))
            ready = _ready_nodes(client)
            version = client.server_version()
        except PlinthError:
            pass
    return SimStatus(state, processes, ready, version)


def stop(state: SimState) -> list[str]:
    """Stop every process of the sim, newest first; returns the names of those that would not die."""
    from platform_cli.processes import running, terminate_tree

    stubborn = []
    for process in reversed(state.processes):
        if running(process.pid, process.created) and not terminate_tree(process.pid, process.pid, grace=10):
            stubborn.append(process.name)
    return stubborn


def down() -> SimState | None:
    """Stop the sim, remove its context from the kubeconfig and its folder (etcd data, keys, logs)."""
    import shutil

    folder = sim_dir()
    state = SimState.read(folder)
    if state is None:
        return None
    stubborn = stop(state)
    if stubborn:
        raise PlinthError(f"could not stop {', '.join(stubborn)} of the simulated cluster", f"see the pids in {folder / 'state.json'}")
    _remove_from_kubeconfig(Path(state.kubeconfig), state.context)
    shutil.rmtree(folder, ignore_errors=True)
    return state
