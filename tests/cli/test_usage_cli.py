"""`plinth usage` over real local jobs: what they asked for × how long they ran, at the stack's prices."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from platform_cli.main import app
from tests.conftest import write_job

SLEEP = "import time\ntime.sleep(1.0)\n"


def plinth(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def two_teams(project: Path) -> dict[str, str]:
    """A job of team feed (1 CPU, 2Gi) and one of team ads (2 CPUs, 4Gi), both run to the end."""
    jobs = {}
    for team, cpu, memory in (("feed", 1, "2Gi"), ("ads", 2, "4Gi")):
        path = write_job(project / "jobs", f"work-{team}", f"kind: python\nname: work-{team}\nscript: work-{team}.py\n"
                         f"resources: {{cpu: {cpu}, memory: {memory}}}\nlabels: {{team: {team}}}\n", script=SLEEP)
        result = plinth("job", "submit", "-f", str(path), "--wait")
        assert result.exit_code == 0, result.output
        jobs[team] = result.output.split()[0].removeprefix("job/")
    return jobs


def test_usage_per_team_and_job_from_local_records(two_teams: dict[str, str]) -> None:
    result = plinth("usage", "-o", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    jobs = {job["job"]: job for job in report["jobs"]}
    assert set(jobs) == set(two_teams.values())
    ads, feed = jobs[two_teams["ads"]], jobs[two_teams["feed"]]
    assert (ads["team"], ads["cpu"], ads["memory_gib"], ads["gpu"]) == ("ads", 2.0, 4.0, 0)
    assert 0.9 / 3600 < feed["hours"] < 30 / 3600  # a one-second script, as its record timed it
    assert ads["cpu_hours"] == pytest.approx(2 * ads["hours"]) and ads["memory_gib_hours"] == pytest.approx(4 * ads["hours"])
    # stacks/Pulumi.local.yaml: 0.02 USD per CPU-hour, 0.003 per GiB-hour
    assert ads["cost"] == pytest.approx(ads["cpu_hours"] * 0.02 + ads["memory_gib_hours"] * 0.003) and ads["currency"] == "USD"
    teams = {team["team"]: team for team in report["teams"]}
    assert set(teams) == {"ads", "feed"} and teams["ads"]["jobs"] == 1 and teams["ads"]["gpu_quota"] is None

    table = plinth("usage", "--team", "feed").output.splitlines()
    assert table[0].split() == ["TEAM", "STACK", "JOBS", "CPU-HOURS", "MEMORY", "GIB-HOURS", "GPU-HOURS", "GPU", "QUOTA", "GPU", "USE", "COST"]
    assert table[1].split()[:3] == ["feed", "local", "1"] and table[1].endswith("USD")
    assert any(line.startswith(two_teams["feed"]) for line in table) and not any(two_teams["ads"] in line for line in table)

    rows = list(csv.DictReader(io.StringIO(plinth("usage", "-o", "csv").output)))
    assert {row["job"] for row in rows} == set(two_teams.values())
    assert {row["team"] for row in rows} == {"ads", "feed"} and all(float(row["cost"]) > 0 for row in rows)


def test_since_and_team_narrow_the_report(two_teams: dict[str, str]) -> None:
    # Both jobs ran in the last minutes; a team without jobs has none.
    report = json.loads(plinth("usage", "--since", "30m", "-o", "json").output)
    assert len(report["jobs"]) == 2
    assert json.loads(plinth("usage", "--team", "nobody", "-o", "json").output)["jobs"] == []


def test_bad_input_is_one_line(project: Path) -> None:
    result = plinth("usage", "--since", "week")
    assert result.exit_code == 1 and result.output == "error: --since 'week': expected a period such as 30m, 12h, 7d or 2w\n"
    result = plinth("usage", "-s", "team-feed")  # no kubeconfig for the cluster here
    assert result.exit_code == 1 and result.output.startswith("error: cannot use kubeconfig context 'prod' for stack 'team-feed'")
    assert result.output.count("\n") == 1
