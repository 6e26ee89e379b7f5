"""Processes Plinth starts and must find again later (jobs, their runners, model servers), and
the tails of their logs.

A pid alone is not an identity (the kernel reuses them), so every record keeps the process's
creation time next to its pid, and nothing is signalled unless both still match.
"""

from __future__ import annotations

import importlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from contextlib import suppress
from pathlib import Path

import psutil

# Detached runners forked from this process: reaped once they end, so a long-lived parent (a
# flow runner starting one job runner per step) does not collect zombies.
_forked: set[int] = set()


def created_at(pid: int) -> float:
    return psutil.Process(pid).create_time()


def running(pid: int | None, created: float | None) -> bool:
    """Is `pid` still the process that was started at `created` (and not a zombie)?"""
    if not pid:
        return False
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and (created is None or process.create_time() == created)
    except psutil.NoSuchProcess:
        return False


def terminate_tree(pid: int, pgid: int | None, grace: float) -> bool:
    """SIGTERM the process group and every descendant of `pid` (launchers such as horovodrun
    put workers in sessions of their own), SIGKILL what is left after `grace` seconds.
    Returns False if something survived even that (uninterruptible I/O)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        processes = []
    _signal_group(pgid, signal.SIGTERM)
    for process in processes:
        with suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=grace)
    if not alive:
        return True
    _signal_group(pgid, signal.SIGKILL)
    for process in alive:
        with suppress(psutil.NoSuchProcess):
            process.kill()
    _, alive = psutil.wait_procs(alive, timeout=grace)
    return all(p.status() == psutil.STATUS_ZOMBIE for p in alive if p.is_running())


def _signal_group(pgid: int | None, signum: int) -> None:
    if pgid:
        with suppress(ProcessLookupError):
            os.killpg(pgid, signum)


def read_tail(path: Path, count: int) -> tuple[list[str], int]:
    """The last `count` lines of a file and the byte offset they end at (where to follow from)."""
    if not path.exists():
        return [], 0
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - 64 * 1024))
        lines = handle.read(size).decode("utf-8", "replace").splitlines()
    return (lines[-count:] if count > 0 else []), size


def tail_lines(path: Path, count: int) -> list[str]:
    return read_tail(path, count)[0]


def _single_threaded() -> bool:
    """No thread but this one, counting threads native libraries started (Linux lists every
    thread of the process in /proc/self/task; elsewhere only Python's threads are known)."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return threading.active_count() == 1


def start_detached(runner: str, directory: Path, env: dict[str, str], log: Path, before_start: Callable[[int], None]) -> int:
    """Run `runner` ("module:function", called with `directory`) in a session of its own, detached
    from this process: it outlives this command and its terminal, and Ctrl-C here does not reach
    it. Its stdout goes nowhere and its stderr (and any traceback) to `log`. Returns its pid once
    `before_start(pid)` has run here; the runner waits for that, so whatever `before_start`
    records about it (its pid) is on disk before it does anything.

    A single-threaded parent forks: the runner starts warm, with everything already imported,
    in about a millisecond instead of a new interpreter's import time. A parent with threads
    (fork would copy locks other threads may hold), its own or a native library's (deltalake's
    tokio runtime refuses to run in a forked child), starts a new interpreter instead.
    """
    gate_read, gate_write = os.pipe()
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        if _single_threaded():
            module_name, _, function_name = runner.partition(":")
            function = getattr(importlib.import_module(module_name), function_name)  # imported before the fork, once per parent
            _reap_forked()
            pid = os.fork()
            if pid == 0:
                _run_forked(function, directory, env, log_fd, gate_read, gate_write)
            _forked.add(pid)
        else:
            pid = subprocess.Popen(
                [sys.executable, "-m", "platform_cli.processes", runner, str(directory), str(gate_read)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log_fd,
                pass_fds=(gate_read,),
                start_new_session=True,
                env={**os.environ, **env},
            ).pid
    finally:
        os.close(gate_read)
        os.close(log_fd)
    try:
        before_start(pid)
    except BaseException:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        raise
    finally:
        os.close(gate_write)  # the runner goes on
    return pid


def _run_forked(function: Callable[[Path], int | None], directory: Path, env: dict[str, str], log_fd: int, gate_read: int, gate_write: int) -> None:
    """The forked child: become a detached process, wait for the gate, run, and never return into
    the parent's code (os._exit, so no atexit handler or buffered output of the parent runs)."""
    code = 1
    try:
        os.close(gate_write)
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.dup2(log_fd, 2)
        # Inherited descriptors (a caller's pipes) must not stay open for the runner's lifetime.
        # They are pointed at /dev/null rather than closed, so a stale object of the parent that
        # closes its descriptor later cannot close a file the runner opened under that number.
        for fd in (int(name) for name in os.listdir("/proc/self/fd")):
            if fd > 2 and fd not in (gate_read, null):
                with suppress(OSError):
                    os.dup2(null, fd)
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        for signum, handler in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL), (signal.SIGHUP, signal.SIG_DFL), (signal.SIGCHLD, signal.SIG_DFL)):
            signal.signal(signum, handler)
        os.environ.update(env)
        os.read(gate_read, 1)
        os.close(gate_read)
        code = function(directory) or 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        with suppress(Exception):
            sys.stderr.flush()
        os._exit(code)


def _reap_forked() -> None:
    for pid in list(_forked):
        with suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == 0:
                continue
        _forked.discard(pid)


def wait_for_exit(processes: Iterable[tuple[int, float | None]], timeout: float) -> None:
    """Return when one of `processes` ((pid, creation time)) has ended, or after `timeout` seconds.
    Event-driven where the kernel offers it (a pidfd per process, Linux 5.3+): a caller learns of
    an end within a millisecond without polling its records in a tight loop."""
    fds = []
    try:
        for pid, created in processes:
            try:
                fd = os.pidfd_open(pid)
            except (AttributeError, OSError):
                if not running(pid, created):
                    return
                continue
            fds.append(fd)
            if not running(pid, created):  # checked after opening: the pidfd is that process
                return
        if not fds:
            time.sleep(min(timeout, 0.02))
            return
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        poller.poll(max(0, timeout) * 1000)
    finally:
        for fd in fds:
            os.close(fd)
        _reap_forked()


if __name__ == "__main__":  # `python -m platform_cli.processes MODULE:FUNCTION DIRECTORY GATE_FD`: start_detached's path for threaded parents
    _runner, _directory, _gate = sys.argv[1:]
    os.read(int(_gate), 1)
    _module, _, _function = _runner.partition(":")
    sys.exit(getattr(importlib.import_module(_module), _function)(Path(_directory)))
