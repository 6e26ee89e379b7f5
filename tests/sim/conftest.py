"""End-to-end tests against a live simulated cluster (`plinth sim`): a real kube-apiserver, etcd,
controllers and scheduler, KWOK's fake nodes, and the real Pulumi CLI with its Kubernetes
provider, all built from their Go modules by scripts/cluster-tools.

`cluster_tools` runs scripts/cluster-tools once per session: it builds whatever is missing (a
cold build takes tens of minutes; later runs find the cache) and prints the bin folder. The
tests that leave the deployment as they found it share one cluster with platform-sim and
team-sim deployed (`deployed`, once per session); a test that destroys gets a cluster of its own
(`own_sim`). Each cluster has its own Pulumi file backend and a copy of the project's stack
files, so no test writes into the checkout.
Commands run as a user runs them: `plinth` and `pulumi` as subprocesses with the sim's
kubeconfig and the tools on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

PASSPHRASE = "plinth-sim"   # the sim stacks' secrets are encrypted with it (README)
STACKS = ("platform-sim", "team-sim")
# A module's tests include starting its cluster and deploying its stacks; the session's first
# may also build the cluster tools from cold (scripts/test builds them before pytest starts).
SIM_TIMEOUT = 3600


@pytest.fixture(scope="session")
def cluster_tools() -> Path:
    """The bin folder of the cluster tools (Kueue's manager included: platform-sim's scheduler is
    Kueue), built if missing."""
    return build_cluster_tools("kueue")


def build_cluster_tools(*optional: str) -> Path:
    """scripts/cluster-tools with these optional components: the bin folder, built if missing."""
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "cluster-tools"), *(f"--with={name}" for name in optional)], capture_output=True, text=True)
    assert result.returncode == 0, f"scripts/cluster-tools failed: {result.stderr.strip().splitlines()[-1:]}"
    return Path(result.stdout.strip().splitlines()[-1])


@dataclass
class Sim:
    root: Path          # everything of this cluster: project copy, kubeconfig, backend, sim folder
    project: Path       # Pulumi.yaml, stacks/ (copies), infra/ and platform_cli/ (links)
    env: dict[str, str]

    def run(self, *argv: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        result = subprocess.run(argv, cwd=self.project, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check:
            assert result.returncode == 0, f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result

    def plinth(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        return self.run(str(REPO / ".venv" / "bin" / "plinth"), *args, check=check, timeout=timeout)

    def pulumi(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        return self.run("pulumi", *args, "--non-interactive", check=check, timeout=timeout)

    def kube(self, as_group: str | None = None, as_user: str = "someone@example.com"):
        """The real Kubernetes client on the sim's context (impersonating a user of `as_group`)."""
        from kubernetes import config

        from platform_cli.kube import ErrorContext, KubeClient

        client = config.new_client_from_config(config_file=self.env["KUBECONFIG"], context="plinth-sim")
        if as_group is not None:
            client.set_default_header("Impersonate-User", as_user)
            client.set_default_header("Impersonate-Group", as_group)
        return KubeClient(client, ErrorContext("team-sim", "ranking", as_group))

    def stack_file(self, name: str) -> Path:
        return self.project / "stacks" / f"Pulumi.{name}.yaml"

    def edit_stack(self, name: str, change: Callable[[dict], None]) -> None:
        document = yaml.safe_load(self.stack_file(name).read_text())
        change(document["config"])
        self.stack_file(name).write_text(yaml.safe_dump(document, sort_keys=False))

    def up(self, *stacks: str) -> None:
        for name in stacks:
            self.pulumi("stack", "select", "--create", name)
            self.pulumi("up", "--yes", "--skip-preview", "-s", name)

    def destroy(self, *stacks: str) -> None:
        for name in stacks:
            self.pulumi("destroy", "--yes", "--skip-preview", "-s", name)

    def state(self, stack: str) -> dict:
        """The stack's checkpoint in the file backend, as Pulumi wrote it."""
        path = self.root / "state" / ".pulumi" / "stacks" / "plinth" / f"{stack}.json"
        return json.loads(path.read_text())


def sim_project(root: Path) -> Path:
    """A project folder for Pulumi and plinth: copied stack files (tests edit them), links to
    the program, the package and the virtual environment."""
    project = root / "project"
    project.mkdir(parents=True)
    shutil.copy(REPO / "Pulumi.yaml", project / "Pulumi.yaml")
    shutil.copytree(REPO / "stacks", project / "stacks")
    for name in ("infra", "platform_cli", ".venv"):
        (project / name).symlink_to(REPO / name)
    return project


def start_sim(root: Path, bin_dir: Path, nodes: int | None = None, platform: str = "platform-sim") -> Sim:
    project = sim_project(root)
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(bin_dir), str(REPO / ".venv" / "bin"), os.environ.get("PATH", "")]),
        "KUBECONFIG": str(root / "kubeconfig"),
        "PLINTH_SIM_DIR": str(root / "sim"),
        "PLINTH_PROJECT_DIR": str(project),
        "PULUMI_HOME": str(root / "pulumi-home"),
        "PULUMI_BACKEND_URL": f"file://{root / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        # The checkpoint (megabytes: the engines' CRDs) is written once at the end of an
        # operation instead of after every resource.
        "PULUMI_SKIP_CHECKPOINTS": "true",
    }
    env.pop("PLINTH_STACK", None)
    (root / "state").mkdir()
    sim = Sim(root, project, env)
    sim.plinth("sim", "up", "--platform", platform, *(["--nodes", str(nodes)] if nodes else []), timeout=300)
    return sim


def running_sim(bin_dir: Path, tmp_path_factory, platform: str = "platform-sim"):
    root = tmp_path_factory.mktemp("sim")
    started = start_sim(root, bin_dir, platform=platform)
    try:
        yield started
    finally:
        started.plinth("sim", "down", check=False)


@pytest.fixture(scope="session")
def deployed(cluster_tools: Path, tmp_path_factory) -> Sim:
    """A simulated cluster of platform-sim's pools with platform-sim and team-sim deployed by
    `pulumi up`, shared by the tests that leave it as they found it; stopped afterwards."""
    for sim in running_sim(cluster_tools, tmp_path_factory):
        sim.up(*STACKS)
        yield sim


@pytest.fixture(scope="module")
def own_sim(cluster_tools: Path, tmp_path_factory) -> Sim:
    """A simulated cluster for this module alone, nothing deployed; stopped afterwards."""
    yield from running_sim(cluster_tools, tmp_path_factory)


def wait_for(what: str, check: Callable[[], object], timeout: float = 120, interval: float = 0.5):
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
