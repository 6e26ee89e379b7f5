"""Local model servers: start, find, query and stop `platform_cli.serving.server` processes.

Each server runs detached in its own session (it outlives the CLI command that started it) and
is described by a record, <state_dir>/<model name>.json, so that later commands can find it.
The record keeps the process's creation time next to its pid: a pid alone may have been reused
by an unrelated process by the time `stop` runs, and that process must never be signalled.

A server listens only on the stack's serving host (plinth:serving.host, loopback by default):
models are served without authentication.
"""

from __future__ import annotations

import errno
import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from platform_cli import processes
from platform_cli.atomic import write_text
from platform_cli.errors import PlinthError
from platform_cli.features import SPEC_FILE

if TYPE_CHECKING:
    from platform_cli.spec.stack import ServingConfig, Stack

READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 10.0
PREDICT_TIMEOUT_S = 30.0
_POLL_INTERVAL_S = 0.25
_PORT_KEY = "plinth:serving.port"
_HOST_KEY = "plinth:serving.host"
_MODEL_FILES = ("saved_model.pb", SPEC_FILE)
_DENSE_FILES = ("split.json", SPEC_FILE)  # a version's dense part for the parameter service
# A log line worth showing when a server fails: an ERROR level, an exception (ValueError: ...,
# Exception), an OS error ("[Errno 98] error while attempting to bind ..."). Matched after
# removing uvicorn's logger name "uvicorn.error", which is on every one of its INFO lines too.
_ERROR_LINE = re.compile(r"(error|exception)\b", re.IGNORECASE)
_UVICORN_LOGGER = "uvicorn.error"
# kserve's log prefix: "<date> <time>.<ms> <pid> <logger> <LEVEL>[:] [[<file>:<func>():<line>]] ".
_LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \d+ \S+ \w+:?\s+(\[\S+:\S+\(\):\d+\]\s+)?")
_MAX_LOG_LINE = 300


class ServerRecord(BaseModel):
    name: str
    version: int | None  # None: a traffic-split router, which serves several versions
    pid: int
    # psutil's creation time of pid; tells our server apart from a later process with its pid.
    pid_created: float
    port: int
    url: str
    started: datetime
    log_path: Path
    # Computed when records are read back, never stored.
    status: Literal["live", "dead"] = "live"


def state_dir(stack: Stack) -> Path:
    """Where a stack's server records and logs live: <local.home>/serving."""
    return stack.home / "serving"


def log_path(stack: Stack, name: str) -> Path:
    return state_dir(stack) / f"{name}.log"


def serve(
    stack: Stack,
    name: str,
    version: int,
    model_dir: Path,
    port: int | None = None,
    replace: bool = False,
    parameters: str | None = None,
) -> ServerRecord:
    """Serve one model version on the stack's serving host and wait until it is ready.

    port: default the stack's plinth:serving.port, or the first one above it that no live
    Plinth server holds. replace: stop this model's server first (else a live one is an error).
    parameters: a parameter store URL; model_dir is then the version's dense part.
    """
    if port is not None and not 0 < port < 65536:
        raise PlinthError(f"port {port} is not a TCP port", fix="choose one from 1024 to 65535")
    directory = state_dir(stack)
    _check_model_dir(Path(model_dir).resolve(), parameters)  # before stopping anything in its favour
    if replace and _record_path(name, directory).exists():
        stop(name, directory)
    chosen = port if port is not None else next_port(directory, stack.config.serving.port)
    return start(
        name, version, model_dir, stack.config.serving.host, chosen, directory, log_path(stack, name),
        settings=stack.config.serving, parameters=parameters,
    )


def start(
    name: str,
    version: int,
    model_dir: Path,
    host: str,
    port: int,
    state_dir: Path,
    log_path: Path,
    ready_timeout: float = READY_TIMEOUT_S,
    settings: ServingConfig | None = None,
    parameters: str | None = None,
    online_stores: str | None = None,
) -> ServerRecord:
    """Start a server for one model version on host:port and return once it answers as ready.

    settings: the stack's serving section, for the batching and worker settings (default: the
    server's own defaults). parameters: a parameter store URL (model_dir: the dense part);
    online_stores: where a model with online features fetches them."""
    model_dir = Path(model_dir).resolve()
    _check_model_dir(model_dir, parameters)
    argv = [
        sys.executable, "-m", "platform_cli.serving.server",
        "--model-name", name,
        "--model-dir", str(model_dir),
        "--host", host,
        "--http-port", str(port),
        "--version", str(version),
        *(settings.server_args() if settings is not None else []),
        *(["--parameters", parameters] if parameters is not None else []),
        *(["--online-stores", online_stores] if online_stores else []),
    ]
    return launch(name, version, argv, host, port, state_dir, log_path, ready_timeout)


def launch(
    name: str,
    version: int | None,
    argv: list[str],
    host: str,
    port: int,
    state_dir: Path,
    log_path: Path,
    ready_timeout: float = READY_TIMEOUT_S,
) -> ServerRecord:
    """Run argv (a server that answers GET /v1/models/<name> once ready) detached on host:port,
    record it under state_dir, and return once it is ready. On failure nothing is left running."""
    state_dir, log_path = Path(state_dir), Path(log_path)
    _refuse_if_running(name, state_dir)
    _refuse_if_port_busy(host, port)
    process = _spawn(argv, log_path)
    record = ServerRecord(
        name=name,
        version=version,
        pid=process.pid,
        pid_created=processes.created_at(process.pid),
        port=port,
        url=f"http://{_url_host(host)}:{port}",
        started=datetime.now(timezone.utc),
        log_path=log_path,
    )
    _write_record(record, state_dir)
    try:
        _wait_ready(record, process, ready_timeout)
    except BaseException as failure:  # including Ctrl-C during the wait: leave no half-started server
        try:
            _terminate(record)
        except PlinthError as stuck:  # the record stays, so that `stop` can try again
            raise stuck from failure
        _record_path(name, state_dir).unlink(missing_ok=True)
        raise
    return record


def stop(name: str, state_dir: Path) -> ServerRecord:
    """Stop the server of model name (if still alive) and forget it; returns its last record.

    A server that outlives SIGKILL is a PlinthError, and its record is kept.
    """
    record = _read_record(name, Path(state_dir))
    _terminate(record)
    _record_path(name, Path(state_dir)).unlink(missing_ok=True)
    return record.model_copy(update={"status": "dead"})


def list_servers(state_dir: Path) -> list[ServerRecord]:
    """Every recorded server, with status live or dead (crashed or killed outside the CLI)."""
    return [_with_status(_load(path)) for path in sorted(Path(state_dir).glob("*.json"))]


def find(state_dir: Path, name: str) -> ServerRecord:
    """The recorded server of model name, with its status; PlinthError if there is none."""
    return _with_status(_read_record(name, Path(state_dir)))


def next_port(state_dir: Path, preferred: int) -> int:
    """preferred, or the first port above it that no live Plinth server holds.

    Other programs' ports are not probed here: start() refuses a busy port with an error that
    says how to choose another, which beats silently serving somewhere unexpected.
    """
    taken = {r.port for r in list_servers(state_dir) if r.status == "live"}
    port = preferred
    while port in taken:
        port += 1
    return port


def predict(record: ServerRecord, payload: dict) -> dict:
    """POST a v1 request ({"instances": [...]}) to the server; its answer as a dict."""
    # urllib, not httpx: one request per CLI call, and httpx's import alone costs ~0.6 s.
    url = f"{record.url}/v1/models/{record.name}:predict"
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=PREDICT_TIMEOUT_S) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        if 400 <= e.code < 500:
            raise PlinthError(f"model server rejected the request: {_error_text(e)}") from None
        raise PlinthError(f"model server '{record.name}' failed: {_error_text(e)}", fix=f"see its log {record.log_path}") from None
    except (urllib.error.URLError, OSError) as e:
        raise PlinthError(
            f"model server '{record.name}' at {record.url} is not answering ({getattr(e, 'reason', e)})",
            fix=f"check its log {record.log_path}, or restart it",
        ) from None


def _spawn(argv: list[str], log_path: Path) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        # A new session: the server survives the CLI's exit and Ctrl-C, and stop() can signal
        # its whole process group.
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_ready(record: ServerRecord, process: subprocess.Popen, timeout: float) -> None:
    url = f"{record.url}/v1/models/{record.name}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise _start_failure(record, f"exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2.0) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass  # not listening yet: TensorFlow and the model are still loading
        time.sleep(_POLL_INTERVAL_S)
    raise _start_failure(record, f"was not ready after {timeout:.0f} s")


def _start_failure(record: ServerRecord, what: str) -> PlinthError:
    line = _telling_line(record.log_path)
    return PlinthError(
        f"model server '{record.name}'" + (f" version {record.version}" if record.version is not None else "")
        + f" {what}" + (f": {line}" if line else ""),
        fix=f"full log: {record.log_path}",
    )


# The log is appended across restarts; a failed start is explained by its last lines.
_TELLING_WINDOW = 200


def _telling_line(log_path: Path) -> str:
    """The log line that best says why a server failed, on one line: the last line that shows
    an error or exception, else the last non-empty line; '' if the log is empty."""
    lines = [line.strip() for line in processes.tail_lines(log_path, _TELLING_WINDOW) if line.strip()]
    if not lines:
        return ""
    errors = [line for line in lines if _ERROR_LINE.search(line.replace(_UVICORN_LOGGER, ""))]
    line = _LOG_PREFIX.sub("", (errors or lines)[-1])
    return line if len(line) <= _MAX_LOG_LINE else line[: _MAX_LOG_LINE - 3] + "..."


def _terminate(record: ServerRecord) -> None:
    """End the server's process group (it leads its own session, so pgid == pid).

    PlinthError if it is still alive after SIGKILL (e.g. stuck in uninterruptible I/O).
    """
    if not _alive(record):
        return
    if not processes.terminate_tree(record.pid, record.pid, STOP_TIMEOUT_S):
        raise PlinthError(
            f"model server '{record.name}' (pid {record.pid}) is still running after SIGKILL",
            fix=f"its record is kept; end the process yourself (kill -9 {record.pid}), then plinth model stop {record.name}",
        )


def _alive(record: ServerRecord) -> bool:
    return processes.running(record.pid, record.pid_created)


def _check_model_dir(model_dir: Path, parameters: str | None = None) -> None:
    # Fail in milliseconds rather than after the server's ~15 s of TensorFlow import.
    missing = [f for f in (_DENSE_FILES if parameters is not None else _MODEL_FILES) if not (model_dir / f).exists()]
    if missing:
        raise PlinthError(
            f"{model_dir} is not a trained model directory (no {', '.join(missing)})",
            fix="serve a registered model version or a training job's model output",
        )


def _refuse_if_running(name: str, state_dir: Path) -> None:
    path = _record_path(name, state_dir)
    if not path.exists():
        return
    record = _load(path)
    if _alive(record):
        raise PlinthError(
            f"model '{name}' is already served at {record.url} (version {record.version}, "
            f"pid {record.pid})",
            fix="stop it first",
        )


def _refuse_if_port_busy(host: str, port: int) -> None:
    """PlinthError unless the server will be able to listen on host:port.

    Probes exactly as the server binds (asyncio's create_server under uvicorn): every address
    host resolves to, SO_REUSEADDR, IPv6 sockets v6-only. So a port still in TIME_WAIT from a
    stopped server is not reported busy, and neither is one held on another address only.
    """
    try:
        addresses = {
            (family, address[:2])
            for family, _, _, _, address in socket.getaddrinfo(
                host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
            )
        }
    except socket.gaierror as e:
        raise PlinthError(
            f"serving host {host!r} does not resolve ({e.strerror})", fix=f"check {_HOST_KEY} in the stack"
        ) from None
    for family, address in sorted(addresses, key=str):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise PlinthError(
                        f"port {port} is already in use ({e.strerror})",
                        fix=f"stop what listens there, pass --port, or set another port in the stack with {_PORT_KEY}",
                    ) from None
                raise PlinthError(
                    f"cannot listen on {host} port {port} ({e.strerror})",
                    fix=f"{_HOST_KEY} must be an address of this machine, and the port at least 1024",
                ) from None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _write_record(record: ServerRecord, state_dir: Path) -> None:
    # Atomic, so a concurrent `list`/`stop` never reads half a record.
    state_dir.mkdir(parents=True, exist_ok=True)
    write_text(_record_path(record.name, state_dir), record.model_dump_json(exclude={"status"}, indent=2))


def _read_record(name: str, state_dir: Path) -> ServerRecord:
    path = _record_path(name, state_dir)
    if not path.exists():
        running = sorted(p.stem for p in state_dir.glob("*.json"))
        raise PlinthError(
            f"no local model server for '{name}'",
            fix="servers: " + ", ".join(running) if running else "no local servers are running",
        )
    return _load(path)


def _load(path: Path) -> ServerRecord:
    return ServerRecord.model_validate_json(path.read_text())


def _with_status(record: ServerRecord) -> ServerRecord:
    return record.model_copy(update={"status": "live" if _alive(record) else "dead"})


def _record_path(name: str, state_dir: Path) -> Path:
    return state_dir / f"{name}.json"


def _error_text(error: urllib.error.HTTPError) -> str:
    """The server's reason for an error response, on one line."""
    body = error.read().decode("utf-8", "replace")
    try:
        text = str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        text = f"HTTP {error.code}: {body[:200]}"
    return " ".join(text.split())
