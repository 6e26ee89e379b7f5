"""plinth data: register Parquet files as versions of a sample table, list tables and versions,
show one version, as a user types them."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from typer.testing import CliRunner

from platform_cli.main import app


def plinth(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"plinth {' '.join(args)} failed:\n{result.output}"
    return result.output


def parquet_dir(directory: Path, values: list[int]) -> Path:
    directory.mkdir(parents=True)
    pq.write_table(pa.table({"user": pa.array(values, pa.int64()), "clicked": pa.array([v % 2 == 0 for v in values])}), directory / "part-0.parquet")
    return directory


def test_register_then_list_versions_and_show_one(project: Path, tmp_path: Path) -> None:
    first = plinth("data", "register", "clicks", "--path", str(parquet_dir(tmp_path / "day1", [1, 2, 3])))
    assert first.startswith("samples/clicks version 0 registered: 3 rows, 1 files, sha256:")
    plinth("data", "register", "clicks", "--path", str(parquet_dir(tmp_path / "day2", [7, 8])))

    table = plinth("data", "ls").splitlines()
    assert table[0].split() == ["NAME", "VERSION", "ROWS", "FILES", "DIGEST", "JOB", "AGE"]
    assert table[1].split()[:4] == ["clicks", "1", "5", "2"]
    versions = json.loads(plinth("data", "versions", "clicks", "-o", "json"))
    assert [(v["version"], v["mode"], v["rows"]) for v in versions] == [(0, "create", 3), (1, "append", 5)]

    shown = yaml.safe_load(plinth("data", "show", "clicks@0"))
    assert shown["rows"] == 3 and shown["stats"]["user"] == {"min": 1, "max": 3, "nulls": 0}
    assert [c["name"] for c in shown["columns"]] == ["user", "clicked"]
    assert shown["digest"] == versions[0]["digest"] and shown["location"].endswith("/samples/clicks@v0")
    assert json.loads(plinth("data", "show", "clicks", "-o", "json"))["version"] == 1  # no version: the newest


def test_bad_input_is_one_line_naming_what_to_fix(project: Path, tmp_path: Path) -> None:
    cases = [
        (["data", "show", "nope@3"], "error: no sample table 'nope' at "),
        (["data", "versions", "nope"], "error: no sample table 'nope' at "),
        (["data", "register", "Bad Name", "--path", str(tmp_path)], "error: NAME: 'Bad Name' is not a sample table name"),
        (["data", "register", "clicks", "--path", str(tmp_path / "missing")], f"error: {tmp_path / 'missing'} does not exist"),
        (["data", "register", "clicks", "--path", str(tmp_path), "--mode", "merge"], "error: --mode: 'merge' is not a mode; use append or overwrite"),
        (["data", "show", "clicks@v2"], "error: 'clicks@v2' is not NAME@VERSION; write clicks@latest or clicks@N"),
    ]
    for argv, message in cases:
        result = CliRunner().invoke(app, argv)
        assert result.exit_code == 1, (argv, result.output)
        assert result.output.startswith(message) and result.output.count("\n") == 1, (argv, result.output)
    assert not (project / ".plinth" / "local" / "storage" / "samples" / "clicks").exists()  # nothing half-written
