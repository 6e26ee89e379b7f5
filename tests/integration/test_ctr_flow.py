"""The CTR example flow end to end on a tiny dataset: generate -> Spark -> Horovod -> register
-> evaluate -> promote when better, with the real frameworks, through `plinth flow run`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from platform_cli.main import app
from tests.conftest import REPO

pytestmark = pytest.mark.integration

FLOW = REPO / "examples" / "ctr" / "flow.yaml"
MIN_AUC = 0.65  # 20k rows and 2 epochs (the default 40k rows and 4 epochs reach ~0.75)


def plinth(*args: str, ok: bool = True):
    result = CliRunner().invoke(app, list(args))
    if ok:
        assert result.exit_code == 0, f"plinth {' '.join(args)} failed:\n{result.output}"
    return result


@pytest.fixture
def served(project: Path):
    """The project, and whatever model servers the flow's promote step starts stopped after."""
    yield project
    CliRunner().invoke(app, ["model", "stop", "ctr"])


def test_the_example_flow_runs_end_to_end_and_evaluates_against_production(served: Path) -> None:
    result = plinth("flow", "run", "-f", str(FLOW), "-p", "rows=20000", "-p", "holdout_rows=4000", "-p", "epochs=2", ok=False)
    run = result.output.split()[0].removeprefix("flow/")
    record = json.loads(plinth("flow", "status", run, "-o", "json").output)
    steps = record["steps"]
    for key in ("data/generate", "features/preprocess", "train/train", "release/register", "release/evaluate"):
        assert steps[key]["status"] == "Succeeded", (key, steps[key]["message"], result.output)
    assert float(steps["train/train"]["outputs"]["auc"]) >= MIN_AUC
    assert steps["release/register"]["outputs"]["version"] == "1"
    evaluation = steps["release/evaluate"]["outputs"]
    # Nothing is in production yet, so the new version is better by definition.
    assert evaluation["better"] == "true" and evaluation["production_version"] == "none"
    report = Path(evaluation["report"])
    assert report.is_file() and (report.parent / "roc.png").is_file() and (report.parent / "calibration.png").is_file()
    assert "better by definition" in report.read_text()
    version = yaml.safe_load(plinth("model", "show", "ctr", "1").output)
    assert version["metrics"]["eval_auc"] == pytest.approx(float(evaluation["auc"]))
    assert version["lineage"]["job_id"] == steps["train/train"]["job_id"]
    # The preprocess step's output, committed as sample table ctr, is the version it trained on.
    samples = json.loads(plinth("data", "show", "ctr", "-o", "json").output)
    assert samples["job"]["id"] == steps["features/preprocess"]["job_id"]
    assert (version["lineage"]["samples"], version["lineage"]["samples_digest"]) == (f"ctr@{samples['version']}", samples["digest"])

    from platform_cli.spec.stack import load_stack

    stack = load_stack("local")
    # promote ran `plinth model promote ctr 1 --canary 10 -o json`: the first version promoted
    # becomes production, served behind the local traffic-split router
    assert steps["release/promote"]["status"] == "Succeeded", steps["release/promote"]["message"]
    assert steps["release/promote"]["outputs"] == {"model": "ctr", "version": "1"}
    assert record["status"] == "Succeeded"
    assert "production" in yaml.safe_load(plinth("model", "show", "ctr", "1").output)["aliases"]
    assert "ctr" in plinth("model", "servers").output

    # A second version against production: v2 is the same model registered again, so it
    # cannot beat production v1 on the same rows, and the report says so.
    plinth("model", "register", "ctr", "--job", steps["train/train"]["job_id"])
    holdout = f"{stack.storage_root}/ctr/holdout"
    compared = json.loads(plinth("model", "evaluate", "ctr", "2", "--data", holdout, "--segment", "device", "-o", "json").output)
    assert compared["production_version"] == 1
    assert compared["production_auc"] == pytest.approx(compared["auc"])
    assert compared["better"] is False and "not higher, so not better" in compared["reason"]
    assert set(compared["segments"]["device"]) == {"android", "ios", "web"}
    html = Path(compared["report"]).read_text()
    assert "v1 (production)" in html and html.count("data:image/png;base64,") == 3
