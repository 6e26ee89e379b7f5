"""`plinth version` and `plinth --version`: what this Plinth is and what it renders for."""

from __future__ import annotations

import json
import platform
from importlib import metadata

from typer.testing import CliRunner

from platform_cli.main import app


def plinth(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_version_names_plinth_python_and_the_engines_it_renders_for() -> None:
    info = json.loads(plinth("version", "-o", "json"))
    assert info["plinth"] == metadata.version("plinth")
    assert info["python"] == {"version": platform.python_version(), "implementation": platform.python_implementation()}
    # one entry per vendored schema set, in the order the validator lists them, plus the image's Spark
    assert info["cluster_engines"] == {
        "kubernetes": "1.30.0",
        "volcano": "v1.15.1",
        "kueue": "v0.19.2",
        "spark-operator": "v2.5.2",
        "mpi-operator": "v0.8.0",
        "training-operator": "v1.9.0",
        "kserve": "v0.15.2",
        "argo-workflows": "v4.1.2",
        "spark (runtime image)": "4.3.0",
    }
    assert info["local_frameworks"]["pyspark"] == metadata.version("pyspark")
    assert info["local_frameworks"]["tensorflow"] == metadata.version("tensorflow")


def test_the_version_table_and_the_flag_say_the_same() -> None:
    table = plinth("version")
    assert table.splitlines()[0].split() == ["COMPONENT", "VERSION", "ROLE"]
    assert any(line.split()[:2] == ["plinth", metadata.version("plinth")] for line in table.splitlines())
    assert plinth("--version") == table
    assert plinth("version", "-o", "yaml").startswith(f"plinth: {metadata.version('plinth')}\n")
