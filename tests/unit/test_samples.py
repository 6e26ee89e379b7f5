"""The sample library's tables: versions, statistics, content digests, reading an old version,
and how job specs refer to versions (real Delta tables through delta-rs, in a temporary directory)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from platform_cli.errors import PlinthError
from platform_cli.render.job import render_job, render_submission
from platform_cli.samples import table_location
from platform_cli.samples.table import commit_version, describe, list_tables, open_version, versions
from platform_cli.spec.job import load_job
from platform_cli.spec.stack import load_stack
from tests.conftest import write_job


def write_split_dir(directory: Path, rows: int, start: int, spec: str = '{"buckets": 10}') -> None:
    """A preprocess-style version: train/ and eval/ Parquet, with a feature spec beside them."""
    for offset, split in enumerate(("train", "eval")):
        (directory / split).mkdir(parents=True, exist_ok=True)
        values = [start + offset * rows + i for i in range(rows)]
        pq.write_table(pa.table({"x": pa.array(values, pa.int64()), "label": pa.array([float(v % 2) for v in values], pa.float32())}),
                       directory / split / "part-00000.parquet")
    (directory / "_SUCCESS").touch()  # Spark's marker: not part of a version
    (directory / "feature_spec.json").write_text(spec)


def test_each_commit_is_the_next_version_with_its_rows_statistics_job_and_digest(tmp_path: Path) -> None:
    table = str(tmp_path / "samples" / "ctr")
    write_split_dir(Path(table) / "job-a", rows=5, start=0)
    first = commit_version(table, f"{table}/job-a", mode="overwrite", partition_by="split", job={"id": "job-a"})
    write_split_dir(Path(table) / "job-b", rows=7, start=100)
    second = commit_version(table, f"{table}/job-b", mode="append", partition_by="split", job={"id": "job-b"})

    assert [(v.version, v.mode, v.rows, v.files, v.job.get("id")) for v in versions(table)] == [(0, "create", 10, 2, "job-a"), (1, "append", 24, 4, "job-b")]
    assert first.stats["x"].model_dump() == {"min": 0, "max": 9, "nulls": 0}
    assert second.stats["x"].model_dump() == {"min": 0, "max": 113, "nulls": 0}
    assert [(c.name, c.type) for c in second.columns] == [("x", "int64"), ("label", "float"), ("split", "string")]
    assert first.digest.startswith("sha256:") and first.digest != second.digest
    assert second.attachments == ["feature_spec.json"]
    assert list_tables(str(tmp_path)) == ["ctr"]
    # A plain Delta table with the minimal protocol: any Delta reader (delta-spark too) reads it.
    delta = DeltaTable(table, version=0)
    assert (delta.protocol().min_reader_version, delta.protocol().min_writer_version) == (1, 2)
    assert delta.to_pyarrow_table().num_rows == 10
    assert DeltaTable(table).to_pyarrow_table().num_rows == 24


def test_the_digest_is_over_content_not_file_names_or_times(tmp_path: Path) -> None:
    write_split_dir(tmp_path / "one" / "written-first", rows=4, start=0)
    write_split_dir(tmp_path / "two" / "written-later-elsewhere", rows=4, start=0)
    write_split_dir(tmp_path / "three" / "other-rows", rows=4, start=1)
    digests = [commit_version(str(tmp_path / name), str(tmp_path / name / sub), partition_by="split").digest
               for name, sub in (("one", "written-first"), ("two", "written-later-elsewhere"), ("three", "other-rows"))]
    assert digests[0] == digests[1] != digests[2]


def test_an_old_version_reads_the_same_after_later_versions(tmp_path: Path) -> None:
    table = str(tmp_path / "ctr")
    write_split_dir(Path(table) / "v0", rows=5, start=0, spec='{"first": true}')
    pinned = commit_version(table, f"{table}/v0", mode="overwrite", partition_by="split")
    before = open_version(pinned.location).read(split="train")
    for n in (1, 2):
        write_split_dir(Path(table) / f"v{n}", rows=3, start=50 * n, spec=f'{{"n": {n}}}')
        commit_version(table, f"{table}/v{n}", mode="overwrite", partition_by="split")

    again = open_version(f"{table}@v0")
    assert again.info.digest == pinned.digest and again.info.rows == 10
    assert again.read(split="train").equals(before)
    assert again.read_attachment("feature_spec.json") == b'{"first": true}'
    latest = open_version(f"{table}@latest")
    assert (latest.info.version, latest.info.rows, latest.read_attachment("feature_spec.json")) == (2, 6, b'{"n": 2}')


def test_a_file_changed_after_its_commit_is_refused_when_read(tmp_path: Path) -> None:
    table = str(tmp_path / "ctr")
    write_split_dir(Path(table) / "v0", rows=5, start=0)
    commit_version(table, f"{table}/v0", partition_by="split")
    write_split_dir(Path(table) / "v0", rows=5, start=1)  # rewritten in place, outside the library
    with pytest.raises(PlinthError, match="is not what was committed"):
        open_version(f"{table}@v0").read(split="train")


def test_a_version_that_does_not_exist_names_the_versions_there_are(tmp_path: Path) -> None:
    table = str(tmp_path / "ctr")
    write_split_dir(Path(table) / "v0", rows=2, start=0)
    commit_version(table, f"{table}/v0", partition_by="split")
    with pytest.raises(PlinthError, match=r"has no version 99 \(versions 0 to 0\)"):
        describe(table, 99)


def test_files_in_a_subdirectory_need_a_partition_column(tmp_path: Path) -> None:
    write_split_dir(tmp_path / "ctr" / "v0", rows=2, start=0)
    with pytest.raises(PlinthError, match="is in a subdirectory; declare output.partitionBy"):
        commit_version(str(tmp_path / "ctr"), str(tmp_path / "ctr" / "v0"))
    assert not (tmp_path / "ctr" / "_delta_log").exists()  # nothing committed


READER = """kind: python
name: fit
script: fit.py
args: [--samples, "${samples.ctr@latest}", --pinned, "${samples.ctr@0}"]
"""


def test_submission_pins_latest_and_a_preview_render_leaves_it_to_the_job(project: Path) -> None:
    stack = load_stack("local")
    table = table_location(stack.storage_root, "ctr")
    for n in (0, 1):
        write_split_dir(Path(table) / f"v{n}", rows=3, start=10 * n)
        commit_version(table, f"{table}/v{n}", mode="overwrite", partition_by="split")
    job = load_job(write_job(project / "jobs", "fit", READER, script="print('fit')\n"))

    submitted = render_submission(job, stack, "fit-abcde")
    assert submitted.args == ["--samples", f"{table}@v1", "--pinned", f"{table}@v0"]
    assert [(s.ref, s.version, s.digest) for s in submitted.samples] == [("ctr@latest", 1, describe(table, 1).digest), ("ctr@0", 0, describe(table, 0).digest)]
    assert render_job(job, stack, "fit-abcde").args == ["--samples", f"{table}@latest", "--pinned", f"{table}@v0"]


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("${samples.nope@3}", "args[1]: ${samples.nope@3}: no sample table 'nope' at "),
        ("${samples.ctr@99}", "args[1]: ${samples.ctr@99}: sample table 'ctr' has no version 99 (versions 0 to 0); use @latest or a version from plinth data versions ctr"),
        ("${samples.ctr}", "args[1]: '${samples.ctr}' is not a sample reference; write ${samples.ctr@latest} or ${samples.ctr@N}"),
        ("${samples.ctr@v2}", "args[1]: '${samples.ctr@v2}' is not a sample reference; write ${samples.ctr@latest} or ${samples.ctr@N}"),
    ],
)
def test_a_bad_sample_reference_is_one_line_naming_the_field_and_the_fix(project: Path, arg: str, message: str) -> None:
    stack = load_stack("local")
    table = table_location(stack.storage_root, "ctr")
    write_split_dir(Path(table) / "v0", rows=2, start=0)
    commit_version(table, f"{table}/v0", partition_by="split")
    job = load_job(write_job(project / "jobs", "fit", f"kind: python\nname: fit\nscript: fit.py\nargs: [--samples, {json.dumps(arg)}]\n", script=""))
    with pytest.raises(PlinthError) as error:
        render_submission(job, stack, "fit-abcde")
    text = str(error.value)
    assert "\n" not in text
    assert text.startswith("jobs/fit.job.yaml: " + message) or message in text, text


def test_sample_dir_needs_an_output_declaration(project: Path) -> None:
    job = load_job(write_job(project / "jobs", "write", "kind: python\nname: write\nscript: write.py\nargs: [--out, '${sample_dir}']\n", script=""))
    with pytest.raises(PlinthError, match=r"args\[1\]: \$\{sample_dir\} is set only for a job that declares output.samples; add output: \{samples: NAME\}"):
        render_job(job, load_stack("local"), "write-abcde")
    declared = load_job(write_job(project / "jobs", "write2", "kind: python\nname: write2\nscript: write2.py\nargs: [--out, '${sample_dir}']\noutput: {samples: ctr}\n", script=""))
    rendered = render_job(declared, load_stack("local"), "write2-abcde")
    assert rendered.args[1] == table_location(load_stack("local").storage_root, "ctr") + "/write2-abcde"
    assert rendered.sample_output.table == "ctr" and rendered.sample_output.mode == "append"
