"""The console in a real browser: Debian's Chromium, headless, driven by Playwright, against
`plinth console` serving a throw-away project that holds real jobs, a real flow run, and two
tiny real models served through the gray-release router.

What a person would do and see: every page loads and shows the platform's state; a canary is
promoted, compared and rolled back from the model page, each action asking first and answering
with the core's own words (a refusal included); nothing on any page reveals a stack secret.
With PLINTH_REGENERATE=1 the screenshots are written to docs/img/console-*.png (the README's).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from platform_cli.main import app
from tests.conftest import REPO, write_job
from tests.integration.test_flow_run import step, write_flow
from tests.integration.test_gray_release import Client, register_two_versions
from tests.integration.test_serving import _free_port

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CIPHERTEXT = "v1:Y29uc29sZS10ZXN0:bm90IGZvciBhbnkgcGFnZQ=="
WORK = """\
import sys, time
for i in range(5):
    print("epoch", i, "loss", round(1 / (i + 1), 3), flush=True)
    time.sleep(0.1)
if "--fail" in sys.argv:
    print("Traceback: ValueError: the input has no rows", flush=True)
    sys.exit(2)
"""


def plinth(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code in (0, 1), result.output
    return result.output


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Jobs of two teams (one failed), a finished two-node flow run, versions 1 and 2 of `ctr`,
    and a team stack whose file holds an encrypted secret."""
    root = tmp_path_factory.mktemp("console") / "project"
    root.mkdir()
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    (root / "stacks").mkdir()
    for name in ("platform-prod", "team-feed"):
        shutil.copy(REPO / "stacks" / f"Pulumi.{name}.yaml", root / "stacks" / f"Pulumi.{name}.yaml")
    with (root / "stacks" / "Pulumi.team-feed.yaml").open("a") as stack_file:
        stack_file.write(f"  plinth:imageRegistryPassword:\n    secure: {CIPHERTEXT}\n")
    (root / "stacks" / "Pulumi.local.yaml").write_text(yaml.safe_dump({"config": {
        "plinth:target": "local",
        "plinth:local": {"home": ".plinth/local", "prices": {"currency": "USD", "pricePerCpuHour": 0.02, "pricePerGiBHour": 0.003}},
        "plinth:serving": {"host": "127.0.0.1", "port": _free_port(), "grayRelease": {
            "requireApproval": True, "canaryMax": 10, "autoRollback": {"maxErrorRate": 0.2, "minRequests": 20}}},
    }}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PLINTH_PROJECT_DIR", str(root))
        patch.delenv("PLINTH_STACK", raising=False)
        from platform_cli.registry import ModelRegistry
        from platform_cli.spec.stack import load_stack

        jobs = {}
        for name, team, extra in (("ctr-features", "feed", ""), ("spam-train", "antispam", "args: ['--fail']\n")):
            path = write_job(root / "jobs", name, f"kind: python\nname: {name}\nscript: {name}.py\nresources: {{cpu: 2, memory: 4Gi}}\nlabels: {{team: {team}}}\n{extra}", script=WORK)
            jobs[name] = plinth("job", "submit", "-f", str(path), "--wait").split()[0].removeprefix("job/")
        flow = write_flow(root, {
            "prepare": {"steps": {"extract": step("extract", 0.2), "clean": {**step("clean", 0.2), "after": ["extract"]}}},
            "train": {"after": ["prepare"], "steps": {"fit": step("fit", 0.2), "check": step("check", 0.2)}},
        }, name="nightly")
        run = plinth("flow", "run", "-f", str(flow)).split()[0].removeprefix("flow/")

        stack = load_stack("local")
        registry = ModelRegistry(stack.tracking_uri, stack.artifact_root)
        register_two_versions(root, registry, lambda version: {"job_id": jobs["ctr-features"], "stack": "local", "code_revision": "0123456789ab"})
        yield {"root": root, "stack": stack, "registry": registry, "jobs": jobs, "run": run}
        CliRunner().invoke(app, ["model", "stop", "ctr"])


@pytest.fixture(scope="module")
def console(project):
    process = subprocess.Popen([sys.executable, "-m", "platform_cli", "console", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": str(REPO), "PLINTH_PROJECT_DIR": str(project["root"])})
    line = process.stdout.readline()
    assert line.startswith("console at http://127.0.0.1:"), line + process.stderr.read()
    yield line.split()[2].rstrip("/")
    process.terminate()
    process.wait(15)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: scripts/test installs it (apt-get install chromium)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, console):
    context = browser.new_context(viewport={"width": 1360, "height": 900}, base_url=console)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, errors  # no script failed on any page


def screenshot(page, name: str, tmp_path: Path) -> None:
    directory = REPO / "docs" / "img" if os.environ.get("PLINTH_REGENERATE") else tmp_path
    directory.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(directory / f"console-{name}.png"), full_page=False)
    assert (directory / f"console-{name}.png").stat().st_size > 10_000


def no_secret(page) -> None:
    assert CIPHERTEXT not in page.content() and "Y29uc29sZS10ZXN0" not in page.content()


def test_every_page_shows_the_platform(page, project, tmp_path):
    from playwright.sync_api import expect

    jobs, run = project["jobs"], project["run"]
    page.goto("/")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator(".alerts")).to_contain_text(f"job failed {jobs['spam-train']} (local)")
    expect(page.locator("#overview-runs").get_by_role("link", name=run)).to_be_visible()
    expect(page.locator("#overview-jobs")).to_contain_text(jobs["ctr-features"])
    expect(page.get_by_text("imageRegistryPassword (encrypted, not shown)")).to_be_visible()
    expect(page.locator(".notice").first).to_contain_text("stack team-feed: cannot use kubeconfig context 'prod'")
    no_secret(page)
    screenshot(page, "overview", tmp_path)

    page.goto("/jobs")
    expect(page.locator("#jobs tbody tr")).to_have_count(6)  # the two jobs and the flow's four steps
    page.select_option("select[name=status]", "Failed")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#jobs tbody tr")).to_have_count(1)
    expect(page.locator("#jobs tbody tr")).to_contain_text(jobs["spam-train"])
    page.select_option("select[name=status]", "")
    page.select_option("select[name=team]", "feed")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#jobs tbody tr")).to_have_count(1)
    no_secret(page)
    screenshot(page, "jobs", tmp_path)

    page.get_by_role("link", name=jobs["ctr-features"]).click()
    expect(page.get_by_role("heading", name=f"job/{jobs['ctr-features']} Succeeded")).to_be_visible()
    expect(page.locator("#log")).to_contain_text("epoch 4 loss 0.2")
    expect(page.locator("#attempts tbody tr")).to_have_count(1)
    expect(page.locator("#attempts tbody tr td").nth(3)).to_have_text("0")  # attempt 1's exit code
    expect(page.locator("#spec")).to_contain_text("kind: python")
    expect(page.locator("#rendered")).to_contain_text("kind: LocalLaunch")
    expect(page.get_by_role("button", name="Restart")).to_be_visible()  # finished: restart, not cancel
    screenshot(page, "job", tmp_path)

    page.goto("/flows")
    page.get_by_role("link", name=run).click()
    expect(page.get_by_role("heading", name=f"flow/{run} Succeeded")).to_be_visible()
    graph = page.locator("svg#dag")
    for name in ("prepare", "train", "extract", "clean", "fit", "check"):
        expect(graph).to_contain_text(name)
    expect(graph.locator("g.step.s-succeeded")).to_have_count(4)
    page.locator("tr[data-row='prepare/clean'] button").click()
    expect(page.locator("#step-log")).to_contain_text("running clean")
    expect(page.locator("#step-log-title")).to_have_text("Log of prepare/clean (Succeeded)")
    screenshot(page, "flow", tmp_path)

    page.goto("/usage?since=1d")
    teams = page.locator("#teams tbody")
    expect(teams).to_contain_text("feed")
    expect(teams).to_contain_text("antispam")
    expect(teams).to_contain_text("USD")
    expect(page.locator("#usage-jobs tbody tr")).to_have_count(6)
    assert page.evaluate("Chart.getChart('chart-cost').data.labels") == ["antispam", "feed", "local"]  # flow steps: no team label
    no_secret(page)
    screenshot(page, "usage", tmp_path)

    page.goto("/models")
    expect(page.locator("#models")).to_contain_text("ctr")
    no_secret(page)


def test_a_running_job_and_flow_update_in_place(page, project):
    from playwright.sync_api import expect

    root = project["root"]
    gate = root / "gate"
    # Runs until the test opens the gate, so the page is surely looked at while it runs.
    script = ("import os, sys, time\nprint('waiting for the gate', flush=True)\n"
              "while not os.path.exists(sys.argv[1]):\n    time.sleep(0.1)\nprint('report done', flush=True)\n")
    path = write_job(root / "jobs", "gated", f"kind: python\nname: gated\nscript: gated.py\nargs: [{str(gate)!r}]\n", script=script)
    job_id = plinth("job", "submit", "-f", str(path)).split()[0].removeprefix("job/")
    page.goto(f"/jobs/local/{job_id}")
    expect(page.locator("#log-state")).to_have_text("(following)")
    expect(page.locator("#log")).to_contain_text("waiting for the gate", timeout=60_000)
    gate.touch()
    expect(page.locator("#log")).to_contain_text("report done", timeout=60_000)  # the tail follows the job
    expect(page.locator("#log-state")).to_have_text("(Succeeded)")
    gate.unlink()

    (root / "flows").mkdir(exist_ok=True)
    (root / "flows" / "gated.py").write_text(script)
    gated = {"job": {"kind": "python", "name": "wait", "script": "gated.py", "args": [str(gate)]}}
    flow = write_flow(root, {"only": {"steps": {"wait": gated, "then": {**step("then", 0.1), "after": ["wait"]}}}}, name="live")
    run = plinth("flow", "run", "-f", str(flow), "--detach").split()[0].removeprefix("flow/")
    page.goto(f"/flows/local/{run}")
    expect(page.locator("svg#dag g[data-step='only/wait']")).to_have_class(re.compile(r"\bs-running\b"), timeout=60_000)
    expect(page.locator("tr[data-row='only/wait'] .cell-status")).to_have_text("Running")
    gate.touch()
    expect(page.locator("svg#dag g[data-step='only/then']")).to_have_class(re.compile(r"\bs-succeeded\b"), timeout=90_000)
    expect(page.get_by_role("heading", name=f"flow/{run} Succeeded")).to_be_visible()
