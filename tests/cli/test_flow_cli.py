"""`plinth flow` and `plinth model evaluate` refusing bad input: one line, exit 1, nothing run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from platform_cli.main import app
from tests.conftest import REPO

FLOW = str(REPO / "examples" / "ctr" / "flow.yaml")


def plinth(*args: str):
    return CliRunner().invoke(app, list(args))


def one_line_error(result, text: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    assert text in result.output, result.output


def test_unknown_parameter_and_bad_param_syntax(project: Path) -> None:
    one_line_error(plinth("flow", "graph", "-f", FLOW, "-p", "epoch=3"), "unknown parameter 'epoch' given with -p")
    one_line_error(plinth("flow", "graph", "-f", FLOW, "-p", "epochs"), "-p 'epochs': expected NAME=VALUE")


def test_a_parameter_of_the_wrong_type_is_refused_before_any_step_runs(project: Path) -> None:
    one_line_error(plinth("flow", "run", "-f", FLOW, "-p", "rows=abc"), "params.rows: 'abc' is not an integer; parameter 'rows' is typed integer, e.g. -p rows=40000")
    assert not (project / ".plinth" / "local" / "flows").exists()  # no run was recorded, no step started
    assert not (project / ".plinth" / "local" / "jobs").exists()


def test_run_refuses_a_cluster_stack_and_render_a_local_one(project: Path) -> None:
    # One refusal per unsupported verb, worded by the target wherever it is refused.
    one_line_error(plinth("flow", "run", "-f", FLOW, "--stack", "team-feed"),
                   "flow run is not available on stack 'team-feed' (target kubernetes): flows on a cluster run on Argo Workflows; plinth flow submit -f FLOW --stack team-feed")
    one_line_error(plinth("flow", "render", "-f", FLOW), "flow submit is not available on stack 'local' (target local): Argo Workflows runs flows on a cluster")
    assert not (project / ".plinth" / "local" / "flows").exists()  # nothing was recorded


def test_unknown_run_lists_recent_runs(project: Path) -> None:
    one_line_error(plinth("flow", "status", "ctr-nope1"), "flow run 'ctr-nope1' not found on stack 'local'; recent runs: none")


def test_evaluate_checks_its_data_before_loading_anything(project: Path, tmp_path: Path) -> None:
    one_line_error(plinth("model", "evaluate", "ctr", "1", "--data", str(tmp_path / "nope")), "not found")
    pd.DataFrame({"device": ["ios"], "clicked": [1]}).to_parquet(tmp_path / "rows.parquet")
    one_line_error(plinth("model", "evaluate", "ctr", "1", "--data", str(tmp_path / "rows.parquet"), "--segment", "devise"), "segments: 'devise' is not a column of the data; columns: device, clicked")
