"""The anti-spam example end to end: generate and train as `python` jobs, register, promote
(behind its own router), and classify raw comments: the text features are the shared transform."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from platform_cli.main import app
from tests.conftest import REPO

pytestmark = pytest.mark.integration

EXAMPLE = REPO / "examples" / "antispam"


def plinth(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"plinth {' '.join(args)} failed:\n{result.output}"
    return result.output


def test_train_register_promote_classify(project):
    plinth("job", "submit", "-f", str(EXAMPLE / "generate.job.yaml"), "--wait")
    job = re.search(r"job/(\S+) submitted", plinth("job", "submit", "-f", str(EXAMPLE / "train.job.yaml"), "--wait")).group(1)
    assert "registered from job/" + job in plinth("model", "register", "antispam", "--job", "antispam-train")
    version = json.loads(plinth("model", "show", "antispam", "1", "-o", "json"))
    assert version["metrics"]["auc"] >= 0.9, version["metrics"]
    try:
        assert "version 1 is production" in plinth("model", "promote", "antispam", "1")
        spam, ham, plain = json.loads(plinth("model", "predict", "antispam", "-d", f"@{EXAMPLE / 'request.json'}"))["predictions"]
        assert spam > 0.5 > ham, (spam, ham)
        assert 0.0 < plain < 1.0  # null region, no links: missing values are handled
    finally:
        CliRunner().invoke(app, ["model", "stop", "antispam"])
