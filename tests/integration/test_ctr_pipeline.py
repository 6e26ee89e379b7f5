"""The CTR example end to end on the local platform, with the real frameworks.

generate (python) -> preprocess (Spark local[2], committed as sample table ctr) -> train
(horovodrun -np 2 --gloo, from ${samples.ctr@latest}) ->
register (MLflow registry) -> serve (KServe model server) -> predict, all through `plinth`.
The example job files are used unchanged; their default data size is the CI size.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from platform_cli.main import app
from tests.conftest import REPO

pytestmark = pytest.mark.integration

EXAMPLE = REPO / "examples" / "ctr"
MIN_AUC = 0.70  # the bar on the default data; the hidden model's own AUC is ~0.82


def plinth(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"plinth {' '.join(args)} failed:\n{result.output}"
    return result.output


def submit(job_file: Path) -> str:
    output = plinth("job", "submit", "-f", str(job_file), "--wait")
    return re.search(r"job/(\S+) submitted", output).group(1)


@pytest.fixture(scope="module")
def features_project(tmp_path_factory: pytest.TempPathFactory):
    """A project with the example data generated and preprocessed (shared by the tests here)."""
    root = tmp_path_factory.mktemp("ctr") / "project"
    root.mkdir()
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copytree(REPO / "stacks", root / "stacks")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PLINTH_PROJECT_DIR", str(root))
        patch.delenv("PLINTH_STACK", raising=False)
        submit(EXAMPLE / "generate.job.yaml")
        submit(EXAMPLE / "preprocess.job.yaml")
        yield root
        for server in json.loads(CliRunner().invoke(app, ["model", "servers", "-o", "json"]).output or "[]"):
            CliRunner().invoke(app, ["model", "stop", server["name"]])


def test_train_register_serve_predict(features_project: Path) -> None:
    storage = features_project / ".plinth" / "local" / "storage"
    samples = json.loads(plinth("data", "show", "ctr", "-o", "json"))
    assert (samples["version"], samples["rows"], samples["partition_by"], samples["attachments"]) == (0, 40000, ["split"], ["feature_spec.json"])
    spec = json.loads((storage / "samples" / "ctr" / samples["job"]["id"] / "feature_spec.json").read_text())
    assert len(spec["categorical"]) >= 5 and len(spec["numeric"]) >= 2

    job_id = submit(EXAMPLE / "train.job.yaml")
    log = plinth("job", "logs", job_id)
    assert "2 worker(s)" in log  # both Horovod ranks took part
    metrics = json.loads((storage / "jobs" / job_id / "outputs" / "metrics.json").read_text())
    assert metrics["auc"] >= MIN_AUC, metrics
    assert metrics["workers"] == 2

    registered = plinth("model", "register", "ctr", "--job", "ctr-train")
    assert f"model/ctr version 1 registered from job/{job_id}" in registered
    version = yaml.safe_load(plinth("model", "show", "ctr", "1"))
    assert version["lineage"]["job_id"] == job_id
    assert (version["lineage"]["samples"], version["lineage"]["samples_digest"]) == ("ctr@0", samples["digest"])
    assert version["metrics"]["auc"] == pytest.approx(metrics["auc"])

    plinth("model", "serve", "ctr", "--port", "18611")
    answer = json.loads(plinth("model", "predict", "ctr", "-d", f"@{EXAMPLE / 'request.json'}"))
    requested = json.loads((EXAMPLE / "request.json").read_text())["instances"]
    assert len(answer["predictions"]) == len(requested)
    assert all(0.0 < p < 1.0 for p in answer["predictions"])
    plinth("model", "stop", "ctr")


def test_killed_training_resumes_from_its_checkpoint(features_project: Path) -> None:
    # The example job with more epochs, so there is time to kill it between checkpoints.
    job = yaml.safe_load((EXAMPLE / "train.job.yaml").read_text())
    job["script"] = str(EXAMPLE / job["script"])
    job["args"][job["args"].index("--epochs") + 1] = "6"
    job_file = features_project / "train-long.job.yaml"
    job_file.write_text(yaml.safe_dump(job))

    job_id = re.search(r"job/(\S+) submitted", plinth("job", "submit", "-f", str(job_file))).group(1)
    checkpoint_dir = features_project / ".plinth" / "local" / "storage" / "jobs" / job_id / "checkpoints"
    deadline = time.monotonic() + 300
    while not (checkpoint_dir / "checkpoint").exists():  # CheckpointManager's index: epoch 1 is saved
        assert time.monotonic() < deadline, plinth("job", "logs", job_id)
        time.sleep(0.5)
    assert "cancelled" in plinth("job", "cancel", job_id)

    plinth("job", "restart", job_id, "--wait")
    attempts = plinth("job", "logs", job_id).split("attempt 2:")
    assert len(attempts) == 2, "the restart was not logged"
    resumed = re.search(r"resumed from checkpoint: epoch (\d+) of 6", attempts[1])
    assert resumed, attempts[1][-2000:]
    done_before_kill = int(resumed.group(1))
    assert 1 <= done_before_kill < 6
    # Attempt 2 trains only the remaining epochs, not the first one again.
    assert "epoch 1/6" not in attempts[1]
    assert "epoch 6/6" in attempts[1]
    status = json.loads(plinth("job", "status", job_id, "-o", "json"))
    assert (status["status"], status["attempt"]) == ("Succeeded", 2)
