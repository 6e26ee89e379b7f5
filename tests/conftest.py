"""Shared fixtures: every test runs against a throw-away Plinth project.

`project` is a temporary directory shaped like the repository (Pulumi.yaml, stacks/, the
example job files) with PLINTH_PROJECT_DIR pointing at it, so job records, storage and the
model registry of a test never touch the developer's own .plinth/.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copytree(REPO / "stacks", root / "stacks")
    monkeypatch.setenv("PLINTH_PROJECT_DIR", str(root))
    monkeypatch.delenv("PLINTH_STACK", raising=False)
    return root


def local_project(root: Path, serving: dict) -> Path:
    """A throw-away project at root (created) whose only stack is local, with these serving
    settings (plinth:serving) and its home under .plinth/local."""
    import yaml

    root.mkdir(parents=True)
    (root / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    (root / "stacks").mkdir()
    (root / "stacks" / "Pulumi.local.yaml").write_text(yaml.safe_dump({"config": {
        "plinth:target": "local", "plinth:local": {"home": ".plinth/local"}, "plinth:serving": serving}}))
    return root


def write_job(directory: Path, name: str, text: str, script: str | None = None) -> Path:
    """Write a job spec (and optionally its script) into directory; returns the spec path."""
    directory.mkdir(parents=True, exist_ok=True)
    if script is not None:
        (directory / f"{name}.py").write_text(script)
    path = directory / f"{name}.job.yaml"
    path.write_text(text)
    return path


def assert_matches_golden(golden: Path, text: str) -> None:
    """Compare rendered text with its committed golden file; PLINTH_REGENERATE=1 rewrites it
    (then review the diff)."""
    if os.environ.get("PLINTH_REGENERATE"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert golden.is_file(), f"no golden file {golden}; run with PLINTH_REGENERATE=1 and review the diff"
    assert text == golden.read_text()


@contextlib.contextmanager
def redis_server(directory: Path, password: str) -> Iterator[int]:
    """A real redis-server (Debian's, which scripts/test installs) on a free loopback port, with
    a password and no persistence; yields its port once it answers, stops it afterwards."""
    import redis

    if shutil.which("redis-server") is None:
        pytest.fail("redis-server not found: scripts/test installs it (apt-get install redis-server)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--requirepass", password, "--save", "",
                                "--appendonly", "no", "--dir", str(directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, password=password)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        client.close()
        process.terminate()
        process.wait(10)
