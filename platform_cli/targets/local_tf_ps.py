"""TensorFlow parameter-server training on localhost: the local platform's stand-in for a TFJob.

    python -m platform_cli.targets.local_tf_ps --workers 2 --ps 1 [--ps-env NAME=VALUE] -- python train_ps.py ARGS

Starts the same command once per role - parameter servers, workers, and the chief - each with
TF_CONFIG naming the whole cluster on free localhost ports and its own task, as the training
operator does on Kubernetes; parameter servers also get each --ps-env (the tf-ps kind's
PARAMETER_SERVER_ENV, as the TFJob's PS pods do) unless this environment sets that name.
Parameter servers and workers are `tf.distribute.Server`s that never exit on their own; the
chief runs the ClusterCoordinator. When the chief exits, the servers are stopped (SIGTERM, then
SIGKILL after a grace period) and this process exits with the chief's exit code. A server that
dies while the chief runs fails the job at once: the coordinator would otherwise wait for it to
come back forever.

The chief's output is the job's log as is; servers' lines are prefixed with their role.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

GRACE_SECONDS = 10.0
_PR_SET_PDEATHSIG = 1


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out now; all held open together so they are distinct."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def cluster_spec(workers: int, parameter_servers: int, ports: list[int]) -> dict[str, list[str]]:
    addresses = [f"localhost:{port}" for port in ports]
    return {"chief": addresses[:1], "worker": addresses[1 : 1 + workers], "ps": addresses[1 + workers : 1 + workers + parameter_servers]}


def tf_config(cluster: dict[str, list[str]], task_type: str, index: int) -> str:
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


try:  # loaded here, not in the child between fork and exec
    _LIBC = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _LIBC = None


def _die_with_parent() -> None:
    # Processes must not outlive this launcher even if it is SIGKILLed (Linux only; elsewhere
    # the local target's process-tree termination still ends them on cancel).
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _relay(stream, prefix: bytes) -> None:
    out = sys.stdout.buffer
    for line in iter(stream.readline, b""):
        out.write(prefix + line)
        out.flush()


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + GRACE_SECONDS
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run(command: list[str], workers: int, parameter_servers: int, parameter_server_env: dict[str, str] | None = None) -> int:
    cluster = cluster_spec(workers, parameter_servers, free_ports(1 + workers + parameter_servers))
    print(f"[tf-ps] cluster: {json.dumps(cluster)}", flush=True)
    servers: list[tuple[str, subprocess.Popen]] = []
    relays = []
    chief = None

    def forward_term(signum, frame):  # cancel: stop everything, report as the signal
        stop([p for _, p in servers] + ([chief] if chief else []))
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, forward_term)
    try:
        # Every process is started before any relay thread: forking while threads hold locks
        # is how children deadlock.
        for task_type in ("ps", "worker"):
            role_env = (parameter_server_env or {}) if task_type == "ps" else {}
            for index in range(len(cluster[task_type])):
                process = subprocess.Popen(
                    command,
                    env={**role_env, **os.environ, "TF_CONFIG": tf_config(cluster, task_type, index)},
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent,
                )
                servers.append((f"{task_type} {index}", process))
        chief = subprocess.Popen(command, env={**os.environ, "TF_CONFIG": tf_config(cluster, "chief", 0)}, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        for name, process in servers:
            relay = threading.Thread(target=_relay, args=(process.stdout, f"[{name}] ".encode()), daemon=True)
            relay.start()
            relays.append(relay)
        while (code := chief.poll()) is None:
            dead = next(((name, p.returncode) for name, p in servers if p.poll() is not None), None)
            if dead:
                print(f"[tf-ps] {dead[0]} exited with code {dead[1]} while the chief was running; stopping the job", flush=True)
                stop([chief])
                return 1
            time.sleep(0.2)
        print(f"[tf-ps] chief exited with code {code}; stopping {len(servers)} server(s)", flush=True)
        return code
    finally:
        stop([p for _, p in servers] + ([chief] if chief else []))
        for relay in relays:
            relay.join(timeout=2)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        print("usage: python -m platform_cli.targets.local_tf_ps --workers N --ps M -- COMMAND...", file=sys.stderr)
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="local_tf_ps")
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--ps", type=int, required=True)
    parser.add_argument("--ps-env", action="append", default=[], metavar="NAME=VALUE", help="environment for parameter servers only")
    options = parser.parse_args(argv[:split])
    command = argv[split + 1 :]
    if not command or options.workers < 1 or options.ps < 1:
        parser.error("need at least one worker, one parameter server and a command")
    if any("=" not in pair for pair in options.ps_env):
        parser.error("--ps-env takes NAME=VALUE")
    return run(command, options.workers, options.ps, dict(pair.split("=", 1) for pair in options.ps_env))


if __name__ == "__main__":
    sys.exit(main())
