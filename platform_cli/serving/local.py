"""Local model servers: start, find, query and stop `platform_cli.serving.server` processes.

Each server runs detached in its own session (it outlives the CLI command that started it) and
is described by a record, <state_dir>/<model name>.json, so that later commands can find it.
The record keeps the process's creation time next to its pid: a pid alone may have been reused
by an unrelated process by the time `stop` runs, and that process must never be signalled.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import psutil
from pydantic import BaseModel

from platform_cli.errors import PlinthError

READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 10.0
PREDICT_TIMEOUT_S = 30.0
_POLL_INTERVAL_S = 0.25
_LOG_TAIL_LINES = 10
_PORT_KEY = "plinth:serving.port"
_MODEL_FILES = ("saved_model.pb", "feature_spec.json")


class ServerRecord(BaseModel):
    name: str
    version: int
    pid: int
    # psutil's creation time of pid; tells our server apart from a later process with its pid.
    pid_created: float
    port: int
    url: str
    started: datetime
    log_path: Path
    # Computed when records are read back, never stored.
    status: Literal["live", "dead"] = "live"


def start(
    name: str,
    version: int,
    model_dir: Path,
    host: str,
    port: int,
    state_dir: Path,
    log_path: Path,
    ready_timeout: float = READY_TIMEOUT_S,
) -> ServerRecord:
    """Start a server for one model version and return once it answers as ready."""
    state_dir, log_path, model_dir = Path(state_dir), Path(log_path), Path(model_dir).resolve()
    _check_model_dir(model_dir)
    _refuse_if_running(name, state_dir)
    _refuse_if_port_busy(port)
    process = _spawn(name, version, model_dir, port, log_path)
    record = ServerRecord(
        name=name,
        version=version,
        pid=process.pid,
        pid_created=psutil.Process(process.pid).create_time(),
        port=port,
        url=f"http://{host}:{port}",
        started=datetime.now(timezone.utc),
        log_path=log_path,
    )
    _write_record(record, state_dir)
    try:
        _wait_ready(record, process, ready_timeout)
    except BaseException:  # including Ctrl-C during the wait: leave no half-started server
        _terminate(record)
        _record_path(name, state_dir).unlink(missing_ok=True)
        raise
    return record


def stop(name: str, state_dir: Path) -> ServerRecord:
    """Stop the server of model name (if still alive) and forget it; returns its last record."""
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


def _spawn(name: str, version: int, model_dir: Path, port: int, log_path: Path) -> subprocess.Popen:
    argv = [
        sys.executable, "-m", "platform_cli.serving.server",
        "--model-name", name,
        "--model-dir", str(model_dir),
        "--http-port", str(port),
        "--version", str(version),
    ]
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
    with record.log_path.open(errors="replace") as log:
        tail = "".join(deque(log, maxlen=_LOG_TAIL_LINES)).rstrip()
    return PlinthError(
        f"model server '{record.name}' version {record.version} {what}; last log lines:\n{tail}",
        fix=f"full log: {record.log_path}",
    )


def _terminate(record: ServerRecord) -> None:
    """SIGTERM the server's process group, SIGKILL it if it has not exited in time."""
    process = _process(record)
    if process is None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(record.pid, sig)  # the server leads its own session, so pgid == pid
            process.wait(STOP_TIMEOUT_S)  # also reaps it when we are its parent
            return
        except ProcessLookupError:
            return
        except psutil.TimeoutExpired:
            continue


def _process(record: ServerRecord) -> psutil.Process | None:
    """The record's server process if it still runs, None if it exited (or the pid was reused)."""
    try:
        process = psutil.Process(record.pid)
        if process.create_time() != record.pid_created or process.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.NoSuchProcess:
        return None
    return process


def _alive(record: ServerRecord) -> bool:
    return _process(record) is not None


def _check_model_dir(model_dir: Path) -> None:
    # Fail in milliseconds rather than after the server's ~15 s of TensorFlow import.
    missing = [f for f in _MODEL_FILES if not (model_dir / f).exists()]
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


def _refuse_if_port_busy(port: int) -> None:
    # Probe exactly as the server will bind (all interfaces, SO_REUSEADDR like uvicorn), so a
    # port still in TIME_WAIT from a stopped server is not reported busy.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError as e:
            raise PlinthError(
                f"port {port} is already in use ({e.strerror})",
                fix=f"stop what listens there, or set another port in the stack with {_PORT_KEY}",
            ) from e


def _write_record(record: ServerRecord, state_dir: Path) -> None:
    # Write-then-rename so a concurrent `list`/`stop` never reads half a record.
    state_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=f".{record.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(record.model_dump_json(exclude={"status"}, indent=2))
    os.replace(tmp, _record_path(record.name, state_dir))


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
    body = error.read().decode("utf-8", "replace")
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {error.code}: {body[:200]}"
