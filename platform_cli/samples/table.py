"""Sample tables on Delta Lake (delta-rs): commit a directory of Parquet files as a version, list
and describe versions, open one version's files.

Writing a version does not rewrite data: a job (Spark, usually) writes Parquet files into a
directory inside the table (`${sample_dir}` = `<table>/<job id>`), and `commit_version` adds
those files to the Delta log in one commit, with Plinth's description of the version in the
commit's entry (`commitInfo.plinth`, which other Delta readers ignore):

    rows, stats        row count and per-column min/max/nulls, from the Parquet footers
    digest             sha256 over the sorted (partition, sha256 of file content) lines of the
                       version's data files and attachments: the same bytes give the same digest
                       whatever the files are called or when they were written
    files, attachments each added file's sha256, rows and partition, which later versions (an
                       append keeps the files before it) and readers check content against
    job, mode          the job that wrote it; append or overwrite

Files that are not Parquet (a feature spec, say) are *attachments* of the version: kept beside
its data, part of its digest, handed to readers by name. Partitioned tables take the partition
value from the first directory level (`train/part-0.parquet` or `split=train/part-0.parquet`).

The table keeps Delta's minimal protocol (reader 1, writer 2; no table features), so delta-spark
reads it as it is. Locations are local paths or URIs, handled as platform_cli.storage handles
them (s3a:// is opened as s3://; credentials come from the environment).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable, Schema
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.transaction import AddAction, CommitProperties, create_table_with_add_actions
from pydantic import BaseModel

from platform_cli import storage
from platform_cli.errors import PlinthError
from platform_cli.samples import SAMPLES_DIR, SampleInput, SampleOutput, SampleRef, references, split_location, table_location, version_location

if TYPE_CHECKING:
    from platform_cli.spec.job import LoadedJob
    from platform_cli.spec.stack import Stack

Mode = Literal["append", "overwrite"]
DIGEST_ALGORITHM = "sha256"
_INFO_KEY = "plinth"  # Plinth's part of a commit's commitInfo


class ColumnStats(BaseModel):
    """Over every value of a column (for lists and structs, of each leaf: `cat.list.element`)."""

    min: float | int | str | bool | None = None
    max: float | int | str | bool | None = None
    nulls: int = 0


class Column(BaseModel):
    name: str
    type: str  # the Arrow type, as pyarrow prints it
    nullable: bool


class SampleVersion(BaseModel):
    """One version of a sample table, as `plinth data show` prints it."""

    table: str
    version: int
    location: str  # <table>@v<N>: what `${samples.NAME@N}` becomes in a job's args
    created: datetime
    mode: str
    rows: int
    files: int
    bytes: int
    digest: str
    partition_by: list[str] = []
    columns: list[Column] = []
    stats: dict[str, ColumnStats] = {}
    job: dict[str, str] = {}
    attachments: list[str] = []


# -- the library: tables under a storage root ---------------------------------------------


def tables_root(storage_root: str) -> str:
    return storage.join(storage_root, SAMPLES_DIR)


def list_tables(storage_root: str) -> list[str]:
    """Names of the sample tables under the stack's storage, sorted."""
    from pyarrow import fs

    root = tables_root(storage_root)
    if not storage.exists(root):
        return []
    filesystem, path = storage.filesystem(root)
    names = []
    for info in filesystem.get_file_info(fs.FileSelector(path)):
        name = info.path.rstrip("/").rsplit("/", 1)[-1]
        if info.type == fs.FileType.Directory and not name.startswith((".", "_")) and storage.exists(storage.join(root, name, "_delta_log")):
            names.append(name)
    return sorted(names)


def versions(table: str) -> list[SampleVersion]:
    """Every version of the table at location `table`, oldest first."""
    return [_version_from_commit(table, commit) for commit in sorted(_history(table), key=lambda c: c["version"])]


def describe(table: str, version: int | None = None) -> SampleVersion:
    """One version (None: the newest)."""
    history = _history(table)
    newest = max(c["version"] for c in history)
    wanted = newest if version is None else version
    for commit in history:
        if commit["version"] == wanted:
            return _version_from_commit(table, commit)
    raise PlinthError(f"sample table {_name(table)!r} has no version {wanted} (versions 0 to {newest})",
                      f"use @latest or a version from plinth data versions {_name(table)}")


def _history(table: str) -> list[dict]:
    return _open(table).history()


def _open(table: str, version: int | None = None) -> DeltaTable:
    try:
        return DeltaTable(storage.native(table), version=version)
    except TableNotFoundError:
        raise PlinthError(f"no sample table {_name(table)!r} at {table}",
                          f"write it first: a job with output: {{samples: {_name(table)}}}, or plinth data register {_name(table)} --path DIR "
                          "(plinth data ls lists the tables there are)") from None
    except DeltaError as error:
        if version is not None and "version" in str(error).lower():
            raise PlinthError(f"sample table {_name(table)!r} has no version {version}",
                              f"use @latest or a version from plinth data versions {_name(table)}") from None
        raise PlinthError(f"cannot read sample table {table}: {_first_line(error)}") from None


def _version_from_commit(table: str, commit: dict) -> SampleVersion:
    info = commit.get(_INFO_KEY) or {}
    version = commit["version"]
    return SampleVersion(
        table=_name(table),
        version=version,
        location=version_location(table, version),
        created=datetime.fromtimestamp(commit["timestamp"] / 1000, timezone.utc),
        mode=info.get("mode", str(commit.get("operationParameters", {}).get("mode", "")).lower() or "-"),
        rows=info.get("rows", 0),
        files=info.get("file_count", 0),
        bytes=info.get("bytes", 0),
        digest=info.get("digest", ""),
        partition_by=info.get("partition_by", []),
        columns=[Column(**c) for c in info.get("columns", [])],
        stats={k: ColumnStats(**v) for k, v in info.get("stats", {}).items()},
        job=info.get("job", {}),
        attachments=sorted(info.get("attachments", {})),
    )


def pin_samples(job: LoadedJob, stack: Stack) -> dict[SampleRef, SampleInput]:
    """Each `${samples.NAME@V}` of the job resolved to the version it names now, with its digest;
    a missing table or version is an error naming the field. On a stack whose storage is a URI
    the CLI does not read it: references stay as written and the job resolves `@latest` when it
    starts (open_version)."""
    from platform_cli.render.context import in_job_file, spec_fields

    if storage.is_uri(stack.storage_root):
        return {}
    pinned: dict[SampleRef, SampleInput] = {}
    for field, value in spec_fields(job):
        for ref in references(value, field):
            if ref in pinned:
                continue
            try:
                found = describe(table_location(stack.storage_root, ref.table), ref.version)
            except PlinthError as error:
                raise in_job_file(job, PlinthError(f"{field}: ${{samples.{ref}}}: {error.message}", error.fix)) from None
            pinned[ref] = SampleInput(ref=str(ref), table=ref.table, version=found.version, location=found.location, digest=found.digest, rows=found.rows)
    return pinned


# -- writing a version ---------------------------------------------------------------------


def commit_version(table: str, data_dir: str, *, mode: Mode = "append", partition_by: str | None = None,
                   job: dict[str, str] | None = None) -> SampleVersion:
    """Add the Parquet files under `data_dir` to the table at `table` as its next version
    (creating the table for the first). `data_dir` inside the table is committed where it is;
    elsewhere its files are copied into the table first."""
    if not storage.exists(data_dir):
        raise PlinthError(f"{data_dir} does not exist", "write the version's Parquet files there first")
    inside = _relative_to(data_dir, table)
    if inside is None:
        inside = f"{_name(table)}-{uuid.uuid4().hex[:8]}"
        _copy_files(data_dir, storage.join(table, inside))
    data, attachments = _scan(storage.join(table, inside), inside, partition_by)

    exists = DeltaTable.is_deltatable(storage.native(table))
    current = _open(table) if exists else None
    schema = _schema(data, partition_by)
    if current is not None:
        _require_same_layout(table, current, schema, partition_by)
    appending = current is not None and mode == "append"
    known = _file_index(current.history(), current.version()) if appending else {"files": {}, "attachments": {}}
    active_files = {**(_active(current, known) if appending else {}), **{f["path"]: f for f in data}}
    active_attachments = {**known["attachments"], **attachments}

    info = {
        "mode": mode if current is not None else "create",
        "job": job or {},
        "rows": sum(f["rows"] for f in active_files.values()),
        "file_count": len(active_files),
        "bytes": sum(f["bytes"] for f in active_files.values()) + sum(a["bytes"] for a in active_attachments.values()),
        "digest": content_digest(active_files.values(), active_attachments),
        "partition_by": [partition_by] if partition_by else [],
        "columns": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema],
        "stats": _merged_stats(active_files.values()),
        "files": {f["path"]: {k: f[k] for k in ("sha256", "rows", "bytes", "partition", "stats")} for f in data},
        "attachments": active_attachments,  # what readers of this version get, with the earlier ones an append keeps
    }
    actions = [
        AddAction(path=quote(f["path"]), size=f["bytes"], partition_values=f["partition"], modification_time=f["mtime"],
                  data_change=True, stats=json.dumps({"numRecords": f["rows"]}))
        for f in data
    ]
    properties = CommitProperties(custom_metadata={_INFO_KEY: info})
    delta_schema = Schema.from_arrow(schema)
    partitions = [partition_by] if partition_by else None
    try:
        if current is None:
            create_table_with_add_actions(storage.native(table), delta_schema, actions, mode="error", partition_by=partitions,
                                          name=_name(table), commit_properties=properties)
        else:
            current.create_write_transaction(actions, mode, delta_schema, partition_by=partitions, commit_properties=properties)
    except (CommitFailedError, DeltaError) as error:
        raise PlinthError(f"could not commit a version of sample table {_name(table)!r}: {_first_line(error)}") from None
    return describe(table)


def committed_by(table: str, job_id: str) -> SampleVersion | None:
    """The version job `job_id` committed to the table (each commit records its job), or None."""
    if not DeltaTable.is_deltatable(storage.native(table)):
        return None
    for commit in sorted(_history(table), key=lambda c: c["version"]):
        if ((commit.get(_INFO_KEY) or {}).get("job") or {}).get("id") == job_id:
            return _version_from_commit(table, commit)
    return None


def commit_job_output(output: SampleOutput, job: dict[str, str]) -> tuple[SampleVersion, bool]:
    """Commit what `job` wrote into its ${sample_dir} as the table's next version, once: the
    local runner and a cluster job's launcher (platform_cli.samples.launch) both commit through
    here. A job that already committed (a retried driver whose commit went through) gets its
    version back and False; nothing is committed twice for one job id."""
    done = committed_by(output.location, job["id"])
    if done is not None:
        return done, False
    return commit_version(output.location, output.dir, mode=output.mode, partition_by=output.partition_by, job=job), True


def committed_line(version: SampleVersion, seconds: float) -> str:
    """What the job's log says about the commit, on every target."""
    return f"committed sample table {version.table} version {version.version} ({version.rows} rows, {version.digest}) in {seconds:.2f}s"


def content_digest(files, attachments: dict[str, dict]) -> str:
    """sha256 over the sorted lines `<partition> <sha256>` (data files) and `attachment <name>
    <sha256>`: content and layout only, never file names or times."""
    lines = sorted([f"{json.dumps(f['partition'], sort_keys=True)} {f['sha256']}" for f in files]
                   + [f"attachment {name} {a['sha256']}" for name, a in attachments.items()])
    return f"{DIGEST_ALGORITHM}:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _scan(directory: str, inside: str, partition_by: str | None) -> tuple[list[dict], dict[str, dict]]:
    """The directory's Parquet files (path in the table, size, sha256, rows, partition, footer
    stats) and its attachments. Names starting with `.` or `_` (Spark's _SUCCESS, checksum
    files) are not part of a version."""
    from pyarrow import fs

    filesystem, base = storage.filesystem(directory)
    data, attachments = [], {}
    for info in sorted(filesystem.get_file_info(fs.FileSelector(base, recursive=True)), key=lambda i: i.path):
        relative = info.path[len(base):].strip("/")
        parts = relative.split("/")
        if info.type != fs.FileType.File or any(p.startswith((".", "_")) for p in parts):
            continue
        content = storage.read_bytes(storage.join(directory, relative))
        digest = hashlib.sha256(content).hexdigest()
        if not relative.endswith(".parquet"):
            attachments[relative] = {"path": f"{inside}/{relative}", "sha256": digest, "bytes": len(content)}
            continue
        partition = {}
        if partition_by:
            if len(parts) != 2:
                raise PlinthError(f"{directory}: {relative} is not in a {partition_by} directory",
                                  f"write the files of each {partition_by} into its own directory (train/part-0.parquet)")
            partition = {partition_by: parts[0].split("=", 1)[-1]}
        elif len(parts) != 1:
            raise PlinthError(f"{directory}: {relative} is in a subdirectory", "declare output.partitionBy, or write the Parquet files at the top level")
        metadata = pq.ParquetFile(pa.BufferReader(content)).metadata
        data.append({"path": f"{inside}/{relative}", "bytes": len(content), "sha256": digest, "rows": metadata.num_rows,
                     "partition": partition, "stats": _footer_stats(metadata), "schema": metadata.schema.to_arrow_schema(),
                     "mtime": int(info.mtime.timestamp() * 1000) if info.mtime else 0})
    if not data:
        raise PlinthError(f"no Parquet files in {directory}", "the job must write the version's rows as Parquet into ${sample_dir}")
    return data, attachments


def _schema(data: list[dict], partition_by: str | None) -> pa.Schema:
    schema = data[0]["schema"].remove_metadata()
    for f in data[1:]:
        if not f["schema"].remove_metadata().equals(schema):
            raise PlinthError(f"{f['path']} has another schema than {data[0]['path']}", "write every file of a version with the same columns")
    for f in data:
        del f["schema"]
    schema = pa.schema([field.remove_metadata() for field in schema])
    return schema.append(pa.field(partition_by, pa.string())) if partition_by else schema


def _require_same_layout(table: str, current: DeltaTable, schema: pa.Schema, partition_by: str | None) -> None:
    if current.metadata().partition_columns != ([partition_by] if partition_by else []):
        raise PlinthError(f"sample table {_name(table)!r} is partitioned by {current.metadata().partition_columns or 'nothing'}",
                          "write it with the same output.partitionBy, or to a new table")
    if current.schema().to_json() != Schema.from_arrow(schema).to_json():
        raise PlinthError(f"the new rows' columns differ from those of sample table {_name(table)!r}",
                          "write the same columns, or write to a new table")


def _file_index(history: list[dict], upto: int) -> dict:
    """Every file and attachment Plinth committed to the table up to version `upto`, from the
    log's commit entries (`history` from the table's newest version: delta-rs numbers the
    history of an older snapshot wrongly)."""
    index = {"files": {}, "attachments": {}}
    for commit in sorted(history, key=lambda c: c["version"]):
        if commit["version"] > upto:
            break
        info = commit.get(_INFO_KEY) or {}
        if info.get("mode") == "overwrite":
            index["attachments"] = {}
        index["files"].update(info.get("files", {}))
        index["attachments"].update(info.get("attachments", {}))
    return index


def _active(current: DeltaTable, known: dict) -> dict[str, dict]:
    active = {}
    for path in pa.table(current.get_add_actions()).column("path").to_pylist():
        path = unquote(path)
        if path not in known["files"]:
            raise PlinthError(f"{path} in sample table {current.metadata().name!r} was not committed by Plinth (no content digest)",
                              "write the table with plinth jobs or plinth data register only")
        active[path] = {"path": path, **known["files"][path]}
    return active


def _footer_stats(metadata: pq.FileMetaData) -> dict[str, dict]:
    """Per leaf column: min, max, nulls over the file's row groups (from the footer, no data read)."""
    stats: dict[str, dict] = {}
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        for c in range(group.num_columns):
            chunk = group.column(c)
            entry = stats.setdefault(chunk.path_in_schema, {"min": None, "max": None, "nulls": 0})
            s = chunk.statistics
            if s is None:
                continue
            entry["nulls"] += s.null_count or 0
            if s.has_min_max:
                entry["min"] = _extreme(min, entry["min"], _json_value(s.min))
                entry["max"] = _extreme(max, entry["max"], _json_value(s.max))
    return stats


def _merged_stats(files) -> dict[str, dict]:
    merged: dict[str, dict] = {}
    for f in files:
        for column, s in f["stats"].items():
            entry = merged.setdefault(column, {"min": None, "max": None, "nulls": 0})
            entry["nulls"] += s["nulls"]
            entry["min"] = _extreme(min, entry["min"], s["min"])
            entry["max"] = _extreme(max, entry["max"], s["max"])
    return dict(sorted(merged.items()))


def _extreme(pick, a, b):
    if a is None or b is None:
        return b if a is None else a
    try:
        return pick(a, b)
    except TypeError:  # values of another type (a column changed type): keep the first
        return a


def _json_value(value):
    """A footer statistic as JSON takes it (the commit entry refuses NaN and infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return None
    if isinstance(value, (int, float, str, bool)):
        return value
    return str(value)  # dates, timestamps, decimals


def _copy_files(source: str, destination: str) -> None:
    from pyarrow import fs

    filesystem, base = storage.filesystem(source)
    for info in filesystem.get_file_info(fs.FileSelector(base, recursive=True)):
        if info.type == fs.FileType.File:
            relative = info.path[len(base):].strip("/")
            storage.copy_file(storage.join(source, relative), storage.join(destination, relative))


def _relative_to(location: str, table: str) -> str | None:
    """`location` relative to the table's directory, or None when it is outside."""
    if storage.is_uri(location) != storage.is_uri(table):
        return None
    inner, outer = (storage.native(location).rstrip("/"), storage.native(table).rstrip("/")) if storage.is_uri(table) else \
        (os.path.abspath(location), os.path.abspath(table))
    if inner.startswith(outer + "/") and not inner[len(outer) + 1:].startswith((".", "_")):
        return inner[len(outer) + 1:]
    return None


def _name(table: str) -> str:
    return table.rstrip("/").rsplit("/", 1)[-1]


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


# -- reading a version ---------------------------------------------------------------------


class OpenedVersion:
    """One version's files, for a job that reads it. Every file read is checked against the
    sha256 it was committed with, so what a job trains on is the version's content."""

    def __init__(self, table: str, info: SampleVersion, files: list[dict], attachments: dict[str, dict]):
        self.table = table
        self.info = info
        self._files = files
        self._attachments = attachments

    @property
    def location(self) -> str:
        return self.info.location

    def files(self, **partition: str) -> list[str]:
        """Locations of the data files (those of one partition: files(split="train"))."""
        return [storage.join(self.table, f["path"]) for f in self._files if all(f["partition"].get(k) == v for k, v in partition.items())]

    def attachment(self, name: str) -> str:
        if name not in self._attachments:
            raise PlinthError(f"{self.location} has no attachment {name!r} (it has: {', '.join(self._attachments) or 'none'})",
                              "write it beside the Parquet files in ${sample_dir}")
        return storage.join(self.table, self._attachments[name]["path"])

    def read_attachment(self, name: str) -> bytes:
        content = storage.read_bytes(self.attachment(name))
        self._check(name, content, self._attachments[name]["sha256"])
        return content

    def read(self, columns: list[str] | None = None, **partition: str) -> pa.Table:
        """The rows (of one partition), read from the version's files in the log's order."""
        tables = []
        for f in self._files:
            if all(f["partition"].get(k) == v for k, v in partition.items()):
                content = storage.read_bytes(storage.join(self.table, f["path"]))
                self._check(f["path"], content, f["sha256"])
                tables.append(pq.read_table(pa.BufferReader(content), columns=columns))
        if not tables:
            raise PlinthError(f"{self.location} has no rows for {partition}")
        return pa.concat_tables(tables)

    def _check(self, name: str, content: bytes, expected: str) -> None:
        if hashlib.sha256(content).hexdigest() != expected:
            raise PlinthError(f"{self.location}: {name} is not what was committed (its sha256 changed)",
                              "the table was modified outside Plinth; write a new version instead")


def open_version(location: str) -> OpenedVersion:
    """A version location (`<table>@v7`, `<table>@latest`, or a bare table: its newest version)."""
    table, version = split_location(location)
    current = _open(table, version)
    history = _history(table)
    info = _version_from_commit(table, next(c for c in history if c["version"] == current.version()))
    known = _file_index(history, current.version())
    files = sorted(_active(current, known).values(), key=lambda f: f["path"])
    attachments = {name: a for name, a in known["attachments"].items() if name in info.attachments}
    return OpenedVersion(table, info, files, attachments)
