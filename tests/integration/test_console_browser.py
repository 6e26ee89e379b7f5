"""The console in a real browser: Debian's Chromium, headless, driven by Playwright, against
`plinth console` serving a throw-away project that holds real jobs, a real flow run, and two
tiny real models served through the gray-release router.

What a person would do and see: every page loads and shows the platform's state; a canary is
promoted, compared and rolled back from the model page, each action asking first and answering
with the core's own words (a refusal included); nothing on any page reveals a stack secret.
With PLINTH_REGENERATE=1 the screenshots are written to docs/img/console-*.png (the README's).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
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
    url = line.split()[2].rstrip("/")
    # The URL comes as soon as the console listens; its first answer, after the warm-up
    # (MLflow's import, the first reads), can take a minute on a busy machine.
    httpx.get(url + "/", timeout=300).raise_for_status()
    yield url
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


def test_a_canary_is_promoted_compared_and_rolled_back_from_the_browser(page, project, tmp_path):
    from playwright.sync_api import expect

    from platform_cli.evaluate import evaluate_version

    stack, registry, root = project["stack"], project["registry"], project["root"]
    dialogs = []

    def answer(dialog, accept=True):
        dialogs.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.on("dialog", answer)
    page.set_default_timeout(180_000)  # an action's page comes back once its model servers are up (busy machine: a minute)
    page.goto("/models/local/ctr")
    expect(page.locator("#versions tbody tr")).to_have_count(2)
    promote = page.locator("form[action$='/promote']")

    # The first version becomes production.
    promote.locator("select[name=version]").select_option("1")
    promote.get_by_role("button", name="Promote").click()
    expect(page.locator(".flash")).to_have_text(re.compile(r"model/ctr: version 1 is production .*traffic v1 100%"), timeout=120_000)
    assert dialogs[-1] == "Promote ctr: send traffic to the chosen version?"

    # Version 2 as a 10% canary, with traffic flowing through the router.
    promote = page.locator("form[action$='/promote']")
    promote.locator("select[name=version]").select_option("2")
    promote.locator("input[name=percent]").fill("10")
    promote.get_by_role("button", name="Promote").click()
    expect(page.locator(".flash")).to_have_text("model/ctr: version 2 is the canary with 10%; traffic v1 90%, v2 10%", timeout=120_000)
    expect(page.locator("#traffic")).to_have_text("v1 90%, v2 10%")
    assert registry.aliases("ctr") == {"production": 1, "canary": 2}
    client = Client(f"http://127.0.0.1:{stack.config.serving.port}/v1/models/ctr:predict")
    client.start()
    try:
        # Compare: the live table names each version's stage and counts its requests.
        table = page.locator("#compare-table tbody")
        expect(table.locator("tr[data-version='1']")).to_contain_text("production", timeout=30_000)
        expect(table.locator("tr[data-version='2']")).to_contain_text("canary")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            cells = table.locator("tr[data-version='2'] td").all_inner_texts()
            if len(cells) == 9 and int(cells[3]) >= 5:
                break
            page.wait_for_timeout(500)
        assert int(cells[3]) >= 5 and cells[4] == "0", cells  # the canary served requests, none failed
        assert float(table.locator("tr[data-version='2'] td").nth(8).inner_text()) > 0.6 > 0.3 > float(table.locator("tr[data-version='1'] td").nth(8).inner_text())
        page.wait_for_timeout(4500)  # a few more points on the charts
        assert page.evaluate("Chart.getChart('chart-latency').data.datasets.length") >= 2
        screenshot(page, "model", tmp_path)

        # A refusal reads as the CLI's: beyond canaryMax without approval.
        page.locator("form[action$='/rollout'] input[name=weight]").fill("50")
        page.locator("form[action$='/rollout']").get_by_role("button", name="Roll out", exact=True).click()
        expect(page.locator(".flash.error")).to_have_text("version 2 of ctr needs approval before it takes more than 10% of traffic; run plinth model approve ctr 2")
        expect(page.locator("#traffic")).to_have_text("v1 90%, v2 10%")

        # Declining the confirmation changes nothing.
        page.remove_listener("dialog", answer)
        page.once("dialog", lambda dialog: answer(dialog, accept=False))
        page.get_by_role("button", name="Roll back").click()
        page.wait_for_timeout(1000)
        expect(page.locator("#traffic")).to_have_text("v1 90%, v2 10%")
        assert dialogs[-1] == "Send all of ctr's traffic back to production (or the previous production version)?"

        page.on("dialog", answer)
        page.get_by_role("button", name="Roll back").click()
        expect(page.locator(".flash")).to_have_text("model/ctr: version 2 rolled back, version 1 has 100%; traffic v1 100%", timeout=60_000)
    finally:
        results = client.stop()
    assert results and {status for status, _ in results} == {200}  # no request failed through promote and rollback
    expect(page.locator("#traffic")).to_have_text("v1 100%")
    expect(page.locator("#history tbody tr").first).to_contain_text("rollback")
    assert registry.aliases("ctr") == {"production": 1}

    # The evaluation of version 2 against production (version 1), as the model page draws it.
    rows = np.random.default_rng(3)
    frame = pd.DataFrame({"user_id": [f"u{i}" for i in rows.integers(0, 40, 600)], "ad_id": [f"a{i}" for i in rows.integers(0, 40, 600)],
                          "price": rows.uniform(0, 9, 600), "clicked": (rows.random(600) < 0.3).astype(int)})
    frame.to_parquet(root / "holdout.parquet")
    result = evaluate_version(stack, "ctr", 2, str(root / "holdout.parquet"), [])
    assert result["production_version"] == 1
    page.goto("/models/local/ctr?version=2#evaluation")
    expect(page.locator("#evaluation h2")).to_have_text("Evaluation of v2")
    expect(page.locator("#evaluation")).to_contain_text("vs production v1")
    assert page.evaluate("Chart.getChart('chart-roc').data.datasets.map(d => d.label)")[:2] == [f"v2 AUC {result['auc']:.4f}", f"v1 (production) AUC {result['production_auc']:.4f}"]
    assert page.evaluate("Chart.getChart('chart-calibration').data.datasets.length") == 3
    no_secret(page)
