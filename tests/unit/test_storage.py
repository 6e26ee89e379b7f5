"""platform_cli.storage: one way to open a local path or a URI.

Exercised for real: plain paths and file:// URIs, through pyarrow's LocalFileSystem - the same
code path (rename-into-place plus _SUCCESS) that hdfs:// takes. The object-store strategy
(write in place, _SUCCESS last) is run on the local filesystem too. Not proven here: no HDFS
namenode or S3 bucket exists on this machine, so libhdfs, S3 credentials and the real
semantics of those stores (HDFS rename replacing a file, S3 listing) are untested.
"""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow import fs

from platform_cli import storage
from platform_cli.storage import SUCCESS_MARKER, StorageError


def test_plain_paths_and_uris_are_told_apart_and_joined_without_losing_the_authority():
    assert not storage.is_uri("data/raw") and not storage.is_uri("/abs/raw")
    assert storage.is_uri("file:///tmp/x") and storage.is_uri("hdfs://nn:8020/teams/feed")
    assert storage.join("data", "raw", "part.parquet") == os.path.join("data", "raw", "part.parquet")
    # pathlib would turn this into hdfs:/nn:8020/...; the scripts' paths must survive joining
    assert storage.join("hdfs://nn.svc:8020/teams/feed/", "ctr", "features") == "hdfs://nn.svc:8020/teams/feed/ctr/features"
    assert storage.join("s3://bucket/teams/feed", "feature_spec.json") == "s3://bucket/teams/feed/feature_spec.json"


def test_native_spells_hadoops_s3a_as_s3_for_pyarrow_and_tensorflow():
    # an s3 platform stack renders ${storage} as s3a://bucket/... for Spark's S3A connector
    assert storage.native("s3a://plinth-prod/teams/feed") == "s3://plinth-prod/teams/feed"
    assert storage.native("hdfs://nn:8020/x") == "hdfs://nn:8020/x"
    assert storage.native("data/s3a://odd") == "data/s3a://odd"  # a plain path is left alone


def test_filesystem_resolves_plain_paths_and_file_uris_to_the_local_disk(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    local, path = storage.filesystem("data/raw")
    assert (local.type_name, path) == ("local", str(tmp_path / "data" / "raw"))
    local, path = storage.filesystem(f"file://{tmp_path}/raw")
    assert (local.type_name, path) == ("local", f"{tmp_path}/raw")


@pytest.mark.parametrize(
    ("location", "fix"),
    [
        ("gopher://host/data", "use a local path or a file://, hdfs:// or s3:// URI"),
        # No JVM/libhdfs here: this is the error a job image without the Hadoop client gets.
        ("hdfs://localhost:1/teams/feed", "JAVA_HOME"),
    ],
)
def test_an_unreachable_filesystem_is_one_line_naming_the_location_and_the_fix(location, fix):
    with pytest.raises(StorageError) as caught:
        storage.filesystem(location)
    assert caught.value.message.startswith(f"cannot open {location}: ")
    assert "\n" not in str(caught.value)
    assert fix in caught.value.fix


def test_text_and_json_round_trip_through_a_file_uri_and_replace_the_old_file(tmp_path):
    uri = f"file://{tmp_path}/out/nested/metrics.json"
    storage.write_json(uri, {"auc": 0.5})
    storage.write_json(uri, {"auc": 0.75})  # replaces
    assert json.loads(storage.read_text(uri)) == {"auc": 0.75}
    assert json.loads((tmp_path / "out" / "nested" / "metrics.json").read_text()) == {"auc": 0.75}
    assert os.listdir(tmp_path / "out" / "nested") == ["metrics.json"]  # no temporary left
    storage.copy_file(uri, str(tmp_path / "copy.json"))
    assert json.loads((tmp_path / "copy.json").read_text()) == {"auc": 0.75}


def test_staged_dir_on_a_file_uri_replaces_the_directory_whole_and_marks_it(tmp_path):
    uri = f"file://{tmp_path}/raw"
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "stale.parquet").write_text("from an earlier run")
    with storage.staged_dir(uri) as tmp:
        assert isinstance(tmp, str) and tmp.startswith(f"file://{tmp_path}/.raw.tmp-")
        assert not storage.exists(storage.join(tmp, SUCCESS_MARKER))  # not before the contents
        pq.write_table(pa.table({"x": [1, 2, 3]}), storage.filesystem(storage.join(tmp, "part-0.parquet"))[1])
    assert sorted(os.listdir(tmp_path / "raw")) == [SUCCESS_MARKER, "part-0.parquet"]
    assert os.listdir(tmp_path) == ["raw"]  # neither the staging nor the old copy is left
    storage.require_complete(uri)
    assert storage.read_parquet(uri).column("x").to_pylist() == [1, 2, 3]  # _SUCCESS is skipped


def test_staged_dir_on_a_file_uri_keeps_the_previous_version_when_the_writer_fails(tmp_path):
    uri = f"file://{tmp_path}/raw"
    with storage.staged_dir(uri) as tmp:
        storage.write_text(storage.join(tmp, "data.txt"), "version 1")
    with pytest.raises(RuntimeError), storage.staged_dir(uri) as tmp:
        storage.write_text(storage.join(tmp, "data.txt"), "half of version 2")
        raise RuntimeError("killed midway")
    assert storage.read_text(storage.join(uri, "data.txt")) == "version 1"
    assert os.listdir(tmp_path) == ["raw"]


def test_object_store_strategy_writes_in_place_and_the_marker_last(tmp_path):
    """The path s3:// takes, run on the local filesystem (the strategy is chosen by the
    filesystem's type; this calls it directly)."""
    local = fs.LocalFileSystem()
    out = tmp_path / "features"
    out.mkdir()
    (out / "stale").write_text("old")
    with storage._written_in_place(local, f"file://{out}", str(out)) as target:
        assert target == f"file://{out}" and os.listdir(out) == []  # cleared, written in place
        storage.write_text(storage.join(target, "part"), "new")
        with pytest.raises(StorageError, match="has no _SUCCESS marker"):
            storage.require_complete(target)  # a reader meanwhile refuses it
    assert sorted(os.listdir(out)) == [SUCCESS_MARKER, "part"]
    storage.require_complete(f"file://{out}")

    with pytest.raises(RuntimeError), storage._written_in_place(local, f"file://{out}", str(out)) as target:
        storage.write_text(storage.join(target, "part"), "half")
        raise RuntimeError("killed midway")
    assert os.listdir(out) == []  # nothing that looks complete, nothing half-read


def test_require_complete_checks_uris_only(tmp_path):
    (tmp_path / "raw").mkdir()
    storage.require_complete(tmp_path / "raw")  # plain paths are renamed into place whole
    with pytest.raises(StorageError, match=r"raw has no _SUCCESS marker; run the step that writes it"):
        storage.require_complete(f"file://{tmp_path}/raw")
    with pytest.raises(StorageError, match=r"missing does not exist"):
        storage.require_complete(f"file://{tmp_path}/missing")


def test_importing_storage_does_not_load_pyarrow():
    import subprocess
    import sys

    code = "import sys, platform_cli.storage, platform_cli.features; print('pyarrow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
