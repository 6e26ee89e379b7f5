"""Processes Plinth starts and must find again later (jobs, their runners, model servers), and
the tails of their logs.

A pid alone is not an identity (the kernel reuses them), so every record keeps the process's
creation time next to its pid, and nothing is signalled unless both still match.
"""

from __future__ import annotations

import os
import signal
from contextlib import suppress
from pathlib import Path

import psutil


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
